//! The GPT model's behaviour: parameters, causality, cached decoding,
//! attention weights, train/eval, and learning.

#[macro_use]
mod common;

use zeroformer::models::ForwardOptions;
use zeroformer::nn::{AttentionMask, KvCache};
use zeroformer::optim::{Adam, AdamConfig, Optimizer, decay_groups};
use zeroformer::prelude::*;

fn tiny(dropout: f32) -> GptConfig {
    GptConfig {
        vocab_size: 11,
        block_size: 12,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        dropout,
        bias: true,
        ..GptConfig::default()
    }
}

fn ids(values: &[i64], batch: usize, device: &Device) -> Tensor {
    Tensor::from_ids_on(values.to_vec(), &[batch, values.len() / batch], device).unwrap()
}

/// A GPT of `config` initialised from `seed`, moved to `device`.
fn gpt(config: GptConfig, seed: u64, device: &Device) -> Gpt {
    let model = config.init(&Device::Cpu, seed).unwrap();
    model.to_device(device).unwrap();
    model
}

#[test]
fn parameter_names_and_count_match_the_architecture() {
    let config = GptConfig::preset("cpu-mini", 65).unwrap();
    let model = config.init(&Device::Cpu, 0).unwrap();
    // Closed form, no biases: wte V·C + wpe T·C + L·(12C² + 2C) + C.
    let (v, t, c, l) = (65, 64, 128, 4);
    assert_eq!(
        model.num_parameters(),
        v * c + t * c + l * (12 * c * c + 2 * c) + c
    );
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names[0], "wte.weight");
    assert!(names.contains(&"blocks.0.attn.qkv.weight".to_string()));
    assert!(names.contains(&"blocks.3.mlp.proj.weight".to_string()));
    assert_eq!(names.last().unwrap(), "ln_f.weight");
    // The head is tied to wte: no separate parameter.
    assert!(!names.iter().any(|n| n.contains("head")));
    let with_bias = tiny(0.0).init(&Device::Cpu, 0).unwrap();
    assert!(
        with_bias
            .named_parameters()
            .iter()
            .any(|(n, _)| n == "blocks.1.attn.proj.bias")
    );
}

#[test]
fn gpt2_initialisation_scales_residual_projections() {
    let config = GptConfig {
        n_layer: 8,
        n_embd: 256,
        n_head: 4,
        ..GptConfig::preset("gpt-mini", 50).unwrap()
    };
    let model = config.init(&Device::Cpu, 1).unwrap();
    let std = |t: &Tensor| t.var_dim(0, false, false).sqrt().item();
    let flat = |name: &str| {
        let (_, t) = model
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap();
        t.reshape(&[t.numel()])
    };
    assert!((std(&flat("blocks.0.attn.qkv.weight")) - 0.02).abs() < 1e-3);
    assert!((std(&flat("blocks.0.mlp.proj.weight")) - 0.02 / 4.0).abs() < 2e-4);
    assert!((std(&flat("wte.weight")) - 0.02).abs() < 1e-3);
}

fn forward_under_no_grad_records_no_graph(device: &Device) {
    // The forward runs on a pool worker (`in_pool`): the caller's grad mode
    // must go with it, or evaluation would build and hold a graph.
    let model = gpt(tiny(0.0), 2, device);
    let x = ids(&[1, 5, 2, 7], 1, device);
    assert!(model.forward(&x, Default::default()).logits.is_tracked());
    assert!(!no_grad(|| model.forward(&x, Default::default()).logits).is_tracked());
}

test_device!(forward_under_no_grad_records_no_graph);

fn changing_a_future_token_never_changes_earlier_logits(device: &Device) {
    let model = gpt(tiny(0.0), 2, device);
    let a = [1, 5, 2, 7, 3, 9, 4, 0];
    let mut b = a;
    b[5] = 6;
    let (la, lb) = (
        model
            .forward(&ids(&a, 1, device), Default::default())
            .logits
            .to_vec(),
        model
            .forward(&ids(&b, 1, device), Default::default())
            .logits
            .to_vec(),
    );
    let v = 11;
    for pos in 0..8 {
        let diff = (0..v)
            .map(|j| (la[pos * v + j] - lb[pos * v + j]).abs())
            .fold(0.0f32, f32::max);
        if pos < 5 {
            assert!(diff < 1e-6, "position {pos} changed by {diff}");
        } else {
            assert!(
                diff > 1e-4,
                "position {pos} should see the change, moved only {diff}"
            );
        }
    }
}

