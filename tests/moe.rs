//! The Mixture-of-Experts feed-forward (`nn::MoeFeedForward`): output,
//! router losses and every gradient against a PyTorch reference written
//! from the papers' formulas (`scripts/make_fixtures.py
//! moe_feed_forward`), for top-1 and top-2 routing; gradient checks through
//! the gates and the top-k choice; dropless routing.

#[macro_use]
mod common;

use common::Fixture;
use zeroformer::gradcheck::GradCheck;
use zeroformer::nn::{FeedForwardConfig, Module, MoeConfig, MoeFeedForward, SharedRng};
use zeroformer::prelude::*;

/// A layer of `experts` experts `8 -> 16 -> 8` without biases, top-`k`.
fn layer(experts: usize, k: usize, device: &Device) -> MoeFeedForward {
    let expert = FeedForwardConfig::new(8, 16).bias(false).std(0.5, 0.5);
    MoeConfig::new(experts, k)
        .init_with_dropout(
            &expert,
            device,
            &mut StdRng::seed_from_u64(1),
            &SharedRng::seed_from_u64(0),
        )
        .unwrap()
}

fn load(f: &Fixture, name: &str, param: &Tensor) {
    let value = f.get(name);
    assert_eq!(param.shape(), value.shape(), "{name}");
    param.update_data(|d| d.copy_from_slice(&value.to_vec()));
}

fn matches_the_pytorch_reference(device: &Device) {
    let f = Fixture::load_on("moe_feed_forward", device);
    for k in [1, 2] {
        let p = |name: &str| format!("k{k}_{name}");
        let moe = layer(4, k, device);
        load(&f, &p("router"), &moe.router.weight);
        for (e, expert) in moe.experts.iter().enumerate() {
            load(&f, &p(&format!("fc{e}")), &expert.fc.weight);
            load(&f, &p(&format!("proj{e}")), &expert.proj.weight);
        }
        let x = f.leaf(&p("x"));
        let (y, routing) = moe.forward(&x);
        let counts = routing.tokens_per_expert.to_vec();
        assert_eq!(
            counts,
            f.get(&p("counts")).to_vec(),
            "top-{k}: tokens per expert"
        );
        f.assert_matches(&p("y"), &y);
        f.assert_matches(&p("balance"), &routing.load_balancing_loss.reshape(&[1]));
        f.assert_matches(&p("z"), &routing.z_loss.reshape(&[1]));
        let loss = y
            .mul(&f.get(&p("g")))
            .sum()
            .add(&routing.load_balancing_loss.mul_scalar(0.01))
            .add(&routing.z_loss.mul_scalar(0.001));
        loss.backward();
        // The gradients sum every token's terms, which cancel: compared
        // against each gradient's scale (the reference is exact, float64).
        f.assert_matches_to_scale(&p("dx"), &x.grad().unwrap());
        f.assert_matches_to_scale(&p("drouter"), &moe.router.weight.grad().unwrap());
        for (e, expert) in moe.experts.iter().enumerate() {
            let (fc, proj) = (expert.fc.weight.grad(), expert.proj.weight.grad());
            f.assert_matches_to_scale(&p(&format!("dfc{e}")), &fc.unwrap());
            f.assert_matches_to_scale(&p(&format!("dproj{e}")), &proj.unwrap());
        }
    }
}

test_device!(matches_the_pytorch_reference);

/// The smallest gap, over tokens, between the router's k-th and (k+1)-th
/// probability: the finite-difference step must not cross it (top-k is a
/// choice, not differentiable, so a step that changed it would measure a
/// jump).
fn routing_margin(moe: &MoeFeedForward, x: &Tensor, k: usize) -> f32 {
    let probs = moe
        .router
        .forward(&x.reshape(&[x.numel() / 8, 8]))
        .softmax(-1);
    let (top, _) = probs.topk(k + 1, -1);
    let top = top.to_vec();
    top.chunks(k + 1)
        .map(|row| row[k - 1] - row[k])
        .fold(f32::INFINITY, f32::min)
}

