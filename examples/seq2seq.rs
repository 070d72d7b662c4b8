//! Train the 2017 encoder-decoder Transformer on the Annotated Transformer's
//! synthetic tasks, then measure exact match of greedy decoding on held-out
//! sequences.
//!
//!     cargo run --release --example seq2seq                      # copy, about a minute
//!     cargo run --release --example seq2seq -- --task reverse
//!     cargo run --release --example seq2seq -- --help
//!
//! The model reads 10 random digits and must write them back (copy) or
//! backwards (reverse): post-norm layers, sinusoidal positions, Adam with
//! the paper's Noam schedule (its last fifth cooled linearly to zero), and
//! greedy decoding with KV caches. `--metrics FILE` appends the batch loss
//! and lr every 10 steps (split `train`) and the held-out exact match
//! (split `test`).

mod common;

use std::time::Instant;

use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use zeroformer::data::digits::{self, DigitTask, START, VOCAB_SIZE};
use zeroformer::generation::{GenerationConfig, Seq2SeqLm, generate_batch};
use zeroformer::models::EncoderDecoderConfig;
use zeroformer::nn::{LayerConfig, Module, NormPlacement};
use zeroformer::optim::LrSchedule;
use zeroformer::train::{Precision, Record, TrainConfig, Trainer};
use zeroformer::{Device, Error, Result};

/// Train an encoder-decoder Transformer to copy or reverse digit sequences.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// What the target is: the source digits, or them backwards.
    #[arg(long, default_value = "copy", value_parser = ["copy", "reverse"])]
    task: String,
    /// Digits per sequence.
    #[arg(long, default_value_t = 10)]
    len: usize,
    /// Optimisation steps (the defaults reach >= 99% exact match on both
    /// tasks; docs/performance.md).
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Sequences per training step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    shape: common::ShapeFlags,
    /// Feed-forward hidden width.
    #[arg(long, default_value_t = 256)]
    d_ff: usize,
    /// Dropout probability in every layer (0 for none).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Norm placement: post (the paper's) or pre.
    #[arg(long, default_value = "post", value_parser = ["post", "pre"])]
    norm: String,
    /// Noam schedule: steps of linear warmup.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Noam schedule: the factor in front of d_model^-0.5.
    #[arg(long, default_value_t = 0.5)]
    lr_factor: f32,
    /// The last fraction of the steps over which the learning rate falls
    /// linearly to zero (0: the plain Noam schedule, whose final rate still
    /// jolts the weights).
    #[arg(long, default_value_t = 0.2)]
    cooldown: f32,
    /// Held-out sequences for the exact-match score.
    #[arg(long, default_value_t = 1000)]
    eval_size: usize,
    /// Seed of the initialisation, the batches and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dtype training's products and attention compute in, and the
    /// evaluation's: f32, or bf16 mixed precision (f32 weights).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Train even when the step's estimated memory exceeds what the device
    /// has (the estimate is printed first).
    #[arg(long)]
    no_memory_check: bool,
    #[command(flatten)]
    run_on: common::RunOn,
    #[command(flatten)]
    metrics: common::MetricsFile,
}

fn main() {
    common::main(|args: &Args| &args.run_on, train);
}

