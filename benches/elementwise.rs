//! Where elementwise kernels should go parallel: a serial loop against a
//! rayon split over 2 threads, for sizes around the threshold, plus the
//! whole `Tensor::add` (allocation and dispatch included) at the same sizes.
//!
//! Also the fused row kernels of a training step, forward + backward, on
//! the GPT presets' shapes: layer norm and GELU (PyTorch's figures for the
//! same: `python3 scripts/bench_rows_torch.py`).
//!
//! cargo bench --bench elementwise
//! cargo bench --bench elementwise -- rows    # the fused row kernels only

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use zeroformer::Tensor;

const SIZES: &[usize] = &[
    1 << 10,
    1 << 12,
    1 << 14,
    1 << 15,
    1 << 16,
    1 << 18,
    1 << 20,
];
const CHUNK: usize = 16 * 1024;

/// `out = f(a, b)` in rayon chunks (at least two, so both threads work).
fn par_zip(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    let chunk = CHUNK.min(out.len().div_ceil(2));
    out.par_chunks_mut(chunk)
        .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
        .for_each(|(o, (a, b))| {
            for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        });
}

fn elementwise(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("elementwise");
    group.warm_up_time(std::time::Duration::from_millis(300));
    group.measurement_time(std::time::Duration::from_secs(1));
    for &n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
        let mut out = vec![0.0f32; n];
        group.bench_function(BenchmarkId::new("gelu-serial", n), |bench| {
            bench.iter(|| {
                for ((o, &x), &y) in out.iter_mut().zip(&a).zip(&b) {
                    *o = (x * y).tanh();
                }
            })
        });
        group.bench_function(BenchmarkId::new("gelu-rayon-2t", n), |bench| {
            pool.install(|| bench.iter(|| par_zip(&mut out, &a, &b, |x, y| (x * y).tanh())))
        });
        group.bench_function(BenchmarkId::new("add-serial", n), |bench| {
            bench.iter(|| {
                for ((o, &x), &y) in out.iter_mut().zip(&a).zip(&b) {
                    *o = x + y;
                }
            })
        });
        group.bench_function(BenchmarkId::new("add-rayon-2t", n), |bench| {
            pool.install(|| bench.iter(|| par_zip(&mut out, &a, &b, |x, y| x + y)))
        });
        let (ta, tb) = (Tensor::from_slice(&a, &[n]), Tensor::from_slice(&b, &[n]));
        group.bench_function(BenchmarkId::new("tensor-add-2t", n), |bench| {
            pool.install(|| bench.iter(|| ta.add(&tb)))
        });
    }
    group.finish();
}

/// Layer norm (with weight, no bias, as nanoGPT's) and tanh-GELU, forward
/// and backward, on cpu-mini's (12·64 rows of 128; GELU on 512) and gpt-mini's
/// (32·256 rows of 192; GELU on 768) activations, 2 threads.
fn rows(c: &mut Criterion) {
    use rand::SeedableRng;
    let mut group = c.benchmark_group("rows");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for (preset, rows, width) in [("cpu-mini", 768, 128), ("gpt-mini", 8192, 192)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let x = Tensor::randn(&[rows, width], &mut rng).requires_grad();
        let w = Tensor::ones(&[width]).requires_grad();
        let g = Tensor::randn(&[rows, width], &mut rng);
        group.bench_function(BenchmarkId::new("layer_norm-fwd+bwd", preset), |b| {
            b.iter(|| {
                x.layer_norm(Some(&w), None, 1e-5).backward_with(&g);
                x.zero_grad();
                w.zero_grad();
            })
        });
        let h = Tensor::randn(&[rows, 4 * width], &mut rng).requires_grad();
        let gh = Tensor::randn(&[rows, 4 * width], &mut rng);
        group.bench_function(BenchmarkId::new("gelu-fwd+bwd", preset), |b| {
            b.iter(|| {
                h.gelu(zeroformer::GeluApproximation::Tanh)
                    .backward_with(&gh);
                h.zero_grad();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, elementwise, rows);
criterion_main!(benches);
