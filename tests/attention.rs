//! The fused, flash-style attention op against the composed reference
//! (matmul, masked softmax, matmul): output and all three gradients, for
//! causal and bidirectional attention, key padding, cross-attention
//! lengths, cached offsets, sliding windows and lengths that are not a
//! multiple of the tile.

#[macro_use]
mod common;

use zeroformer::nn::AttentionMask;
use zeroformer::prelude::*;

/// Normal samples on `device`, requiring grad.
fn randn(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    Tensor::randn(shape, &mut StdRng::seed_from_u64(seed))
        .to_device(device)
        .unwrap()
        .requires_grad()
}

/// The composed attention every fused result must equal.
fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: AttentionMask, past: usize) -> Tensor {
    let (batch, tq, tk, d) = (q.shape()[0], q.shape()[2], k.shape()[2], q.shape()[3]);
    let mut hidden = Vec::new();
    for b in 0..batch {
        for i in 0..tq {
            for j in 0..tk {
                let pad = mask
                    .key_padding
                    .is_some_and(|p| p.to_vec_bool()[b * tk + j]);
                let outside_window = mask.window.is_some_and(|w| j + w <= past + i);
                hidden.push(pad || (mask.causal && j > past + i) || outside_window);
            }
        }
    }
    let hidden = q.new_bools(hidden, &[batch, 1, tq, tk]);
    q.matmul(&k.transpose(-1, -2))
        .mul_scalar(1.0 / (d as f32).sqrt())
        .masked_fill(&hidden, f32::NEG_INFINITY)
        .softmax(-1)
        .matmul(v)
}

fn assert_close(what: &str, fused: &Tensor, composed: &Tensor) {
    assert_eq!(fused.shape(), composed.shape(), "{what}: shape");
    let (a, b) = (fused.to_vec(), composed.to_vec());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1e-5 * y.abs() + 1e-6))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1.0,
        "{what}: a difference of {worst:.2}x the tolerance (1e-5 relative + 1e-6)"
    );
}

/// Runs both versions on the same inputs and output gradient and compares.
fn check(
    device: &Device,
    shape_q: [usize; 4],
    tk: usize,
    mask: AttentionMask,
    past: usize,
    seed: u64,
) {
    let [b, h, tq, d] = shape_q;
    let (q, k, v) = (
        randn(&[b, h, tq, d], seed, device),
        randn(&[b, h, tk, d], seed + 1, device),
        randn(&[b, h, tk, d], seed + 2, device),
    );
    let g = randn(&[b, h, tq, d], seed + 3, device).detach();
    let fused = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, past);
    fused.backward_with(&g);
    let grads: Vec<Tensor> = [&q, &k, &v].iter().map(|t| t.grad().unwrap()).collect();
    [&q, &k, &v].iter().for_each(|t| t.zero_grad());
    let composed = reference(&q, &k, &v, mask, past);
    composed.backward_with(&g);
    let what = format!(
        "q {shape_q:?} tk {tk} causal {} window {:?} past {past}",
        mask.causal, mask.window
    );
    assert_close(&format!("{what}: output"), &fused, &composed);
    for (name, (t, fused_grad)) in ["dq", "dk", "dv"]
        .iter()
        .zip([&q, &k, &v].iter().zip(&grads))
    {
        assert_close(&format!("{what}: {name}"), fused_grad, &t.grad().unwrap());
    }
}

fn causal_self_attention_across_tile_boundaries(device: &Device) {
    for (t, d) in [(1, 8), (5, 8), (64, 16), (70, 32), (130, 64)] {
        check(device, [2, 3, t, d], t, AttentionMask::CAUSAL, 0, t as u64);
    }
}

test_device!(causal_self_attention_across_tile_boundaries);