fn train(args: Args, device: &Device) -> Result<()> {
    let task: DigitTask = args.task.parse()?;
    if args.len == 0 || args.steps == 0 || args.batch_size == 0 || args.eval_size == 0 {
        return Err(Error::InvalidConfig(
            "--len, --steps, --batch-size and --eval-size must be positive".into(),
        ));
    }
    let config = EncoderDecoderConfig {
        src_vocab_size: VOCAB_SIZE,
        tgt_vocab_size: VOCAB_SIZE,
        max_len: args.len,
        n_encoder_layers: args.shape.layers,
        n_decoder_layers: args.shape.layers,
        layer: LayerConfig {
            d_model: args.shape.d_model,
            n_head: args.shape.heads,
            d_ff: args.d_ff,
            dropout: args.dropout,
            placement: if args.norm == "pre" {
                NormPlacement::Pre
            } else {
                NormPlacement::Post
            },
            ..EncoderDecoderConfig::preset("transformer-tiny", 1, 1, 1)?.layer
        },
        positional: zeroformer::nn::Positional::Sinusoidal,
        checkpoint_activations: false,
    };
    let model = config.init(device, args.seed)?;
    // The paper's optimiser: Adam (0.9, 0.98, eps 1e-9), no weight decay,
    // under the Noam schedule, cooled to zero over the last steps.
    let schedule = LrSchedule::Noam {
        d_model: args.shape.d_model,
        warmup: args.warmup,
        factor: args.lr_factor,
    };
    let recipe = TrainConfig {
        batch_size: args.batch_size,
        context: Some(args.len),
        memory_check: !args.no_memory_check,
        lr_schedule: Some(schedule),
        max_lr: schedule.lr_at(args.warmup),
        min_lr: 0.0,
        cooldown: args.cooldown.clamp(0.0, 1.0),
        beta2: 0.98,
        eps: 1e-9,
        weight_decay: 0.0,
        grad_clip: 0.0,
        seed: args.seed,
        precision: args.precision,
        ..TrainConfig::nanogpt_cpu(args.steps)
    };
    let estimate = zeroformer::train::memory::step_bytes(&model, &recipe, device);
    println!(
        "task {}: {} digits, {} parameters, {} steps of batch {}, memory_estimate_mib={}",
        task.name(),
        args.len,
        model.num_parameters(),
        args.steps,
        args.batch_size,
        estimate.unwrap_or(u64::MAX) >> 20
    );
    let mut trainer = Trainer::new(model, recipe)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(1));
    let mut progress = common::Progress::new(args.steps as u64, 0);
    let mut metrics = args.metrics.open()?;
    let started = Instant::now();
    for step in 0..args.steps {
        // The training batches come from the example's own stream.
        let stats = trainer.train_step_with(|_| {
            let b = digits::batch(task, args.batch_size, args.len, &mut rng);
            (b.source, b.target_in, b.target_out)
        })?;
        let (loss, lr) = (&stats.loss, stats.lr);
        progress.bar.inc(1);
        if step % 10 == 0 {
            progress
                .bar
                .set_message(format!("loss {:.4} lr {lr:.2e}", loss.item()));
            metrics.write(
                Record::new(step as u64 + 1)
                    .split("train")
                    .loss(loss.item())
                    .lr(lr),
            )?;
        }
        if progress.plain_due(step as u64 + 1) {
            println!(
                "step {}/{} ({:.0}%): loss {:.4}, elapsed {:.0} s",
                step + 1,
                args.steps,
                100.0 * (step + 1) as f64 / args.steps as f64,
                loss.item(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    progress.bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();

    let model = trainer.model;
    // Held-out sequences from a stream the training batches never drew from.
    // Generation runs in eval mode: no dropout.
    let mut eval_rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed_e7a1);
    let (mut correct, mut shown) = (0usize, 0usize);
    let mut remaining = args.eval_size;
    while remaining > 0 {
        let n = remaining.min(250);
        remaining -= n;
        let b = digits::batch(task, n, args.len, &mut eval_rng);
        let starts = vec![vec![START]; n];
        let greedy = GenerationConfig::new(args.len);
        let out = zeroformer::autocast(args.precision.dtype(), || {
            generate_batch(&model.condition(&b.source, None), &starts, &greedy)
        })?;
        let got: Vec<i64> = out.into_iter().flat_map(|g| g.tokens).collect();
        let (src, want) = (b.source.to_vec_i64(), b.target_out.to_vec_i64());
        for i in 0..n {
            let row = i * args.len..(i + 1) * args.len;
            correct += usize::from(want[row.clone()] == got[row.clone()]);
            if shown < 3 {
                shown += 1;
                println!(
                    "source {}  ->  {}",
                    show(&src[row.clone()]),
                    show(&got[row])
                );
            }
        }
    }
    let exact = correct as f64 / args.eval_size as f64;
    metrics.write(
        Record::new(args.steps as u64)
            .split("test")
            .value("exact_match", exact),
    )?;
    println!(
        "exact match on {} held-out sequences: {correct} ({:.1}%), trained in {train_seconds:.1} s",
        args.eval_size,
        100.0 * exact
    );
    println!(
        "final task={} exact_match={exact:.4} steps={} seconds={train_seconds:.1}",
        task.name(),
        args.steps
    );
    Ok(())
}

/// Digit ids as text.
fn show(ids: &[i64]) -> String {
    ids.iter()
        .map(|&id| match id - digits::FIRST_DIGIT {
            d @ 0..=9 => char::from(b'0' + d as u8),
            _ => '?',
        })
        .collect()
}
