//! One GPT training step (forward, backward, AdamW) on the presets of the
//! Shakespeare targets: cpu-mini at batch 12 and gpt-mini at batch 32, with
//! nanoGPT's bias-free model. Throughput is in tokens.
//!
//! cargo bench --bench train_step

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use zeroformer::optim::{Adam, AdamConfig, Optimizer, decay_groups};
use zeroformer::prelude::*;

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(5));
    for (preset, batch) in [("cpu-mini", 12usize), ("gpt-mini", 32)] {
        let config = GptConfig::preset(preset, 65).unwrap();
        let t = config.block_size;
        let model = Gpt::new(config, 0).unwrap();
        let mut opt = Adam::new(
            decay_groups(model.named_parameters(), 0.1),
            AdamConfig::adamw(1e-3),
        );
        let mut rng = StdRng::seed_from_u64(0);
        let data: Vec<i64> = (0..batch * (t + 1)).map(|_| rng.gen_range(0..65)).collect();
        let seq = Tensor::from_ids(data, &[batch, t + 1]);
        let (x, y) = (
            seq.narrow(1, 0, t).contiguous(),
            seq.narrow(1, 1, t).contiguous(),
        );
        group.throughput(Throughput::Elements((batch * t) as u64));
        group.bench_function(BenchmarkId::new(preset, format!("batch{batch}")), |b| {
            b.iter(|| {
                let loss = Gpt::loss(&model.forward(&x), &y);
                loss.backward();
                opt.step();
                opt.zero_grad();
                loss.item()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
