//! What the training API does when things go wrong: metadata that claims
//! more than the file holds, non-finite values, divergence, a resume
//! that must keep the best checkpoint, killed saves. Each case is an error
//! a user can act on, never a panic, an abort or lost data.

mod common;

use std::path::Path;

use zeroformer::checkpoint::{Checkpoint, remove_stale_temp_files};
use zeroformer::optim::Optimizer;
use zeroformer::prelude::*;
use zeroformer::train::{TrainConfig, Trainer};

fn configs() -> (GptConfig, TrainConfig) {
    let model = common::tiny_gpt(0.0);
    let train = TrainConfig {
        batch_size: 4,
        warmup: 2,
        ..TrainConfig::nanogpt_cpu(20)
    };
    (model, train)
}

/// A trained-for-two-steps checkpoint in `dir`.
fn saved(dir: &Path) -> std::path::PathBuf {
    let (m, t) = configs();
    let mut trainer = common::gpt_trainer(&m, t).unwrap();
    for _ in 0..2 {
        trainer.train_step(&common::periodic_tokens()).unwrap();
    }
    let path = dir.join("ckpt.safetensors");
    trainer.save(&path, &[]).unwrap();
    path
}

/// `path`'s checkpoint with metadata `key` set to `value`, saved beside it.
fn with_meta(path: &Path, key: &str, value: &str) -> std::path::PathBuf {
    let mut ckpt = Checkpoint::load(path).unwrap();
    ckpt.set_meta(key, value);
    let out = path.with_file_name(format!("edited-{key}.safetensors"));
    ckpt.save(&out).unwrap();
    out
}

