//! Attention for a few queries against many keys: decoding, where each
//! new token's query meets the whole KV cache. The keys and values are
//! read where they lie (a cache buffer narrowed to its filled positions is
//! not contiguous), one head at a time: the scores as dot products with
//! the key rows, a softmax, and the values' rows summed with those
//! weights. The tiled kernel ([`super::attention`]) would first copy the
//! cache and transpose every key, work that grows with the context at each
//! token. The cache may hold f32 or bf16 (a bf16 model's): bf16 keys and
//! values are widened in registers as they are read.

use half::bf16;
use rayon::prelude::*;

use super::attention::AttentionShape;
use super::gemv::Weight;
use super::math::fast_exp;
use super::pool;
use super::simd::multiversion;
use crate::layout::Layout;

/// The most queries a head may have for this kernel; more go to the tiled
/// kernel, whose tiles reuse each key for many queries.
pub const MAX_QUERIES: usize = 4;

/// Where the `[tk, d]` rows of each (batch, head) of a `[batch, heads,
/// tk, d]` view start, when each row's `d` elements are contiguous; `None`
/// otherwise.
pub struct HeadRows<'a, T> {
    data: &'a [T],
    batch_stride: usize,
    head_stride: usize,
    row_stride: usize,
    offset: usize,
}

impl<'a, T> HeadRows<'a, T> {
    /// The view `layout` of `data`, if its rows are contiguous.
    pub fn new(data: &'a [T], layout: &Layout) -> Option<HeadRows<'a, T>> {
        let (shape, strides) = (layout.shape(), layout.strides());
        (shape.len() == 4 && (strides[3] == 1 || shape[3] <= 1)).then(|| HeadRows {
            data,
            batch_stride: strides[0],
            head_stride: strides[1],
            row_stride: strides[2],
            offset: layout.offset(),
        })
    }

    /// Head `h` of sequence `b` from its first row on (rows `row_stride`
    /// apart).
    fn head(&self, b: usize, h: usize) -> &[T] {
        &self.data[self.offset + b * self.batch_stride + h * self.head_stride..]
    }

    fn row(&self, b: usize, h: usize, j: usize, d: usize) -> &[T] {
        &self.head(b, h)[j * self.row_stride..j * self.row_stride + d]
    }
}

/// An element of the KV cache: f32, or bf16 widened as it is read.
pub trait CacheElement: Weight {
    /// `out += p · v` for one value row.
    fn add_scaled(out: &mut [f32], p: f32, v: &[Self]);
}

#[inline(always)]
fn add_scaled<T: Weight>(out: &mut [f32], p: f32, v: &[T]) {
    for (o, &v) in out.iter_mut().zip(v) {
        *o += p * v.to_f32();
    }
}

multiversion! {
    fn add_scaled_f32(out: &mut [f32], p: f32, v: &[f32]) {
        add_scaled(out, p, v)
    }
}

multiversion! {
    fn add_scaled_bf16(out: &mut [f32], p: f32, v: &[bf16]) {
        add_scaled(out, p, v)
    }
}

impl CacheElement for f32 {
    fn add_scaled(out: &mut [f32], p: f32, v: &[f32]) {
        add_scaled_f32(out, p, v)
    }
}

impl CacheElement for bf16 {
    fn add_scaled(out: &mut [f32], p: f32, v: &[bf16]) {
        add_scaled_bf16(out, p, v)
    }
}

/// Forward for `s.tq <= MAX_QUERIES` queries a head: the output `[bh, tq,
/// d]` and each query row's logsumexp `[bh, tq]`, as
/// [`super::attention::forward`] returns them. `q` is `[bh, tq, d]`,
/// contiguous.
pub fn forward<T: CacheElement>(
    s: &AttentionShape,
    q: &[f32],
    k: &HeadRows<T>,
    v: &HeadRows<T>,
) -> (Vec<f32>, Vec<f32>) {
    let (bh, tq, tk, d) = (s.batch * s.heads, s.tq, s.tk, s.d);
    assert!(tq <= MAX_QUERIES, "decode attention: {tq} queries a head");
    let mut out = pool::take_zeroed(bh * tq * d);
    let mut lse = pool::take(bh * tq);
    if tq == 0 || d == 0 {
        lse.fill(f32::NEG_INFINITY);
        return (out, lse);
    }
    let head = |(h, (out, lse)): (usize, (&mut [f32], &mut [f32]))| {
        let (b, head) = (h / s.heads, h % s.heads);
        let padding = s.padding_of(h);
        let keys = k.head(b, head);
        let mut scores = pool::take(tk);
        for (i, (out, lse)) in out.chunks_exact_mut(d).zip(lse.iter_mut()).enumerate() {
            // Query i sits at position past + i: it sees keys up to there,
            // from the window's first on.
            let (start, end) = (s.first_key(i), s.params.key_end(i));
            if start >= end {
                // No key seen: a zero output, as the tiled kernel gives.
                *lse = f32::NEG_INFINITY;
                continue;
            }
            let scores = &mut scores[..end - start];
            let qi = &q[(h * tq + i) * d..(h * tq + i + 1) * d];
            // The scores are the key rows' dot products with the query.
            let keys = &keys[start * k.row_stride..];
            T::dots(qi, 1, d, d, keys, k.row_stride, scores.len(), scores);
            scores.iter_mut().for_each(|x| *x *= s.scale);
            if let Some(p) = padding {
                for (s, _) in scores.iter_mut().zip(&p[start..]).filter(|(_, p)| **p) {
                    *s = f32::NEG_INFINITY;
                }
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if max == f32::NEG_INFINITY {
                // No key seen: a zero output, as the tiled kernel gives.
                *lse = f32::NEG_INFINITY;
                continue;
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = fast_exp(*s - max);
                sum += *s;
            }
            for (j, &p) in scores.iter().enumerate() {
                if p != 0.0 {
                    T::add_scaled(out, p / sum, v.row(b, head, start + j, d));
                }
            }
            *lse = max + sum.ln();
        }
        pool::give(scores);
    };
    if bh * tk * d * tq < super::attention::MIN_TASK_MACS || super::kernel_threads() == 1 {
        out.chunks_mut(tq * d)
            .zip(lse.chunks_mut(tq))
            .enumerate()
            .for_each(head);
    } else {
        out.par_chunks_mut(tq * d)
            .zip(lse.par_chunks_mut(tq))
            .enumerate()
            .for_each(head);
    }
    (out, lse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AttentionParams;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 1013) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_the_tiled_kernel_on_a_narrowed_cache() {
        let (batch, heads) = (2, 3);
        for (tq, tk, d) in [(1, 1, 1), (1, 17, 16), (2, 65, 33), (4, 70, 64), (3, 5, 8)] {
            let masks = [
                (None, None),
                (Some(tk - tq), None),
                (Some(tk - tq), Some(1)),
            ];
            let windows = [(Some(tk - tq), Some(3)), (Some(tk - tq), Some(40))];
            for (causal, window) in masks.into_iter().chain(windows) {
                for padded in [false, true] {
                    // The cache: a buffer of `capacity` positions, `tk` filled.
                    let capacity = tk + 7;
                    let buffer = |seed| values(batch * heads * capacity * d, seed);
                    let (kb, vb) = (buffer(1), buffer(2));
                    let layout = Layout::new(
                        vec![batch, heads, tk, d],
                        vec![heads * capacity * d, capacity * d, d, 1],
                        0,
                    );
                    let dense =
                        |b: &[f32]| crate::backend::cpu::strided::contiguous_copy(b, &layout);
                    let q = values(batch * heads * tq * d, 3);
                    // The second sequence's keys all padding but its first:
                    // and in one case all of them (no key seen).
                    let padding: Vec<bool> = (0..batch * tk)
                        .map(|i| i >= tk && (i > tk || tq == 3))
                        .collect();
                    let shape = AttentionShape {
                        params: AttentionParams {
                            batch,
                            heads,
                            tq,
                            tk,
                            d,
                            scale: 1.0 / (d as f32).sqrt(),
                            causal,
                            window,
                        },
                        key_padding: padded.then_some(&padding[..]),
                    };
                    let k = HeadRows::new(&kb, &layout).unwrap();
                    let v = HeadRows::new(&vb, &layout).unwrap();
                    let (out, lse) = forward(&shape, &q, &k, &v);
                    let (want, want_lse) =
                        super::super::attention::forward(&shape, &q, &dense(&kb), &dense(&vb));
                    let case = format!(
                        "tq {tq} tk {tk} d {d} causal {causal:?} window {window:?} padded {padded}"
                    );
                    for (a, b) in out.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "{case}: {a} vs {b}"
                        );
                    }
                    for (a, b) in lse.iter().zip(&want_lse) {
                        let same = (a == b) || (a - b).abs() <= 1e-5 * (1.0 + b.abs());
                        assert!(same, "{case}: logsumexp {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_bf16_cache_gives_the_bits_of_its_values_widened() {
        let (batch, heads, tq, tk, d) = (1, 2, 1, 37, 24);
        let layout = Layout::contiguous(&[batch, heads, tk, d]);
        let narrow = |x: &[f32]| -> Vec<bf16> { x.iter().map(|&v| bf16::from_f32(v)).collect() };
        let (k16, v16) = (
            narrow(&values(heads * tk * d, 4)),
            narrow(&values(heads * tk * d, 5)),
        );
        let widen = |x: &[bf16]| -> Vec<f32> { x.iter().map(|v| v.to_f32()).collect() };
        let (k32, v32) = (widen(&k16), widen(&v16));
        let q = values(heads * tq * d, 6);
        let shape = AttentionShape {
            params: AttentionParams {
                batch,
                heads,
                tq,
                tk,
                d,
                scale: 0.3,
                causal: Some(tk - tq),
                window: None,
            },
            key_padding: None,
        };
        let rows16 = |x| HeadRows::new(x, &layout).unwrap();
        let rows32 = |x| HeadRows::new(x, &layout).unwrap();
        let (out16, lse16) = forward(&shape, &q, &rows16(&k16), &rows16(&v16));
        let (out32, lse32) = forward(&shape, &q, &rows32(&k32), &rows32(&v32));
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!((bits(&out16), bits(&lse16)), (bits(&out32), bits(&lse32)));
    }
}
