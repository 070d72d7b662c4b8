//! Train a GPT on tiny Shakespeare (characters, a BPE trained on it, or
//! GPT-2's tokens), then sample from it.
//!
//!     cargo run --release --example shakespeare                  # the cpu-mini recipe, a few minutes
//!     cargo run --release --example shakespeare -- --precision bf16  # bf16 mixed precision
//!     cargo run --release --example shakespeare -- --tokenizer bpe --bpe-vocab-size 1024
//!     cargo run --release --example shakespeare -- --help
//!     cargo run --release --example shakespeare -- --sample-only --resume out-shakespeare
//!     cargo run --release --example shakespeare -- --sample-only --resume out-shakespeare \
//!         --prompt "ROMEO: " --attention-png attention.png
//!
//! `train` tells the run top to bottom: the flags (flags.rs), the model and
//! tokenizer, new or resumed (resume.rs), the data, the training loop
//! (sample a batch, step, evaluate now and then, keep the best checkpoint;
//! zeroformer::train holds the pieces), then the final evaluation, a
//! sample and the pictures.
//! Each evaluation also redraws `loss.png` beside the checkpoints: this
//! run's loss against the step, of every batch and of the evaluations.
//! `--metrics FILE` appends every step's batch loss, lr and grad_norm
//! (split `train_batch`), each evaluation's `train` and `val` estimates,
//! and the final whole-split `val_whole` loss with its bits per byte.

#[path = "../common/mod.rs"]
mod common;
mod flags;
mod resume;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use zeroformer::checkpoint::Checkpoint;
use zeroformer::data::{
    check_long_enough, locate_or_fetch_shakespeare, read_text, sliding_windows, train_val_split,
};
use zeroformer::generation::{Sampling, generate};
use zeroformer::models::{Gpt, Persist};
use zeroformer::nn::Module;
use zeroformer::plot;
use zeroformer::tokenizer::Tokenizer;
use zeroformer::train::{Precision, Record, StepStats, TrainConfig, Trainer, read_metrics};
use zeroformer::{Device, Error, Result};

use flags::{
    Args, DEFAULT_ITERS, DEFAULT_SEED, attention_head, build_tokenizer, check_out_dir_free,
    encode_prompt, recipe,
};
use resume::{resume, saved_tokenizer};

/// The best checkpoint, by validation loss.
const BEST: &str = "ckpt.safetensors";
/// The checkpoint of the last evaluation (or interrupt).
const LAST: &str = "last.safetensors";
/// The loss curves, redrawn at each evaluation.
const LOSS_PNG: &str = "loss.png";

fn main() {
    common::main(|args: &Args| &args.run_on, train);
}

type RunResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The run, top to bottom: the flags, the model and tokenizer (new or
/// resumed), the data, the training loop, then the final evaluation, a
/// sample and the pictures.
fn train(args: Args, device: &Device) -> RunResult<()> {
    let sampling = args.check()?;
    if args.sample_only {
        return sample_only(&args, &sampling, device);
    }
    check_out_dir_free(&args)?;
    let corpus = locate_or_fetch_shakespeare(args.data.as_deref())?;
    let text = read_text(&corpus)?;
    let (mut trainer, tokenizer, kind) = match &args.resume {
        Some(dir) => resume(dir, &text, &args, device)?,
        None => start(&text, &args, device)?,
    };
    let data = Data::new(tokenizer.as_ref(), &text, &trainer, &args)?;
    common::prepare_out_dir(&args.out())?;
    let mut log = Log::new(&args, trainer.step)?;
    let extra = [
        ("tokenizer", tokenizer.to_json()),
        ("tokenizer_kind", kind.clone()),
        ("corpus", corpus.display().to_string()),
    ];
    let model = &trainer.model.config;
    let precision = match trainer.config.precision {
        Precision::F32 => "",
        Precision::Bf16 => "; bf16 mixed precision (f32 weights)",
    };
    println!(
        "{} parameters, {} layers, width {}, context {}; {} train / {} val tokens, vocabulary {} ({kind}){precision}",
        trainer.model.num_parameters(),
        model.n_layer,
        model.n_embd,
        data.context,
        data.train().len(),
        data.val().len(),
        tokenizer.vocab_size()
    );
    let timing = train_loop(&mut trainer, &data, &mut log, &extra, &args)?;
    finish(
        &mut trainer,
        tokenizer.as_ref(),
        &data,
        &mut log,
        &timing,
        &args,
        &sampling,
    )
}

/// A new run: its tokenizer built from the corpus, its model from the
/// flags, the recipe from nanoGPT's with the flags given.
fn start(
    text: &str,
    args: &Args,
    device: &Device,
) -> RunResult<(Trainer<Gpt>, Box<dyn Tokenizer>, String)> {
    let kind = args.tokenizer.clone().unwrap_or_else(|| "char".into());
    let tokenizer = build_tokenizer(&kind, text, args)?;
    let model = args.model(tokenizer.vocab_size(), &kind)?;
    let base = TrainConfig {
        seed: args.seed.unwrap_or(DEFAULT_SEED),
        ..TrainConfig::nanogpt_cpu(DEFAULT_ITERS)
    };
    let recipe = recipe(args, base);
    let model = model.init(device, recipe.seed)?;
    Ok((Trainer::new(model, recipe)?, tokenizer, kind))
}

/// The corpus as tokens: its training and validation splits, the prompt's
/// ids, and the context the model trains on.
struct Data {
    ids: Vec<i64>,
    split: usize,
    prompt: Vec<i64>,
    context: usize,
}

impl Data {
    /// The corpus and prompt tokenized, checked against the run: steps left
    /// to train, both splits longer than the context, the flags that name
    /// the model's parts within it.
    fn new(
        tokenizer: &dyn Tokenizer,
        text: &str,
        trainer: &Trainer<Gpt>,
        args: &Args,
    ) -> RunResult<Data> {
        let ids = tokenizer.encode(text)?;
        let split = train_val_split(&ids, 0.9).0.len();
        let iters = trainer.config.decay_steps;
        if trainer.step >= iters {
            return Err(Error::InvalidConfig(format!(
                "the run is already at step {} of {iters}: nothing to train; pass --iters above {} to continue it (or --sample-only to sample)",
                trainer.step, trainer.step
            ))
            .into());
        }
        let context = trainer.model.config.block_size;
        attention_head(args, Some(&trainer.model.config))?;
        check_long_enough(&ids[..split], context, "training")?;
        check_long_enough(&ids[split..], context, "validation")?;
        let prompt = encode_prompt(tokenizer, &args.prompt)?;
        Ok(Data {
            ids,
            split,
            prompt,
            context,
        })
    }

    fn train(&self) -> &[i64] {
        &self.ids[..self.split]
    }

    fn val(&self) -> &[i64] {
        &self.ids[self.split..]
    }
}

/// Where a run's records go: the --metrics file, and the history loss.png
/// draws (every batch and evaluation of the run; a resumed run's earlier
/// ones read back from the metrics file it appends to, those up to the
/// step it resumes from).
struct Log {
    metrics: common::Metrics,
    history: Vec<Record>,
    png: PathBuf,
}

impl Log {
    fn new(args: &Args, step: usize) -> Result<Log> {
        let metrics = args.metrics.open()?;
        let history = match &args.metrics.path {
            Some(path) if args.resume.is_some() && path.exists() => read_metrics(path)?
                .into_iter()
                .filter(|r| r.step <= step as u64)
                .collect(),
            _ => Vec::new(),
        };
        let png = args.out().join(LOSS_PNG);
        Ok(Log {
            metrics,
            history,
            png,
        })
    }

    /// Writes `record` to the metrics file and keeps it for loss.png.
    fn write(&mut self, record: Record) -> Result<()> {
        self.metrics.write(record.clone())?;
        self.history.push(record);
        Ok(())
    }

    /// Redraws loss.png.
    fn draw(&self) -> Result<()> {
        plot::loss_curves(&self.history, &self.png)
    }
}

/// The training loop's figures, for the progress line and the final one.
struct Timing {
    started: Instant,
    training: Duration,
    steps: usize,
    last_loss: f32,
    tokens_per_step: usize,
}

impl Timing {
    /// Tokens trained on per second of steps (evaluations left out).
    fn tokens_per_s(&self) -> f64 {
        (self.steps * self.tokens_per_step) as f64 / self.training.as_secs_f64().max(1e-9)
    }
}

/// Steps until `--iters`, each logged; an evaluation and the checkpoints
/// every `--eval-every` steps and at the end. Ctrl-C saves the step and
/// stops; a diverged step names the checkpoints to go back to.
fn train_loop(
    trainer: &mut Trainer<Gpt>,
    data: &Data,
    log: &mut Log,
    extra: &[(&str, String)],
    args: &Args,
) -> RunResult<Timing> {
    let iters = trainer.config.decay_steps;
    let tokens_per_step = trainer.config.batch_size * trainer.config.grad_accum * data.context;
    let mut timing = Timing {
        started: Instant::now(),
        training: Duration::ZERO,
        steps: 0,
        last_loss: f32::NAN,
        tokens_per_step,
    };
    let mut progress = common::Progress::new(iters as u64, trainer.step as u64);
    let first_step = trainer.step;
    // The newest checkpoint written, named if training diverges.
    let mut last_written: Option<(PathBuf, usize)> = None;
    common::watch_interrupts()?;
    while trainer.step < iters {
        if common::interrupted() {
            progress.bar.finish_and_clear();
            return stop_interrupted(trainer, extra, args);
        }
        let t = Instant::now();
        let stats = trainer.train_step(data.train()).map_err(|e| {
            progress.bar.finish_and_clear();
            diverged(e, last_written.as_ref(), args)
        })?;
        // Read back here because every step is logged (the progress bar,
        // the metrics and loss.png); a run that logs less reads less.
        let (loss, grad_norm) = (stats.loss.item(), stats.grad_norm.item());
        (timing.training, timing.steps, timing.last_loss) =
            (timing.training + t.elapsed(), timing.steps + 1, loss);
        let step = trainer.step;
        log.write(
            Record::new(step as u64)
                .split("train_batch")
                .loss(loss)
                .lr(stats.lr)
                .grad_norm(grad_norm),
        )?;
        report_progress(
            &mut progress,
            &timing,
            (step, first_step, iters),
            loss,
            stats.lr,
        );
        if step.is_multiple_of(args.eval_every) || step == iters {
            evaluate(
                trainer,
                data,
                log,
                extra,
                args,
                &progress,
                (&stats, grad_norm, timing.tokens_per_s()),
            )?;
            last_written = Some((args.out().join(LAST), step));
        }
    }
    progress.bar.finish_and_clear();
    Ok(timing)
}

/// The bar's message, and a plain line now and then when there is no bar.
fn report_progress(
    progress: &mut common::Progress,
    timing: &Timing,
    (step, first_step, iters): (usize, usize, usize),
    loss: f32,
    lr: f32,
) {
    let tok_s = timing.tokens_per_s();
    progress.bar.set_position(step as u64);
    progress
        .bar
        .set_message(format!("loss {loss:.4} lr {lr:.2e} {tok_s:.0} tok/s"));
    if progress.plain_due(step as u64) {
        let elapsed = timing.started.elapsed();
        let done = (step - first_step) as f64 / (iters - first_step) as f64;
        let eta = elapsed.mul_f64((1.0 - done) / done.max(1e-9));
        println!(
            "step {step}/{iters} ({:.0}%): loss {:.4}, {tok_s:.0} tok/s, elapsed {}, ETA {}",
            100.0 * step as f64 / iters as f64,
            loss,
            common::clock(elapsed),
            common::clock(eta)
        );
    }
}

/// A diverged step's error, naming the checkpoints to go back to.
fn diverged(
    e: Error,
    last_written: Option<&(PathBuf, usize)>,
    args: &Args,
) -> Box<dyn std::error::Error> {
    let saved = match last_written {
        Some((p, step)) => format!(
            "the last checkpoint is {} (step {step}), the best {}",
            p.display(),
            args.out().join(BEST).display()
        ),
        None => "no checkpoint was written by this run".into(),
    };
    format!("{e}; {saved}").into()
}

/// Saves the step an interrupt let finish as `last` and exits 130, saying
/// how to continue.
fn stop_interrupted(
    trainer: &Trainer<Gpt>,
    extra: &[(&str, String)],
    args: &Args,
) -> RunResult<Timing> {
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

/// An evaluation: both splits' estimated losses (and a mixture's expert
/// shares) printed and logged, loss.png redrawn, and the checkpoints
/// saved, the best one when the validation loss is the lowest yet.
fn evaluate(
    trainer: &mut Trainer<Gpt>,
    data: &Data,
    log: &mut Log,
    extra: &[(&str, String)],
    args: &Args,
    progress: &common::Progress,
    (stats, grad_norm, tok_s): (&StepStats, f32, f64),
) -> RunResult<()> {
    let step = trainer.step;
    let train_loss = trainer.estimate_loss(data.train(), args.eval_iters)?;
    let val_loss = trainer.estimate_loss(data.val(), args.eval_iters)?;
    let mut line = format!("step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}");
    // Expert utilisation on the validation split's first batch.
    let shares = expert_shares(&trainer.model, data, trainer.config.batch_size);
    for (b, row) in shares.iter().enumerate() {
        let row: Vec<String> = row.iter().map(|s| format!("{s:.2}")).collect();
        line += &format!("; experts of MoE block {b}: [{}]", row.join(" "));
    }
    // A hidden bar (output not a terminal) would swallow println.
    if progress.bar.is_hidden() {
        println!("{line}")
    } else {
        progress.bar.println(line)
    }
    log.write(
        Record::new(step as u64)
            .split("train")
            .loss(train_loss)
            .lr(stats.lr)
            .grad_norm(grad_norm)
            .tokens_per_s(tok_s),
    )?;
    let val = shares.iter().enumerate().fold(
        Record::new(step as u64).split("val").loss(val_loss),
        |r, (b, row)| {
            row.iter().enumerate().fold(r, |r, (e, &share)| {
                r.value(&format!("expert_share_{b}_{e}"), share)
            })
        },
    );
    log.write(val)?;
    log.draw()?;
    // The best loss is part of the state, so both files record it.
    if val_loss < trainer.best_val_loss {
        trainer.best_val_loss = val_loss;
        trainer.save(args.out().join(BEST), extra)?;
    }
    trainer.save(args.out().join(LAST), extra)?;
    Ok(())
}

/// Each MoE block's expert shares on the validation split's first batch
/// of windows (none for a dense model).
fn expert_shares(model: &Gpt, data: &Data, batch: usize) -> Vec<Vec<f32>> {
    if model.config.moe.is_none() {
        return Vec::new();
    }
    let device = model.device();
    match sliding_windows(data.val(), data.context, data.context, batch, &device).next() {
        Some((ids, _)) => model.expert_shares(&ids),
        None => Vec::new(),
    }
}

/// After the last step: the loss over the whole validation split (and in
/// bits per byte), loss.png, a sample, the attention picture, and the
/// machine-readable final line.
fn finish(
    trainer: &mut Trainer<Gpt>,
    tokenizer: &dyn Tokenizer,
    data: &Data,
    log: &mut Log,
    timing: &Timing,
    args: &Args,
    sampling: &Sampling,
) -> RunResult<()> {
    let (val, context) = (data.val(), data.context);
    let windows = val.len().saturating_sub(1) / context;
    println!("evaluating on the whole validation split ({windows} windows of {context})...");
    let t = Instant::now();
    // In the run's precision, as its periodic estimates are.
    let precision = trainer.config.precision.dtype();
    let val_loss = zeroformer::autocast(precision, || trainer.model.evaluate(val, 32));
    println!("evaluated in {}", common::clock(t.elapsed()));
    let train_loss = trainer.estimate_loss(data.train(), args.eval_iters)?;
    // Bits per byte compare runs whose tokens differ: the loss per token
    // (nats) over ln 2, times the validation split's tokens per byte.
    let val_bytes = tokenizer.decode(val)?.len();
    let val_bpb = val_loss / std::f32::consts::LN_2 * val.len() as f32 / val_bytes as f32;
    println!(
        "final loss on the whole validation split: {val_loss:.4} nats per token, {val_bpb:.4} bits per byte (last training batch {:.4})",
        timing.last_loss
    );
    log.write(
        Record::new(trainer.step as u64)
            .split("val_whole")
            .loss(val_loss)
            .value("bits_per_byte", val_bpb),
    )?;
    log.draw()?;
    println!("sampling {} tokens...", args.sample_tokens);
    let sample = sample(&trainer.model, tokenizer, &data.prompt, args, sampling)?;
    println!("---\n{sample}\n---");
    println!("drew {} ({} records)", log.png.display(), log.history.len());
    draw_attention(&trainer.model, tokenizer, &data.prompt, args)?;
    println!(
        "final val_loss={val_loss:.4} val_bpb={val_bpb:.4} train_loss_estimate={train_loss:.4} tokens_per_s={:.0} iters={} seconds={:.1}",
        timing.tokens_per_s(),
        trainer.step,
        timing.started.elapsed().as_secs_f64()
    );
    Ok(())
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

/// `--sample-only`: a sample (and the attention picture) from the best
/// checkpoint in `--resume`.
fn sample_only(args: &Args, sampling: &Sampling, device: &Device) -> RunResult<()> {
    let dir = args
        .resume
        .as_deref()
        .ok_or_else(|| Error::InvalidConfig("--sample-only needs --resume DIR".into()))?;
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
