//! Matrix products through the Tensor API against bare `matrixmultiply` and
//! against the `gemm` crate (candle's, dfdx's and burn's choice; a
//! dev-dependency here, with its AVX-512 `x86-v4` kernels), on square sizes
//! and the shapes of a GPT's linear layers (tokens x width). Throughput is
//! in FLOP/s (2·m·k·n per product), which criterion prints as "elem/s"
//! (it has no other unit): the group names say so.
//!
//! The crate's own rows come in f32 and in bf16 (bf16 operands, f32
//! sums; `examples/matmul_time --dtype bf16` times the kernel alone).
//!
//! cargo bench --bench matmul
//! cargo bench --bench matmul -- 'transformer'   # a subset

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroformer::{DType, Tensor};

const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("square", 256, 256, 256),
    ("square", 512, 512, 512),
    ("square", 1024, 1024, 1024),
    ("square", 2048, 2048, 2048),
    ("transformer", 4096, 192, 768),
    ("transformer", 4096, 768, 192),
    ("transformer", 4096, 192, 192),
    ("transformer", 4096, 384, 1536),
    // cpu-mini's linear layers: 12 x 64 tokens, width 128.
    ("cpu-mini", 768, 128, 384),
    ("cpu-mini", 768, 128, 512),
    ("cpu-mini", 768, 512, 128),
    // The fused attention op's tiles (64 queries x 64 keys, head width 32).
    ("attention-tile", 64, 32, 64),
    ("attention-tile", 64, 64, 32),
];