test_device!(changing_a_future_token_never_changes_earlier_logits);

fn cached_decoding_equals_uncached(device: &Device) {
    let model = gpt(tiny(0.0), 3, device);
    let seq = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
    let batch = ids(&[seq, [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]].concat(), 2, device);
    let full = model.forward(&batch, Default::default()).logits;
    let mut cache = KvCache::default();
    // A 4-token prompt, then one token at a time.
    let mut pieces = vec![
        model
            .forward(
                &batch.narrow(1, 0, 4),
                ForwardOptions::default().cache(&mut cache),
            )
            .logits,
    ];
    for t in 4..10 {
        pieces.push(
            model
                .forward(
                    &batch.narrow(1, t, 1),
                    ForwardOptions::default().cache(&mut cache),
                )
                .logits,
        );
    }
    assert_eq!(cache.len(), 10);
    let stitched = Tensor::cat(&pieces.iter().collect::<Vec<_>>(), 1);
    let (a, b) = (full.to_vec(), stitched.to_vec());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "cached and uncached logits differ by {worst}");
}

test_device!(cached_decoding_equals_uncached);

fn attention_weights_are_causal_and_normalised(device: &Device) {
    let model = gpt(tiny(0.0), 4, device);
    let options = ForwardOptions::default().output_attentions();
    let weights = model
        .forward(&ids(&[1, 2, 3, 4, 5], 1, device), options)
        .attentions;
    assert_eq!(weights.len(), 2);
    let w = &weights[0];
    assert_eq!(w.shape(), &[1, 2, 5, 5]);
    let v = w.to_vec();
    for row in 0..10 {
        let r = &v[row * 5..row * 5 + 5];
        let query = row % 5;
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(r[query + 1..].iter().all(|&x| x == 0.0));
    }
}

test_device!(attention_weights_are_causal_and_normalised);

fn dropout_only_in_training_mode(device: &Device) {
    let model = gpt(tiny(0.5), 5, device);
    let x = ids(&[1, 2, 3, 4], 1, device);
    let (a, b) = (
        model.forward(&x, Default::default()).logits.to_vec(),
        model.forward(&x, Default::default()).logits.to_vec(),
    );
    assert_ne!(a, b, "training mode should drop different units each call");
    let (c, d) = eval_mode(|| {
        (
            model.forward(&x, Default::default()).logits.to_vec(),
            model.forward(&x, Default::default()).logits.to_vec(),
        )
    });
    assert_eq!(c, d);
    // And back on after eval mode.
    assert_ne!(model.forward(&x, Default::default()).logits.to_vec(), c);
}

test_device!(dropout_only_in_training_mode);

fn a_tiny_model_overfits_one_batch(device: &Device) {
    let model = gpt(tiny(0.0), 6, device);
    let data: Vec<i64> = (0..2 * 9).map(|i| (i * 7 % 11) as i64).collect();
    let batch = Tensor::from_ids_on(data, &[2, 9], device).unwrap();
    let (x, y) = (
        batch.narrow(1, 0, 8).contiguous(),
        batch.narrow(1, 1, 8).contiguous(),
    );
    let mut opt = Adam::new(
        decay_groups(model.named_parameters(), 0.0),
        AdamConfig::adamw(1e-2),
    );
    let mut first = None;
    let mut loss = f32::NAN;
    for _ in 0..150 {
        let l = Gpt::loss(&model.forward(&x, Default::default()).logits, &y);
        l.backward();
        opt.step();
        opt.zero_grad();
        loss = l.item();
        first.get_or_insert(loss);
    }
    assert!(
        (first.unwrap() - (11f32).ln()).abs() < 0.1,
        "initial loss should be about ln(vocab), was {first:?}"
    );
    assert!(loss < 0.05, "did not overfit: final loss {loss}");
}

test_device!(a_tiny_model_overfits_one_batch);

