//! One GPT training step (forward, backward, AdamW) on the presets of the
//! Shakespeare targets: cpu-mini at batch 12 and gpt-mini at batch 32, with
//! nanoGPT's bias-free model. Throughput is in tokens. Each preset runs as
//! `Trainer::train_step` runs it (data parallel: the batch cut into one
//! shard per thread, `train::forward_backward`, fused attention), then with
//! the batch whole and its kernels split across the threads ("-whole"), then
//! data parallel with the composed matmul-softmax-matmul attention
//! ("-composed").
//!
//! Before timing, each case prints what one step asks of the heap, counted
//! by this binary's global allocator (allocations, and bytes allocated).
//!
//! cargo bench --bench train_step
//! cargo bench --bench train_step -- 'cpu-mini/'   # one preset, fused only

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use zeroformer::nn::AttentionKernel;
use zeroformer::optim::{Adam, AdamConfig, Optimizer, decay_groups};
use zeroformer::prelude::*;
use zeroformer::train::forward_backward;

/// The system allocator, counting calls and bytes.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(5));
    let cases = [("cpu-mini", 12usize), ("gpt-mini", 32)];
    for ((preset, batch), kernel, shards) in cases.into_iter().flat_map(|c| {
        [
            (c, AttentionKernel::Fused, None),
            (c, AttentionKernel::Fused, Some(1)),
            (c, AttentionKernel::Composed, None),
        ]
    }) {
        let config = GptConfig::preset(preset, 65).unwrap();
        let t = config.block_size;
        let mut model = config.init(&Device::Cpu, 0).unwrap();
        for block in &mut model.blocks {
            block.attn.kernel = kernel;
        }
        let name = match (kernel, shards) {
            (AttentionKernel::Composed, _) => format!("{preset}-composed"),
            (_, Some(1)) => format!("{preset}-whole"),
            _ => preset.to_string(),
        };
        let mut opt = Adam::new(
            decay_groups(model.named_parameters(), 0.1),
            AdamConfig::adamw(1e-3),
        );
        let mut rng = StdRng::seed_from_u64(0);
        let data: Vec<i64> = (0..batch * (t + 1)).map(|_| rng.gen_range(0..65)).collect();
        let seq = Tensor::from_ids(data, &[batch, t + 1]);
        let inputs_targets = (
            seq.narrow(1, 0, t).contiguous(),
            seq.narrow(1, 1, t).contiguous(),
        );
        let mut step = || {
            let loss = forward_backward(&model, &inputs_targets, 1.0, shards);
            opt.step();
            opt.zero_grad();
            loss
        };
        // Steady state: the buffer pool and the optimiser state are warm.
        for _ in 0..3 {
            step();
        }
        let (calls, bytes) = (
            ALLOCATIONS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        step();
        println!(
            "{name} batch {batch}: one step makes {} heap allocations of {:.2} MB in all",
            ALLOCATIONS.load(Ordering::Relaxed) - calls,
            (BYTES.load(Ordering::Relaxed) - bytes) as f64 / 1e6
        );
        group.throughput(Throughput::Elements((batch * t) as u64));
        group.bench_function(BenchmarkId::new(name, format!("batch{batch}")), |b| {
            b.iter(&mut step)
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
