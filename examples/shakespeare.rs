//! Train a GPT on tiny Shakespeare (characters, a BPE trained on it, or
//! GPT-2's tokens), then sample from it.
//!
//!     cargo run --release --example shakespeare                  # the cpu-mini recipe, a few minutes
//!     cargo run --release --example shakespeare -- --tokenizer bpe --bpe-vocab-size 1024
//!     cargo run --release --example shakespeare -- --help
//!     cargo run --release --example shakespeare -- --sample-only --resume out-shakespeare
//!     cargo run --release --example shakespeare -- --sample-only --resume out-shakespeare \
//!         --prompt "ROMEO: " --attention-png attention.png
//!
//! The training loop is the whole story: sample a batch, step, evaluate now
//! and then, keep the best checkpoint. zeroformer::train holds the pieces.
//! Each evaluation also redraws `loss.png` beside the checkpoints: this
//! run's loss against the step, of every batch and of the evaluations.
//! `--metrics FILE` appends every step's batch loss, lr and grad_norm
//! (split `train_batch`), each evaluation's `train` and `val` estimates,
//! and the final whole-split `val_whole` loss with its bits per byte.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use zeroformer::checkpoint::{Checkpoint, remove_stale_temp_files};
use zeroformer::data::{
    check_long_enough, locate_or_fetch_gpt2, locate_or_fetch_shakespeare, read_text,
    train_val_split,
};
use zeroformer::generation::{Sampling, generate};
use zeroformer::models::{Gpt, GptConfig, Persist};
use zeroformer::nn::Module;
use zeroformer::nn::MoeConfig;
use zeroformer::plot;
use zeroformer::tokenizer::{self, BpeTokenizer, BpeTrainer, CharTokenizer, Tokenizer};
use zeroformer::train::{Record, TrainConfig, Trainer, read_metrics};
use zeroformer::{Device, Error, Result, Tensor};

const BEST: &str = "ckpt.safetensors";

/// `m:ss` (or `h:mm:ss`).
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
const LAST: &str = "last.safetensors";
/// The loss curves, redrawn at each evaluation.
const LOSS_PNG: &str = "loss.png";

