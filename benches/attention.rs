//! Causal attention over [B=8, H=6, T, d]: the composed version (matmul,
//! fused causal softmax, matmul; it holds the T x T matrix) against the
//! fused flash-style op, forward and forward + backward. Throughput is in
//! FLOPs with causal work counted as half: 2·2·B·H·T²·d / 2 forward, 2.5x
//! that for forward + backward; criterion prints FLOP/s as "elem/s" (it has
//! no other unit), as the group's name says.
//!
//! cargo bench --bench attention                    # every case (the naive T=2048 ones take minutes)
//! cargo bench --bench attention -- 'T=1024'        # one length

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zeroformer::nn::AttentionMask;
use zeroformer::prelude::*;

const B: usize = 8;
const H: usize = 6;

fn naive(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let d = q.shape()[3];
    q.matmul(&k.transpose(-1, -2))
        .causal_softmax(1.0 / (d as f32).sqrt(), 0)
        .matmul(v)
}

fn fused(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    Tensor::scaled_dot_product_attention(q, k, v, AttentionMask::CAUSAL, 0)
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention (Gelem/s = GFLOP/s)");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(5));
    for d in [32usize, 64] {
        for t in [256usize, 1024, 2048] {
            let mut rng = StdRng::seed_from_u64(0);
            let make = |rng: &mut StdRng| Tensor::randn(&[B, H, t, d], rng).requires_grad();
            let (q, k, v) = (make(&mut rng), make(&mut rng), make(&mut rng));
            let g = Tensor::randn(&[B, H, t, d], &mut rng);
            let flops = (2 * B * H * t * t * d) as u64; // 4·B·H·T²·d / 2
            let case = format!("d={d}/T={t}");
            for (name, f) in [
                ("naive", naive as fn(&Tensor, &Tensor, &Tensor) -> Tensor),
                ("fused", fused),
            ] {
                group.throughput(Throughput::Elements(flops));
                group.bench_function(BenchmarkId::new(format!("{name}-fwd"), &case), |b| {
                    b.iter(|| no_grad(|| f(&q, &k, &v)))
                });
                group.throughput(Throughput::Elements(flops * 5 / 2));
                group.bench_function(BenchmarkId::new(format!("{name}-fwd+bwd"), &case), |b| {
                    b.iter(|| {
                        f(&q, &k, &v).backward_with(&g);
                        q.zero_grad();
                        k.zero_grad();
                        v.zero_grad();
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
