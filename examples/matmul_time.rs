//! Time one matrix product `c = a @ b` (row-major f32 operands, into a
//! preallocated output) through the kernel `Tensor::matmul` uses, and print
//! its median in the format of `scripts/bench_matmul_openblas.py`:
//!
//!     cargo run --release --example matmul_time -- --shape 4096x192x768 --threads 1
//!
//! `OPENBLAS_NUM_THREADS=1 python3 scripts/bench_matmul_openblas.py --paired
//! target/release/examples/matmul_time` alternates it with OpenBLAS, shape by
//! shape: on a shared host whose speed drifts by a quarter within minutes,
//! only timings taken side by side compare. (`cargo bench --bench matmul`
//! has the same shapes through the Tensor API, and other libraries.)

mod common;

use std::time::Instant;

use clap::Parser;
use zeroformer::Device;
use zeroformer::backend::cpu::gemm::{MatRef, batched_matmul};
use zeroformer::backend::cpu::in_pool;
use zeroformer::{Error, Result};

/// Median time of one matrix product.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// `MxKxN`: an m x k matrix times a k x n one.
    #[arg(long, default_value = "4096x192x768")]
    shape: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds of timed products (after a warm-up of a fifth of that).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

fn main() {
    common::exit_on_error(run(Args::parse()));
}

fn parse_shape(shape: &str) -> Result<[usize; 3]> {
    let dims: Vec<usize> = shape
        .split('x')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::InvalidConfig(format!("--shape {shape}: {e}")))?;
    match dims[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok([m, k, n]),
        _ => Err(Error::InvalidConfig(format!(
            "--shape {shape}: expected three positive sizes, MxKxN"
        ))),
    }
}

fn run(args: Args) -> Result<()> {
    let [m, k, n] = parse_shape(&args.shape)?;
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        return Err(Error::InvalidConfig(
            "--seconds must be a positive number".into(),
        ));
    }
    Device::set_threads(args.threads)?;
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 11) as f32 - 5.0) / 7.0).collect();
    let mut c = vec![0.0f32; m * n];
    let (a, b) = (
        MatRef {
            data: &a,
            offset: 0,
            row_stride: k,
            col_stride: 1,
        },
        MatRef {
            data: &b,
            offset: 0,
            row_stride: n,
            col_stride: 1,
        },
    );
    let mut product = || batched_matmul(m, k, n, a, &[0], b, &[0], &mut c, false);
    let mut times = in_pool(|| {
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < args.seconds / 5.0 {
            product();
        }
        let (start, mut times) = (Instant::now(), Vec::new());
        while times.len() < 10 || start.elapsed().as_secs_f64() < args.seconds {
            let t = Instant::now();
            product();
            times.push(t.elapsed().as_secs_f64());
        }
        times
    });
    times.sort_by(f64::total_cmp);
    let s = times[times.len() / 2];
    println!(
        "{m}x{k}@{k}x{n}: {:8.3} ms  {:6.1} GFLOP/s  (zeroformer, {} threads)",
        s * 1e3,
        2.0 * (m * k * n) as f64 / s / 1e9,
        rayon::current_num_threads()
    );
    Ok(())
}
