//! The CUDA backend against the CPU, end to end: on the simulated GPU in CI
//! (`--features cuda-sim`), on a GPU when one is at hand. Each test is
//! skipped with a printed reason when CUDA cannot be used, unless
//! `ZEROFORMER_REQUIRE_CUDA=1`. (The per-device tests of the other files
//! run their CUDA arms too; these are the ones only a second device needs.)
#![cfg(feature = "cuda")]

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zeroformer::backend::cuda::{HOST_FALLBACKS, host_fallbacks, memory_stats};
use zeroformer::generation::{GenerationConfig, generate_with};
use zeroformer::models::Persist;
use zeroformer::nn::Module;
use zeroformer::train::{TrainConfig, Trainer, evaluate};
use zeroformer::{DType, Device, Gpt, GptConfig, Tensor};

/// The device, held by one test at a time: the allocator's books are the
/// device's, so a test reading them must be alone on it.
fn gpu() -> Option<(Device, std::sync::MutexGuard<'static, ()>)> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    common::cuda_device().map(|d| (d, guard))
}

/// Text-like tokens: a repeating pattern with noise, so that a model's
/// loss falls as it learns.
fn tokens(n: usize, vocab: i64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            if rng.gen_bool(0.1) {
                rng.gen_range(0..vocab)
            } else {
                (i as i64 * 7 + i as i64 / 13) % vocab
            }
        })
        .collect()
}

#[test]
fn cuda_round_trips_are_bit_identical() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let awkward = vec![
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 8.0,
        f32::MAX,
        1.0 / 3.0,
    ];
    let f = Tensor::from_vec(awkward.clone(), &[2, 4]);
    let back = f
        .to_device(&device)
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap();
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(back.to_vec()), bits(awkward));
    // A transposed view comes back as its elements in order.
    let t = f.t().to_device(&device).unwrap();
    assert_eq!(bits(t.to_vec()), bits(f.t().contiguous().to_vec()));
    let ids = Tensor::from_ids(vec![i64::MIN, -1, 0, 1, i64::MAX], &[5]);
    assert_eq!(
        ids.to_device(&device).unwrap().to_vec_i64(),
        ids.to_vec_i64()
    );
    let flags = Tensor::from_bools(vec![true, false, false, true], &[2, 2]);
    assert_eq!(
        flags.to_device(&device).unwrap().to_vec_bool(),
        flags.to_vec_bool()
    );
    let q = Tensor::from_vec(vec![-300.0, -1.4, 0.5, 126.6, 200.0], &[5]).to_dtype(DType::I8);
    assert_eq!(
        q.to_device(&device).unwrap().to_dtype(DType::F32).to_vec(),
        q.to_dtype(DType::F32).to_vec()
    );
}

#[test]
fn cuda_dropout_masks_equal_the_cpus() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let x = Tensor::ones(&[123, 45]);
    let on_cpu = x.dropout(0.3, true, &mut ChaCha8Rng::seed_from_u64(1));
    let on_gpu =
        x.to_device(&device)
            .unwrap()
            .dropout(0.3, true, &mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!(on_gpu.device(), device);
    assert_eq!(on_gpu.to_vec(), on_cpu.to_vec());
    let dropped = on_cpu.to_vec().iter().filter(|&&v| v == 0.0).count();
    assert!((1300..2000).contains(&dropped), "{dropped} of 5535 dropped");
}

/// A trainer on `device` for the cpu-mini shape, with dropout so that
/// the masks are compared too.
fn cpu_mini(device: &Device, dropout: f32, iters: usize) -> Trainer {
    let model = GptConfig {
        dropout,
        ..GptConfig::preset("cpu-mini", 65).unwrap()
    };
    device
        .as_default(|| Trainer::new(model, TrainConfig::nanogpt_cpu(iters)))
        .unwrap()
}

