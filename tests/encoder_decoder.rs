//! The encoder and the encoder-decoder behave as they must: padding changes
//! no unpadded output, the decoder is causal, cached greedy decoding equals
//! uncached, both norm placements train, and the position encodings obey
//! their formulas.

#[macro_use]
mod common;

use zeroformer::data::digits::{self, DigitTask};
use zeroformer::generation::{GenerationConfig, Seq2SeqLm, generate_batch};
use zeroformer::models::{EncoderConfig, EncoderDecoder, EncoderDecoderConfig};
use zeroformer::nn::{NormKind, NormPlacement, Positional, Rope, padding_mask, sinusoidal_table};
use zeroformer::optim::{Adam, AdamConfig, LrSchedule, Optimizer, ParamGroup};
use zeroformer::prelude::*;

fn ids(values: &[i64], shape: &[usize], device: &Device) -> Tensor {
    Tensor::from_ids_on(values.to_vec(), shape, device).unwrap()
}

/// `t` on `device`.
fn on(device: &Device, t: Tensor) -> Tensor {
    t.to_device(device).unwrap()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

fn encoder_decoder(
    placement: NormPlacement,
    positional: Positional,
    device: &Device,
) -> EncoderDecoder {
    let mut config = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 16).unwrap();
    config.layer.dropout = 0.0;
    config.layer.placement = placement;
    config.positional = positional;
    let model = config.init(&Device::Cpu, 3).unwrap();
    model.to_device(device).unwrap();
    model
}

#[test]
fn sinusoidal_encodings_match_the_formula() {
    let (len, dim) = (50, 16);
    let table = sinusoidal_table(len, dim, &Device::Cpu).unwrap().to_vec();
    for pos in 0..len {
        for i in 0..dim / 2 {
            let angle = pos as f64 / 10000f64.powf(2.0 * i as f64 / dim as f64);
            let (s, c) = (table[pos * dim + 2 * i], table[pos * dim + 2 * i + 1]);
            assert!((s as f64 - angle.sin()).abs() < 1e-6, "sin at {pos}, {i}");
            assert!((c as f64 - angle.cos()).abs() < 1e-6, "cos at {pos}, {i}");
        }
    }
}

fn rope_preserves_norms_and_scores_depend_only_on_relative_position(device: &Device) {
    let rope = Rope::new(8, 64, device).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let (q, k) = (
        on(device, Tensor::randn(&[1, 8], &mut rng)),
        on(device, Tensor::randn(&[1, 8], &mut rng)),
    );
    let norm = |t: &Tensor| t.square().sum().item().sqrt();
    for pos in [0, 1, 7, 40] {
        let r = rope.apply(&q, pos);
        assert!((norm(&r) - norm(&q)).abs() < 1e-5, "norm at {pos}");
    }
    let score = |m: usize, n: usize| rope.apply(&q, m).mul(&rope.apply(&k, n)).sum().item();
    // Same offset m - n = 3 at different absolute positions.
    let reference = score(3, 0);
    for (m, n) in [(5, 2), (20, 17), (63, 60)] {
        assert!(
            (score(m, n) - reference).abs() < 1e-4,
            "score({m}, {n}) = {} vs {reference}",
            score(m, n)
        );
    }
    // A different offset gives a different score.
    assert!((score(4, 0) - reference).abs() > 1e-3);
}

test_device!(rope_preserves_norms_and_scores_depend_only_on_relative_position);

fn encoder_outputs_ignore_padding(device: &Device) {
    for positional in [Positional::Learned, Positional::Rotary] {
        let mut config = EncoderConfig::preset("encoder-tiny", 20, 3, 16).unwrap();
        config.layer.dropout = 0.0;
        config.positional = positional;
        let model = config.init(&Device::Cpu, 4).unwrap();
        model.to_device(device).unwrap();
        // Sequence B alone, then batched beside a longer A with padding
        // (token 0) and garbage after it (token 9, still marked padding).
        let alone = model.forward(&ids(&[3, 4, 5, 6], &[1, 4], device), None);
        let batch = ids(&[7, 8, 9, 10, 11, 12, 3, 4, 5, 6, 0, 9], &[2, 6], device);
        let mut pad = padding_mask(&batch, 0).to_vec_bool();
        pad[11] = true;
        let pad = batch.new_bools(pad, &[2, 6]);
        let batched = model.forward(&batch, Some(&pad));
        let b_rows = batched.narrow(0, 1, 1).narrow(1, 0, 4);
        assert_close(&b_rows.to_vec(), &alone.to_vec(), 1e-5, "encoder output");
        // Pooled and classified, too.
        let logits = model.classify(&batch, Some(&pad));
        let alone_logits = model.classify(&ids(&[3, 4, 5, 6], &[1, 4], device), None);
        assert_close(
            &logits.narrow(0, 1, 1).to_vec(),
            &alone_logits.to_vec(),
            1e-5,
            "class logits",
        );
    }
}

