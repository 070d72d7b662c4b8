//! Flash-style scaled dot-product attention on the CPU: queries and keys in
//! tiles, an online softmax, and a backward that recomputes probabilities
//! tile by tile from each row's logsumexp. Memory is O(T·d) per head; the
//! T x T score matrix never exists.
//!
//! Layout: `q` is `[bh, tq, d]`, `k` and `v` are `[bh, tk, d]`, all
//! contiguous, where `bh` runs over batch x heads. Work is split across
//! rayon threads by (batch, head).

use rayon::prelude::*;

use super::gemm::{MatRef, gemm_scaled};
use super::pool;
use super::simd::{self, multiversion};

/// Query rows per tile.
const BLOCK_Q: usize = 64;
/// Key rows per tile.
const BLOCK_K: usize = 64;

/// The shape and masking of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape<'a> {
    /// Batch size and heads: `q` holds `batch · heads` matrices.
    pub batch: usize,
    pub heads: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub scale: f32,
    /// `Some(past)`: query `i` sees keys `0..=past + i` only.
    pub causal: Option<usize>,
    /// `[batch, tk]`, true where the key is padding.
    pub key_padding: Option<&'a [bool]>,
}

impl AttentionShape<'_> {
    /// Keys a block of queries `qs..qs + bq` may see: `0..end`.
    fn key_end(&self, qs: usize, bq: usize) -> usize {
        match self.causal {
            Some(past) => (past + qs + bq).min(self.tk),
            None => self.tk,
        }
    }

    fn padding_of(&self, bh: usize) -> Option<&[bool]> {
        self.key_padding
            .map(|p| &p[(bh / self.heads) * self.tk..(bh / self.heads + 1) * self.tk])
    }
}

fn rows(data: &[f32], offset: usize, d: usize) -> MatRef<'_> {
    MatRef {
        data,
        offset,
        row_stride: d,
        col_stride: 1,
    }
}

/// The transpose of `rows(data, offset, d)`.
fn cols(data: &[f32], offset: usize, d: usize) -> MatRef<'_> {
    MatRef {
        data,
        offset,
        row_stride: 1,
        col_stride: d,
    }
}

