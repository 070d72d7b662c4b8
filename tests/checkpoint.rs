//! Checkpoints: bit-exact resume in a fresh process, and errors that list
//! every mismatch.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use zeroformer::checkpoint::Checkpoint;
use zeroformer::nn::Module;
use zeroformer::prelude::*;
use zeroformer::train::{Precision, TrainConfig, Trainer};

fn configs() -> (GptConfig, TrainConfig) {
    let model = common::tiny_gpt(0.1);
    let train = TrainConfig {
        batch_size: 4,
        grad_accum: 2,
        warmup: 2,
        decay_steps: 10,
        ..TrainConfig::nanogpt_cpu(10)
    };
    (model, train)
}

/// Every parameter's bits, in name order.
fn weights(model: &impl Module) -> Vec<(String, Vec<u32>)> {
    model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

const CHILD_DIR: &str = "ZEROFORMER_RESUME_DIR";

#[test]
fn resume_is_bit_exact_across_processes() {
    resume_in_a_child_process(Precision::F32);
}

#[test]
fn a_bf16_run_resumes_bit_exactly_across_processes() {
    // The checkpoint keeps f32 weights and the config's precision: the
    // child goes on in bf16.
    resume_in_a_child_process(Precision::Bf16);
}

/// Ten steps straight against four, a checkpoint, and six more in a fresh
/// process: the same bits.
fn resume_in_a_child_process(precision: Precision) {
    let dir = tempfile::tempdir().unwrap();
    let (model_config, train_config) = configs();
    let train_config = TrainConfig {
        precision,
        ..train_config
    };
    let data = common::periodic_tokens();

    let mut straight = common::gpt_trainer(&model_config, train_config.clone()).unwrap();
    for _ in 0..10 {
        straight.train_step(&data).unwrap();
    }

    let mut first = common::gpt_trainer(&model_config, train_config).unwrap();
    for _ in 0..4 {
        first.train_step(&data).unwrap();
    }
    first
        .save(dir.path().join("step4.safetensors"), &[])
        .unwrap();
    drop(first);

    // The other 6 steps in a fresh process: this test binary, running the
    // ignored `resume_child` test below.
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resume_child",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed");

    let (resumed, _) =
        Trainer::<Gpt>::resume(dir.path().join("step10.safetensors"), &Device::Cpu).unwrap();
    assert_eq!((resumed.step, resumed.config.precision), (10, precision));
    let (a, b) = (weights(&straight.model), weights(&resumed.model));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after resuming");
    }
    // The optimizer state too.
    let (sa, sb) = (straight.optimizer.state(), resumed.optimizer.state());
    assert_eq!(sa.0, sb.0);
    for ((name, x), (_, y)) in sa.1.iter().zip(&sb.1) {
        assert!(
            x.to_vec()
                .iter()
                .map(|v| v.to_bits())
                .eq(y.to_vec().iter().map(|v| v.to_bits())),
            "{name} differs"
        );
    }
}

#[test]
#[ignore = "run by resume_in_a_child_process in a child process"]
fn resume_child() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("set by the parent test"));
    let (mut trainer, _) =
        Trainer::<Gpt>::resume(dir.join("step4.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(trainer.step, 4);
    let data = common::periodic_tokens();
    for _ in 0..6 {
        trainer.train_step(&data).unwrap();
    }
    trainer.save(dir.join("step10.safetensors"), &[]).unwrap();
}

#[test]
fn loading_into_another_shape_lists_every_mismatch_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (small, _) = configs();
    let mut ckpt = Checkpoint::default();
    ckpt.add_module("model.", &small.init(&Device::Cpu, 0).unwrap());
    ckpt.save(&path).unwrap();

    let wider = GptConfig {
        n_embd: 32,
        ..small.clone()
    }
    .init(&Device::Cpu, 1)
    .unwrap();
    let before = weights(&wider);
    let err = Checkpoint::load(&path)
        .unwrap()
        .load_module("model.", &wider)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wte.weight: shape [17, 16] in the file, [17, 32] expected"),
        "{err}"
    );
    assert!(err.contains("blocks.1.mlp.proj.weight"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(
        weights(&wider),
        before,
        "a failed load must not touch the model"
    );

    let deeper = GptConfig {
        n_layer: 3,
        ..small
    }
    .init(&Device::Cpu, 1)
    .unwrap();
    let err = Checkpoint::load(&path)
        .unwrap()
        .load_module("model.", &deeper)
        .unwrap_err()
        .to_string();
    assert!(err.contains("blocks.2.attn.qkv.weight: missing"), "{err}");
}

#[test]
fn unreadable_and_unwritable_paths_are_errors() {
    let err = Checkpoint::load(Path::new("/nonexistent/ckpt.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    assert!(matches!(
        Checkpoint::load(&garbage),
        Err(Error::Checkpoint { .. })
    ));
    // A file where a folder should be.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = Checkpoint::default()
        .save(blocker.join("ckpt.safetensors"))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // A failed save leaves no temporary file behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}