fn resume_error(path: &Path) -> String {
    match Trainer::<Gpt>::resume(path, &Device::Cpu) {
        Ok(_) => panic!("{} resumed", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_metadata_is_checked_against_the_tensors_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let (model, _) = configs();
    for (field, value, expect) in [
        // Counted with placeholders, stopping once past the file's numbers.
        ("n_layer", 1_000_000_000u64, "more parameters than"),
        ("n_layer", 100_000, "more parameters than"),
        ("block_size", 1_000_000_000, "more parameters than"),
        ("n_embd", 1 << 40, "more parameters than"),
        ("n_embd", 1 << 20, "more parameters than"),
        ("vocab_size", 1 << 62, "more parameters than"),
        // Fewer numbers than the file: every name and shape compared.
        (
            "vocab_size",
            16,
            "model.wte.weight: shape [17, 16] in the file, [16, 16] expected",
        ),
        ("n_head", 3, "not divisible"),
        ("n_embd", 0, "must be positive"),
    ] {
        let mut json = serde_json::to_value(&model).unwrap();
        json[field] = value.into();
        let edited = with_meta(&path, "model_config", &json.to_string());
        let err = resume_error(&edited);
        assert!(err.contains(expect), "{field} = {value}: {err}");
        assert!(err.contains("edited-model_config"), "names the file: {err}");
    }
    let edited = with_meta(&path, "model_config", "{\"n_layer\": -1}");
    assert!(resume_error(&edited).contains("model_config"));
}

#[test]
fn a_step_that_cannot_fit_in_memory_is_refused_before_allocating() {
    let (model, train) = configs();
    let huge = TrainConfig {
        batch_size: 1_000_000_000,
        ..train.clone()
    };
    let err = common::gpt_trainer(&model, huge.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs about"), "{err}");
    assert!(err.contains("available"), "{err}");
    // The error names the override, and the override lets the trainer be
    // made (nothing of the batch is allocated before its first step).
    assert!(err.contains("--no-memory-check"), "{err}");
    let unchecked = TrainConfig {
        memory_check: false,
        ..huge.clone()
    };
    assert!(common::gpt_trainer(&model, unchecked).is_ok());
    // A window longer than the model's context is refused, one as short
    // as asked is what a step trains on.
    let long = TrainConfig {
        context: Some(model.block_size + 1),
        ..train.clone()
    };
    let err = common::gpt_trainer(&model, long).err().unwrap().to_string();
    assert!(err.contains("longer than the model's 16"), "{err}");
    // The same in a checkpoint's train_config.
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let edited = with_meta(
        &path,
        "train_config",
        &serde_json::to_string(&huge).unwrap(),
    );
    assert!(resume_error(&edited).contains("needs about"));
    // And a model whose parameters alone cannot fit.
    let wide = GptConfig {
        n_layer: 100_000,
        n_embd: 4096,
        n_head: 32,
        ..model
    };
    let err = wide.init(&Device::Cpu, 0).err().unwrap().to_string();
    assert!(err.contains("parameters needs about"), "{err}");
}

#[test]
fn an_encoder_decoder_step_that_cannot_fit_is_refused_with_the_override_named() {
    use zeroformer::models::EncoderDecoderConfig;
    let config = EncoderDecoderConfig::preset("transformer-tiny", 11, 11, 12).unwrap();
    let train = TrainConfig {
        batch_size: 8,
        ..TrainConfig::nanogpt_cpu(10)
    };
    let model = || config.init(&Device::Cpu, 0).unwrap();
    assert!(Trainer::new(model(), train.clone()).is_ok());
    let huge = TrainConfig {
        batch_size: 1_000_000_000,
        ..train.clone()
    };
    let err = Trainer::new(model(), huge.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs about"), "{err}");
    assert!(err.contains("--no-memory-check"), "{err}");
    let unchecked = TrainConfig {
        memory_check: false,
        ..huge
    };
    assert!(Trainer::new(model(), unchecked).is_ok());
    let long = TrainConfig {
        context: Some(13),
        ..train
    };
    let err = Trainer::new(model(), long).err().unwrap().to_string();
    assert!(err.contains("longer than the model's 12"), "{err}");
}

#[test]
fn bad_training_settings_are_refused() {
    let (model, train) = configs();
    for (bad, name) in [
        (
            TrainConfig {
                max_lr: f32::NAN,
                ..train.clone()
            },
            "max_lr",
        ),
        (
            TrainConfig {
                max_lr: -1.0,
                ..train.clone()
            },
            "max_lr",
        ),
        (
            TrainConfig {
                min_lr: 1.0,
                ..train.clone()
            },
            "min_lr",
        ),
        (
            TrainConfig {
                weight_decay: f32::NAN,
                ..train.clone()
            },
            "weight_decay",
        ),
        (
            TrainConfig {
                grad_clip: -1.0,
                ..train.clone()
            },
            "grad_clip",
        ),
        (
            TrainConfig {
                beta2: 1.0,
                ..train.clone()
            },
            "beta2",
        ),
        (
            TrainConfig {
                decay_steps: 0,
                ..train.clone()
            },
            "decay_steps",
        ),
    ] {
        let err = common::gpt_trainer(&model, bad).err().unwrap().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn divergence_stops_at_its_step_and_leaves_the_model_finite() {
    let (model, train) = configs();
    let mut trainer = common::gpt_trainer(
        &model,
        TrainConfig {
            max_lr: 1e4,
            warmup: 0,
            grad_clip: 0.0,
            ..train
        },
    )
    .unwrap();
    let data = common::periodic_tokens();
    let err = loop {
        match trainer.train_step(&data) {
            Ok(stats) => {
                assert!(stats.loss.item().is_finite() && stats.grad_norm.item().is_finite())
            }
            Err(e) => break e,
        }
        assert!(trainer.step < 20, "lr 1e4 never diverged");
    };
    assert!(
        err.to_string()
            .contains(&format!("diverged at step {}", trainer.step + 1)),
        "{err}"
    );
    assert!(matches!(err, Error::Diverged { .. }), "{err}");
    // The step was not applied: every weight and moment is finite, so the
    // state can still be saved.
    let dir = tempfile::tempdir().unwrap();
    trainer
        .save(dir.path().join("ok.safetensors"), &[])
        .unwrap();
    assert!(
        trainer
            .model
            .parameters()
            .iter()
            .all(|p| p.grad().is_none() || p.grad().unwrap().to_vec().iter().all(|g| *g == 0.0))
    );
}

#[test]
fn a_divergence_found_at_a_later_check_names_its_step_and_applied_nothing_since() {
    // Checked every 8 steps, as on a GPU: the steps between the bad one and
    // the check run, but their updates are skipped on the device.
    let (model, train) = configs();
    let diverging = TrainConfig {
        max_lr: 1e4,
        warmup: 0,
        grad_clip: 0.0,
        ..train
    };
    let data = common::periodic_tokens();
    // Where the every-step check stops, and the weights just before.
    let mut eager = common::gpt_trainer(&model, diverging.clone()).unwrap();
    let bad = loop {
        if let Err(Error::Diverged { step, .. }) = eager.train_step(&data) {
            break step;
        }
    };
    assert!(
        bad > 1,
        "the first step already diverged; nothing to compare"
    );
    let before: Vec<Vec<f32>> = eager
        .model
        .parameters()
        .iter()
        .map(|p| p.to_vec())
        .collect();
    let mut late = common::gpt_trainer(&model, diverging).unwrap();
    late.check_every = 8;
    let err = loop {
        if let Err(e) = late.train_step(&data) {
            break e;
        }
        assert!(late.step < 40, "lr 1e4 never diverged");
    };
    match err {
        Error::Diverged { step, .. } => assert_eq!(step, bad),
        other => panic!("{other}"),
    }
    assert_eq!(late.step, bad - 1);
    assert_eq!(late.optimizer.steps(), (bad - 1) as u64);
    let after: Vec<Vec<f32>> = late.model.parameters().iter().map(|p| p.to_vec()).collect();
    assert_eq!(after, before, "an update after the bad step was applied");
    // The check cleared the record: the trainer can save and go on.
    let dir = tempfile::tempdir().unwrap();
    late.save(dir.path().join("ok.safetensors"), &[]).unwrap();
}

#[test]
fn non_finite_tensors_are_never_written_and_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut ckpt = Checkpoint::default();
    ckpt.add_tensor("fine", &[2], vec![1.0, 2.0]);
    ckpt.add_tensor("model.bad", &[3], vec![0.0, f32::NAN, 1.0]);
    let path = dir.path().join("nan.safetensors");
    let err = ckpt.save(&path).unwrap_err().to_string();
    assert!(err.contains("model.bad holds NaN at element 1"), "{err}");
    assert!(!path.exists());
    // Written by something else: refused on load, naming the tensor.
    let data: Vec<u8> = [1.0f32, f32::INFINITY]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    let bytes = safetensors::serialize([("w", view)], &None).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("tensor w holds inf at element 1"), "{err}");
}

#[test]
fn another_format_and_a_tampered_optimizer_step_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    // Metadata set on a loaded checkpoint is written as is, so the format
    // key is rewritten by hand here.
    let bytes = std::fs::read(&path).unwrap();
    let (old, new) = (b"zeroformer-checkpoint-v1", b"zeroformer-checkpoint-v9");
    let at = bytes.windows(old.len()).position(|w| w == old).unwrap();
    let mut edited = bytes.clone();
    edited[at..at + new.len()].copy_from_slice(new);
    let v9 = dir.path().join("v9.safetensors");
    std::fs::write(&v9, &edited).unwrap();
    let err = Checkpoint::load(&v9).unwrap_err().to_string();
    assert!(err.contains("format 'zeroformer-checkpoint-v9'"), "{err}");

    let edited = with_meta(&path, "optim.step", &(1u64 << 32).to_string());
    assert!(resume_error(&edited).contains("optim.step 4294967296 differs from step 2"));
    let edited = with_meta(&path, "step", "99999999999");
    assert!(resume_error(&edited).contains("differs from step 99999999999"));
    let edited = with_meta(&path, "best_val_loss", "NaN");
    assert!(resume_error(&edited).contains("best_val_loss"));
}

#[test]
fn missing_optimizer_tensors_are_named_with_their_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let full = Checkpoint::load(&path).unwrap();
    let mut partial = Checkpoint::default();
    for name in full.tensor_names() {
        if name != "optim.wte.weight.exp_avg" {
            let (shape, data) = full.tensor(name).unwrap();
            partial.add_tensor(name, shape, data.to_vec());
        }
    }
    for key in [
        "model_config",
        "train_config",
        "step",
        "optim.step",
        "rng.data",
        "rng.dropout",
    ] {
        partial.set_meta(key, full.meta(key).unwrap());
    }
    let out = dir.path().join("partial.safetensors");
    partial.save(&out).unwrap();
    let err = resume_error(&out);
    assert!(err.contains("optim.wte.weight.exp_avg: missing"), "{err}");
}

#[test]
fn resume_keeps_the_best_loss_and_the_evaluation_stream() {
    // Evaluations every 2 steps; a run cut after step 4 and resumed sees
    // the same estimates and the same best loss as one that never stopped.
    let (model, train) = configs();
    let data = common::periodic_tokens();
    let run = |trainer: &mut Trainer<Gpt>, until: usize, log: &mut Vec<(f32, f32)>| {
        while trainer.step < until {
            trainer.train_step(&data).unwrap();
            if trainer.step.is_multiple_of(2) {
                let val = trainer.estimate_loss(&data, 3).unwrap();
                trainer.best_val_loss = trainer.best_val_loss.min(val);
                log.push((val, trainer.best_val_loss));
            }
        }
    };
    let mut straight_log = Vec::new();
    run(
        &mut common::gpt_trainer(&model, train.clone()).unwrap(),
        10,
        &mut straight_log,
    );

    let dir = tempfile::tempdir().unwrap();
    let mut first = common::gpt_trainer(&model, train).unwrap();
    let mut log = Vec::new();
    run(&mut first, 4, &mut log);
    first.save(dir.path().join("4.safetensors"), &[]).unwrap();
    let (mut resumed, _) =
        Trainer::<Gpt>::resume(dir.path().join("4.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(resumed.best_val_loss, first.best_val_loss);
    run(&mut resumed, 10, &mut log);
    assert_eq!(log, straight_log);
    assert!(straight_log.iter().all(|(v, _)| v.is_finite()));
}

#[test]
fn a_resumed_run_takes_new_settings_but_not_a_new_seed() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let (mut trainer, _) = Trainer::<Gpt>::resume(&path, &Device::Cpu).unwrap();
    let longer = TrainConfig {
        decay_steps: 40,
        max_lr: 5e-4,
        weight_decay: 0.0,
        ..trainer.config.clone()
    };
    trainer.set_config(longer.clone()).unwrap();
    assert_eq!(trainer.config, longer);
    assert_eq!(trainer.optimizer.groups()[0].weight_decay, 0.0);
    let reseeded = TrainConfig {
        seed: 7,
        ..longer.clone()
    };
    assert!(
        trainer
            .set_config(reseeded)
            .unwrap_err()
            .to_string()
            .contains("seed")
    );
    let bad = TrainConfig {
        max_lr: f32::NAN,
        ..longer
    };
    assert!(trainer.set_config(bad).is_err());
}

#[test]
fn identical_checkpoints_are_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    assert_eq!(
        std::fs::read(saved(&a)).unwrap(),
        std::fs::read(saved(&b)).unwrap()
    );
}

#[test]
fn temporary_files_of_dead_processes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    // A PID above Linux's largest (2^22) belongs to no process.
    let stale = dir.path().join(".last.safetensors.tmp-99999999");
    let ours = dir
        .path()
        .join(format!(".last.safetensors.tmp-{}", std::process::id()));
    let other = dir.path().join("notes.tmp-1");
    for p in [&stale, &ours, &other] {
        std::fs::write(p, b"partial").unwrap();
    }
    let removed = remove_stale_temp_files(dir.path()).unwrap();
    if Path::new("/proc/self").exists() {
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!stale.exists());
    }
    assert!(ours.exists() && other.exists());
}

#[test]
fn truncated_files_say_so_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    for len in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let cut = dir.path().join(format!("cut-{len}.safetensors"));
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = Checkpoint::load(&cut).unwrap_err().to_string();
        assert!(
            err.contains("truncated or not a safetensors file ("),
            "{len}: {err}"
        );
        assert!(!err.contains("Incomplete"), "{len}: {err}");
    }
    let err = Checkpoint::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is a folder"), "{err}");
}

#[test]
fn a_model_built_on_a_device_that_cannot_be_used_is_an_error_not_a_panic() {
    // No build has a thousand GPUs.
    let gone = Device::Cuda(1000);
    let (gpt, _) = configs();
    let encoder = zeroformer::models::EncoderConfig::preset("encoder-tiny", 20, 3, 16).unwrap();
    let seq2seq =
        zeroformer::models::EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 16).unwrap();
    let errors = [
        gpt.init(&gone, 0).err(),
        encoder.init(&gone, 0).err(),
        seq2seq.init(&gone, 0).err(),
    ];
    for error in errors {
        assert!(
            matches!(error, Some(Error::CudaUnavailable(_))),
            "{error:?}"
        );
    }
}
