//! The CUDA backend against the CPU, end to end: on the simulated GPU in CI
//! (`--features cuda-sim`), on a GPU when one is at hand. Each test is
//! skipped with a printed reason when CUDA cannot be used, unless
//! `ZEROFORMER_REQUIRE_CUDA=1`. (The per-device tests of the other files
//! run their CUDA arms too; these are the ones only a second device needs.)
#![cfg(feature = "cuda")]

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zeroformer::backend::cuda::memory_stats;
use zeroformer::generation::{GenerationConfig, generate_with};
use zeroformer::models::Persist;
use zeroformer::nn::AttentionMask;
use zeroformer::nn::Module;
use zeroformer::train::{TrainConfig, Trainer};
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
fn cpu_mini(device: &Device, dropout: f32, iters: usize) -> Trainer<Gpt> {
    let model = GptConfig {
        dropout,
        ..GptConfig::preset("cpu-mini", 65).unwrap()
    };
    common::gpt_trainer_on(&model, TrainConfig::nanogpt_cpu(iters), device).unwrap()
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
fn cuda_training_a_gpt_mini_shaped_model_for_20_steps_gives_the_cpus_losses() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    // gpt-mini's widths (6 heads of 32) at 2 layers and a context of 128,
    // without dropout, so that every step runs the fused attention's
    // kernels over several key tiles, and each kernel of a step is a CUDA
    // one (no primitive has a host path).
    let model = GptConfig {
        n_layer: 2,
        block_size: 128,
        dropout: 0.0,
        ..GptConfig::preset("gpt-mini", 65).unwrap()
    };
    let train = TrainConfig {
        batch_size: 4,
        ..TrainConfig::nanogpt_cpu(20)
    };
    let trainer = |device: &Device| common::gpt_trainer_on(&model, train.clone(), device).unwrap();
    let (mut on_cpu, mut on_gpu) = (trainer(&Device::Cpu), trainer(&device));
    let data = tokens(20_000, 65);
    let mut losses = Vec::new();
    for step in 1..=20 {
        let a = on_cpu.train_step(&data).unwrap().loss.item();
        let b = on_gpu.train_step(&data).unwrap().loss.item();
        assert!(
            (a - b).abs() <= 1e-4,
            "step {step}: CPU loss {a}, device loss {b}"
        );
        losses.push(b);
    }
    assert!(losses[19] < losses[0] - 0.3, "{losses:?}");
}

