//! Flash-style scaled dot-product attention on the CPU: queries and keys in
//! tiles, an online softmax, and a backward that recomputes probabilities
//! tile by tile from each row's logsumexp. Memory is O(T·d) per head; the
//! T x T score matrix never exists.
//!
//! Layout: `q` is `[bh, tq, d]`, `k` and `v` are `[bh, tk, d]`, all
//! contiguous, where `bh` runs over batch x heads. Work is split across
//! rayon threads by (batch, head).
//!
//! The inputs may be f32 or bf16 ([`AttentionElement`]): bf16 ones are
//! widened a head at a time into per-thread buffers (the keys and values
//! as they are transposed), so no f32 copy of the whole input exists; the
//! arithmetic is f32 either way, and the same bits.

use std::cell::RefCell;

use half::bf16;
use rayon::prelude::*;

use super::cast::Float;
use super::gemm::MatRef;
use super::pool;
use super::simd::{self, multiversion};
use super::tile::tile_gemm;
use crate::backend::AttentionParams;

/// Query rows per tile.
const BLOCK_Q: usize = 64;
/// Key rows per tile.
const BLOCK_K: usize = 64;

/// Query rows computed together in a tile that crosses the causal
/// diagonal: each block of this many rows stops at the last key it sees,
/// so most of the masked corner above the diagonal is never computed.
const DIAGONAL_ROWS: usize = 16;

/// Multiply-adds below which work is not handed to another rayon thread
/// (about 5 µs of it; a hand-off costs a few). Without this floor a small
/// model (seq2seq's 10-token heads) ran slower on two threads than on one.
pub(super) const MIN_TASK_MACS: usize = 1 << 18;

/// The fewest items of `macs_each` multiply-adds that one rayon task takes.
fn min_items(macs_each: usize) -> usize {
    MIN_TASK_MACS.div_ceil(macs_each.max(1))
}

/// An element attention reads: f32 in place, or bf16 widened.
pub trait AttentionElement: Float + Sync {
    /// `x` as f32: itself, or widened into `buffer` (grown as needed).
    fn as_f32<'a>(x: &'a [Self], buffer: &'a mut Vec<f32>) -> &'a [f32];
}

impl AttentionElement for f32 {
    fn as_f32<'a>(x: &'a [f32], _: &'a mut Vec<f32>) -> &'a [f32] {
        x
    }
}

impl AttentionElement for bf16 {
    fn as_f32<'a>(x: &'a [bf16], buffer: &'a mut Vec<f32>) -> &'a [f32] {
        let out = at_least(buffer, x.len());
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.widen());
        out
    }
}

/// The shape and masking of one attention call: the call's parameters
/// (read through `Deref`: `s.batch`, `s.causal`) and the key padding.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape<'a> {
    pub params: AttentionParams,
    /// `[batch, tk]`, true where the key is padding.
    pub key_padding: Option<&'a [bool]>,
}

impl std::ops::Deref for AttentionShape<'_> {
    type Target = AttentionParams;

    fn deref(&self) -> &AttentionParams {
        &self.params
    }
}