/// `scores[i, j] = scale · q_i · k_j` for a `bq x bk` tile, then hidden
/// entries set to -inf.
#[allow(clippy::too_many_arguments)]
fn score_tile(
    s: &AttentionShape,
    padding: Option<&[bool]>,
    q: &[f32],
    k: &[f32],
    qs: usize,
    bq: usize,
    ks: usize,
    bk: usize,
    scores: &mut [f32],
) {
    let d = s.d;
    gemm_scaled(
        bq,
        d,
        bk,
        s.scale,
        rows(q, qs * d, d),
        cols(k, ks * d, d),
        0.0,
        scores,
    );
    // Only tiles that cross the causal diagonal or hold padding need a mask.
    let crosses_diagonal = s.causal.is_some_and(|past| ks + bk > past + qs + 1);
    let padded = padding.is_some_and(|p| p[ks..ks + bk].contains(&true));
    if !crosses_diagonal && !padded {
        return;
    }
    for (i, row) in scores[..bq * bk].chunks_exact_mut(bk).enumerate() {
        if let Some(past) = s.causal {
            // Query qs + i sees keys up to past + qs + i.
            let visible = (past + qs + i + 1).saturating_sub(ks).min(bk);
            row[visible..].fill(f32::NEG_INFINITY);
        }
        if let Some(p) = padding {
            for (x, &pad) in row.iter_mut().zip(&p[ks..ks + bk]) {
                if pad {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

multiversion! {
    /// One step of the online softmax over a `bq x bk` score tile: each
    /// row's running maximum and sum absorb the tile, the output rows
    /// accumulated so far are rescaled to the new maximum, and the tile
    /// becomes `exp(score - max)`, ready to multiply by V.
    pub fn online_softmax_tile(
        tile: &mut [f32],
        bk: usize,
        max: &mut [f32],
        sum: &mut [f32],
        acc: &mut [f32],
        d: usize,
    ) {
        for (i, row) in tile.chunks_exact_mut(bk).enumerate() {
            let new_max = max[i].max(simd::max(row));
            if new_max == f32::NEG_INFINITY {
                // Nothing visible yet: the row stays empty.
                row.fill(0.0);
                continue;
            }
            let correction = (max[i] - new_max).exp();
            sum[i] = sum[i] * correction + simd::exp_shifted_sum(row, new_max);
            max[i] = new_max;
            if correction != 1.0 {
                acc[i * d..(i + 1) * d]
                    .iter_mut()
                    .for_each(|a| *a *= correction);
            }
        }
    }
}

multiversion! {
    /// Scores to probabilities, `exp(score - lse)` row by row; rows that see
    /// no key (lse = -inf) are all zero.
    pub fn probabilities_tile(tile: &mut [f32], bk: usize, lse: &[f32]) {
        for (row, &l) in tile.chunks_exact_mut(bk).zip(lse) {
            if l == f32::NEG_INFINITY {
                row.fill(0.0);
            } else {
                simd::exp_shifted_sum(row, l);
            }
        }
    }
}

multiversion! {
    /// The softmax backward on a tile: `dp = p ⊙ (dp - delta)` row by row.
    pub fn score_gradient_tile(p: &[f32], dp: &mut [f32], bk: usize, delta: &[f32]) {
        for ((p, dp), &di) in p.chunks_exact(bk).zip(dp.chunks_exact_mut(bk)).zip(delta) {
            for (g, &p) in dp.iter_mut().zip(p) {
                *g = p * (*g - di);
            }
        }
    }
}

/// Forward: the output `[bh, tq, d]` and each query row's logsumexp of its
/// scaled, masked scores `[bh, tq]` (-inf for a row that sees no key, whose
/// output is zero).
pub fn forward(s: &AttentionShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (bh, tq, tk, d) = (s.batch * s.heads, s.tq, s.tk, s.d);
    let mut out = pool::take(bh * tq * d);
    let mut lse = vec![0.0f32; bh * tq];
    let head = |(b, (out, lse)): (usize, (&mut [f32], &mut [f32]))| {
        let (q, k, v) = (
            &q[b * tq * d..(b + 1) * tq * d],
            &k[b * tk * d..(b + 1) * tk * d],
            &v[b * tk * d..(b + 1) * tk * d],
        );
        let padding = s.padding_of(b);
        let mut scores = vec![0.0f32; BLOCK_Q * BLOCK_K];
        let (mut max, mut sum) = (vec![0.0f32; BLOCK_Q], vec![0.0f32; BLOCK_Q]);
        for qs in (0..tq).step_by(BLOCK_Q) {
            let bq = BLOCK_Q.min(tq - qs);
            let acc = &mut out[qs * d..(qs + bq) * d];
            acc.fill(0.0);
            max[..bq].fill(f32::NEG_INFINITY);
            sum[..bq].fill(0.0);
            let end = s.key_end(qs, bq);
            for ks in (0..end).step_by(BLOCK_K) {
                let bk = BLOCK_K.min(end - ks);
                let tile = &mut scores[..bq * bk];
                score_tile(s, padding, q, k, qs, bq, ks, bk, tile);
                online_softmax_tile(tile, bk, &mut max[..bq], &mut sum[..bq], acc, d);
                gemm_scaled(
                    bq,
                    bk,
                    d,
                    1.0,
                    rows(tile, 0, bk),
                    rows(v, ks * d, d),
                    1.0,
                    acc,
                );
            }
            for i in 0..bq {
                let row = &mut acc[i * d..(i + 1) * d];
                if sum[i] == 0.0 {
                    row.fill(0.0);
                    lse[qs + i] = f32::NEG_INFINITY;
                } else {
                    let inv = 1.0 / sum[i];
                    row.iter_mut().for_each(|a| *a *= inv);
                    lse[qs + i] = max[i] + sum[i].ln();
                }
            }
        }
    };
    if tq == 0 || d == 0 {
        return (out, lse);
    }
    out.par_chunks_mut(tq * d)
        .zip(lse.par_chunks_mut(tq))
        .enumerate()
        .for_each(head);
    (out, lse)
}

/// Backward from the forward's output `o`, its logsumexp `lse` and the
/// output gradient `dout`: the gradients of `q`, `k` and `v`.
pub fn backward(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (bh, tq, tk, d) = (s.batch * s.heads, s.tq, s.tk, s.d);
    let mut dq = pool::take_zeroed(bh * tq * d);
    let mut dk = pool::take_zeroed(bh * tk * d);
    let mut dv = pool::take_zeroed(bh * tk * d);
    type Grads<'a> = ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]);
    let head = |(b, ((dq, dk), dv)): (usize, Grads)| {
        let qr = b * tq * d..(b + 1) * tq * d;
        let kr = b * tk * d..(b + 1) * tk * d;
        let (q, o, dout) = (&q[qr.clone()], &o[qr.clone()], &dout[qr]);
        let (k, v) = (&k[kr.clone()], &v[kr]);
        let lse = &lse[b * tq..(b + 1) * tq];
        let padding = s.padding_of(b);
        // delta_i = Σ_d dO_i · O_i, the softmax backward's row correction.
        let delta: Vec<f32> = (0..tq)
            .map(|i| {
                let r = i * d..(i + 1) * d;
                let dot: f64 = o[r.clone()]
                    .iter()
                    .zip(&dout[r])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                dot as f32
            })
            .collect();
        let mut p = vec![0.0f32; BLOCK_Q * BLOCK_K];
        let mut dp = vec![0.0f32; BLOCK_Q * BLOCK_K];
        for qs in (0..tq).step_by(BLOCK_Q) {
            let bq = BLOCK_Q.min(tq - qs);
            let end = s.key_end(qs, bq);
            for ks in (0..end).step_by(BLOCK_K) {
                let bk = BLOCK_K.min(end - ks);
                let (p, dp) = (&mut p[..bq * bk], &mut dp[..bq * bk]);
                score_tile(s, padding, q, k, qs, bq, ks, bk, p);
                probabilities_tile(p, bk, &lse[qs..qs + bq]);
                // dV_j += Pᵀ dO_i
                let dv_tile = &mut dv[ks * d..(ks + bk) * d];
                gemm_scaled(
                    bk,
                    bq,
                    d,
                    1.0,
                    cols(p, 0, bk),
                    rows(dout, qs * d, d),
                    1.0,
                    dv_tile,
                );
                // dP = dO_i V_jᵀ, then dS = P ⊙ (dP - delta)
                gemm_scaled(
                    bq,
                    d,
                    bk,
                    1.0,
                    rows(dout, qs * d, d),
                    cols(v, ks * d, d),
                    0.0,
                    dp,
                );
                score_gradient_tile(p, dp, bk, &delta[qs..qs + bq]);
                // dQ_i += scale · dS K_j;  dK_j += scale · dSᵀ Q_i
                let dq_tile = &mut dq[qs * d..(qs + bq) * d];
                gemm_scaled(
                    bq,
                    bk,
                    d,
                    s.scale,
                    rows(dp, 0, bk),
                    rows(k, ks * d, d),
                    1.0,
                    dq_tile,
                );
                let dk_tile = &mut dk[ks * d..(ks + bk) * d];
                gemm_scaled(
                    bk,
                    bq,
                    d,
                    s.scale,
                    cols(dp, 0, bk),
                    rows(q, qs * d, d),
                    1.0,
                    dk_tile,
                );
            }
        }
    };
    if tq == 0 || tk == 0 || d == 0 {
        return (dq, dk, dv);
    }
    dq.par_chunks_mut(tq * d)
        .zip(dk.par_chunks_mut(tk * d))
        .zip(dv.par_chunks_mut(tk * d))
        .enumerate()
        .for_each(head);
    (dq, dk, dv)
}