#[test]
fn cuda_training_an_encoder_decoder_gives_the_cpus_losses() {
    use zeroformer::data::digits::{self, DigitTask};
    use zeroformer::models::EncoderDecoderConfig;
    use zeroformer::optim::{Adam, AdamConfig, Optimizer, ParamGroup};
    let Some((device, _alone)) = gpu() else {
        return;
    };
    // examples/seq2seq's model and optimizer on the copy task, post-norm,
    // with dropout (the masks are the CPU's): padding-free self-attention,
    // causal attention and cross-attention through the fused kernels.
    let losses = |device: &Device| {
        let mut config = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 16).unwrap();
        config.layer.dropout = 0.1;
        let model = config.init(&Device::Cpu, 3).unwrap();
        model.to_device(device).unwrap();
        let mut opt = Adam::new(
            vec![ParamGroup {
                params: model.named_parameters(),
                weight_decay: 0.0,
            }],
            AdamConfig {
                beta2: 0.98,
                eps: 1e-9,
                ..AdamConfig::adam(1e-3)
            },
        );
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        (0..15)
            .map(|_| {
                let b = digits::batch(DigitTask::Copy, 16, 6, &mut rng);
                let [source, target_in, target_out] =
                    [b.source, b.target_in, b.target_out].map(|t| t.to_device(device).unwrap());
                let logits = model.forward(&source, &target_in, None, None);
                let loss = logits
                    .reshape(&[16 * 6, digits::VOCAB_SIZE])
                    .cross_entropy(&target_out.reshape(&[16 * 6]));
                opt.zero_grad();
                loss.backward();
                opt.step();
                loss.item()
            })
            .collect::<Vec<f32>>()
    };
    let (cpu, gpu) = (losses(&Device::Cpu), losses(&device));
    for (step, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4,
            "step {step}: CPU loss {a}, device loss {b}"
        );
    }
    assert!(gpu[14] < gpu[0] - 0.3, "{gpu:?}");
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
    let mut trainer = common::gpt_trainer_on(&config, train.clone(), &device).unwrap();
    let mut reference = common::gpt_trainer(&config, train).unwrap();
    for _ in 0..3 {
        trainer.train_step(&data).unwrap();
        reference.train_step(&data).unwrap();
    }
    let close =
        |a: f32, b: f32, what: &str| assert!((a - b).abs() <= 1e-4, "{what}: device {a}, CPU {b}");
    close(
        trainer.estimate_loss(&data, 2).unwrap(),
        reference.estimate_loss(&data, 2).unwrap(),
        "estimate_loss",
    );
    close(
        trainer.model.evaluate(&data[..500], 4),
        reference.model.evaluate(&data[..500], 4),
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
    let (on_cpu, _) = Trainer::<Gpt>::resume(&path, &Device::Cpu).unwrap();
    let (back_on_gpu, _) = Trainer::<Gpt>::resume(&path, &device).unwrap();
    let weights =
        |m: &Gpt| -> Vec<Vec<f32>> { m.parameters().iter().map(Tensor::to_vec).collect() };
    assert_eq!(on_cpu.model.device(), Device::Cpu);
    assert_eq!(back_on_gpu.model.device(), device);
    assert_eq!(weights(&on_cpu.model), weights(&trainer.model));
    assert_eq!(weights(&back_on_gpu.model), weights(&trainer.model));
    // Resumed on the device, training continues bit for bit as the run it
    // was saved from (optimizer state, step count and data stream included).
    let mut resumed = back_on_gpu;
    for _ in 0..3 {
        trainer.train_step(&data).unwrap();
        resumed.train_step(&data).unwrap();
    }
    assert_eq!(weights(&resumed.model), weights(&trainer.model));
    // And a checkpoint written on the CPU resumes on the device.
    let cpu_path = dir.path().join("cpu.safetensors");
    reference.save(&cpu_path, &[]).unwrap();
    let (from_cpu, _) = Trainer::<Gpt>::resume(&cpu_path, &device).unwrap();
    assert_eq!(from_cpu.model.device(), device);
    assert_eq!(weights(&from_cpu.model), weights(&reference.model));
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

/// A training step of a GPT with experts reads nothing back from the
/// device unless it logs: the routing, the experts' grouped products and
/// the router losses stay there (the simulated GPU counts every copy to
/// the host). Its losses are the CPU's.
#[test]
fn cuda_a_moe_training_step_reads_nothing_back_and_gives_the_cpus_losses() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let Device::Cuda(ordinal) = device else {
        unreachable!()
    };
    let data = tokens(5_000, 65);
    let config = GptConfig {
        n_layer: 2,
        block_size: 16,
        moe: Some(zeroformer::nn::MoeConfig {
            z_loss_coef: 0.001,
            ..zeroformer::nn::MoeConfig::new(4, 2)
        }),
        ..GptConfig::preset("cpu-mini", 65).unwrap()
    };
    let train = TrainConfig {
        batch_size: 4,
        ..TrainConfig::nanogpt_cpu(10)
    };
    let mut on_gpu = common::gpt_trainer_on(&config, train.clone(), &device).unwrap();
    let mut on_cpu = common::gpt_trainer(&config, train).unwrap();
    on_gpu.check_every = 1000;
    let mut losses = Vec::new();
    for step in 0..4 {
        let before = memory_stats(ordinal).unwrap().downloads;
        let stats = on_gpu.train_step(&data).unwrap();
        let after = memory_stats(ordinal).unwrap().downloads;
        assert_eq!(
            after,
            before,
            "step {step} read the device {} times",
            after - before
        );
        losses.push((stats.loss, on_cpu.train_step(&data).unwrap().loss.item()));
    }
    // Reading is counted: the divergence check reads one record.
    let before = memory_stats(ordinal).unwrap().downloads;
    on_gpu.check_finite().unwrap();
    assert_eq!(memory_stats(ordinal).unwrap().downloads, before + 1);
    for (step, (gpu_loss, cpu_loss)) in losses.into_iter().enumerate() {
        let gpu_loss = gpu_loss.item();
        assert!(
            (gpu_loss - cpu_loss).abs() <= 1e-4,
            "step {step}: device {gpu_loss}, CPU {cpu_loss}"
        );
    }
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

/// `f` of `inputs` (each marked as needing a gradient) on the CPU and on
/// the GPU, run backward from `g` (`f`'s output shape): the outputs and
/// every input's gradient, each compared with the CPU's.
fn compare_with_grads(
    device: &Device,
    what: &str,
    inputs: &[Tensor],
    g: &Tensor,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    let run = |on: Option<&Device>| {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|x| match on {
                Some(d) => x.to_device(d).unwrap().requires_grad(),
                None => x.clone().requires_grad(),
            })
            .collect();
        let y = f(&xs);
        y.backward_with(&match on {
            Some(d) => g.to_device(d).unwrap(),
            None => g.clone(),
        });
        let grads: Vec<Vec<f32>> = xs.iter().map(|x| x.grad().unwrap().to_vec()).collect();
        (y.to_vec(), grads)
    };
    let (y_cpu, g_cpu) = run(None);
    let (y_gpu, g_gpu) = run(Some(device));
    assert_close(what, &y_gpu, &y_cpu);
    for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        assert_close(&format!("{what}: gradient of input {i}"), a, b);
    }
}