#[test]
fn cuda_training_a_cpu_mini_gpt_for_30_steps_gives_the_cpus_losses() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let data = tokens(20_000, 65);
    let mut on_cpu = cpu_mini(&Device::Cpu, 0.1, 30);
    let mut on_gpu = cpu_mini(&device, 0.1, 30);
    assert!(
        on_gpu
            .model
            .parameters()
            .iter()
            .all(|p| p.device() == device)
    );
    let mut losses = Vec::new();
    for step in 1..=30 {
        let a = on_cpu.train_step(&data).unwrap();
        let b = on_gpu.train_step(&data).unwrap();
        let (a, b) = (a.loss.item(), b.loss.item());
        assert!(
            (a - b).abs() <= 1e-4,
            "step {step}: CPU loss {a}, device loss {b}"
        );
        losses.push(b);
    }
    // It trains: the comparison compares learning, not two constants.
    assert!(losses[29] < losses[0] - 0.5, "{losses:?}");
}

#[test]
fn cuda_trainer_evaluation_generation_and_checkpoints_work_on_the_device() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let data = tokens(5_000, 65);
    let config = GptConfig {
        n_layer: 2,
        block_size: 16,
        ..GptConfig::preset("cpu-mini", 65).unwrap()
    };
    let train = TrainConfig {
        batch_size: 4,
        ..TrainConfig::nanogpt_cpu(10)
    };
    let mut trainer = device
        .as_default(|| Trainer::new(config.clone(), train.clone()))
        .unwrap();
    let mut reference = Trainer::new(config, train).unwrap();
    for _ in 0..3 {
        trainer.train_step(&data).unwrap();
        reference.train_step(&data).unwrap();
    }
    let close =
        |a: f32, b: f32, what: &str| assert!((a - b).abs() <= 1e-4, "{what}: device {a}, CPU {b}");
    close(
        trainer.estimate_loss(&data, 2),
        reference.estimate_loss(&data, 2),
        "estimate_loss",
    );
    close(
        evaluate(&trainer.model, &data[..500], 4),
        evaluate(&reference.model, &data[..500], 4),
        "evaluate",
    );
    let greedy = GenerationConfig::new(8);
    let mut streamed = Vec::new();
    let generated = generate_with(&trainer.model, &[1, 2, 3], &greedy, |t| {
        streamed.push(t);
        true
    })
    .unwrap();
    assert_eq!(generated.tokens, streamed);
    assert_eq!(
        generated.tokens,
        generate_with(&reference.model, &[1, 2, 3], &greedy, |_| true)
            .unwrap()
            .tokens
    );
    // A checkpoint written from the device loads on the CPU and back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    trainer.save(&path, &[]).unwrap();
    let (on_cpu, _) = Trainer::<Gpt>::resume(&path).unwrap();
    let (back_on_gpu, _) = device.as_default(|| Trainer::<Gpt>::resume(&path)).unwrap();
    let weights =
        |m: &Gpt| -> Vec<Vec<f32>> { m.parameters().iter().map(Tensor::to_vec).collect() };
    assert_eq!(on_cpu.model.device(), Device::Cpu);
    assert_eq!(back_on_gpu.model.device(), device);
    assert_eq!(weights(&on_cpu.model), weights(&trainer.model));
    assert_eq!(weights(&back_on_gpu.model), weights(&trainer.model));
    let weights_path = dir.path().join("weights.safetensors");
    trainer.model.save(&weights_path).unwrap();
    let loaded = Gpt::load_on(&weights_path, &device).unwrap();
    assert_eq!(loaded.device(), device);
    assert_eq!(weights(&loaded), weights(&trainer.model));
}

#[test]
fn cuda_memory_is_reused_between_steps() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let Device::Cuda(ordinal) = device else {
        unreachable!()
    };
    let data = tokens(5_000, 65);
    let mut trainer = cpu_mini(&device, 0.0, 10);
    for _ in 0..2 {
        trainer.train_step(&data).unwrap();
    }
    let warm = memory_stats(ordinal).unwrap();
    for _ in 0..3 {
        trainer.train_step(&data).unwrap();
    }
    let after = memory_stats(ordinal).unwrap();
    // Other tests share the device, so allow a few; a step allocates
    // hundreds of buffers.
    assert!(
        after.fresh_allocations - warm.fresh_allocations < 20,
        "{warm:?} -> {after:?}"
    );
}

