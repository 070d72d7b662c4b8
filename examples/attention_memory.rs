//! Peak memory and time of one causal attention call, forward + backward,
//! over [batch, heads, T, d]: the fused flash-style op or the composed
//! matmul-softmax-matmul that holds the T x T matrix. One case per process,
//! so that the peak resident set (Linux's VmHWM) belongs to that case alone.
//!
//!     cargo run --release --example attention_memory -- --d 32 --t 1024
//!     cargo run --release --example attention_memory -- --d 32 --t 1024 --naive
//!     cargo run --release --example attention_memory -- --d 32 --t 4096 --window 256
//!
//! Prints `peak_rss_mb=… before_call_mb=… inputs_mb=… ms=…`: the process's
//! peak resident set, its peak before the first call (inputs made), what the
//! inputs and output gradient alone take, and the median time of the
//! repetitions. `/usr/bin/time -v` reports the same peak ("Maximum
//! resident set size"). PyTorch's figures for the same cases:
//! `python3 scripts/bench_attention_torch.py --memory`.

mod common;

use std::time::Instant;

use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroformer::nn::AttentionMask;
use zeroformer::{Error, Result, Tensor};

/// Measure one attention case's peak memory and time.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Sequences in the batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Attention heads per layer.
    #[arg(long, default_value_t = 6)]
    heads: usize,
    /// Sequence length.
    #[arg(long, default_value_t = 1024)]
    t: usize,
    /// Head width.
    #[arg(long, default_value_t = 32)]
    d: usize,
    /// The composed version (matmul, causal softmax, matmul) instead of the fused op.
    #[arg(long)]
    naive: bool,
    /// Sliding-window attention over the last W positions (fused op only).
    #[arg(long, value_name = "W", conflicts_with = "naive")]
    window: Option<usize>,
    /// Forward + backward passes to time (the first is not counted).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    common::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    if [args.batch, args.heads, args.t, args.d, args.reps].contains(&0) || args.window == Some(0) {
        return Err(Error::InvalidConfig(
            "--batch, --heads, --t, --d, --reps and --window must be at least 1".into(),
        ));
    }
    zeroformer::Device::set_threads(args.threads)?;
    let shape = [args.batch, args.heads, args.t, args.d];
    let mut rng = StdRng::seed_from_u64(0);
    let q = Tensor::randn(&shape, &mut rng).requires_grad();
    let k = Tensor::randn(&shape, &mut rng).requires_grad();
    let v = Tensor::randn(&shape, &mut rng).requires_grad();
    let g = Tensor::randn(&shape, &mut rng);
    let inputs_mb = 4.0 * (4 * shape.iter().product::<usize>()) as f64 / 1e6;
    let scale = 1.0 / (args.d as f32).sqrt();
    let before_mb = peak_rss_kb()? as f64 / 1e3;
    let mut times = Vec::new();
    for _ in 0..=args.reps {
        let start = Instant::now();
        let out = if args.naive {
            q.matmul(&k.transpose(-1, -2))
                .causal_softmax(scale, 0)
                .matmul(&v)
        } else {
            Tensor::scaled_dot_product_attention(&q, &k, &v, AttentionMask::sliding(args.window), 0)
        };
        out.backward_with(&g);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        for t in [&q, &k, &v] {
            t.zero_grad();
        }
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    let peak_mb = peak_rss_kb()? as f64 / 1e3;
    let window = args
        .window
        .map_or(String::new(), |w| format!(" window={w}"));
    println!(
        "{}{window} d={} T={} peak_rss_mb={peak_mb:.0} before_call_mb={before_mb:.0} inputs_mb={inputs_mb:.0} ms={:.1}",
        if args.naive { "naive" } else { "fused" },
        args.d,
        args.t,
        times[times.len() / 2]
    );
    Ok(())
}

/// The process's peak resident set in kB, from /proc/self/status.
fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("reading (peak memory needs Linux)", "/proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::InvalidConfig("no VmHWM line in /proc/self/status".into()))
}