#[test]
fn cuda_layer_norm_kernels_match_the_cpu_on_awkward_sizes_and_views() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut values = |n: usize, scale: f32| -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
    };
    // 37 rows: more than one chunk of the parameter gradients' partials.
    let rows = 37;
    for d in [1, 31, 33, 63, 65, 127, 129] {
        let mut x = values(rows * d, 2.0);
        // A row far from zero (the variance's second pass matters) and a
        // constant row (zero variance: rstd is 1 / sqrt(eps)).
        for (j, v) in x[..d].iter_mut().enumerate() {
            *v = 300.0 + (j % 7) as f32 * 0.25;
        }
        x[d..2 * d].fill(-1.5);
        let x = Tensor::from_vec(x, &[rows, d]);
        let (w, b) = (
            Tensor::from_vec(values(d, 1.5), &[d]),
            Tensor::from_vec(values(d, 0.5), &[d]),
        );
        let g = Tensor::from_vec(values(rows * d, 1.0), &[rows, d]);
        compare_with_grads(
            &device,
            &format!("layer norm over {d}"),
            &[x.clone(), w.clone(), b.clone()],
            &g,
            |t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5),
        );
        compare_with_grads(
            &device,
            &format!("layer norm over {d} without weight or bias"),
            std::slice::from_ref(&x),
            &g,
            |t| t[0].layer_norm(None, None, 1e-5),
        );
        // The input transposed: rows read at a stride.
        let xt = Tensor::from_vec(values(rows * d, 3.0), &[d, rows]);
        compare_with_grads(
            &device,
            &format!("layer norm over {d}, strided rows"),
            &[xt, w],
            &g,
            |t| t[0].t().layer_norm(Some(&t[1]), None, 1e-5),
        );
    }
}