#[test]
fn cuda_host_fallbacks_are_listed_and_counted() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let at = HOST_FALLBACKS
        .iter()
        .position(|&n| n == "layer_norm")
        .unwrap();
    let before = host_fallbacks()[at].1;
    let x = Tensor::ones(&[2, 8]).to_device(&device).unwrap();
    let y = x.layer_norm(None, None, 1e-5);
    assert_eq!(y.device(), device);
    assert!(host_fallbacks()[at].1 > before);
}

/// Rows of `n` values: random in ±4, one row of large values (±80, where
/// an unshifted exponential overflows), and one row all -inf but its first
/// entry (masked), so the kernels meet the extremes the CPU handles.
fn softmax_input(rows: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..rows * n).map(|_| rng.gen_range(-4.0..4.0)).collect();
    for (j, v) in x[..n].iter_mut().enumerate() {
        *v = if j % 2 == 0 { 80.0 } else { -80.0 };
    }
    if rows > 1 {
        x[n + 1..2 * n].fill(f32::NEG_INFINITY);
    }
    x
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let same = a == b || (a - b).abs() <= 1e-5 * (1.0 + b.abs());
        assert!(same, "{what}: element {i}: {a} on the GPU, {b} on the CPU");
    }
}

#[test]
fn cuda_softmax_kernels_match_the_cpu_on_awkward_sizes_and_views() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let kernel_ops = ["softmax", "causal_softmax", "softmax_backward"];
    assert!(
        kernel_ops.iter().all(|op| !HOST_FALLBACKS.contains(op)),
        "the softmax primitives have kernels"
    );
    for n in [1, 31, 33, 63, 65, 127, 129] {
        let rows = 4;
        let x = Tensor::from_vec(softmax_input(rows, n, n as u64), &[rows, n]);
        let on_gpu = x.to_device(&device).unwrap();
        for log in [false, true] {
            let op = |t: &Tensor| {
                if log {
                    t.log_softmax(-1)
                } else {
                    t.softmax(-1)
                }
            };
            let what = format!("{} over {n}", if log { "log_softmax" } else { "softmax" });
            assert_close(&what, &op(&on_gpu).to_vec(), &op(&x).to_vec());
        }
        // Over the first dimension: a strided view of rows.
        let t = Tensor::from_vec(softmax_input(n, 5, 1), &[n, 5]);
        let what = format!("softmax over a column of {n}");
        let gpu_t = t.to_device(&device).unwrap();
        assert_close(&what, &gpu_t.softmax(0).to_vec(), &t.softmax(0).to_vec());
        // Causal softmax of 2 query blocks of 3 rows over n keys, the first
        // query at n - 3 (a KV cache's offset), and its backward.
        let scores: Vec<f32> = softmax_input(6, n, 2)
            .into_iter()
            .map(|v| if v.is_finite() { v } else { -3.0 })
            .collect();
        let queries = 3.min(n);
        let rows = 2 * queries;
        let s = Tensor::from_vec(scores[..rows * n].to_vec(), &[2, queries, n]);
        let offset = n - queries;
        let g: Vec<f32> = softmax_input(rows, n, 3)
            .into_iter()
            .map(|v| if v.is_finite() { v } else { 0.5 })
            .collect();
        let g = Tensor::from_vec(g, &[2, queries, n]);
        let run = |s: Tensor, g: &Tensor| {
            let s = s.requires_grad();
            let p = s.causal_softmax(0.125, offset);
            p.backward_with(g);
            (p.to_vec(), s.grad().unwrap().to_vec())
        };
        let (p_cpu, d_cpu) = run(s.clone(), &g);
        let (p_gpu, d_gpu) = run(
            s.to_device(&device).unwrap(),
            &g.to_device(&device).unwrap(),
        );
        assert_close(&format!("causal softmax over {n}"), &p_gpu, &p_cpu);
        assert_close(&format!("causal softmax backward over {n}"), &d_gpu, &d_cpu);
    }
}
