//! Sliding-window attention (`AttentionMask::sliding`,
//! `MultiHeadAttention::window`, `GptConfig::attention_windows`): the fused
//! op and the composed reference against PyTorch's SDPA with an explicit
//! banded mask, a GPT with local and global blocks, and generation through
//! the rolling KV cache equal to recomputing the whole sequence, past the
//! window.

#[macro_use]
mod common;

use common::Fixture;
use zeroformer::models::ForwardOptions;
use zeroformer::nn::{AttentionMask, KvCache, Module, MultiHeadAttentionConfig, SharedRng};
use zeroformer::prelude::*;

fn fused_and_composed_match_pytorch_banded_sdpa(device: &Device) {
    let f = Fixture::load_on("sliding_window_attention", device);
    let attn = MultiHeadAttentionConfig::new(8, 2)
        .bias(false)
        .init_with_dropout(
            device,
            &mut StdRng::seed_from_u64(0),
            &SharedRng::seed_from_u64(0),
        )
        .unwrap();
    // (fixture prefix, window, position of the first query)
    for (prefix, window, past) in [("", 5, 0), ("pad_", 5, 0), ("past_", 7, 17)] {
        let key = |name: &str| format!("{prefix}{name}");
        let pad = f.has(&key("pad")).then(|| {
            let flags = f.get(&key("pad"));
            flags.gt(&flags.scalar_like(0.0))
        });
        let mask = AttentionMask {
            key_padding: pad.as_ref(),
            ..AttentionMask::sliding(Some(window))
        };
        for composed in [false, true] {
            let (q, k, v) = (f.leaf(&key("q")), f.leaf(&key("k")), f.leaf(&key("v")));
            let y = if composed {
                attn.attend(&q, &k, &v, mask, past).0
            } else {
                Tensor::scaled_dot_product_attention(&q, &k, &v, mask, past)
            };
            y.backward_with(&f.get(&key("g")));
            f.assert_matches(&key("y"), &y);
            for (name, t) in [("dq", &q), ("dk", &k), ("dv", &v)] {
                f.assert_matches(&key(name), &t.grad().unwrap());
            }
        }
    }
}

test_device!(fused_and_composed_match_pytorch_banded_sdpa);

/// A window as wide as the context is the causal mask alone, bit for bit.
fn a_window_covering_the_context_is_full_attention(device: &Device) {
    let mut rng = StdRng::seed_from_u64(3);
    let mut randn = |t: usize| {
        Tensor::randn(&[2, 3, t, 16], &mut rng)
            .to_device(device)
            .unwrap()
    };
    let (q, k, v) = (randn(100), randn(100), randn(100));
    let full = Tensor::scaled_dot_product_attention(&q, &k, &v, AttentionMask::CAUSAL, 0);
    let wide =
        Tensor::scaled_dot_product_attention(&q, &k, &v, AttentionMask::sliding(Some(100)), 0);
    assert_eq!(full.to_vec(), wide.to_vec());
    let narrow =
        Tensor::scaled_dot_product_attention(&q, &k, &v, AttentionMask::sliding(Some(99)), 0);
    assert_ne!(full.to_vec(), narrow.to_vec(), "the last query loses key 0");
}

test_device!(a_window_covering_the_context_is_full_attention);

/// cpu-mini's shape, shortened: a local block (window 6), a global one, a
/// local one (window 11).
fn config() -> GptConfig {
    GptConfig {
        n_layer: 3,
        block_size: 48,
        attention_windows: vec![Some(6), None, Some(11)],
        ..GptConfig::preset("cpu-mini", 31).unwrap()
    }
}

fn ids(n: usize, device: &Device) -> (Vec<i64>, Tensor) {
    let ids: Vec<i64> = (0..n as i64).map(|i| (i * 7 + i * i / 3) % 31).collect();
    let t = Tensor::from_ids_on(ids.clone(), &[1, n], device).unwrap();
    (ids, t)
}

fn assert_near(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / (1.0 + y.abs())));
    assert!(worst <= 2e-5, "{what}: differs by {worst:e}");
}