#[test]
fn cuda_cross_entropy_kernels_match_the_cpu_with_ignored_and_extreme_rows() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let rows = 37;
    for classes in [1, 31, 33, 65, 129] {
        let x = Tensor::from_vec(
            softmax_input(rows, classes, classes as u64),
            &[rows, classes],
        );
        let mut rng = ChaCha8Rng::seed_from_u64(classes as u64);
        let mut targets: Vec<i64> = (0..rows)
            .map(|_| rng.gen_range(0..classes as i64))
            .collect();
        // Ignored rows, the masked row's target on its one finite entry.
        targets[1] = 0;
        for t in targets.iter_mut().skip(3).step_by(5) {
            *t = -100;
        }
        let t = Tensor::from_ids(targets.clone(), &[rows]);
        let g = Tensor::scalar(1.7);
        let what = format!("cross-entropy over {classes} classes");
        compare_with_grads(&device, &what, std::slice::from_ref(&x), &g, |xs| {
            xs[0].cross_entropy(&t.to_device(&xs[0].device()).unwrap())
        });
        // Logits read at a stride (transposed), targets read at a stride
        // (every other one of a longer vector), and an ignore_index that
        // is a class (7).
        let xt = Tensor::from_vec(softmax_input(classes, rows, 5), &[classes, rows]);
        let spread: Vec<i64> = targets
            .iter()
            .flat_map(|&v| [if v == -100 { 7 } else { v }, 0])
            .collect();
        let t2 = Tensor::from_ids(spread, &[rows, 2]);
        let what = format!("cross-entropy over {classes} classes, strided views");
        compare_with_grads(&device, &what, &[xt], &g, |xs| {
            let t = t2.to_device(&xs[0].device()).unwrap();
            xs[0]
                .t()
                .cross_entropy_with_ignore(&t.narrow(1, 0, 1).reshape(&[rows]), Some(7))
        });
    }
    // Every target ignored: NaN on both, as in PyTorch.
    let x = Tensor::from_vec(softmax_input(3, 4, 1), &[3, 4]);
    let t = Tensor::from_ids(vec![-100; 3], &[3]);
    let on_gpu = x
        .to_device(&device)
        .unwrap()
        .cross_entropy(&t.to_device(&device).unwrap());
    assert!(on_gpu.item().is_nan() && x.cross_entropy(&t).item().is_nan());
    // A target out of range: the CPU panics, a kernel cannot, so the loss is NaN.
    let t = Tensor::from_ids(vec![0, 4, 1], &[3]);
    let on_gpu = x
        .to_device(&device)
        .unwrap()
        .cross_entropy(&t.to_device(&device).unwrap());
    assert!(on_gpu.item().is_nan());
}