/// Train a GPT on tiny Shakespeare and sample from it.
///
/// With --resume DIR the run continues from DIR/last.safetensors, into DIR
/// unless --out says otherwise: the model
/// (--preset, --dropout) and --seed are the checkpoint's and cannot change;
/// each training flag given on the command line (--iters, --batch-size,
/// --grad-accum, --lr, --min-lr, --warmup, --weight-decay, --grad-clip)
/// replaces the saved value from the next step on, with a printed notice (a
/// new --iters re-plans the cosine decay from the current step); flags not
/// given continue as saved. The best validation loss and the evaluation
/// batches' random stream are restored too, so a resumed run keeps the
/// best checkpoint an uninterrupted run would.
#[derive(Parser, Debug)]
#[command(version, about, long_about, allow_negative_numbers = true)]
struct Args {
    /// The corpus (default: data/tinyshakespeare.txt, else ../shared/data/tinyshakespeare.txt).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model size: cpu-mini, gpt-mini, shakespeare-char, or gpt2 with
    /// --tokenizer gpt2 [default: cpu-mini].
    #[arg(long)]
    preset: Option<String>,
    /// Tokens: `char` (the corpus's characters), `bpe` (a byte-level BPE
    /// trained on the training split, saved in the checkpoint) or `gpt2`
    /// (GPT-2's tokenizer) [default: char, or the resumed run's].
    #[arg(long, value_parser = ["char", "bpe", "gpt2"])]
    tokenizer: Option<String>,
    /// The vocabulary size of --tokenizer bpe (256 bytes and the merges).
    #[arg(long, default_value_t = 512)]
    bpe_vocab_size: usize,
    /// The folder of GPT-2's vocab.json and merges.txt, for --tokenizer gpt2
    /// (default: data/gpt2, else ../shared/data/gpt2).
    #[arg(long)]
    gpt2_dir: Option<PathBuf>,
    /// Optimisation steps in total, counting those of a resumed run; the
    /// cosine decay ends there [default: 2000, or the resumed run's].
    #[arg(long)]
    iters: Option<usize>,
    /// Sequences per micro-batch [default: 12].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per step (gradient accumulation) [default: 1].
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate, > 0 [default: 1e-3].
    #[arg(long)]
    lr: Option<f32>,
    /// Final learning rate of the cosine decay, in [0, --lr] [default: 1e-4].
    #[arg(long)]
    min_lr: Option<f32>,
    /// Linear warmup steps [default: 100].
    #[arg(long)]
    warmup: Option<usize>,
    /// AdamW weight decay, on matrices only, >= 0 [default: 0.1].
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Global gradient-norm clip, >= 0 (0 disables) [default: 1.0].
    #[arg(long)]
    grad_clip: Option<f32>,
    /// Train even when the step's estimated memory exceeds what the device
    /// has (the estimate is 5-20% above the measured peak).
    #[arg(long)]
    no_memory_check: bool,
    /// Dropout probability in [0, 1) [default: 0].
    #[arg(long)]
    dropout: Option<f32>,
    /// Activation checkpointing: each block keeps only its input and runs
    /// again in the backward pass (less memory, about a third more compute,
    /// the same numbers). Also when resuming.
    #[arg(long)]
    checkpoint_activations: bool,
    /// Sliding-window attention: each block attends over the last W
    /// positions only (O(T·W) attention work; generation's KV cache keeps W
    /// positions a block). Fixed for a run.
    #[arg(long, value_name = "W")]
    attention_window: Option<usize>,
    /// With --attention-window: every N-th block attends over all positions
    /// instead (local and global blocks alternating; Gemma 2's N is 2).
    #[arg(long, value_name = "N", requires = "attention_window")]
    global_every: Option<usize>,
    /// A Mixture-of-Experts MLP of E experts (each the dense MLP's shape)
    /// in place of the dense one; with --experts-per-token, --moe-every and
    /// the router losses' weights. Fixed for a run.
    #[arg(long, value_name = "E")]
    experts: Option<usize>,
    /// With --experts: experts per token, 1 (Switch) or 2 (Mixtral).
    #[arg(long, value_name = "K", default_value_t = 1, requires = "experts")]
    experts_per_token: usize,
    /// With --experts: experts in every N-th block only (2: every other).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "experts")]
    moe_every: usize,
    /// With --experts: the load-balancing loss's weight.
    #[arg(long, value_name = "W", default_value_t = 0.01, requires = "experts")]
    load_balancing_coef: f32,
    /// With --experts: the router z-loss's weight.
    #[arg(long, value_name = "W", default_value_t = 0.0, requires = "experts")]
    z_loss_coef: f32,
    /// Steps between evaluations, >= 1.
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    /// Random batches per evaluation estimate, >= 1.
    #[arg(long, default_value_t = 20)]
    eval_iters: usize,
    /// Seeds the model's initialisation and every random stream [default: 1337].
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint folder [default: the --resume folder, else
    /// out-shakespeare]. A folder that already holds checkpoints is refused
    /// unless it is the one given to --resume, or --force is given.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the checkpoints already in --out.
    #[arg(long)]
    force: bool,
    /// Continue from the checkpoints in this folder (see above).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Only generate, from the best checkpoint in --resume.
    #[arg(long)]
    sample_only: bool,
    #[arg(long, default_value_t = 500)]
    sample_tokens: usize,
    #[command(flatten)]
    sampling: common::SamplingFlags,
    /// The text the sample continues (non-empty, in the corpus's characters).
    #[arg(long, default_value = "\n")]
    prompt: String,
    #[command(flatten)]
    run_on: common::RunOn,
    #[command(flatten)]
    metrics: common::MetricsFile,
    /// Draw the trained model's attention on --prompt (its last tokens up
    /// to the context), every layer x head, to this PNG.
    #[arg(long)]
    attention_png: Option<PathBuf>,
    /// With --attention-png, draw only this head, as `LAYER.HEAD` (`2.1`).
    #[arg(long, requires = "attention_png")]
    attention_head: Option<String>,
}

const DEFAULT_PRESET: &str = "cpu-mini";
const DEFAULT_OUT: &str = "out-shakespeare";
const DEFAULT_ITERS: usize = 2000;
const DEFAULT_SEED: u64 = 1337;

impl Args {
    /// Where checkpoints go: --out, else the folder a run resumes from
    /// (continued in place), else out-shakespeare.
    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .or_else(|| self.resume.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT))
    }
}

