//! Time GPT training steps as the Shakespeare recipe takes them
//! ([`Trainer::train_step`]: forward, backward, gradient clip, AdamW) on
//! random tokens, and print their mean and median in the format in which
//! `scripts/train_gpt_torch.py` prints PyTorch's:
//!
//!     cargo run --release --example step_time -- --preset cpu-mini --batch-size 12
//!     cargo run --release --example step_time -- --preset gpt-mini --batch-size 32 --steps 6
//!     cargo run --release --example step_time -- --preset gpt-mini --batch-size 32 --precision bf16
//!
//! `--compare-whole` alternates the data-parallel step with the whole batch
//! in one process.
//!
//! `python3 scripts/train_gpt_torch.py --paired target/release/examples/step_time`
//! alternates this binary with PyTorch's step, round by round: on a shared
//! host only timings taken side by side compare. (`cargo bench --bench
//! train_step` times the step without the clip, and counts its allocations.)

mod common;

use std::time::Instant;

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroformer::models::{Gpt, GptConfig};
use zeroformer::nn::{AttentionKernel, Module};
use zeroformer::train::{Precision, TrainConfig, Trainer};
use zeroformer::{Device, Error, Result};

/// Median time of a GPT training step.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Model preset (cpu-mini, gpt-mini, shakespeare-char).
    #[arg(long, default_value = "cpu-mini")]
    preset: String,
    /// Tokens per training window (default: the model's context).
    #[arg(long)]
    context: Option<usize>,
    /// Sequences per training step.
    #[arg(long, default_value_t = 12)]
    batch_size: usize,
    /// Vocabulary size of the synthetic data.
    #[arg(long, default_value_t = 65)]
    vocab: usize,
    /// Steps timed.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Steps run before timing (the buffer pool and optimizer state warm up).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[command(flatten)]
    run_on: common::RunOn,
    /// Attention as matmul, softmax, matmul instead of the fused op.
    #[arg(long)]
    composed: bool,
    /// Dropout probability (0 for none; above 0, attention is composed).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Activation checkpointing of every block (less memory, one more
    /// forward of the blocks).
    #[arg(long)]
    checkpoint_activations: bool,
    /// A Mixture-of-Experts MLP of E experts in every block.
    #[arg(long, value_name = "E")]
    experts: Option<usize>,
    /// With --experts: experts per token (1 or 2).
    #[arg(long, value_name = "K", default_value_t = 1, requires = "experts")]
    experts_per_token: usize,
    /// The dtype the forward's products and attention compute in: f32 or
    /// bf16 (mixed precision, f32 weights).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Data-parallel shards per batch (default: one per thread; 1 runs
    /// the batch whole, its kernels split across the threads).
    #[arg(long)]
    shards: Option<usize>,
    /// Alternate, step by step in this one process, the data-parallel step
    /// (`--shards`) with the whole batch (`--shards 1`), and print both
    /// medians and how many adjacent pairs each won: steps side by side
    /// share the host's speed of the moment.
    #[arg(long)]
    compare_whole: bool,
}

fn main() {
    common::main(|args: &Args| &args.run_on, train);
}

fn train(args: Args, device: &Device) -> Result<()> {
    if args.steps == 0 || args.vocab == 0 {
        return Err(Error::InvalidConfig(
            "--steps and --vocab must be at least 1".into(),
        ));
    }
    let model_config = GptConfig {
        dropout: args.dropout,
        checkpoint_activations: args.checkpoint_activations,
        attention_windows: Vec::new(),
        moe: args
            .experts
            .map(|e| zeroformer::nn::MoeConfig::new(e, args.experts_per_token)),
        ..GptConfig::preset(&args.preset, args.vocab)?
    };
    let context = args.context.unwrap_or(model_config.block_size);
    let config = TrainConfig {
        batch_size: args.batch_size,
        context: args.context,
        precision: args.precision,
        ..TrainConfig::nanogpt_cpu(args.warmup + args.steps)
    };
    let model = model_config.init(device, config.seed)?;
    let mut trainer = Trainer::new(model, config)?;
    trainer.shards = args.shards;
    if args.composed {
        for block in &mut trainer.model.blocks {
            block.attn.kernel = AttentionKernel::Composed;
        }
    }
    // Random tokens: a step's speed does not depend on the data.
    let mut rng = StdRng::seed_from_u64(0);
    let tokens: Vec<i64> = (0..(64 * args.batch_size * (context + 1)).max(100_000))
        .map(|_| rng.gen_range(0..args.vocab as i64))
        .collect();
    if args.compare_whole {
        return compare_whole(&mut trainer, &tokens, &args);
    }
    let mut times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let start = Instant::now();
        trainer
            .train_step(&tokens)
            .expect("a step of the recipe is finite");
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let step = times[times.len() / 2];
    let params: usize = trainer.model.parameters().iter().map(|p| p.numel()).sum();
    let estimate = zeroformer::train::memory::step_bytes(&trainer.model, &trainer.config, device)
        .unwrap_or(u64::MAX);
    println!(
        "zeroformer threads={} preset={} precision={} batch={} params={params} memory_estimate_mib={} mean_step_ms={:.1} median_step_ms={:.1} tokens_per_s={:.0}",
        rayon::current_num_threads(),
        args.preset,
        format!("{:?}", args.precision).to_lowercase(),
        args.batch_size,
        estimate >> 20,
        mean * 1e3,
        step * 1e3,
        (args.batch_size * context) as f64 / step
    );
    Ok(())
}

/// `--compare-whole`: data-parallel and whole-batch steps alternated.
fn compare_whole(trainer: &mut Trainer<Gpt>, tokens: &[i64], args: &Args) -> Result<()> {
    for _ in 0..args.warmup {
        trainer
            .train_step(tokens)
            .expect("a step of the recipe is finite");
    }
    let (mut sharded, mut whole) = (Vec::new(), Vec::new());
    for i in 0..2 * args.steps {
        let data_parallel = i % 2 == 0;
        trainer.shards = if data_parallel { args.shards } else { Some(1) };
        let start = Instant::now();
        trainer
            .train_step(tokens)
            .expect("a step of the recipe is finite");
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if data_parallel {
            sharded.push(ms)
        } else {
            whole.push(ms)
        }
    }
    let wins = sharded.iter().zip(&whole).filter(|(s, w)| s < w).count();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, w) = (median(sharded), median(whole));
    println!(
        "threads={} preset={} batch={} data_parallel_median_ms={s:.2} whole_median_ms={w:.2} ratio={:.3} data_parallel_faster_in={wins}/{}",
        rayon::current_num_threads(),
        args.preset,
        args.batch_size,
        s / w,
        args.steps
    );
    Ok(())
}