#[test]
fn cuda_embedding_gradients_are_the_cpus_bits_with_repeated_ids() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let vocab = 70;
    for d in [1, 31, 33, 129] {
        let table: Vec<f32> = (0..vocab * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let table = Tensor::from_vec(table, &[vocab, d]);
        // 100 ids, most of them repeats (ids 0..9 only, some rows unused),
        // read at a stride (every other one).
        let ids: Vec<i64> = (0..200).map(|_| rng.gen_range(0..10)).collect();
        let ids = Tensor::from_ids(ids, &[100, 2])
            .narrow(1, 1, 1)
            .reshape(&[4, 25]);
        let g: Vec<f32> = (0..100 * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let g = Tensor::from_vec(g, &[4, 25, d]);
        let run = |table: Tensor, ids: Tensor, g: Tensor| {
            let table = table.requires_grad();
            let y = Tensor::embedding(&ids, &table);
            y.backward_with(&g);
            (y.to_vec(), table.grad().unwrap().to_vec())
        };
        let (y_cpu, dw_cpu) = run(table.clone(), ids.clone(), g.clone());
        let (y_gpu, dw_gpu) = run(
            table.to_device(&device).unwrap(),
            ids.to_device(&device).unwrap(),
            g.to_device(&device).unwrap(),
        );
        assert_eq!(y_gpu, y_cpu, "embedding rows of width {d}");
        assert_eq!(dw_gpu, dw_cpu, "embedding gradient of width {d}");
    }
    // An id out of range: the CPU panics, a kernel writes a row of NaN.
    let table = Tensor::ones(&[4, 3]).to_device(&device).unwrap();
    let ids = Tensor::from_ids(vec![1, 9], &[2])
        .to_device(&device)
        .unwrap();
    let rows = Tensor::embedding(&ids, &table).to_vec();
    assert_eq!(&rows[..3], &[1.0; 3]);
    assert!(rows[3..].iter().all(|v| v.is_nan()));
    // Max's backward: the gradient lands on each maximum's first index.
    let x = Tensor::from_vec(
        vec![1.0, 5.0, 5.0, -2.0, 0.5, 7.0, 7.0, 3.0, -1.0, 2.0, 9.0, 0.0],
        &[2, 3, 2],
    );
    let g = Tensor::from_vec(vec![1.5, -2.0, 0.25, 4.0], &[2, 2]);
    compare_with_grads(&device, "max over a middle dimension", &[x], &g, |t| {
        t[0].max_dim(1, false)
    });
}

#[test]
fn cuda_adam_steps_and_gradient_norms_match_the_cpu() {
    use zeroformer::optim::{Adam, AdamConfig, ParamGroup, clip_coefficient, grad_norm};
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // Sizes around the reduction's blocks: one element, a block and one,
    // and more than the first pass's 256 blocks cover in one sweep.
    let shapes: [&[usize]; 3] = [&[1], &[257], &[300, 257]];
    let values: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| {
            (0..s.iter().product())
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect()
        })
        .collect();
    let grads: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|_| {
            shapes
                .iter()
                .map(|s| {
                    (0..s.iter().product())
                        .map(|_| rng.gen_range(-3.0..3.0))
                        .collect()
                })
                .collect()
        })
        .collect();
    let run = |device: &Device| {
        let params: Vec<Tensor> = values
            .iter()
            .zip(shapes)
            .map(|(v, s)| {
                Tensor::from_vec(v.clone(), s)
                    .to_device(device)
                    .unwrap()
                    .requires_grad()
            })
            .collect();
        let named = |ps: &[Tensor]| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| (format!("p{i}"), p.clone()))
                .collect()
        };
        let groups = vec![
            ParamGroup {
                params: named(&params[..2]),
                weight_decay: 0.0,
            },
            ParamGroup {
                params: named(&params[2..]),
                weight_decay: 0.1,
            },
        ];
        let mut opt = Adam::new(groups, AdamConfig::adamw(1e-2));
        let mut norms = Vec::new();
        for step in &grads {
            for (p, g) in params
                .iter()
                .zip(step)
                .zip(shapes)
                .map(|((p, g), s)| (p, (g, s)))
            {
                p.set_grad(Some(
                    Tensor::from_vec(g.0.clone(), g.1)
                        .to_device(device)
                        .unwrap(),
                ));
            }
            let norm = grad_norm(&params);
            opt.step_scaled(&clip_coefficient(&norm, 5.0));
            norms.push(norm.item());
        }
        // A NaN scale skips the update on the device.
        opt.step_scaled(&Tensor::scalar(f32::NAN).to_device(device).unwrap());
        let weights: Vec<Vec<f32>> = params.iter().map(Tensor::to_vec).collect();
        (norms, weights)
    };
    let (norms_cpu, w_cpu) = run(&Device::Cpu);
    let (norms_gpu, w_gpu) = run(&device);
    assert_close("gradient norms", &norms_gpu, &norms_cpu);
    for (i, (a, b)) in w_gpu.iter().zip(&w_cpu).enumerate() {
        assert_close(&format!("parameter {i} after three AdamW steps"), a, b);
    }
}