fn sliding_window_across_tile_boundaries(device: &Device) {
    // Windows of one key, inside a tile, a tile's width, across tiles, and
    // wider than the sequence (the causal mask alone).
    for (t, w) in [(70, 1), (70, 5), (130, 64), (200, 100), (33, 50)] {
        let mask = AttentionMask::sliding(Some(w));
        check(device, [2, 2, t, 16], t, mask, 0, 200 + w as u64);
    }
    // New queries behind a cache: positions 197..200 over 200 keys, of
    // which each sees the last 50.
    check(
        device,
        [1, 2, 3, 16],
        200,
        AttentionMask::sliding(Some(50)),
        197,
        210,
    );
    // With key padding: sequence 1's keys 40.. are padding, so its last
    // queries see nothing in their window of 20.
    let pad: Vec<bool> = (0..2 * 90).map(|i| i >= 90 + 40).collect();
    let pad = Tensor::from_bools(pad, &[2, 90]).to_device(device).unwrap();
    let padded = AttentionMask {
        key_padding: Some(&pad),
        ..AttentionMask::sliding(Some(20))
    };
    check(device, [2, 2, 90, 8], 90, padded, 0, 220);
}

test_device!(sliding_window_across_tile_boundaries);

fn bidirectional_and_cross_attention(device: &Device) {
    check(device, [2, 2, 37, 16], 37, AttentionMask::NONE, 0, 10);
    // Queries and keys of different lengths, either way round.
    check(device, [2, 2, 7, 16], 150, AttentionMask::NONE, 0, 20);
    check(device, [1, 2, 150, 8], 9, AttentionMask::NONE, 0, 30);
}

test_device!(bidirectional_and_cross_attention);

fn key_padding_alone_and_with_the_causal_mask(device: &Device) {
    let tk = 100;
    // Sequence 0 unpadded; sequence 1 has 30 padded keys at the end.
    let pad: Vec<bool> = (0..2 * tk).map(|i| i >= tk && i % tk >= 70).collect();
    let pad = Tensor::from_bools(pad, &[2, tk]).to_device(device).unwrap();
    let padded = AttentionMask {
        causal: false,
        window: None,
        key_padding: Some(&pad),
    };
    check(device, [2, 2, 80, 16], tk, padded, 0, 40);
    let both = AttentionMask {
        causal: true,
        window: None,
        key_padding: Some(&pad),
    };
    check(device, [2, 2, tk, 16], tk, both, 0, 50);
}

test_device!(key_padding_alone_and_with_the_causal_mask);

fn queries_behind_a_cache_and_rows_that_see_nothing(device: &Device) {
    // Three new queries at positions 67..70 over 70 cached-and-new keys.
    check(device, [1, 2, 3, 16], 70, AttentionMask::CAUSAL, 67, 60);
    // Left padding under a causal mask: the first query sees only padding,
    // so its output (and gradient) is zero in both versions.
    let pad = Tensor::from_bools(vec![true, true, false, false, false], &[1, 5])
        .to_device(device)
        .unwrap();
    let both = AttentionMask {
        causal: true,
        window: None,
        key_padding: Some(&pad),
    };
    check(device, [1, 1, 5, 8], 5, both, 0, 70);
    let (q, k) = (
        randn(&[1, 1, 5, 8], 1, device),
        randn(&[1, 1, 5, 8], 2, device),
    );
    let y = Tensor::scaled_dot_product_attention(&q, &k, &k, both, 0).to_vec();
    assert!(y[..16].iter().all(|&x| x == 0.0), "rows 0 and 1 see no key");
}

test_device!(queries_behind_a_cache_and_rows_that_see_nothing);