impl AttentionShape<'_> {
    /// Keys a block of queries `qs..qs + bq` may see: `0..end`.
    fn key_end(&self, qs: usize, bq: usize) -> usize {
        self.params.key_end(qs + bq.max(1) - 1)
    }

    /// Whether the causal mask or the window's lower edge hides part of
    /// the tile of queries `qs..qs + bq` and keys `ks..ks + bk`.
    fn needs_mask(&self, qs: usize, bq: usize, ks: usize, bk: usize) -> bool {
        let crosses_diagonal = self.causal.is_some_and(|past| ks + bk > past + qs + 1);
        crosses_diagonal || ks < self.first_key(qs + bq.max(1) - 1)
    }

    /// The parts of the `bq x bk` tile at (qs, ks) worth computing, as
    /// (first row within the tile, rows, keys): the whole tile, or, where a
    /// mask cuts it, blocks of [`DIAGONAL_ROWS`] rows, each cut after the
    /// last key it sees and left out when it sees none of the tile's keys.
    /// (At T = 64, a single 64 x 64 tile, the products shrink to 62.5% of
    /// it.)
    fn tile_parts(
        &self,
        qs: usize,
        bq: usize,
        ks: usize,
        bk: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let step = if self.needs_mask(qs, bq, ks, bk) {
            DIAGONAL_ROWS
        } else {
            bq.max(1)
        };
        (0..bq).step_by(step).filter_map(move |r| {
            let rows = step.min(bq - r);
            let keys = self.key_end(qs + r, rows).saturating_sub(ks).min(bk);
            let seen = keys > 0 && self.first_key(qs + r) < ks + keys;
            seen.then_some((r, rows, keys))
        })
    }

    /// The first key tile (a multiple of [`BLOCK_K`]) that the query block
    /// from `qs` meets: 0 unless a window hides the keys before it.
    fn first_tile(&self, qs: usize) -> usize {
        self.first_key(qs) / BLOCK_K * BLOCK_K
    }

    /// Every [`tile_parts`](Self::tile_parts) part the query block `qs..qs
    /// + bq` meets, in key order, as (first key, first row, rows, keys).
    fn tiles(
        &self,
        qs: usize,
        bq: usize,
    ) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        let end = self.key_end(qs, bq);
        (self.first_tile(qs)..end)
            .step_by(BLOCK_K)
            .flat_map(move |ks| {
                let bk = BLOCK_K.min(end - ks);
                self.tile_parts(qs, bq, ks, bk)
                    .map(move |(r, rows, keys)| (ks, r, rows, keys))
            })
    }

    pub(super) fn padding_of(&self, bh: usize) -> Option<&[bool]> {
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

/// Each head's `[t, d]` matrix transposed, one key tile at a time: key `j`'s
/// element `p` goes to `[j / BLOCK_K][p][j % BLOCK_K]` (a last partial tile
/// keeps the full stride). The tile products against Kᵀ and Vᵀ then read
/// contiguous rows 256 bytes apart; rows a whole `[d, t]` transpose apart
/// (a power of two of kilobytes) thrash the cache, and a transposed operand
/// would be copied once per tile pair instead of once per call.
fn transpose_tiles<T: AttentionElement>(x: &[T], t: usize, d: usize) -> Vec<f32> {
    let per_head = transposed_len(t, d);
    let mut out = pool::take(x.len() / (t * d).max(1) * per_head);
    out.par_chunks_mut(per_head.max(1))
        .zip(x.par_chunks((t * d).max(1)))
        .with_min_len(min_items(t * d))
        .for_each(|(out, x)| transpose_head(x, d, out));
    out
}

/// One head's `[t, d]` rows into [`transpose_tiles`]'s layout in `out`,
/// as f32.
fn transpose_head<T: Float>(x: &[T], d: usize, out: &mut [f32]) {
    for (tile, keys) in out.chunks_mut(BLOCK_K * d).zip(x.chunks(BLOCK_K * d)) {
        for (j, key) in keys.chunks_exact(d).enumerate() {
            for (p, &v) in key.iter().enumerate() {
                tile[p * BLOCK_K + j] = v.widen();
            }
        }
    }
}

/// The length of one head's [`transpose_tiles`] layout.
fn transposed_len(t: usize, d: usize) -> usize {
    t.div_ceil(BLOCK_K) * BLOCK_K * d
}

/// The `d x bk` operand Kᵀ (or Vᵀ) of the key tile starting at `ks` (a
/// multiple of `BLOCK_K`) in a head's [`transpose_tiles`] layout.
fn transposed_tile(xt: &[f32], ks: usize, d: usize) -> MatRef<'_> {
    rows(xt, ks * d, BLOCK_K)
}