#[test]
fn cuda_gather_topk_and_cumsum_kernels_match_the_cpu_on_views_ties_and_nans() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for n in [1, 31, 33, 65] {
        // [4, n, 3] values from a small set (ties), with NaNs, read through
        // a permuted view so that the reduced dimension is strided.
        let mut v: Vec<f32> = (0..3 * n * 4)
            .map(|_| rng.gen_range(-3..4) as f32 * 0.5)
            .collect();
        v[5] = f32::NAN;
        v[3 * n * 2 + 1] = f32::NAN;
        let x = Tensor::from_vec(v, &[3, n, 4]).permute(&[2, 1, 0]);
        let k = n.min(5);
        let (values_cpu, idx_cpu) = x.topk(k, 1);
        let (values_gpu, idx_gpu) = x.to_device(&device).unwrap().topk(k, 1);
        assert_eq!(idx_gpu.to_vec_i64(), idx_cpu.to_vec_i64(), "top-{k} of {n}");
        let same = |a: &[f32], b: &[f32]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
        };
        assert!(
            same(&values_gpu.to_vec(), &values_cpu.to_vec()),
            "top-{k} values of {n}"
        );
        // Gathering with repeated indices, an index narrower than x on
        // another dimension, and its gradient (scatter-add), bit for bit.
        let x = Tensor::from_vec(
            (0..4 * n * 3).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            &[4, n, 3],
        );
        let index: Vec<i64> = (0..3 * 7 * 2).map(|_| rng.gen_range(0..n as i64)).collect();
        let index = Tensor::from_ids(index, &[3, 2, 7]);
        let g = Tensor::from_vec(
            (0..3 * 7 * 2).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            &[3, 2, 7],
        );
        let run = |x: Tensor, index: Tensor, g: Tensor| {
            let x = x.requires_grad();
            let y = x.gather(1, &index.permute(&[0, 2, 1]));
            y.backward_with(&g.permute(&[0, 2, 1]));
            (y.to_vec(), x.grad().unwrap().to_vec())
        };
        let (y_cpu, dx_cpu) = run(x.clone(), index.clone(), g.clone());
        let to = |t: &Tensor| t.to_device(&device).unwrap();
        let (y_gpu, dx_gpu) = run(to(&x), to(&index), to(&g));
        assert_eq!(y_gpu, y_cpu, "gather over {n}");
        assert_eq!(dx_gpu, dx_cpu, "gather's gradient over {n}");
        // Running sums along a strided dimension, and their gradient (a
        // reversed running sum).
        let g = Tensor::from_vec(
            (0..4 * n * 3).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            &[3, n, 4],
        );
        compare_with_grads(&device, &format!("cumsum over {n}"), &[x], &g, |t| {
            t[0].permute(&[2, 1, 0]).cumsum(1)
        });
    }
    // An index out of range: the CPU panics, a kernel writes NaN.
    let x = Tensor::ones(&[2, 3]).to_device(&device).unwrap();
    let index = Tensor::from_ids(vec![0, 3], &[2, 1])
        .to_device(&device)
        .unwrap();
    let y = x.gather(1, &index).to_vec();
    assert!(y[0] == 1.0 && y[1].is_nan());
}

#[test]
fn cuda_int8_kernels_match_the_cpu() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (n, k) = (70, 129);
    let mut w: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
    // A row of zeros, and one whose values land halfway between two
    // steps (rounded away from zero, as the CPU's `round`).
    w[..k].fill(0.0);
    w[k..2 * k].fill(0.0);
    w[k..k + 4].copy_from_slice(&[127.0, 2.5, -2.5, 0.5]);
    let w = Tensor::from_vec(w, &[n, k]);
    let q_cpu = w.quantize_rows_int8();
    let q_gpu = w.to_device(&device).unwrap().quantize_rows_int8();
    let ids = |t: &Tensor| t.to_dtype(DType::I64).to_vec_i64();
    assert_eq!(ids(&q_gpu.q), ids(&q_cpu.q), "int8 rows");
    assert_eq!(q_gpu.scales.to_vec(), q_cpu.scales.to_vec(), "int8 scales");
    for m in [1, 3, 17] {
        let x = Tensor::from_vec(
            (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            &[m, k],
        );
        let want = x.matmul_int8(&q_cpu).to_vec();
        let got = x.to_device(&device).unwrap().matmul_int8(&q_gpu).to_vec();
        let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "int8 product of {m} rows: element {i}: {a} on the GPU, {b} on the CPU"
            );
        }
    }
}

