//! Train a character-level GPT on tiny Shakespeare, then sample from it.
//!
//!     cargo run --release --example shakespeare                  # the cpu-mini recipe, a few minutes
//!     cargo run --release --example shakespeare -- --help
//!     cargo run --release --example shakespeare -- --sample-only --resume out-shakespeare
//!
//! The training loop is the whole story: sample a batch, step, evaluate now
//! and then, keep the best checkpoint. zeroformer::train holds the pieces.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use zeroformer::checkpoint::Checkpoint;
use zeroformer::data::{check_long_enough, locate_shakespeare, read_text, train_val_split};
use zeroformer::models::{Gpt, GptConfig};
use zeroformer::tokenizer::CharTokenizer;
use zeroformer::train::{TrainConfig, Trainer, evaluate, generate};
use zeroformer::{Error, Result};

const BEST: &str = "ckpt.safetensors";
const LAST: &str = "last.safetensors";

/// Train a character-level GPT on tiny Shakespeare and sample from it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The corpus (default: data/tinyshakespeare.txt, else ../shared/data/tinyshakespeare.txt).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model size: cpu-mini, gpt-mini, shakespeare-char.
    #[arg(long, default_value = "cpu-mini")]
    preset: String,
    /// Optimisation steps (in total, counting those of a resumed run).
    #[arg(long, default_value_t = 2000)]
    iters: usize,
    #[arg(long, default_value_t = 12)]
    batch_size: usize,
    /// Micro-batches per step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Final learning rate of the cosine decay.
    #[arg(long, default_value_t = 1e-4)]
    min_lr: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// AdamW weight decay, on matrices only.
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Steps between evaluations.
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    /// Random batches per evaluation estimate.
    #[arg(long, default_value_t = 20)]
    eval_iters: usize,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Checkpoint folder.
    #[arg(long, default_value = "out-shakespeare")]
    out: PathBuf,
    /// Continue from the checkpoints in this folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Only generate, from the best checkpoint in --resume.
    #[arg(long)]
    sample_only: bool,
    #[arg(long, default_value_t = 500)]
    sample_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    /// The text the sample continues.
    #[arg(long, default_value = "\n")]
    prompt: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Append metrics as JSON lines to this file.
    #[arg(long)]
    metrics: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    zeroformer::backend::cpu::set_threads(args.threads)?;
    if args.sample_only {
        let dir = args
            .resume
            .as_deref()
            .ok_or_else(|| Error::InvalidConfig("--sample-only needs --resume DIR".into()))?;
        return sample_only(&args, dir);
    }
    let path = locate_shakespeare(args.data.as_deref())?;
    let text = read_text(&path)?;
    let tokenizer = CharTokenizer::from_text(&text);
    let ids = tokenizer.encode(&text)?;
    let (train, val) = train_val_split(&ids, 0.9);

    let mut trainer = match &args.resume {
        Some(dir) => resume(dir, &tokenizer)?,
        None => {
            let mut model = GptConfig::preset(&args.preset, tokenizer.vocab_size())?;
            if args.preset == "gpt2" {
                return Err(Error::InvalidConfig("the gpt2 preset needs the GPT-2 tokenizer; use cpu-mini, gpt-mini or shakespeare-char".into()));
            }
            model.dropout = args.dropout;
            let config = TrainConfig {
                batch_size: args.batch_size,
                grad_accum: args.grad_accum,
                max_lr: args.lr,
                min_lr: args.min_lr,
                warmup: args.warmup,
                decay_steps: args.iters,
                weight_decay: args.weight_decay,
                grad_clip: args.grad_clip,
                seed: args.seed,
                ..TrainConfig::nanogpt_cpu(args.iters)
            };
            Trainer::new(model, config)?
        }
    };
    let context = trainer.model.config.block_size;
    check_long_enough(train, context, "training")?;
    check_long_enough(val, context, "validation")?;
    prepare_out_dir(&args.out)?;
    let mut metrics = match &args.metrics {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::io("opening the metrics file", p, e))?,
        ),
        None => None,
    };
    let extra = [
        ("tokenizer", tokenizer.to_json()),
        ("corpus", path.display().to_string()),
    ];
    println!(
        "{} parameters, {} layers, width {}, context {}; {} train / {} val tokens, vocabulary {}",
        zeroformer::nn::Module::num_parameters(&trainer.model),
        trainer.model.config.n_layer,
        trainer.model.config.n_embd,
        context,
        train.len(),
        val.len(),
        tokenizer.vocab_size()
    );

    let tokens_per_step = trainer.config.batch_size * trainer.config.grad_accum * context;
    let bar = ProgressBar::new(args.iters as u64).with_position(trainer.step as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
            .expect("valid template"),
    );
    let mut eval_rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xe7a1);
    let mut best_val = f32::INFINITY;
    let mut train_time = Duration::ZERO;
    let (mut steps_timed, mut last_loss) = (0usize, f32::NAN);
    let started = Instant::now();
    while trainer.step < args.iters {
        let t = Instant::now();
        let stats = trainer.train_step(train);
        train_time += t.elapsed();
        steps_timed += 1;
        last_loss = stats.loss;
        let tok_s = (steps_timed * tokens_per_step) as f64 / train_time.as_secs_f64();
        bar.set_position(trainer.step as u64);
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} tok/s",
            stats.loss, stats.lr, tok_s
        ));
        let step = trainer.step;
        if step % args.eval_every.max(1) == 0 || step == args.iters {
            let train_loss = trainer.estimate_loss(train, args.eval_iters.max(1), &mut eval_rng);
            let val_loss = trainer.estimate_loss(val, args.eval_iters.max(1), &mut eval_rng);
            let line = format!("step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}");
            // A hidden bar (output not a terminal) would swallow println.
            if bar.is_hidden() {
                println!("{line}")
            } else {
                bar.println(line)
            }
            if let Some(f) = metrics.as_mut() {
                let line = serde_json::json!({"step": step, "train_loss": train_loss, "val_loss": val_loss, "lr": stats.lr, "grad_norm": stats.grad_norm, "tokens_per_s": tok_s});
                writeln!(f, "{line}").map_err(|e| {
                    Error::io("writing metrics", args.metrics.as_deref().unwrap(), e)
                })?;
            }
            if val_loss < best_val {
                best_val = val_loss;
                trainer.save(&args.out.join(BEST), &extra)?;
            }
            trainer.save(&args.out.join(LAST), &extra)?;
        }
    }
    bar.finish_and_clear();

    let val_loss = evaluate(&mut trainer.model, val, 32);
    let train_loss = trainer.estimate_loss(train, args.eval_iters.max(1), &mut eval_rng);
    let tokens_per_s = (steps_timed * tokens_per_step) as f64 / train_time.as_secs_f64().max(1e-9);
    println!(
        "final loss on the whole validation split: {val_loss:.4} (last training batch {last_loss:.4})"
    );
    let sample = sample(&mut trainer.model, &tokenizer, &args)?;
    println!("---\n{sample}\n---");
    println!(
        "final val_loss={val_loss:.4} train_loss={train_loss:.4} tokens_per_s={tokens_per_s:.0} iters={} seconds={:.1}",
        trainer.step,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates the output folder and proves it writable before training starts.
fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the output folder", dir, e))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| Error::io("writing to the output folder", dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io("cleaning the output folder", dir, e))
}