/// `scores[i, j] = scale · q_i · k_j` for a `bq x bk` tile, then hidden
/// entries set to -inf. `kt` is the head's keys in [`transpose_tiles`]'s
/// layout.
#[allow(clippy::too_many_arguments)]
fn score_tile(
    s: &AttentionShape,
    padding: Option<&[bool]>,
    q: &[f32],
    kt: &[f32],
    qs: usize,
    bq: usize,
    ks: usize,
    bk: usize,
    scores: &mut [f32],
) {
    let d = s.d;
    tile_gemm(
        bq,
        d,
        bk,
        s.scale,
        rows(q, qs * d, d),
        transposed_tile(kt, ks, d),
        0.0,
        scores,
    );
    // Only tiles that a causal or window edge cuts, or that hold padding,
    // need a mask.
    let masked = s.needs_mask(qs, bq, ks, bk);
    let padded = padding.is_some_and(|p| p[ks..ks + bk].contains(&true));
    if !masked && !padded {
        return;
    }
    for (i, row) in scores[..bq * bk].chunks_exact_mut(bk).enumerate() {
        if masked {
            // Query qs + i sees keys first_key(qs + i) ..= past + qs + i.
            let visible = s.params.key_end(qs + i).saturating_sub(ks).min(bk);
            row[visible..].fill(f32::NEG_INFINITY);
            let hidden = s.first_key(qs + i).saturating_sub(ks).min(visible);
            row[..hidden].fill(f32::NEG_INFINITY);
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
        let bq = max.len();
        debug_assert!(bq <= BLOCK_Q && tile.len() == bq * bk);
        // The new row maxima, then every row's rescaling factor in one
        // vectorised pass (a scalar exp per row cost a quarter of the tile's
        // exps: 64 of them beside 256 vectors).
        let mut new_max = [0.0f32; BLOCK_Q];
        for ((m, row), &old) in new_max.iter_mut().zip(tile.chunks_exact(bk)).zip(&*max) {
            *m = old.max(simd::max(row));
        }
        let mut correction = [0.0f32; BLOCK_Q];
        for ((c, &new), &old) in correction.iter_mut().zip(&new_max).zip(&*max) {
            // A row with nothing visible yet keeps factor 1 (-inf - -inf is NaN).
            let e = super::math::fast_exp(old - new);
            *c = if new == f32::NEG_INFINITY { 1.0 } else { e };
        }
        for (i, row) in tile.chunks_exact_mut(bk).enumerate() {
            if new_max[i] == f32::NEG_INFINITY {
                // Nothing visible yet: the row stays empty.
                row.fill(0.0);
                continue;
            }
            let correction = correction[i];
            sum[i] = sum[i] * correction + simd::exp_shifted_sum(row, new_max[i]);
            max[i] = new_max[i];
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
                simd::exp_shifted(row, l);
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
pub fn forward<T: AttentionElement>(
    s: &AttentionShape,
    q: &[T],
    k: &[T],
    v: &[T],
) -> (Vec<f32>, Vec<f32>) {
    let (bh, tq, tk, d) = (s.batch * s.heads, s.tq, s.tk, s.d);
    let mut out = pool::take(bh * tq * d);
    let mut lse = pool::take_zeroed(bh * tq);
    if tq == 0 || d == 0 {
        return (out, lse);
    }
    let kt = transpose_tiles(k, tk, d);
    // One query tile of one head: its output rows and their logsumexp.
    let query_tile =
        |scratch: &mut Scratch, b: usize, qs: usize, acc: &mut [f32], lse: &mut [f32]| {
            let Scratch {
                scores,
                max,
                sum,
                q: q32,
                v: v32,
                ..
            } = scratch;
            let (q, kt, v) = (
                T::as_f32(&q[b * tq * d..(b + 1) * tq * d], q32),
                &kt[b * transposed_len(tk, d)..(b + 1) * transposed_len(tk, d)],
                T::as_f32(&v[b * tk * d..(b + 1) * tk * d], v32),
            );
            let padding = s.padding_of(b);
            let bq = lse.len();
            let (max, sum) = (at_least(max, bq), at_least(sum, bq));
            let scores = at_least(scores, BLOCK_Q * BLOCK_K);
            acc.fill(0.0);
            max.fill(f32::NEG_INFINITY);
            sum.fill(0.0);
            for (ks, r, n, keys) in s.tiles(qs, bq) {
                let tile = &mut scores[..n * keys];
                let acc = &mut acc[r * d..(r + n) * d];
                score_tile(s, padding, q, kt, qs + r, n, ks, keys, tile);
                let (max, sum) = (&mut max[r..r + n], &mut sum[r..r + n]);
                online_softmax_tile(tile, keys, max, sum, acc, d);
                let v = rows(v, ks * d, d);
                tile_gemm(n, keys, d, 1.0, rows(tile, 0, keys), v, 1.0, acc);
            }
            for (i, (row, lse)) in acc.chunks_exact_mut(d).zip(lse).enumerate() {
                if sum[i] == 0.0 {
                    row.fill(0.0);
                    *lse = f32::NEG_INFINITY;
                } else {
                    let inv = 1.0 / sum[i];
                    row.iter_mut().for_each(|a| *a *= inv);
                    *lse = max[i] + sum[i].ln();
                }
            }
        };
    // Parallel over heads and, inside each, over query tiles, so that a
    // batch with fewer heads than threads still fills every core.
    out.par_chunks_mut(tq * d)
        .zip(lse.par_chunks_mut(tq))
        .enumerate()
        .with_min_len(min_items(tq * tk * d))
        .for_each(|(b, (out, lse))| {
            out.par_chunks_mut(BLOCK_Q * d)
                .zip(lse.par_chunks_mut(BLOCK_Q))
                .enumerate()
                .with_min_len(min_items(BLOCK_Q * tk * d))
                .for_each(|(t, (acc, lse))| {
                    with_scratch(|scratch| query_tile(scratch, b, t * BLOCK_Q, acc, lse))
                })
        });
    pool::give(kt);
    (out, lse)
}

/// Per-thread buffers of the attention tasks, grown to the largest size
/// asked for and kept: a score (or probability) tile and its gradient, the
/// forward's running row maxima and sums, and the backward's transposed
/// keys and values of one head, and one head's bf16 inputs widened.
/// Allocated per task, they would be 16,000 of the 29,000 allocations of a
/// gpt-mini training step (156 MB, zeroed).
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    grads: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    dout: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Runs `f` on this thread's [`Scratch`]. `f` must not run rayon work: a
/// task stolen meanwhile on this thread would find the buffers borrowed.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(f)
}

impl Scratch {
    /// A probability tile and its score gradient.
    fn tiles(&mut self) -> (&mut [f32], &mut [f32]) {
        tile_pair(&mut self.scores, &mut self.grads)
    }
}

/// [`Scratch::tiles`] from the two buffers, for a caller that also borrows
/// the scratch's other fields.
fn tile_pair<'a>(
    scores: &'a mut Vec<f32>,
    grads: &'a mut Vec<f32>,
) -> (&'a mut [f32], &'a mut [f32]) {
    (
        at_least(scores, BLOCK_Q * BLOCK_K),
        at_least(grads, BLOCK_Q * BLOCK_K),
    )
}

/// The first `len` elements of `buffer`, grown (zero-filled) if shorter;
/// their contents are whatever an earlier task left.
fn at_least(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// One head's inputs and the forward's results, as the backward reads them.
struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    /// Keys and values in [`transpose_tiles`]'s layout.
    kt: &'a [f32],
    vt: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
    delta: &'a [f32],
    padding: Option<&'a [bool]>,
}

impl<'a> Head<'a> {
    /// Head `b`: its own queries, keys and output gradient (`q`, `k`,
    /// `dout`), its keys and values in [`transpose_tiles`]'s layout (`kt`,
    /// `vt`), and the batched `lse` and `delta`.
    #[allow(clippy::too_many_arguments)]
    fn of(
        s: &'a AttentionShape,
        b: usize,
        q: &'a [f32],
        k: &'a [f32],
        kt: &'a [f32],
        vt: &'a [f32],
        dout: &'a [f32],
        lse: &'a [f32],
        delta: &'a [f32],
    ) -> Head<'a> {
        let tq = s.tq;
        Head {
            q,
            k,
            kt,
            vt,
            dout,
            lse: &lse[b * tq..(b + 1) * tq],
            delta: &delta[b * tq..(b + 1) * tq],
            padding: s.padding_of(b),
        }
    }

    /// Recomputes the probabilities `p` of the `bq x bk` tile at (qs, ks)
    /// and the score gradient `ds = p ⊙ (dO_i V_jᵀ - delta)`.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        s: &AttentionShape,
        qs: usize,
        bq: usize,
        ks: usize,
        bk: usize,
        p: &mut [f32],
        ds: &mut [f32],
    ) {
        let d = s.d;
        score_tile(s, self.padding, self.q, self.kt, qs, bq, ks, bk, p);
        probabilities_tile(p, bk, &self.lse[qs..qs + bq]);
        let (dout, vt) = (rows(self.dout, qs * d, d), transposed_tile(self.vt, ks, d));
        tile_gemm(bq, d, bk, 1.0, dout, vt, 0.0, ds);
        score_gradient_tile(p, ds, bk, &self.delta[qs..qs + bq]);
    }

    /// dV_j += Pᵀ dO_i and dK_j += scale · dSᵀ Q_i for the tile at (qs, ks).
    #[allow(clippy::too_many_arguments)]
    fn key_gradients(
        &self,
        s: &AttentionShape,
        qs: usize,
        bq: usize,
        bk: usize,
        p: &[f32],
        ds: &[f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        let d = s.d;
        let (dout, q) = (rows(self.dout, qs * d, d), rows(self.q, qs * d, d));
        tile_gemm(bk, bq, d, 1.0, cols(p, 0, bk), dout, 1.0, dv);
        tile_gemm(bk, bq, d, s.scale, cols(ds, 0, bk), q, 1.0, dk);
    }

    /// dQ_i += scale · dS K_j for the tile at (ks, bk).
    fn query_gradient(&self, s: &AttentionShape, ks: usize, bk: usize, ds: &[f32], dq: &mut [f32]) {
        let d = s.d;
        let k = rows(self.k, ks * d, d);
        tile_gemm(dq.len() / d, bk, d, s.scale, rows(ds, 0, bk), k, 1.0, dq);
    }
}

/// Backward from the forward's output `o`, its logsumexp `lse` and the
/// output gradient `dout`: the gradients of `q`, `k` and `v`.
///
/// With at least as many heads as threads, each head is one task that walks
/// its tiles once. With fewer, the work splits by tile instead: one pass
/// parallel over key tiles accumulates dK and dV, another parallel over
/// query tiles accumulates dQ (each recomputes the tiles' probabilities, so
/// the split costs two extra small gemms per tile but keeps every core busy).
pub fn backward<T: AttentionElement>(
    s: &AttentionShape,
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[f32],
    dout: &[T],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (bh, tq, tk, d) = (s.batch * s.heads, s.tq, s.tk, s.d);
    let mut dq = pool::take_zeroed(bh * tq * d);
    let mut dk = pool::take_zeroed(bh * tk * d);
    let mut dv = pool::take_zeroed(bh * tk * d);
    if tq == 0 || tk == 0 || d == 0 {
        return (dq, dk, dv);
    }
    // delta_i = Σ_d dO_i · O_i, the softmax backward's row correction,
    // accumulated in f64 (in f32 it cost dQ its 1e-5 agreement at T = 130).
    let mut delta = pool::take(bh * tq);
    delta
        .par_chunks_mut(tq)
        .zip(o.par_chunks(tq * d).zip(dout.par_chunks(tq * d)))
        .with_min_len(min_items(tq * d))
        .for_each(|(delta, (o, dout))| {
            for ((x, o), g) in delta
                .iter_mut()
                .zip(o.chunks_exact(d))
                .zip(dout.chunks_exact(d))
            {
                let dot: f64 = o
                    .iter()
                    .zip(g)
                    .map(|(&a, &b)| a.widen() as f64 * b.widen() as f64)
                    .sum();
                *x = dot as f32;
            }
        });
    // The fewest heads one task takes (every branch below splits by head).
    let per_head = min_items(tq * tk * d);
    // The query tiles that see some key of the key tile from `ks`.
    let query_tiles = |ks: usize| {
        (0..tq)
            .step_by(BLOCK_Q)
            .map(|qs| (qs, BLOCK_Q.min(tq - qs)))
            .filter(move |&(qs, bq)| s.key_end(qs, bq) > ks && s.first_key(qs) < ks + BLOCK_K)
    };
    if bh >= rayon::current_num_threads() {
        type Grads<'a> = ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]);
        dq.par_chunks_mut(tq * d)
            .zip(dk.par_chunks_mut(tk * d))
            .zip(dv.par_chunks_mut(tk * d))
            .enumerate()
            .with_min_len(per_head)
            .for_each(|(b, ((dq, dk), dv)): (usize, Grads)| {
                with_scratch(|scratch| {
                    // Each task transposes its own head's keys and values:
                    // transposing every head up front held half the
                    // outputs' size more at the call's peak.
                    let (key_rows, query_rows) =
                        (b * tk * d..(b + 1) * tk * d, b * tq * d..(b + 1) * tq * d);
                    let Scratch {
                        scores,
                        grads,
                        kt,
                        vt,
                        q: q32,
                        k: k32,
                        dout: dout32,
                        ..
                    } = scratch;
                    let kt = at_least(kt, transposed_len(tk, d));
                    transpose_head(&k[key_rows.clone()], d, kt);
                    let vt = at_least(vt, transposed_len(tk, d));
                    transpose_head(&v[key_rows.clone()], d, vt);
                    let (q, k, dout) = (
                        T::as_f32(&q[query_rows.clone()], q32),
                        T::as_f32(&k[key_rows], k32),
                        T::as_f32(&dout[query_rows], dout32),
                    );
                    let h = Head::of(s, b, q, k, kt, vt, dout, lse, &delta);
                    let (p, ds) = tile_pair(scores, grads);
                    for qs in (0..tq).step_by(BLOCK_Q) {
                        let bq = BLOCK_Q.min(tq - qs);
                        for (ks, r, n, keys) in s.tiles(qs, bq) {
                            let (p, ds) = (&mut p[..n * keys], &mut ds[..n * keys]);
                            h.tile(s, qs + r, n, ks, keys, p, ds);
                            let (dk, dv) = (
                                &mut dk[ks * d..(ks + keys) * d],
                                &mut dv[ks * d..(ks + keys) * d],
                            );
                            h.key_gradients(s, qs + r, n, keys, p, ds, dk, dv);
                            let dq = &mut dq[(qs + r) * d..(qs + r + n) * d];
                            h.query_gradient(s, ks, keys, ds, dq);
                        }
                    }
                });
            });
        pool::give(delta);
        return (dq, dk, dv);
    }
    // Several tasks share a head here, so every head is transposed (and
    // widened) once, up front (few heads: little memory).
    let (kt, vt) = (transpose_tiles(k, tk, d), transpose_tiles(v, tk, d));
    let (mut q32, mut k32, mut dout32) = (Vec::new(), Vec::new(), Vec::new());
    let (q, k, dout) = (
        T::as_f32(q, &mut q32),
        T::as_f32(k, &mut k32),
        T::as_f32(dout, &mut dout32),
    );
    let per_head_len = transposed_len(tk, d);
    let head = |b: usize| {
        let this = b * per_head_len..(b + 1) * per_head_len;
        let (query_rows, key_rows) = (b * tq * d..(b + 1) * tq * d, b * tk * d..(b + 1) * tk * d);
        Head::of(
            s,
            b,
            &q[query_rows.clone()],
            &k[key_rows],
            &kt[this.clone()],
            &vt[this],
            &dout[query_rows],
            lse,
            &delta,
        )
    };
    // Fewer heads than threads: key tiles for dK, dV; query tiles for dQ.
    dk.par_chunks_mut(tk * d)
        .zip(dv.par_chunks_mut(tk * d))
        .enumerate()
        .with_min_len(per_head)
        .for_each(|(b, (dk, dv))| {
            let h = head(b);
            dk.par_chunks_mut(BLOCK_K * d)
                .zip(dv.par_chunks_mut(BLOCK_K * d))
                .enumerate()
                .with_min_len(min_items(tq * BLOCK_K * d))
                .for_each(|(j, (dk, dv))| {
                    with_scratch(|scratch| {
                        let (p, ds) = scratch.tiles();
                        let (ks, bk) = (j * BLOCK_K, dk.len() / d);
                        for (qs, bq) in query_tiles(ks) {
                            let bk = bk.min(s.key_end(qs, bq) - ks);
                            for (r, n, keys) in s.tile_parts(qs, bq, ks, bk) {
                                let (p, ds) = (&mut p[..n * keys], &mut ds[..n * keys]);
                                h.tile(s, qs + r, n, ks, keys, p, ds);
                                let (dk, dv) = (&mut dk[..keys * d], &mut dv[..keys * d]);
                                h.key_gradients(s, qs + r, n, keys, p, ds, dk, dv);
                            }
                        }
                    })
                });
        });
    dq.par_chunks_mut(tq * d)
        .enumerate()
        .with_min_len(per_head)
        .for_each(|(b, dq)| {
            let h = head(b);
            dq.par_chunks_mut(BLOCK_Q * d)
                .enumerate()
                .with_min_len(min_items(BLOCK_Q * tk * d))
                .for_each(|(i, dq)| {
                    with_scratch(|scratch| {
                        let (p, ds) = scratch.tiles();
                        let (qs, bq) = (i * BLOCK_Q, dq.len() / d);
                        for (ks, r, n, keys) in s.tiles(qs, bq) {
                            let (p, ds) = (&mut p[..n * keys], &mut ds[..n * keys]);
                            h.tile(s, qs + r, n, ks, keys, p, ds);
                            h.query_gradient(s, ks, keys, ds, &mut dq[r * d..(r + n) * d]);
                        }
                    })
                });
        });
    pool::give(kt);
    pool::give(vt);
    pool::give(delta);
    (dq, dk, dv)
}