/// MultiHeadAttention takes the fused op by default; its outputs and
/// parameter gradients equal those of the composed kernel.
fn multi_head_attention_fused_by_default_equals_composed(device: &Device) {
    use zeroformer::nn::{AttentionKernel, Module, MultiHeadAttentionConfig, Rope, SharedRng};
    let (b, t, s, c, heads) = (2, 70, 9, 32, 4);
    let x = randn(&[b, t, c], 20, device);
    let memory = randn(&[b, s, c], 21, device);
    let pad_ids = x.new_ids(
        (0..b * t)
            .map(|i| if i % t >= 60 && i >= t { 0 } else { 1 })
            .collect(),
        &[b, t],
    );
    let padding = zeroformer::nn::padding_mask(&pad_ids, 0);
    let memory_padding = x.new_bools((0..b * s).map(|i| i == s + 3).collect(), &[b, s]);
    let rope = Rope::new(c / heads, 128, device).unwrap();
    let run = |kernel: AttentionKernel| {
        let mut rng = StdRng::seed_from_u64(7);
        let mut attn = MultiHeadAttentionConfig::new(c, heads)
            .std(0.2, 0.2)
            .init_with_dropout(device, &mut rng, &SharedRng::seed_from_u64(0))
            .unwrap();
        attn.kernel = kernel;
        let mask = AttentionMask {
            causal: true,
            window: None,
            key_padding: Some(&padding),
        };
        let (y, weights) = attn.self_attention(&x, mask, None, Some(&rope), false);
        assert!(weights.is_none());
        let (z, _) = attn.cross_attention(&y, &memory, Some(&memory_padding), None, false);
        z.sum().backward();
        let mut grads = vec![z.detach()];
        attn.visit_parameters("", &mut |_, p| grads.push(p.grad().unwrap()));
        grads
    };
    let (fused, composed) = (run(AttentionKernel::Fused), run(AttentionKernel::Composed));
    assert_eq!(fused.len(), 5);
    // Each weight gradient sums 140 positions' contributions, so entries
    // that cancel to near zero carry the rounding of the large terms: the
    // comparison is against the gradient's scale, max |composed|.
    for (i, (f, r)) in fused.iter().zip(&composed).enumerate() {
        let (a, b) = (f.to_vec(), r.to_vec());
        let scale = b.iter().fold(0.0f32, |m, y| m.max(y.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "output/gradient {i}: differs by {worst:e}, over 1e-5 of its scale {scale:e}"
        );
    }
}

test_device!(multi_head_attention_fused_by_default_equals_composed);

/// The backward splits work by head when there are at least as many heads
/// as threads, and by key and query tiles otherwise. The two visit the
/// same tiles in the same order, so their gradients agree bit for bit; and
/// the tile split equals the composed reference too.
fn backward_split_by_tiles_equals_split_by_heads(device: &Device) {
    let pool = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    };
    let pad = Tensor::from_bools((0..130).map(|j| j >= 120).collect(), &[1, 130])
        .to_device(device)
        .unwrap();
    let padded_causal = AttentionMask {
        causal: true,
        window: None,
        key_padding: Some(&pad),
    };
    let cases = [
        (AttentionMask::CAUSAL, 150, 150, 0),
        (AttentionMask::NONE, 70, 130, 0),
        (AttentionMask::CAUSAL, 3, 70, 67),
        (padded_causal, 130, 130, 0),
        (AttentionMask::sliding(Some(40)), 200, 200, 0),
    ];
    for (n, &(mask, tq, tk, past)) in cases.iter().enumerate() {
        let seed = 100 + 10 * n as u64;
        let (q, k, v) = (
            randn(&[1, 2, tq, 16], seed, device),
            randn(&[1, 2, tk, 16], seed + 1, device),
            randn(&[1, 2, tk, 16], seed + 2, device),
        );
        let g = randn(&[1, 2, tq, 16], seed + 3, device).detach();
        let grads = |threads: usize| {
            pool(threads).install(|| {
                Tensor::scaled_dot_product_attention(&q, &k, &v, mask, past).backward_with(&g);
            });
            let out: Vec<Vec<f32>> = [&q, &k, &v]
                .iter()
                .map(|t| t.grad().unwrap().to_vec())
                .collect();
            [&q, &k, &v].iter().for_each(|t| t.zero_grad());
            out
        };
        assert_eq!(grads(1), grads(8), "case {n}: by heads vs by tiles");
        pool(8).install(|| check(device, [1, 2, tq, 16], tk, mask, past, seed));
    }
}

test_device!(backward_split_by_tiles_equals_split_by_heads);