/// Generation's cache keeps each local block's last `window` positions in a
/// ring: logits from one token at a time, and from chunks of several that
/// start past the window, equal the logits of the whole sequence at once.
fn cached_decoding_past_the_window_equals_recomputation(device: &Device) {
    let model = config().init(device, 5).unwrap();
    let n = 40;
    let (all, whole) = ids(n, device);
    let reference = model.forward(&whole, Default::default()).logits.to_vec();
    let vocab = 31;
    let row = |t: usize| &reference[t * vocab..(t + 1) * vocab];
    // Chunks: a prompt longer than both windows, single tokens past it,
    // then chunks of 3 and 9 (wider than the first window).
    let chunks = [13usize, 1, 1, 1, 1, 3, 1, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    assert_eq!(chunks.iter().sum::<usize>(), n);
    for mut cache in [KvCache::new(3), KvCache::with_capacity(3, 48)] {
        let mut at = 0;
        for &len in &chunks {
            let chunk = Tensor::from_ids_on(all[at..at + len].to_vec(), &[1, len], device).unwrap();
            let logits = model
                .forward(&chunk, ForwardOptions::default().cache(&mut cache))
                .logits
                .to_vec();
            for i in 0..len {
                let what = format!("position {} (chunk of {len})", at + i);
                assert_near(&what, &logits[i * vocab..(i + 1) * vocab], row(at + i));
            }
            at += len;
        }
        assert_eq!(cache.len(), n);
        // The local blocks hold their windows, the global one everything.
        let held: Vec<usize> = cache.layers.iter().map(|l| l.positions_held()).collect();
        assert!(held[0] == 6 && held[2] == 11 && held[1] >= n, "{held:?}");
    }
}

test_device!(cached_decoding_past_the_window_equals_recomputation);

/// Training a windowed GPT: fused attention (no dropout) and the composed
/// reference give the same loss and gradients; with dropout (composed
/// attention) the loss still falls.
fn windowed_gpt_trains_with_either_kernel(device: &Device) {
    use zeroformer::nn::AttentionKernel;
    let (_, x) = ids(32, device);
    let targets = x.narrow(1, 1, 31);
    let x = x.narrow(1, 0, 31);
    let grads = |kernel: AttentionKernel| {
        let mut model = config().init(device, 7).unwrap();
        for block in &mut model.blocks {
            block.attn.kernel = kernel;
        }
        let loss = Gpt::loss(&model.forward(&x, Default::default()).logits, &targets);
        loss.backward();
        let mut out = vec![loss.item()];
        for p in model.parameters() {
            out.extend(p.grad().unwrap().to_vec());
        }
        out
    };
    let (fused, composed) = (
        grads(AttentionKernel::Fused),
        grads(AttentionKernel::Composed),
    );
    let scale = composed.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let worst = fused
        .iter()
        .zip(&composed)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-5 * scale,
        "fused vs composed: {worst:e} of {scale:e}"
    );
}

test_device!(windowed_gpt_trains_with_either_kernel);

#[test]
fn configs_check_their_windows_and_round_trip() {
    let bad = GptConfig {
        attention_windows: vec![Some(4)],
        ..config()
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("1 entries for 3 layers"), "{e}");
    let zero = GptConfig {
        attention_windows: vec![Some(0), None, None],
        ..config()
    };
    assert!(zero.validate().is_err());
    let json = serde_json::to_string(&config()).unwrap();
    let back: GptConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config());
    // A config without the field (saved before windows existed) is all global.
    let plain = GptConfig::preset("cpu-mini", 31).unwrap();
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("attention_windows"), "{json}");
    // GPT-2's config.json cannot say it, so the HF writer refuses.
    let gpt = GptConfig {
        bias: true,
        ..config()
    }
    .init(&Device::Cpu, 0)
    .unwrap();
    let dir = std::env::temp_dir().join(format!("zf-window-{}", std::process::id()));
    let e = gpt.save_pretrained(&dir).unwrap_err().to_string();
    assert!(e.contains("sliding-window"), "{e}");
    assert!(!dir.join("config.json").exists());
}