fn bare_sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: a is m x k, b is k x n, c is m x n, all row-major and in bounds.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The same product with the `gemm` crate: `c = 1·(a @ b)`, overwriting c.
fn gemm_crate(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as for bare_sgemm; gemm's strides are (column, row).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn matmul(c: &mut Criterion) {
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2]
        .into_iter()
        .map(|t| {
            (
                t,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    for &(kind, m, k, n) in SHAPES {
        let mut group = c.benchmark_group(format!("matmul/{kind} (Gelem/s = GFLOP/s)"));
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.sample_size(10);
        group.warm_up_time(std::time::Duration::from_millis(500));
        group.measurement_time(std::time::Duration::from_secs(2));
        let mut rng = StdRng::seed_from_u64(0);
        let a = Tensor::randn(&[m, k], &mut rng);
        let b = Tensor::randn(&[k, n], &mut rng);
        let label = format!("{m}x{k}@{k}x{n}");
        let (av, bv) = (a.to_vec(), b.to_vec());
        let mut out = vec![0.0f32; m * n];
        group.bench_function(BenchmarkId::new("matrixmultiply-1t", &label), |bench| {
            bench.iter(|| bare_sgemm(m, k, n, &av, &bv, &mut out))
        });
        // The same, allocating the output each time as an op returning a new
        // tensor must: separates sgemm speed from allocation and page faults.
        group.bench_function(
            BenchmarkId::new("matrixmultiply-1t+alloc", &label),
            |bench| {
                bench.iter(|| {
                    let mut c = vec![0.0f32; m * n];
                    bare_sgemm(m, k, n, &av, &bv, &mut c);
                    c
                })
            },
        );
        // The two libraries agree before either is timed.
        let mut check = vec![0.0f32; m * n];
        bare_sgemm(m, k, n, &av, &bv, &mut out);
        gemm_crate(m, k, n, &av, &bv, &mut check, gemm::Parallelism::None);
        let worst = out
            .iter()
            .zip(&check)
            .fold(0.0f32, |w, (x, y)| w.max((x - y).abs()));
        assert!(worst < 1e-3, "gemm and matrixmultiply differ by {worst}");
        group.bench_function(BenchmarkId::new("gemm-crate-1t", &label), |bench| {
            bench.iter(|| gemm_crate(m, k, n, &av, &bv, &mut out, gemm::Parallelism::None))
        });
        group.bench_function(BenchmarkId::new("gemm-crate-2t", &label), |bench| {
            bench.iter(|| gemm_crate(m, k, n, &av, &bv, &mut out, gemm::Parallelism::Rayon(2)))
        });
        // bf16 operands (f32 sums, a bf16 result) on the fastest path the
        // CPU has (`ZEROFORMER_BF16_GEMM` picks another).
        let (a16, b16) = (a.to_dtype(DType::BF16), b.to_dtype(DType::BF16));
        for (threads, pool) in &pools {
            group.bench_function(
                BenchmarkId::new(format!("zeroformer-{threads}t"), &label),
                |bench| pool.install(|| bench.iter(|| a.matmul(&b))),
            );
            group.bench_function(
                BenchmarkId::new(format!("zeroformer-bf16-{threads}t"), &label),
                |bench| pool.install(|| bench.iter(|| a16.matmul(&b16))),
            );
        }
        group.finish();
    }
}

/// A linear layer's bias: folded into the product's output pass (`addmm`,
/// what `Linear` does) against a separate broadcast add, forward only, on
/// the default 2-thread pool.
fn bias(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear-bias (Gelem/s = GFLOP/s)");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for (m, k, n) in [(4096, 192, 768), (768, 128, 512), (320, 64, 256)] {
        let mut rng = StdRng::seed_from_u64(0);
        let x = Tensor::randn(&[m, k], &mut rng);
        let w = Tensor::randn(&[n, k], &mut rng);
        let b = Tensor::randn(&[n], &mut rng);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let label = format!("{m}x{k}@{k}x{n}");
        group.bench_function(BenchmarkId::new("addmm", &label), |bench| {
            bench.iter(|| b.addmm(&x, &w.t()))
        });
        group.bench_function(BenchmarkId::new("matmul+add", &label), |bench| {
            bench.iter(|| x.matmul(&w.t()).add(&b))
        });
    }
    group.finish();
}

/// The fused attention's tile products, in the layouts it uses them (64
/// queries x 64 keys, head width d), one thread: the `gemm` crate against
/// the crate's own allocation-free tile kernel.
fn tiles(c: &mut Criterion) {
    use zeroformer::backend::cpu::gemm::{MatRef, gemm_scaled};
    use zeroformer::backend::cpu::tile::tile_gemm;
    fn rows(data: &[f32], cols: usize) -> MatRef<'_> {
        MatRef {
            data,
            offset: 0,
            row_stride: cols,
            col_stride: 1,
        }
    }
    fn transposed(data: &[f32], cols: usize) -> MatRef<'_> {
        MatRef {
            data,
            offset: 0,
            row_stride: 1,
            col_stride: cols,
        }
    }
    let mut group = c.benchmark_group("attention-tile");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for d in [32usize, 64] {
        let x = Tensor::randn(&[64, 64], &mut StdRng::seed_from_u64(0)).to_vec();
        let y = Tensor::randn(&[64, 64], &mut StdRng::seed_from_u64(1)).to_vec();
        let mut out = vec![0.0f32; 64 * 64];
        // (name, m, k, n, a, b): Q Kᵀ (scores), P V (output), Pᵀ dO (dV).
        let cases = [
            ("QKt", 64, d, 64, rows(&x, d), transposed(&y, d)),
            ("PV", 64, 64, d, rows(&x, 64), rows(&y, d)),
            ("PtdO", 64, 64, d, transposed(&x, 64), rows(&y, d)),
        ];
        for (name, m, k, n, a, b) in cases {
            group.throughput(Throughput::Elements((2 * m * k * n) as u64));
            let label = format!("{name}/d={d}");
            group.bench_function(BenchmarkId::new("gemm-crate", &label), |bench| {
                bench.iter(|| gemm_scaled(m, k, n, 1.0, a, b, 1.0, &mut out))
            });
            group.bench_function(BenchmarkId::new("tile-kernel", &label), |bench| {
                bench.iter(|| tile_gemm(m, k, n, 1.0, a, b, 1.0, &mut out))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul, bias, tiles);
criterion_main!(benches);
