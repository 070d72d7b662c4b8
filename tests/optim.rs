//! Optimizers against torch.optim (fixtures from scripts/make_fixtures.py),
//! schedules against their closed forms, and clipping.

#[macro_use]
mod common;

use common::Fixture;
use zeroformer::optim::{Adam, AdamConfig, LrSchedule, Optimizer, ParamGroup, Sgd, clip_grad_norm};
use zeroformer::prelude::*;

/// Five steps on `sum((x w + b - y)²)` from the fixture's start; returns (w, b, norms).
fn run(
    f: &Fixture,
    make: impl Fn(Vec<ParamGroup>) -> Box<dyn Optimizer>,
    decay: (f32, f32),
    clip: Option<f32>,
) -> (Tensor, Tensor, Vec<f32>) {
    let (w, b) = (f.leaf("w0"), f.leaf("b0"));
    let groups = vec![
        ParamGroup {
            params: vec![("w".into(), w.clone())],
            weight_decay: decay.0,
        },
        ParamGroup {
            params: vec![("b".into(), b.clone())],
            weight_decay: decay.1,
        },
    ];
    let mut opt = make(groups);
    let (x, y) = (f.get("x"), f.get("y"));
    let mut norms = Vec::new();
    for _ in 0..5 {
        opt.zero_grad();
        x.matmul(&w).add(&b).sub(&y).square().sum().backward();
        if let Some(max) = clip {
            norms.push(clip_grad_norm(&[w.clone(), b.clone()], max).item());
        }
        opt.step();
    }
    (w, b, norms)
}

fn sgd_with_momentum_and_weight_decay_matches_pytorch(device: &Device) {
    let f = Fixture::load_on("optim", device);
    let (w, b, _) = run(&f, |g| Box::new(Sgd::new(g, 0.01, 0.9)), (0.01, 0.01), None);
    f.assert_matches("sgd_w", &w);
    f.assert_matches("sgd_b", &b);
}

test_device!(sgd_with_momentum_and_weight_decay_matches_pytorch);

fn adam_matches_pytorch(device: &Device) {
    let f = Fixture::load_on("optim", device);
    let (w, b, _) = run(
        &f,
        |g| Box::new(Adam::new(g, AdamConfig::adam(0.05))),
        (0.01, 0.01),
        None,
    );
    f.assert_matches("adam_w", &w);
    f.assert_matches("adam_b", &b);
}

test_device!(adam_matches_pytorch);

fn adamw_with_decay_groups_and_clipping_matches_pytorch(device: &Device) {
    let f = Fixture::load_on("optim", device);
    let config = AdamConfig {
        beta2: 0.99,
        ..AdamConfig::adamw(0.05)
    };
    let (w, b, norms) = run(
        &f,
        |g| Box::new(Adam::new(g, config)),
        (0.1, 0.0),
        Some(1.0),
    );
    f.assert_matches("adamw_w", &w);
    f.assert_matches("adamw_b", &b);
    f.assert_matches("adamw_norms", &Tensor::from_vec(norms, &[5]));
}

test_device!(adamw_with_decay_groups_and_clipping_matches_pytorch);

#[test]
fn warmup_cosine_follows_nanogpt() {
    let s = LrSchedule::WarmupCosine {
        max_lr: 1e-3,
        min_lr: 1e-4,
        warmup: 100,
        decay_steps: 2000,
    };
    assert!((s.lr_at(0) - 1e-3 / 101.0).abs() < 1e-10);
    assert!((s.lr_at(49) - 1e-3 * 50.0 / 101.0).abs() < 1e-10);
    // Half-way through the decay the cosine is at its midpoint.
    assert!((s.lr_at(1050) - 5.5e-4).abs() < 1e-8);
    assert_eq!(s.lr_at(5000), 1e-4);
    // Monotone decay after warmup.
    assert!((100..2000).all(|i| s.lr_at(i + 1) <= s.lr_at(i)));
}

#[test]
fn noam_peaks_at_warmup() {
    let s = LrSchedule::Noam {
        d_model: 512,
        warmup: 4000,
        factor: 1.0,
    };
    let peak = 512f32.powf(-0.5) * 4000f32.powf(-0.5);
    assert!((s.lr_at(3999) - peak).abs() < 1e-9);
    assert!(s.lr_at(1000) < peak && s.lr_at(10_000) < peak);
    // Linear rise, then inverse square root.
    assert!((s.lr_at(1999) / s.lr_at(999) - 2.0).abs() < 1e-4);
    assert!((s.lr_at(15_999) / s.lr_at(63_999) - 2.0).abs() < 1e-4);
}

#[test]
fn clipping_scales_to_the_max_norm_and_reports_the_old_norm() {
    let a = Tensor::zeros(&[2]).requires_grad();
    let b = Tensor::zeros(&[1]).requires_grad();
    a.set_grad(Some(Tensor::from_vec(vec![3.0, 0.0], &[2])));
    b.set_grad(Some(Tensor::from_vec(vec![4.0], &[1])));
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0).item();
    assert!((norm - 5.0).abs() < 1e-6);
    let (ga, gb) = (a.grad().unwrap().to_vec(), b.grad().unwrap().to_vec());
    assert!((ga[0] - 0.6).abs() < 1e-6 && (gb[0] - 0.8).abs() < 1e-6);
    // Below the limit nothing changes.
    assert!((clip_grad_norm(&[a.clone(), b.clone()], 10.0).item() - 1.0).abs() < 1e-5);
    assert!((a.grad().unwrap().to_vec()[0] - 0.6).abs() < 1e-6);
}

#[test]
fn sgd_momentum_survives_a_checkpoint() {
    use zeroformer::checkpoint::Checkpoint;
    let make = || {
        let w = Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3]).requires_grad();
        let opt = Sgd::new(
            vec![ParamGroup {
                params: vec![("w".into(), w.clone())],
                weight_decay: 0.0,
            }],
            0.1,
            0.9,
        );
        (w, opt)
    };
    let step = |w: &Tensor, opt: &mut Sgd| {
        opt.zero_grad();
        w.square().sum().backward();
        opt.step();
    };
    let (w, mut opt) = make();
    for _ in 0..3 {
        step(&w, &mut opt);
    }
    let mut ckpt = Checkpoint::default();
    ckpt.add_optimizer("optim.", &opt);
    assert!(ckpt.tensor("optim.w.momentum_buffer").is_some());
    // A fresh optimizer at the same weights, given the saved state, takes
    // the step the first one takes.
    let (w2, mut opt2) = make();
    w2.update_data(|d| d.copy_from_slice(&w.to_vec()));
    ckpt.load_optimizer("optim.", &mut opt2).unwrap();
    step(&w, &mut opt);
    step(&w2, &mut opt2);
    assert_eq!(w.to_vec(), w2.to_vec());
    // Without the state, the step differs: the test compares something.
    let (w3, mut opt3) = make();
    w3.update_data(|d| d.copy_from_slice(&w2.to_vec()));
    step(&w3, &mut opt3);
    step(&w2, &mut opt2);
    assert_ne!(w3.to_vec(), w2.to_vec());
}