#[test]
fn cuda_flash_attention_matches_the_cpu_with_masks_offsets_and_views() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (batch, heads) = (2, 2);
    // (queries, keys, head width): awkward lengths around the 32-row tiles
    // and the 8-row blocks, widths up to the kernels' 128; fewer queries
    // than keys is a KV cache's offset when causal.
    for (tq, tk, d) in [
        (1, 1, 1),
        (31, 31, 31),
        (33, 33, 64),
        (65, 65, 16),
        (5, 40, 128),
        (40, 7, 33),
    ] {
        let mut values =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect() };
        // q, k and v as the heads of packed projections ([b, t, 3, h, d]
        // permuted): strided views, as a model's attention passes them.
        let q = Tensor::from_vec(values(batch * tq * heads * d), &[batch, tq, heads, d]);
        let kv = Tensor::from_vec(
            values(batch * tk * 2 * heads * d),
            &[batch, tk, 2, heads, d],
        );
        let g = Tensor::from_vec(values(batch * heads * tq * d), &[batch, heads, tq, d]);
        // The second sequence's last two keys are padding; with one key,
        // that sequence sees none (zeros, and no gradient).
        let pad: Vec<bool> = (0..batch * tk)
            .map(|i| i >= tk && i + 2 >= 2 * tk)
            .collect();
        let pad = Tensor::from_bools(pad, &[batch, tk]);
        for causal in [false, true] {
            if causal && tq > tk {
                continue;
            }
            for padded in [false, true] {
                let what =
                    format!("attention tq={tq} tk={tk} d={d} causal={causal} padded={padded}");
                let inputs = [q.clone(), kv.clone()];
                compare_with_grads(&device, &what, &inputs, &g, |t| {
                    let q = t[0].permute(&[0, 2, 1, 3]);
                    let k = t[1]
                        .narrow(2, 0, 1)
                        .reshape(&[batch, tk, heads, d])
                        .permute(&[0, 2, 1, 3]);
                    let v = t[1]
                        .narrow(2, 1, 1)
                        .reshape(&[batch, tk, heads, d])
                        .permute(&[0, 2, 1, 3]);
                    let pad = pad.to_device(&t[0].device()).unwrap();
                    let mask = AttentionMask {
                        causal,
                        window: None,
                        key_padding: padded.then_some(&pad),
                    };
                    Tensor::scaled_dot_product_attention(&q, &k, &v, mask, tk - tq.min(tk))
                });
            }
        }
    }
}

#[test]
fn cuda_flash_attention_reads_strided_views_in_place_without_a_graph() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let (batch, heads, d, capacity) = (2, 3, 40, 50);
    let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect() };
    // Keys and values in a cache's buffer, narrowed to the 37 positions
    // filled; 3 new queries at positions 34..37.
    let cache = Tensor::from_vec(
        values(batch * heads * capacity * d),
        &[batch, heads, capacity, d],
    );
    let q = Tensor::from_vec(values(batch * 3 * heads * d), &[batch, 3, heads, d]);
    let run = |device: &Device| {
        let (cache, q) = (
            cache.to_device(device).unwrap(),
            q.to_device(device).unwrap(),
        );
        zeroformer::no_grad(|| {
            let k = cache.narrow(2, 0, 37);
            let v = cache.narrow(2, 5, 37);
            let q = q.permute(&[0, 2, 1, 3]);
            Tensor::scaled_dot_product_attention(&q, &k, &v, AttentionMask::CAUSAL, 34).to_vec()
        })
    };
    assert_close(
        "attention over a narrowed cache",
        &run(&device),
        &run(&Device::Cpu),
    );
}

#[test]
fn bf16_on_cuda_panics_naming_the_op_and_the_dtype() {
    let Some((device, _alone)) = gpu() else {
        return;
    };
    let a = Tensor::ones(&[2, 3]).to_device(&device).unwrap();
    let b = Tensor::ones(&[3, 2]).to_device(&device).unwrap();
    let message = |f: &dyn Fn()| {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    // Autocast on the GPU: the cast to bf16 is refused by name.
    let cast = message(&|| {
        zeroformer::autocast(DType::BF16, || a.matmul(&b));
    });
    assert!(cast.contains("to_dtype") && cast.contains("BF16"), "{cast}");
    // A bf16 tensor moved there: its product is refused by name.
    let a16 = Tensor::ones(&[2, 3])
        .to_dtype(DType::BF16)
        .to_device(&device)
        .unwrap();
    let b16 = Tensor::ones(&[3, 2])
        .to_dtype(DType::BF16)
        .to_device(&device)
        .unwrap();
    let product = message(&|| {
        a16.matmul(&b16);
    });
    assert!(
        product.contains("matmul") && product.contains("BF16"),
        "{product}"
    );
}
