//! Weight-only int8 decoding: the product against the dequantized weights,
//! training untouched, and greedy agreement with f32 on a trained model.

mod common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use zeroformer::prelude::*;
use zeroformer::tokenizer::CharTokenizer;
use zeroformer::train::{TrainConfig, Trainer};

#[test]
fn the_int8_product_is_the_product_with_dequantized_weights() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let w = Tensor::randn(&[33, 70], &mut rng);
    let x = Tensor::randn(&[2, 5, 70], &mut rng);
    let q = w.quantize_rows_int8();
    let dequantized = q.q.to_dtype(DType::F32).mul(&q.scales.unsqueeze(1));
    let want = x.matmul(&dequantized.t()).to_vec();
    let got = x.matmul_int8(&q);
    assert_eq!(got.shape(), &[2, 5, 33]);
    for (a, b) in got.to_vec().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
    // Every weight within half a quantization step.
    let err = dequantized.sub(&w).abs().to_vec();
    let steps = q.scales.to_vec();
    for (i, e) in err.iter().enumerate() {
        assert!(*e <= steps[i / 70] / 2.0 + 1e-7);
    }
}

#[test]
fn training_still_uses_the_f32_weights() {
    let config = GptConfig {
        vocab_size: 11,
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        dropout: 0.0,
        bias: true,
        ..GptConfig::default()
    };
    let mut model = config.init(&Device::Cpu, 3).unwrap();
    let ids = Tensor::from_ids((0..16).map(|i| i % 11).collect(), &[2, 8]);
    let before = model.forward(&ids, Default::default()).logits.to_vec();
    model.quantize_int8();
    // With gradients on, the forward is the f32 one, bit for bit.
    assert_eq!(
        model.forward(&ids, Default::default()).logits.to_vec(),
        before
    );
    let quantized = no_grad(|| model.forward(&ids, Default::default()).logits).to_vec();
    assert_ne!(quantized, before);
    let worst = quantized
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.05, "{worst}");
    model.drop_int8();
    assert_eq!(
        no_grad(|| model.forward(&ids, Default::default()).logits).to_vec(),
        before
    );
}

#[test]
fn greedy_tokens_agree_with_f32_on_a_trained_model() {
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let tok = CharTokenizer::from_text(&text);
    let ids = tok.encode(&text).unwrap();
    let split = ids.len() * 9 / 10;
    let config = GptConfig {
        vocab_size: tok.vocab_size(),
        block_size: 64,
        n_layer: 2,
        n_head: 4,
        n_embd: 64,
        dropout: 0.0,
        bias: true,
        ..GptConfig::default()
    };
    let mut train = TrainConfig::nanogpt_cpu(300);
    (train.batch_size, train.warmup) = (16, 30);
    let mut trainer = Trainer::new(config.init(&Device::Cpu, train.seed).unwrap(), train).unwrap();
    for _ in 0..300 {
        trainer.train_step(&ids[..split]).unwrap();
    }
    let val = &ids[split..];
    let mut model = trainer.model;
    let (mut agree, mut steps) = (0usize, 0usize);
    for p in 0..8 {
        let prompt = &val[p * 1000..p * 1000 + 16];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        model.drop_int8();
        let path = zeroformer::generation::generate(
            &model,
            prompt,
            48,
            &zeroformer::generation::Sampling::GREEDY,
            &mut rng,
        )
        .unwrap();
        let x = Tensor::from_ids(path.clone(), &[1, path.len()]);
        let f32_logits = no_grad(|| model.forward(&x, Default::default()).logits);
        model.quantize_int8();
        let int8_logits = no_grad(|| model.forward(&x, Default::default()).logits);
        let v = tok.vocab_size();
        let argmax = |l: &[f32]| {
            l.iter()
                .enumerate()
                .fold(0, |b, (i, &x)| if x > l[b] { i } else { b })
        };
        let (a, b) = (f32_logits.to_vec(), int8_logits.to_vec());
        // Positions 15.. predict the 48 greedy tokens.
        for t in 15..path.len() - 1 {
            let (fa, qa) = (
                argmax(&a[t * v..(t + 1) * v]),
                argmax(&b[t * v..(t + 1) * v]),
            );
            assert_eq!(fa as i64, path[t + 1], "the f32 path is greedy");
            agree += usize::from(fa == qa);
            steps += 1;
        }
    }
    let share = agree as f64 / steps as f64;
    assert!(
        share >= 0.99,
        "int8 picks the f32 token at {agree} of {steps} greedy steps"
    );
    eprintln!("int8 agrees with f32 at {agree} of {steps} greedy steps");
}