fn gradients_through_the_gates_and_the_router(device: &Device) {
    for k in [1, 2] {
        let moe = layer(4, k, device);
        // The first inputs whose routing is clear of ties by 0.02 in
        // probability, far beyond what a step of 1e-3 moves it.
        let x = (0..)
            .map(|seed| {
                Tensor::randn(&[2, 5, 8], &mut StdRng::seed_from_u64(seed))
                    .to_device(device)
                    .unwrap()
            })
            .find(|x| routing_margin(&moe, x, k) > 0.02)
            .unwrap();
        let router = moe.router.weight.detach();
        let check = GradCheck {
            eps: 1e-3,
            ..GradCheck::default()
        };
        // The input and the router's weights, through the experts, the
        // gates (top-k's gather, the renormalisation) and both losses.
        let f = |xs: &[Tensor]| {
            let mut m = moe.clone();
            m.router.weight = xs[1].clone();
            let (y, r) = m.forward(&xs[0]);
            let losses = r
                .load_balancing_loss
                .add(&r.z_loss.mul_scalar(0.1))
                .reshape(&[1]);
            Tensor::cat(&[&y.reshape(&[80]), &losses], 0)
        };
        if let Err(e) = check.check(f, &[x.clone(), router]) {
            panic!("top-{k}: {e}");
        }
    }
}

test_device!(gradients_through_the_gates_and_the_router);

/// Every token reaches its experts however skewed the routing: with the
/// router's weights zero but for one expert's row, that expert gets every
/// token, and the output is its network's output (top-1 gate: its
/// probability).
fn dropless_under_skewed_routing(device: &Device) {
    let moe = layer(4, 1, device);
    moe.router.weight.update_data(|w| {
        w.fill(0.0);
        w[2 * 8..3 * 8].fill(3.0);
    });
    let x = Tensor::uniform(&[3, 7, 8], 0.5, 1.0, &mut StdRng::seed_from_u64(3))
        .to_device(device)
        .unwrap();
    let (y, routing) = moe.forward(&x);
    assert_eq!(
        routing.tokens_per_expert.to_vec(),
        vec![0.0, 0.0, 21.0, 0.0]
    );
    let probs = moe.router.forward(&x).softmax(-1).narrow(-1, 2, 1);
    let expected = moe.experts[2].forward(&x).mul(&probs);
    let (a, b) = (y.to_vec(), expected.to_vec());
    assert!(
        a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-6),
        "{a:?} vs {b:?}"
    );
    // The experts that received nothing get zero gradients (the grouped
    // product's, as a grouped GEMM gives); the one that did, its own.
    y.sum().backward();
    let grad = |e: usize| moe.experts[e].fc.weight.grad().unwrap().to_vec();
    assert!(grad(0).iter().all(|&g| g == 0.0));
    assert!(grad(2).iter().any(|&g| g != 0.0));
}

test_device!(dropless_under_skewed_routing);