/// Set by the first SIGINT (Ctrl-C) or SIGTERM: the loop finishes its
/// step, saves it and exits 130. A second signal exits at once; the last
/// checkpoint stays as it was (saves are atomic).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn watch_interrupts() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| Error::InvalidConfig(format!("watching for Ctrl-C: {e}")))
}

/// Saves the step an interrupt let finish as `last` and exits 130, saying
/// how to continue.
fn stop_interrupted(
    trainer: &Trainer<Gpt>,
    extra: &[(&str, String)],
    args: &Args,
) -> RunResult<()> {
    let out = args.out();
    trainer.save(out.join(LAST), extra)?;
    println!(
        "interrupted at step {}; continue with --resume {}",
        trainer.step,
        out.display()
    );
    std::io::Write::flush(&mut std::io::stdout())?;
    std::process::exit(130);
}

fn main() {
    common::main(|args: &Args| &args.run_on, train);
}

type RunResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn train(args: Args, device: &Device) -> RunResult<()> {
    // Every flag is checked before any work, the prompt once the corpus
    // gives the vocabulary: a bad one never costs a training run.
    let sampling = args.sampling.sampling()?;
    for (name, value) in [
        ("--eval-every", args.eval_every),
        ("--eval-iters", args.eval_iters),
    ] {
        if value == 0 {
            return Err(Error::InvalidConfig(format!("{name} must be at least 1")).into());
        }
    }
    attention_head(&args, None)?;
    if let Some(path) = args.attention_png.as_deref().filter(|p| p.is_dir()) {
        return Err(Error::InvalidConfig(format!(
            "--attention-png {} is a folder; give the PNG file's path",
            path.display()
        ))
        .into());
    }
    if let Some(dir) = args.resume.as_deref().filter(|d| !d.is_dir()) {
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(Error::InvalidConfig(format!(
            "--resume {}: {what}; give the folder a run wrote (its --out)",
            dir.display()
        ))
        .into());
    }
    if args.sample_only {
        let dir = args
            .resume
            .as_deref()
            .ok_or_else(|| Error::InvalidConfig("--sample-only needs --resume DIR".into()))?;
        return sample_only(&args, dir, &sampling, device);
    }
    check_out_dir_free(&args)?;
    let path = locate_or_fetch_shakespeare(args.data.as_deref())?;
    let text = read_text(&path)?;
    let (mut trainer, tokenizer, kind) = match &args.resume {
        Some(dir) => resume(dir, &text, &args, device)?,
        None => {
            let kind = args.tokenizer.clone().unwrap_or_else(|| "char".into());
            let tokenizer = build_tokenizer(&kind, &text, &args)?;
            let preset = args.preset.as_deref().unwrap_or(DEFAULT_PRESET);
            let mut model = GptConfig::preset(preset, tokenizer.vocab_size())?;
            if preset == "gpt2" && kind != "gpt2" {
                return Err(Error::InvalidConfig("the gpt2 preset needs --tokenizer gpt2; use cpu-mini, gpt-mini or shakespeare-char".into()).into());
            }
            model.dropout = args.dropout.unwrap_or(0.0);
            model.checkpoint_activations = args.checkpoint_activations;
            if let Some(window) = args.attention_window {
                model = model.with_sliding_window(window, args.global_every.unwrap_or(0));
            }
            model.moe = moe_config(&args);
            let seed = args.seed.unwrap_or(DEFAULT_SEED);
            let base = TrainConfig {
                seed,
                ..TrainConfig::nanogpt_cpu(DEFAULT_ITERS)
            };
            let recipe = recipe(&args, base);
            let model = model.init(device, recipe.seed)?;
            (Trainer::new(model, recipe)?, tokenizer, kind)
        }
    };
    let ids = tokenizer.encode(&text)?;
    let (train, val) = train_val_split(&ids, 0.9);
    let iters = trainer.config.decay_steps;
    if trainer.step >= iters {
        return Err(Error::InvalidConfig(format!(
            "the run is already at step {} of {iters}: nothing to train; pass --iters above {} to continue it (or --sample-only to sample)",
            trainer.step, trainer.step
        ))
        .into());
    }
    let context = trainer.model.config.block_size;
    attention_head(&args, Some(&trainer.model.config))?;
    check_long_enough(train, context, "training")?;
    check_long_enough(val, context, "validation")?;
    let prompt = encode_prompt(tokenizer.as_ref(), &args.prompt)?;
    prepare_out_dir(&args.out())?;
    let mut metrics = args.metrics.open()?;
    let extra = [
        ("tokenizer", tokenizer.to_json()),
        ("tokenizer_kind", kind.clone()),
        ("corpus", path.display().to_string()),
    ];
    println!(
        "{} parameters, {} layers, width {}, context {}; {} train / {} val tokens, vocabulary {} ({kind})",
        zeroformer::nn::Module::num_parameters(&trainer.model),
        trainer.model.config.n_layer,
        trainer.model.config.n_embd,
        context,
        train.len(),
        val.len(),
        tokenizer.vocab_size()
    );

    let tokens_per_step = trainer.config.batch_size * trainer.config.grad_accum * context;
    let mut progress = common::Progress::new(iters as u64, trainer.step as u64);
    let bar = progress.bar.clone();
    let mut train_time = Duration::ZERO;
    let (mut steps_timed, mut last_loss) = (0usize, f32::NAN);
    // The newest checkpoint written, named if training diverges.
    let mut last_written: Option<(PathBuf, usize)> = None;
    let started = Instant::now();
    let first_step = trainer.step;
    // What loss.png draws: every batch and evaluation of the run, a resumed
    // run's earlier ones read from the metrics file it appends to (those up
    // to the step it resumes from).
    let mut history: Vec<Record> = match &args.metrics.path {
        Some(path) if args.resume.is_some() && path.exists() => read_metrics(path)?
            .into_iter()
            .filter(|r| r.step <= trainer.step as u64)
            .collect(),
        _ => Vec::new(),
    };
    watch_interrupts()?;
    while trainer.step < iters {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bar.finish_and_clear();
            return stop_interrupted(&trainer, &extra, &args);
        }
        let t = Instant::now();
        let stats = match trainer.train_step(train) {
            Ok(stats) => stats,
            Err(e) => {
                bar.finish_and_clear();
                let saved = match &last_written {
                    Some((p, step)) => format!(
                        "the last checkpoint is {} (step {step}), the best {}",
                        p.display(),
                        args.out().join(BEST).display()
                    ),
                    None => "no checkpoint was written by this run".into(),
                };
                return Err(format!("{e}; {saved}").into());
            }
        };
        // Read back here because every step is logged (the progress bar,
        // the metrics and loss.png); a run that logs less reads less.
        let (loss, grad_norm) = (stats.loss.item(), stats.grad_norm.item());
        train_time += t.elapsed();
        steps_timed += 1;
        last_loss = loss;
        let batch = Record::new(trainer.step as u64)
            .split("train_batch")
            .loss(loss)
            .lr(stats.lr)
            .grad_norm(grad_norm);
        metrics.write(batch.clone())?;
        history.push(batch);
        let tok_s = (steps_timed * tokens_per_step) as f64 / train_time.as_secs_f64();
        bar.set_position(trainer.step as u64);
        bar.set_message(format!(
            "loss {loss:.4} lr {:.2e} {tok_s:.0} tok/s",
            stats.lr
        ));
        let step = trainer.step;
        if progress.plain_due(step as u64) {
            let elapsed = started.elapsed();
            let done = (step - first_step) as f64 / (iters - first_step) as f64;
            let eta = elapsed.mul_f64((1.0 - done) / done.max(1e-9));
            println!(
                "step {step}/{iters} ({:.0}%): loss {:.4}, {tok_s:.0} tok/s, elapsed {}, ETA {}",
                100.0 * step as f64 / iters as f64,
                loss,
                clock(elapsed),
                clock(eta)
            );
        }
        if step % args.eval_every == 0 || step == iters {
            let train_loss = trainer.estimate_loss(train, args.eval_iters)?;
            let val_loss = trainer.estimate_loss(val, args.eval_iters)?;
            let mut line =
                format!("step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}");
            // Expert utilisation on the validation split's first batch.
            let shares = expert_shares(&trainer.model, val, trainer.config.batch_size, context);
            for (b, row) in shares.iter().enumerate() {
                let row: Vec<String> = row.iter().map(|s| format!("{s:.2}")).collect();
                line += &format!("; experts of MoE block {b}: [{}]", row.join(" "));
            }
            // A hidden bar (output not a terminal) would swallow println.
            if bar.is_hidden() {
                println!("{line}")
            } else {
                bar.println(line)
            }
            let records = [
                Record::new(step as u64)
                    .split("train")
                    .loss(train_loss)
                    .lr(stats.lr)
                    .grad_norm(grad_norm)
                    .tokens_per_s(tok_s),
                shares.iter().enumerate().fold(
                    Record::new(step as u64).split("val").loss(val_loss),
                    |r, (b, row)| {
                        row.iter().enumerate().fold(r, |r, (e, &share)| {
                            r.value(&format!("expert_share_{b}_{e}"), share)
                        })
                    },
                ),
            ];
            for r in &records {
                metrics.write(r.clone())?;
            }
            history.extend(records);
            plot::loss_curves(&history, args.out().join(LOSS_PNG))?;
            // The best loss is part of the state, so both files record it.
            let improved = val_loss < trainer.best_val_loss;
            if improved {
                trainer.best_val_loss = val_loss;
                trainer.save(args.out().join(BEST), &extra)?;
            }
            trainer.save(args.out().join(LAST), &extra)?;
            last_written = Some((args.out().join(LAST), step));
        }
    }
    bar.finish_and_clear();

    let windows = val.len().saturating_sub(1) / context;
    println!("evaluating on the whole validation split ({windows} windows of {context})...");
    let t = Instant::now();
    let val_loss = trainer.model.evaluate(val, 32);
    println!("evaluated in {}", clock(t.elapsed()));
    let train_loss = trainer.estimate_loss(train, args.eval_iters)?;
    let tokens_per_s = (steps_timed * tokens_per_step) as f64 / train_time.as_secs_f64().max(1e-9);
    // Bits per byte compare runs whose tokens differ: the loss per token
    // (nats) over ln 2, times the validation split's tokens per byte.
    let val_bytes = tokenizer.decode(val)?.len();
    let val_bpb = val_loss / std::f32::consts::LN_2 * val.len() as f32 / val_bytes as f32;
    println!(
        "final loss on the whole validation split: {val_loss:.4} nats per token, {val_bpb:.4} bits per byte (last training batch {last_loss:.4})"
    );
    let whole = Record::new(trainer.step as u64)
        .split("val_whole")
        .loss(val_loss)
        .value("bits_per_byte", val_bpb);
    metrics.write(whole.clone())?;
    history.push(whole);
    plot::loss_curves(&history, args.out().join(LOSS_PNG))?;
    println!("sampling {} tokens...", args.sample_tokens);
    let sample = sample(
        &trainer.model,
        tokenizer.as_ref(),
        &prompt,
        &args,
        &sampling,
    )?;
    println!("---\n{sample}\n---");
    println!(
        "drew {} ({} records)",
        args.out().join(LOSS_PNG).display(),
        history.len()
    );
    draw_attention(&trainer.model, tokenizer.as_ref(), &prompt, &args)?;
    println!(
        "final val_loss={val_loss:.4} val_bpb={val_bpb:.4} train_loss_estimate={train_loss:.4} tokens_per_s={tokens_per_s:.0} iters={} seconds={:.1}",
        trainer.step,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The training recipe: `base` with every training flag given on the
/// command line in its place.
fn recipe(args: &Args, base: TrainConfig) -> TrainConfig {
    TrainConfig {
        batch_size: args.batch_size.unwrap_or(base.batch_size),
        grad_accum: args.grad_accum.unwrap_or(base.grad_accum),
        max_lr: args.lr.unwrap_or(base.max_lr),
        min_lr: args.min_lr.unwrap_or(base.min_lr),
        warmup: args.warmup.unwrap_or(base.warmup),
        decay_steps: args.iters.unwrap_or(base.decay_steps),
        weight_decay: args.weight_decay.unwrap_or(base.weight_decay),
        grad_clip: args.grad_clip.unwrap_or(base.grad_clip),
        memory_check: base.memory_check && !args.no_memory_check,
        ..base
    }
}

/// The tokenizer `kind` (char, bpe or gpt2) for `text`: characters of the
/// whole text, a BPE trained on the first 90% (the training split), or
/// GPT-2's from its files.
fn build_tokenizer(kind: &str, text: &str, args: &Args) -> Result<Box<dyn Tokenizer>> {
    Ok(match kind {
        "char" => Box::new(CharTokenizer::from_text(text)),
        "bpe" => {
            let mut cut = text.len() * 9 / 10;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let t = Instant::now();
            let bpe = BpeTrainer::new(args.bpe_vocab_size).train(&text[..cut])?;
            println!(
                "trained a byte-level BPE of {} tokens on the training split in {:.2} s",
                bpe.vocab_size(),
                t.elapsed().as_secs_f64()
            );
            Box::new(bpe)
        }
        "gpt2" => {
            let (vocab, merges) = locate_or_fetch_gpt2(args.gpt2_dir.as_deref())?;
            Box::new(BpeTokenizer::from_gpt2_files(vocab, merges)?)
        }
        other => {
            return Err(Error::InvalidConfig(format!(
                "--tokenizer {other}: use char, bpe or gpt2"
            )));
        }
    })
}

/// The prompt's ids, refused before training if it is empty or holds a
/// character the corpus does not.
fn encode_prompt(tokenizer: &dyn Tokenizer, prompt: &str) -> Result<Vec<i64>> {
    if prompt.is_empty() {
        return Err(Error::InvalidConfig("--prompt must not be empty".into()));
    }
    tokenizer.encode(prompt).map_err(|e| match e {
        // One prefix: the flag's, then what is wrong with it.
        Error::InvalidData(why) => Error::InvalidConfig(format!("--prompt: {why}")),
        other => other,
    })
}

/// Refuses to train into a folder that holds another run's checkpoints
/// (a short trial would replace a long run's best model) unless that run
/// is the one being resumed, or `--force` is given.
/// Each MoE block's expert shares on the first `batch` windows of
/// `context` tokens of `tokens` (none for a dense model).
fn expert_shares(model: &Gpt, tokens: &[i64], batch: usize, context: usize) -> Vec<Vec<f32>> {
    if model.config.moe.is_none() {
        return Vec::new();
    }
    let rows = batch.min(tokens.len() / context.max(1)).max(1);
    let ids: Vec<i64> = tokens.iter().copied().take(rows * context).collect();
    let rows = ids.len() / context.max(1);
    match Tensor::from_ids_on(
        ids[..rows * context].to_vec(),
        &[rows, context],
        &model.device(),
    ) {
        Ok(ids) if rows > 0 => model.expert_shares(&ids),
        _ => Vec::new(),
    }
}

/// The mixture of experts the flags ask for (`None` without --experts).
fn moe_config(args: &Args) -> Option<MoeConfig> {
    args.experts.map(|n_experts| MoeConfig {
        n_experts,
        top_k: args.experts_per_token,
        every: args.moe_every,
        load_balancing_coef: args.load_balancing_coef,
        z_loss_coef: args.z_loss_coef,
    })
}

fn check_out_dir_free(args: &Args) -> Result<()> {
    let out_dir = args.out();
    let existing: Vec<PathBuf> = [LAST, BEST]
        .iter()
        .map(|name| out_dir.join(name))
        .filter(|p| p.exists())
        .collect();
    let same_dir = |dir: &Path| match (dir.canonicalize(), out_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if existing.is_empty() || args.force || args.resume.as_deref().is_some_and(same_dir) {
        return Ok(());
    }
    let out = out_dir.display();
    Err(Error::InvalidConfig(format!(
        "--out {out} already holds checkpoints ({}); give --resume {out} to continue that run, --force to replace it, or another --out",
        existing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Creates the output folder, proves it writable and clears the temporary
/// files of runs killed mid-save, before training starts.
fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the output folder", dir, e))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| Error::io("writing to the output folder", dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io("cleaning the output folder", dir, e))?;
    for stale in remove_stale_temp_files(dir)? {
        println!(
            "removed {}, left by a run that was killed while saving",
            stale.display()
        );
    }
    Ok(())
}

/// The last checkpoint in `dir` (else the best), checked against the
/// corpus's vocabulary and the model flags, with the training flags given
/// applied (each change printed).
fn resume(
    dir: &Path,
    text: &str,
    args: &Args,
    device: &Device,
) -> RunResult<(Trainer<Gpt>, Box<dyn Tokenizer>, String)> {
    let path = [dir.join(LAST), dir.join(BEST)]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "--resume {}: no {LAST} or {BEST} there",
                dir.display()
            ))
        })?;
    let (mut trainer, ckpt) = Trainer::<Gpt>::resume(&path, device)?;
    if args.checkpoint_activations {
        trainer.model.config.checkpoint_activations = true;
    }
    let (saved, kind) = saved_tokenizer(&ckpt)?;
    if args.tokenizer.as_ref().is_some_and(|k| *k != kind) {
        return Err(Error::InvalidConfig(format!(
            "--tokenizer cannot change when a run continues: {} was trained with {kind}",
            path.display()
        ))
        .into());
    }
    if kind == "char" {
        let corpus = CharTokenizer::from_text(text);
        if saved.to_json() != corpus.to_json() {
            return Err(Error::Checkpoint {
                path,
                message: format!(
                    "it was trained on another vocabulary ({} characters; this corpus has {})",
                    saved.vocab_size(),
                    corpus.vocab_size()
                ),
            }
            .into());
        }
    }
    let model = &trainer.model.config;
    let fixed = [
        (
            "--preset",
            args.preset.as_ref().map(|p| {
                let preset = GptConfig::preset(p, model.vocab_size);
                preset.is_ok_and(|c| {
                    (c.n_layer, c.n_head, c.n_embd, c.block_size)
                        == (model.n_layer, model.n_head, model.n_embd, model.block_size)
                })
            }),
        ),
        ("--dropout", args.dropout.map(|d| d == model.dropout)),
        (
            "--experts",
            args.experts.map(|_| moe_config(args) == model.moe),
        ),
        (
            "--attention-window",
            args.attention_window.map(|w| {
                let asked = model
                    .clone()
                    .with_sliding_window(w, args.global_every.unwrap_or(0));
                asked.attention_windows == model.attention_windows
            }),
        ),
        ("--seed", args.seed.map(|s| s == trainer.config.seed)),
    ];
    for (flag, same) in fixed {
        if same == Some(false) {
            return Err(Error::InvalidConfig(format!(
                "{flag} cannot change when a run continues: it is fixed by {}",
                path.display()
            ))
            .into());
        }
    }
    let old = trainer.config.clone();
    let new = recipe(args, old.clone());
    type Field = fn(&TrainConfig) -> String;
    let fields: [(&str, Field); 8] = [
        ("--iters", |c| c.decay_steps.to_string()),
        ("--batch-size", |c| c.batch_size.to_string()),
        ("--grad-accum", |c| c.grad_accum.to_string()),
        ("--lr", |c| c.max_lr.to_string()),
        ("--min-lr", |c| c.min_lr.to_string()),
        ("--warmup", |c| c.warmup.to_string()),
        ("--weight-decay", |c| c.weight_decay.to_string()),
        ("--grad-clip", |c| c.grad_clip.to_string()),
    ];
    let changes: Vec<String> = fields
        .into_iter()
        .map(|(flag, get)| (flag, get(&old), get(&new)))
        .filter(|(_, a, b)| a != b)
        .map(|(flag, a, b)| format!("{flag} {a} -> {b}"))
        .collect();
    trainer.set_config(new)?;
    println!("resumed from {} at step {}", path.display(), trainer.step);
    if !changes.is_empty() {
        let replanned = if old.decay_steps != trainer.config.decay_steps {
            " (the cosine decay is re-planned to end at the new --iters)"
        } else {
            ""
        };
        println!(
            "changed from the next step on: {}{replanned}",
            changes.join(", ")
        );
    }
    Ok((trainer, saved, kind))
}

/// The tokenizer a checkpoint was trained with, and its kind (`char` for
/// checkpoints that do not say).
fn saved_tokenizer(ckpt: &Checkpoint) -> Result<(Box<dyn Tokenizer>, String)> {
    let tokenizer = tokenizer::from_json(ckpt.require_meta("tokenizer")?)?;
    let kind = ckpt.meta("tokenizer_kind").unwrap_or("char").to_string();
    Ok((tokenizer, kind))
}

fn sample(
    model: &Gpt,
    tokenizer: &dyn Tokenizer,
    prompt: &[i64],
    args: &Args,
    sampling: &Sampling,
) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed.unwrap_or(DEFAULT_SEED));
    let ids = generate(model, prompt, args.sample_tokens, sampling, &mut rng)?;
    tokenizer.decode(&ids)
}