test_device!(encoder_outputs_ignore_padding);

fn cross_attention_ignores_source_padding(device: &Device) {
    let model = encoder_decoder(NormPlacement::Post, Positional::Sinusoidal, device);
    let tgt = ids(&[1, 5, 6], &[1, 3], device);
    let alone = model.forward(&ids(&[4, 5, 6, 7], &[1, 4], device), &tgt, None, None);
    let padded_src = ids(&[4, 5, 6, 7, 0, 0, 11], &[1, 7], device);
    let pad = padded_src.new_bools(vec![false, false, false, false, true, true, true], &[1, 7]);
    let padded = model.forward(&padded_src, &tgt, Some(&pad), None);
    assert_close(&padded.to_vec(), &alone.to_vec(), 1e-5, "decoder logits");
}

test_device!(cross_attention_ignores_source_padding);

fn decoder_is_causal(device: &Device) {
    let model = encoder_decoder(NormPlacement::Pre, Positional::Sinusoidal, device);
    let src = ids(&[4, 5, 6, 7], &[1, 4], device);
    let a = model.forward(&src, &ids(&[1, 5, 6, 7, 8], &[1, 5], device), None, None);
    let b = model.forward(&src, &ids(&[1, 5, 6, 2, 3], &[1, 5], device), None, None);
    let v = 12;
    let (a, b) = (a.to_vec(), b.to_vec());
    assert_close(&a[..3 * v], &b[..3 * v], 0.0, "logits before the change");
    assert!(
        a[3 * v..]
            .iter()
            .zip(&b[3 * v..])
            .any(|(x, y)| (x - y).abs() > 1e-4),
        "later logits must see the change"
    );
}

test_device!(decoder_is_causal);

fn cached_decoding_equals_uncached(device: &Device) {
    for (placement, positional) in [
        (NormPlacement::Post, Positional::Sinusoidal),
        (NormPlacement::Pre, Positional::Rotary),
        (NormPlacement::Pre, Positional::Learned),
    ] {
        let model = encoder_decoder(placement, positional, device);
        let src = ids(&[4, 5, 6, 7, 8, 9, 0, 0], &[2, 4], device);
        let pad = padding_mask(&src, 0);
        // Logits of a teacher-forced target, whole and one token at a time.
        let tgt = ids(&[1, 5, 6, 7, 1, 9, 8, 2], &[2, 4], device);
        let memory = model.encode(&src, Some(&pad));
        let whole = model.decode(&tgt, &memory, Some(&pad), None, None);
        let mut cache = Default::default();
        for t in 0..4 {
            let step = model.decode(
                &tgt.narrow(1, t, 1).contiguous(),
                &memory,
                Some(&pad),
                None,
                Some(&mut cache),
            );
            assert_close(
                &step.to_vec(),
                &whole.narrow(1, t, 1).to_vec(),
                1e-5,
                &format!("{placement:?} {positional:?} step {t}"),
            );
        }
        let decoder = model.condition(&src, Some(&pad));
        let cached =
            generate_batch(&decoder, &[vec![1], vec![1]], &GenerationConfig::new(6)).unwrap();
        let cached: Vec<Vec<i64>> = cached.into_iter().map(|g| g.tokens).collect();
        assert_eq!(cached, greedy_uncached(&model, &src, &pad, 6));
    }
}

test_device!(cached_decoding_equals_uncached);

/// Greedy decoding from start token 1 that runs the decoder over the whole
/// prefix at every step: the reference for the cached generation.
fn greedy_uncached(
    model: &EncoderDecoder,
    src: &Tensor,
    pad: &Tensor,
    steps: usize,
) -> Vec<Vec<i64>> {
    let memory = model.encode(src, Some(pad));
    let rows = src.shape()[0];
    let mut seqs = vec![vec![1i64]; rows];
    for _ in 0..steps {
        let t = seqs[0].len();
        let ids = src.new_ids(seqs.concat(), &[rows, t]);
        let logits = model.decode(&ids, &memory, Some(pad), None, None);
        let next = logits
            .narrow(1, t - 1, 1)
            .argmax_dim(-1, false)
            .to_vec_i64();
        seqs.iter_mut().zip(next).for_each(|(s, n)| s.push(n));
    }
    seqs.into_iter().map(|s| s[1..].to_vec()).collect()
}