#[test]
fn bad_configs_are_errors() {
    assert!(matches!(
        GptConfig::preset("nope", 10),
        Err(Error::InvalidConfig(_))
    ));
    let bad = GptConfig {
        n_head: 3,
        ..tiny(0.0)
    };
    assert!(matches!(
        bad.init(&Device::Cpu, 0),
        Err(Error::InvalidConfig(_))
    ));
}

fn accumulating_two_half_batches_equals_one_full_batch(device: &Device) {
    let model = gpt(tiny(0.0), 7, device);
    let data: Vec<i64> = (0..4 * 9).map(|i| ((i * 5 + 3) % 11) as i64).collect();
    let batch = Tensor::from_ids_on(data, &[4, 9], device).unwrap();
    let (x, y) = (
        batch.narrow(1, 0, 8).contiguous(),
        batch.narrow(1, 1, 8).contiguous(),
    );
    let grads = |model: &Gpt| -> Vec<Vec<f32>> {
        model
            .parameters()
            .iter()
            .map(|p| p.grad().unwrap().to_vec())
            .collect()
    };

    Gpt::loss(&model.forward(&x, Default::default()).logits, &y).backward();
    let full = grads(&model);
    model.zero_grad();
    for half in 0..2 {
        let (xh, yh) = (x.narrow(0, 2 * half, 2), y.narrow(0, 2 * half, 2));
        Gpt::loss(&model.forward(&xh, Default::default()).logits, &yh)
            .mul_scalar(0.5)
            .backward();
    }
    let accumulated = grads(&model);
    for (a, b) in full.iter().flatten().zip(accumulated.iter().flatten()) {
        assert!((a - b).abs() <= 1e-6 + 1e-4 * a.abs(), "{a} vs {b}");
    }
}

test_device!(accumulating_two_half_batches_equals_one_full_batch);

fn general_masked_attention_equals_the_fused_causal_path(device: &Device) {
    // The general masked path (a causal mask combined with a padding mask
    // that hides nothing) against the fused causal softmax.
    let model = gpt(tiny(0.0), 8, device);
    let attn = &model.blocks[0].attn;
    let mut rng = StdRng::seed_from_u64(9);
    let mut randn = || {
        Tensor::randn(&[1, 2, 5, 8], &mut rng)
            .to_device(device)
            .unwrap()
    };
    let (q, k, v) = (randn(), randn(), randn());
    let no_padding = q.new_bools(vec![false; 5], &[1, 5]);
    let mask = AttentionMask {
        causal: true,
        window: None,
        key_padding: Some(&no_padding),
    };
    let (y, weights) = attn.attend(&q, &k, &v, mask, 0);
    let fused = q
        .matmul(&k.transpose(-1, -2))
        .causal_softmax(1.0 / 8f32.sqrt(), 0);
    for (a, b) in weights.to_vec().iter().zip(fused.to_vec()) {
        assert!((a - b).abs() < 1e-6);
    }
    for (a, b) in y.to_vec().iter().zip(fused.matmul(&v).to_vec()) {
        assert!((a - b).abs() < 1e-5);
    }
}

test_device!(general_masked_attention_equals_the_fused_causal_path);

fn evaluation_and_generation_leave_the_training_mode_alone(device: &Device) {
    use zeroformer::generation::{Sampling, generate};
    let model = gpt(tiny(0.5), 9, device);
    let x = ids(&[1, 2, 3, 4], 1, device);
    // In eval mode dropout is off: two forwards agree.
    let (a, b) = eval_mode(|| {
        (
            model.forward(&x, Default::default()).logits.to_vec(),
            model.forward(&x, Default::default()).logits.to_vec(),
        )
    });
    assert_eq!(a, b);
    let tokens: Vec<i64> = (0..40).map(|i| i % 11).collect();
    let first = model.evaluate(&tokens, 2);
    assert_eq!(
        model.evaluate(&tokens, 2),
        first,
        "evaluation is deterministic"
    );
    let mut rng = StdRng::seed_from_u64(0);
    generate(&model, &[1, 2], 3, &Sampling::GREEDY, &mut rng).unwrap();
    // Still in training mode afterwards: dropout draws anew each call.
    assert_ne!(
        model.forward(&x, Default::default()).logits.to_vec(),
        model.forward(&x, Default::default()).logits.to_vec()
    );
}

test_device!(evaluation_and_generation_leave_the_training_mode_alone);
