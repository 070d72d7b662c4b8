//! Time one matrix product `c = a @ b` (row-major operands, f32 or bf16,
//! into a preallocated f32 output) through the kernel `Tensor::matmul`
//! uses, and print its median in the format of
//! `scripts/bench_matmul_openblas.py`:
//!
//!     cargo run --release --example matmul_time -- --shape 4096x192x768 --threads 1
//!     cargo run --release --example matmul_time -- --shape 1024x1024x1024 --dtype bf16
//!
//! bf16 products take the fastest path the CPU has; `ZEROFORMER_BF16_GEMM`
//! (`avx512bf16`, `avx512`, `avx2`, `baseline`) picks a slower one.
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
use zeroformer::backend::cpu::gemm_bf16::{self, Path};
use zeroformer::backend::cpu::in_pool;
use zeroformer::{DType, Error, Result};

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
    /// The operands' dtype: `f32` or `bf16` (f32 products either way).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: DType,
}

fn parse_dtype(name: &str) -> std::result::Result<DType, String> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        _ => Err(format!("expected f32 or bf16, got {name}")),
    }
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
    let (a16, b16): (Vec<half::bf16>, Vec<half::bf16>) = (
        a.iter().map(|&x| half::bf16::from_f32(x)).collect(),
        b.iter().map(|&x| half::bf16::from_f32(x)).collect(),
    );
    let mut c = vec![0.0f32; m * n];
    fn rows<T>(data: &[T], cols: usize) -> MatRef<'_, T> {
        MatRef {
            data,
            offset: 0,
            row_stride: cols,
            col_stride: 1,
        }
    }
    let bf16 = args.dtype == DType::BF16;
    let mut product = || {
        if bf16 {
            let (a, b) = (rows(&a16, k), rows(&b16, n));
            gemm_bf16::batched_matmul(m, k, n, a, &[0], b, &[0], &mut c, false)
        } else {
            batched_matmul(m, k, n, rows(&a, k), &[0], rows(&b, n), &[0], &mut c, false)
        }
    };
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
    let kernel = if bf16 {
        format!("bf16 {}", Path::chosen().name())
    } else {
        "f32".to_string()
    };
    println!(
        "{m}x{k}@{k}x{n}: {:8.3} ms  {:6.1} GFLOP/s  (zeroformer {kernel}, {} threads)",
        s * 1e3,
        2.0 * (m * k * n) as f64 / s / 1e9,
        rayon::current_num_threads()
    );
    Ok(())
}