/// The last checkpoint in `dir` (else the best), checked against the corpus's vocabulary.
fn resume(dir: &Path, tokenizer: &CharTokenizer) -> Result<Trainer> {
    let path = [dir.join(LAST), dir.join(BEST)]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "--resume {}: no {LAST} or {BEST} there",
                dir.display()
            ))
        })?;
    let (trainer, ckpt) = Trainer::resume(&path)?;
    let saved = CharTokenizer::from_json(ckpt.require_meta("tokenizer")?)?;
    if &saved != tokenizer {
        return Err(Error::Checkpoint {
            path,
            message: format!(
                "it was trained on another vocabulary ({} characters; this corpus has {})",
                saved.vocab_size(),
                tokenizer.vocab_size()
            ),
        });
    }
    println!("resumed from {} at step {}", path.display(), trainer.step);
    Ok(trainer)
}

fn sample(model: &mut Gpt, tokenizer: &CharTokenizer, args: &Args) -> Result<String> {
    let prompt = tokenizer.encode(&args.prompt)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let ids = generate(
        model,
        &prompt,
        args.sample_tokens,
        args.temperature,
        args.top_k,
        args.top_p,
        &mut rng,
    );
    tokenizer.decode(&ids)
}

fn sample_only(args: &Args, dir: &Path) -> Result<()> {
    let path = dir.join(BEST);
    let ckpt = Checkpoint::load(&path)?;
    let tokenizer = CharTokenizer::from_json(ckpt.require_meta("tokenizer")?)?;
    let config: GptConfig =
        serde_json::from_str(ckpt.require_meta("model_config")?).map_err(|e| {
            Error::Checkpoint {
                path: path.clone(),
                message: format!("model_config: {e}"),
            }
        })?;
    let mut model = Gpt::new(config, 0)?;
    ckpt.load_module("model.", &model)?;
    println!("{}", sample(&mut model, &tokenizer, args)?);
    Ok(())
}