/// Trains on the copy task of `len` digits with Adam under the Noam
/// schedule, cooled linearly to zero over the last 20% of the steps as
/// examples/seq2seq does; returns the mean loss of the first and last five
/// steps.
fn train_copy(model: &EncoderDecoder, steps: usize, len: usize, device: &Device) -> (f32, f32) {
    let d_model = model.config.layer.d_model;
    let schedule = LrSchedule::Noam {
        d_model,
        warmup: 100,
        factor: 0.25,
    };
    let mut opt = Adam::new(
        vec![ParamGroup {
            params: model.named_parameters(),
            weight_decay: 0.0,
        }],
        AdamConfig {
            beta2: 0.98,
            eps: 1e-9,
            ..AdamConfig::adam(0.0)
        },
    );
    let mut rng = StdRng::seed_from_u64(5);
    let mut losses = Vec::new();
    // Without the cooldown the last steps' loss spikes decided the result:
    // 600 steps reached >= 190/200 on 2 to 4 of 6 data seeds, whichever
    // exp kernel the attention used.
    let cooldown = (steps as f32 * 0.2).max(1.0);
    for step in 0..steps {
        let remaining = (steps - step) as f32;
        opt.set_lr(schedule.lr_at(step) * (remaining / cooldown).min(1.0));
        let b = digits::batch(DigitTask::Copy, 16, len, &mut rng);
        let [source, target_in, target_out] =
            [b.source, b.target_in, b.target_out].map(|t| on(device, t));
        let logits = model.forward(&source, &target_in, None, None);
        let n = 16 * len;
        let loss = logits
            .reshape(&[n, digits::VOCAB_SIZE])
            .cross_entropy(&target_out.reshape(&[n]));
        losses.push(loss.item());
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    let first = losses[..5].iter().sum::<f32>() / 5.0;
    let last = losses[steps - 5..].iter().sum::<f32>() / 5.0;
    (first, last)
}

// Learning to copy takes hundreds of steps, so the two tests below run on
// the CPU only; on a device, tests/cuda.rs checks an encoder-decoder's
// training step by step against the CPU's losses instead, the stronger
// check and a few seconds rather than minutes on the simulated GPU.
#[test]
fn copy_task_is_solved_by_greedy_decoding() {
    // A small version of examples/seq2seq.
    let device = &Device::Cpu;
    let model = encoder_decoder(NormPlacement::Post, Positional::Sinusoidal, device);
    let (_, last) = train_copy(&model, 600, 6, device);
    let b = digits::batch(DigitTask::Copy, 200, 6, &mut StdRng::seed_from_u64(99));
    let starts = vec![vec![digits::START]; 200];
    let decoder = model.condition(&on(device, b.source), None);
    let out = generate_batch(&decoder, &starts, &GenerationConfig::new(6)).unwrap();
    let want = b.target_out.to_vec_i64();
    let got: Vec<i64> = out.into_iter().flat_map(|g| g.tokens).collect();
    let exact = want
        .chunks(6)
        .zip(got.chunks(6))
        .filter(|(w, g)| w == g)
        .count();
    println!("copy: final loss {last:.4}, exact match {exact}/200");
    assert!(exact >= 190, "exact match {exact}/200 after training");
}

// Rotary positions are left out here: they reach only self-attention, so
// cross-attention has no position to align source and target by.
#[test]
fn post_norm_and_pre_norm_both_learn_to_copy() {
    let device = &Device::Cpu;
    for (placement, norm, positional) in [
        (
            NormPlacement::Post,
            NormKind::LayerNorm,
            Positional::Sinusoidal,
        ),
        (
            NormPlacement::Pre,
            NormKind::RmsNorm,
            Positional::Sinusoidal,
        ),
        (NormPlacement::Pre, NormKind::LayerNorm, Positional::Learned),
    ] {
        let mut config = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 16).unwrap();
        config.layer.dropout = 0.0;
        config.layer.placement = placement;
        config.layer.norm = norm;
        config.positional = positional;
        let model = config.init(&Device::Cpu, 11).unwrap();
        model.to_device(device).unwrap();
        let (first, last) = train_copy(&model, 400, 6, device);
        println!("{placement:?} {norm:?} {positional:?}: loss {first:.3} -> {last:.3}");
        assert!(first > 2.0, "starts near ln 10: {first}");
        assert!(last < 0.2, "{placement:?}: copy loss only fell to {last}");
    }
}

#[test]
fn configs_round_trip_through_json_and_presets_validate() {
    let mut config = EncoderDecoderConfig::preset("transformer-base", 100, 120, 64).unwrap();
    config.layer.activation = zeroformer::nn::Activation::Gelu(GeluApproximation::Tanh);
    config.positional = Positional::Rotary;
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(
        serde_json::from_str::<EncoderDecoderConfig>(&json).unwrap(),
        config
    );
    let encoder = EncoderConfig::preset("bert-mini", 100, 4, 32).unwrap();
    let json = serde_json::to_string(&encoder).unwrap();
    assert_eq!(
        serde_json::from_str::<EncoderConfig>(&json).unwrap(),
        encoder
    );
    // Unknown presets and impossible shapes are errors, not panics.
    assert!(EncoderDecoderConfig::preset("transformer-huge", 10, 10, 8).is_err());
    assert!(EncoderConfig::preset("bert-huge", 10, 2, 8).is_err());
    let mut bad = EncoderConfig::preset("encoder-tiny", 10, 2, 8).unwrap();
    bad.layer.n_head = 5;
    assert!(bad.init(&Device::Cpu, 0).is_err());
}