#[test]
fn configs_are_checked() {
    for bad in [
        MoeConfig::new(1, 1),
        MoeConfig::new(4, 3),
        MoeConfig::new(2, 0),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let negative = MoeConfig {
        z_loss_coef: -1.0,
        ..MoeConfig::new(4, 2)
    };
    assert!(negative.validate().is_err());
    assert!(MoeConfig::new(8, 2).validate().is_ok());
}

/// cpu-mini's shape with 4 experts, top-1, in every other block.
fn moe_gpt() -> GptConfig {
    GptConfig {
        n_layer: 4,
        block_size: 16,
        moe: Some(MoeConfig {
            every: 2,
            z_loss_coef: 0.001,
            ..MoeConfig::new(4, 1)
        }),
        ..GptConfig::preset("cpu-mini", 29).unwrap()
    }
}

#[test]
fn a_gpt_with_experts_counts_names_and_saves_its_parameters() {
    let config = moe_gpt();
    let model = config.init(&Device::Cpu, 1).unwrap();
    let built: Vec<(String, Vec<usize>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let counted = zeroformer::nn::parameter_shapes(|| config.init(&Device::Cpu, 1)).unwrap();
    assert_eq!(counted, built);
    assert_eq!(
        config.parameter_count(),
        Some(model.num_parameters() as u64)
    );
    let names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"blocks.0.mlp.fc.weight"),
        "block 0 is dense"
    );
    assert!(names.contains(&"blocks.1.mlp.router.weight"));
    assert!(names.contains(&"blocks.3.mlp.experts.3.proj.weight"));
    // Two blocks of 4 experts: 3 more MLPs (8 C²) and a router (4 C) each.
    let dense = GptConfig {
        moe: None,
        ..config.clone()
    };
    let c = 128u64;
    assert_eq!(
        config.parameter_count().unwrap() - dense.parameter_count().unwrap(),
        2 * (3 * 8 * c * c + 4 * c)
    );
    // A checkpoint round trip, config included.
    let dir = std::env::temp_dir().join(format!("zf-moe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("moe.safetensors");
    use zeroformer::models::Persist;
    model.save(&path).unwrap();
    let back = Gpt::load(&path).unwrap();
    assert_eq!(back.config, config);
    let ids = Tensor::from_ids((0..16).collect(), &[1, 16]);
    assert_eq!(
        back.forward(&ids, Default::default()).logits.to_vec(),
        model.forward(&ids, Default::default()).logits.to_vec()
    );
    // GPT-2's format has no experts.
    let biased = GptConfig {
        bias: true,
        ..config
    }
    .init(&Device::Cpu, 1)
    .unwrap();
    let e = biased
        .save_pretrained(dir.join("hf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mixtures of experts"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Training adds the router losses to the cross-entropy; evaluation
/// reports the cross-entropy alone; the shares are read per block.
fn training_a_gpt_with_experts(device: &Device) {
    use zeroformer::train::{TrainConfig, Trainable, Trainer, mean_loss};
    let ids: Vec<i64> = (0..4 * 16).map(|i| (i * 5 + i / 3) % 29).collect();
    let targets: Vec<i64> = ids.iter().map(|&i| (i + 1) % 29).collect();
    let batch = (
        Tensor::from_ids_on(ids, &[4, 16], device).unwrap(),
        Tensor::from_ids_on(targets, &[4, 16], device).unwrap(),
    );
    let model = moe_gpt().init(device, 2).unwrap();
    let out = model.forward(&batch.0, Default::default());
    let (logits, routing) = (out.logits, out.routing);
    assert_eq!(routing.len(), 2, "blocks 1 and 3 have experts");
    let ce = Gpt::loss(&logits, &batch.1).item();
    let router = model.router_loss(&routing).unwrap().item();
    let expected = (0.01 * routing[0].load_balancing_loss.item()
        + 0.001 * routing[0].z_loss.item()
        + 0.01 * routing[1].load_balancing_loss.item()
        + 0.001 * routing[1].z_loss.item())
        / 2.0;
    assert!(
        (router - expected).abs() <= 1e-6 * expected.abs(),
        "{router} vs {expected}"
    );
    assert!((model.loss(&batch).item() - (ce + router)).abs() <= 1e-5);
    assert_eq!(mean_loss(&model, std::slice::from_ref(&batch)), ce);
    let shares = model.expert_shares(&batch.0);
    assert_eq!(shares.len(), 2);
    for row in &shares {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
    }
    // Every parameter that routing reached learns; the loss falls.
    let mut trainer = Trainer::new(
        model,
        TrainConfig {
            batch_size: 4,
            warmup: 0,
            ..TrainConfig::nanogpt_cpu(30)
        },
    )
    .unwrap();
    let first = mean_loss(&trainer.model, std::slice::from_ref(&batch));
    for _ in 0..30 {
        trainer.train_step_with(|_| batch.clone()).unwrap();
    }
    let last = mean_loss(&trainer.model, std::slice::from_ref(&batch));
    assert!(last < first - 1.0, "{first} -> {last}");
}

test_device!(training_a_gpt_with_experts);

#[test]
fn gpt_configs_with_experts_are_checked() {
    let bad = GptConfig {
        moe: Some(MoeConfig::new(1, 1)),
        ..moe_gpt()
    };
    assert!(bad.validate().is_err());
    let every_0 = GptConfig {
        moe: Some(MoeConfig {
            every: 0,
            ..MoeConfig::new(4, 1)
        }),
        ..moe_gpt()
    };
    assert!(every_0.validate().is_err());
    let json = serde_json::to_string(&moe_gpt()).unwrap();
    let back: GptConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, moe_gpt());
}

/// The experts drop their outputs as a dense MLP does: in training, not in
/// evaluation.
#[test]
fn experts_apply_dropout_in_training_only() {
    let expert = FeedForwardConfig::new(8, 16)
        .bias(false)
        .dropout(0.5)
        .std(0.5, 0.5);
    let moe = MoeConfig::new(4, 1)
        .init(&expert, &Device::Cpu, &mut StdRng::seed_from_u64(1))
        .unwrap();
    let x = Tensor::randn(&[2, 5, 8], &mut StdRng::seed_from_u64(2));
    let (a, b) = (moe.forward(&x).0.to_vec(), moe.forward(&x).0.to_vec());
    assert_ne!(a, b, "training draws a new mask each call");
    let (c, d) = zeroformer::eval_mode(|| (moe.forward(&x).0.to_vec(), moe.forward(&x).0.to_vec()));
    assert_eq!(c, d);
}