/// With --attention-png, the model's attention on the prompt's last tokens
/// (as many as the context holds).
fn draw_attention(
    model: &Gpt,
    tokenizer: &dyn Tokenizer,
    prompt: &[i64],
    args: &Args,
) -> Result<()> {
    let Some(path) = &args.attention_png else {
        return Ok(());
    };
    let tail = &prompt[prompt.len().saturating_sub(model.config.block_size)..];
    match attention_head(args, Some(&model.config))? {
        None => plot::gpt_attention(model, tokenizer, tail, path)?,
        Some(head) => plot::gpt_attention_head(model, tokenizer, tail, head, path)?,
    }
    println!(
        "drew the attention on {} prompt tokens to {}",
        tail.len(),
        path.display()
    );
    Ok(())
}

/// --attention-head as (layer, head), checked against the model's shape
/// once `config` is known.
fn attention_head(args: &Args, config: Option<&GptConfig>) -> Result<Option<(usize, usize)>> {
    let Some(text) = &args.attention_head else {
        return Ok(None);
    };
    let (layer, head) = plot::parse_head(text).ok_or_else(|| {
        Error::InvalidConfig(format!("--attention-head {text}: give LAYER.HEAD, as 2.1"))
    })?;
    if let Some(c) = config.filter(|c| layer >= c.n_layer || head >= c.n_head) {
        return Err(Error::InvalidConfig(format!(
            "--attention-head {text}: the model has layers 0..{} and heads 0..{}",
            c.n_layer, c.n_head
        )));
    }
    Ok(Some((layer, head)))
}

fn sample_only(args: &Args, dir: &Path, sampling: &Sampling, device: &Device) -> RunResult<()> {
    let path = dir.join(BEST);
    let ckpt = Checkpoint::load(&path)?;
    let (tokenizer, _) = saved_tokenizer(&ckpt)?;
    let prompt = encode_prompt(tokenizer.as_ref(), &args.prompt)?;
    let model = Gpt::from_checkpoint(&ckpt, "model.", device)?;
    draw_attention(&model, tokenizer.as_ref(), &prompt, args)?;
    println!(
        "{}",
        sample(&model, tokenizer.as_ref(), &prompt, args, sampling)?
    );
    Ok(())
}
