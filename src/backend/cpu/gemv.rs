//! Few-row products against weights stored by output row: `x @ Wᵀ` for
//! `x` of at most [`MAX_ROWS`] rows and `W` `[n, k]`, each output a dot
//! product of a row of `x` with a contiguous row of `W`. Decoding one token
//! is this product in every layer and in the tied head, and it reads every
//! weight once for a few multiply-adds: its speed is the memory's, so the
//! weight rows are streamed once, in blocks split across the threads, for
//! all rows of `x` together. (A GEMM kernel packs its operands for reuse
//! that a single row cannot give, and splits work by rows of `x`, which
//! leaves one thread busy.)
//!
//! Each output is one dot product on one thread, in a fixed lane order, so
//! the result does not depend on the thread count or the vector width.

use half::bf16;
use rayon::prelude::*;

use super::pool;
use super::simd::{LANES, multiversion};

/// The most rows of `x` this path takes; more go to the GEMM, whose
/// register tiles reuse each weight for several rows.
pub const MAX_ROWS: usize = 16;

/// Weight elements from which the path is taken: below, the product is
/// too small for its memory traffic to matter.
pub const MIN_WEIGHTS: usize = 1 << 16;

/// Weight rows a task streams: 64 rows of GPT-2's 768 are 196 KB.
const BLOCK_ROWS: usize = 64;

/// A weight matrix `[n, k]` inside a slice: row `r` starts at
/// `offset + r * row_stride` and its `k` elements are contiguous.
#[derive(Clone, Copy)]
pub struct Rows<'a, T> {
    pub data: &'a [T],
    pub offset: usize,
    pub row_stride: usize,
}

/// A weight element: f32, bf16 (widened in registers), or int8 scaled per
/// row after the dot product.
pub trait Weight: Copy + Send + Sync {
    fn to_f32(self) -> f32;

    /// [`dots`] compiled for this element at the CPU's widest vectors.
    #[allow(clippy::too_many_arguments)]
    fn dots(
        x: &[f32],
        m: usize,
        x_stride: usize,
        k: usize,
        w: &[Self],
        w_stride: usize,
        rows: usize,
        out: &mut [f32],
    );
}

impl Weight for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    fn dots(
        x: &[f32],
        m: usize,
        x_stride: usize,
        k: usize,
        w: &[f32],
        w_stride: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        dots_f32(x, m, x_stride, k, w, w_stride, rows, out)
    }
}

impl Weight for i8 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from(self)
    }

    fn dots(
        x: &[f32],
        m: usize,
        x_stride: usize,
        k: usize,
        w: &[i8],
        w_stride: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        dots_i8(x, m, x_stride, k, w, w_stride, rows, out)
    }
}

impl Weight for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        // bf16 is the top half of an f32: a shift, which vectorizes.
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }

    fn dots(
        x: &[f32],
        m: usize,
        x_stride: usize,
        k: usize,
        w: &[bf16],
        w_stride: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        dots_bf16(x, m, x_stride, k, w, w_stride, rows, out)
    }
}

/// `out[(r0 + a) · m + i0 + b] = x_{i0+b} · w_{r0+a}` for a tile of `W`
/// weight rows and `X` rows of `x`: each weight vector loaded once for the
/// tile's rows of `x`, and `W · X` independent accumulators so that the
/// additions' latency overlaps. Every output's sum runs in the same lane
/// order whatever the tile, so its bits do not depend on the tiling.
#[inline(always)]
// Constant indices, not iterators, let the accumulators live in registers.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn tile<T: Weight, const W: usize, const X: usize>(
    x: &[f32],
    x_stride: usize,
    k: usize,
    w: &[T],
    w_stride: usize,
    m: usize,
    (r0, i0): (usize, usize),
    out: &mut [f32],
) {
    assert!((r0 + W - 1) * w_stride + k <= w.len() && (i0 + X - 1) * x_stride + k <= x.len());
    let mut lanes = [[[0f32; LANES]; X]; W];
    let full = k / LANES * LANES;
    let mut t = 0;
    // Unchecked reads, so that no panic path between the iterations keeps
    // the accumulators in memory instead of registers.
    while t < full {
        #[cfg(target_arch = "x86_64")]
        for a in 0..W {
            // The next tile's rows, one tile ahead: rows of a few hundred
            // bytes are too short for the hardware prefetcher to follow.
            let ahead = ((r0 + a + W) * w_stride + t).min(w.len().saturating_sub(1));
            // SAFETY: `ahead` is inside `w`; a prefetch reads nothing.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().add(ahead).cast());
            }
        }
        for a in 0..W {
            for b in 0..X {
                for l in 0..LANES {
                    // SAFETY: t + l < full <= k, and the rows' k elements
                    // are inside the slices (asserted above).
                    unsafe {
                        lanes[a][b][l] += w.get_unchecked((r0 + a) * w_stride + t + l).to_f32()
                            * *x.get_unchecked((i0 + b) * x_stride + t + l);
                    }
                }
            }
        }
        t += LANES;
    }
    for (a, acc) in lanes.iter().enumerate() {
        for (b, acc) in acc.iter().enumerate() {
            let (wr, xr) = ((r0 + a) * w_stride, (i0 + b) * x_stride);
            let mut sum = acc.iter().sum::<f32>();
            for t in full..k {
                sum += w[wr + t].to_f32() * x[xr + t];
            }
            out[(r0 + a) * m + i0 + b] = sum;
        }
    }
}

/// `out[r · m + i] = x_i · w_r` for the `rows` rows of `w` and the `m`
/// rows of `x` (each `k` long, `x_stride` apart), in tiles: four
/// weight rows at a time for one row of `x` (decoding), two for four
/// rows of `x` (a prompt).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dots<T: Weight>(
    x: &[f32],
    m: usize,
    x_stride: usize,
    k: usize,
    w: &[T],
    w_stride: usize,
    rows: usize,
    out: &mut [f32],
) {
    if m < 4 {
        let mut r = 0;
        while r + 4 <= rows {
            for i in 0..m {
                tile::<T, 4, 1>(x, x_stride, k, w, w_stride, m, (r, i), out);
            }
            r += 4;
        }
        for r in r..rows {
            for i in 0..m {
                tile::<T, 1, 1>(x, x_stride, k, w, w_stride, m, (r, i), out);
            }
        }
        return;
    }
    let mut r = 0;
    while r < rows {
        let two = r + 2 <= rows;
        let mut i = 0;
        while i + 4 <= m {
            if two {
                tile::<T, 2, 4>(x, x_stride, k, w, w_stride, m, (r, i), out);
            } else {
                tile::<T, 1, 4>(x, x_stride, k, w, w_stride, m, (r, i), out);
            }
            i += 4;
        }
        for i in i..m {
            tile::<T, 1, 1>(x, x_stride, k, w, w_stride, m, (r, i), out);
            if two {
                tile::<T, 1, 1>(x, x_stride, k, w, w_stride, m, (r + 1, i), out);
            }
        }
        r += if two { 2 } else { 1 };
    }
}

multiversion! {
    /// [`dots`] of f32 weights, at the CPU's widest vectors.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dots_f32(x: &[f32], m: usize, x_stride: usize, k: usize, w: &[f32], w_stride: usize, rows: usize, out: &mut [f32]) {
        dots(x, m, x_stride, k, w, w_stride, rows, out)
    }
}

multiversion! {
    /// [`dots`] of bf16 weights, at the CPU's widest vectors.
    #[allow(clippy::too_many_arguments)]
    fn dots_bf16(x: &[f32], m: usize, x_stride: usize, k: usize, w: &[bf16], w_stride: usize, rows: usize, out: &mut [f32]) {
        dots(x, m, x_stride, k, w, w_stride, rows, out)
    }
}

multiversion! {
    /// [`dots`] of int8 weights, at the CPU's widest vectors.
    #[allow(clippy::too_many_arguments)]
    fn dots_i8(x: &[f32], m: usize, x_stride: usize, k: usize, w: &[i8], w_stride: usize, rows: usize, out: &mut [f32]) {
        dots(x, m, x_stride, k, w, w_stride, rows, out)
    }
}

/// `bias + (x @ Wᵀ) · scales` (each factor optional): `x` is `m` rows of
/// `k` floats, `x_stride` apart, from `x[0]`; `w` is `n` rows of `k`, row
/// `r`'s products multiplied by `scales[r]` (int8 weights). Returns the
/// `[m, n]` result, row-major, in a pooled buffer. Blocks of weight rows
/// run on the pool's threads (one thread inside a data-parallel shard).
#[allow(clippy::too_many_arguments)]
pub fn matmul_t<T: Weight>(
    x: &[f32],
    m: usize,
    x_stride: usize,
    k: usize,
    w: Rows<T>,
    n: usize,
    bias: Option<&[f32]>,
    scales: Option<&[f32]>,
) -> Vec<f32> {
    assert!(m == 0 || (m - 1) * x_stride + k <= x.len());
    assert!(n == 0 || w.offset + (n - 1) * w.row_stride + k <= w.data.len());
    assert!(bias.is_none_or(|b| b.len() == n));
    assert!(scales.is_none_or(|s| s.len() == n));
    let w_data = &w.data[w.offset..];
    let block = |(j, out): (usize, &mut [f32])| {
        let first = j * BLOCK_ROWS;
        let rows = out.len() / m;
        T::dots(
            x,
            m,
            x_stride,
            k,
            &w_data[first * w.row_stride..],
            w.row_stride,
            rows,
            out,
        );
        if let Some(s) = scales {
            for (r, out) in out.chunks_exact_mut(m).enumerate() {
                out.iter_mut().for_each(|o| *o *= s[first + r]);
            }
        }
        if let Some(b) = bias {
            for (r, out) in out.chunks_exact_mut(m).enumerate() {
                out.iter_mut().for_each(|o| *o += b[first + r]);
            }
        }
    };
    // Row-major by weight row ([n, m]); transposed below when m > 1.
    let mut by_row = pool::take(n * m);
    if m > 0 && n > 0 {
        if super::kernel_threads() > 1 {
            by_row
                .par_chunks_mut(BLOCK_ROWS * m)
                .enumerate()
                .for_each(block);
        } else {
            by_row
                .chunks_mut(BLOCK_ROWS * m)
                .enumerate()
                .for_each(block);
        }
    }
    if m <= 1 {
        return by_row;
    }
    let mut out = pool::take(m * n);
    for (r, row) in by_row.chunks_exact(m).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            out[i * n + r] = v;
        }
    }
    pool::give(by_row);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 1013) as f32 / 1013.0 - 0.5)
            .collect()
    }

    #[test]
    fn the_product_is_the_dot_products_in_f64_to_rounding() {
        // Sizes off the lane width and the block, strided rows of x and w.
        for (m, k, n) in [
            (1, 1, 1),
            (1, 31, 65),
            (2, 33, 129),
            (3, 768, 200),
            (4, 17, 64),
            (7, 47, 67),
            (16, 64, 3),
        ] {
            let (x_stride, w_stride) = (k + 3, k + 5);
            let x = values(m * x_stride, 1);
            let w = values(n * w_stride + 7, 2);
            let bias = values(n, 3);
            let rows = Rows {
                data: &w,
                offset: 7,
                row_stride: w_stride,
            };
            for b in [None, Some(&bias[..])] {
                let got = matmul_t(&x, m, x_stride, k, rows, n, b, None);
                for i in 0..m {
                    for r in 0..n {
                        let exact: f64 = (0..k)
                            .map(|t| x[i * x_stride + t] as f64 * w[7 + r * w_stride + t] as f64)
                            .sum::<f64>()
                            + b.map_or(0.0, |b| b[r] as f64);
                        let g = got[i * n + r] as f64;
                        assert!(
                            (g - exact).abs() <= 1e-5 * (1.0 + exact.abs()) * (k as f64).sqrt(),
                            "{m}x{k}x{n} ({i}, {r}): {g} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_weights_give_the_dot_products_of_their_values() {
        // Values off bf16's grid before rounding, sizes off the lane width.
        for (m, k, n) in [
            (1, 1, 1),
            (1, 33, 129),
            (3, 768, 70),
            (5, 47, 67),
            (16, 64, 9),
        ] {
            let x = values(m * k, 8);
            let w: Vec<bf16> = values(n * (k + 2), 9)
                .iter()
                .map(|&v| bf16::from_f32(v * 1.37))
                .collect();
            let rows = Rows {
                data: &w,
                offset: 0,
                row_stride: k + 2,
            };
            let got = matmul_t(&x, m, k, k, rows, n, None, None);
            for i in 0..m {
                for r in 0..n {
                    let exact: f64 = (0..k)
                        .map(|t| x[i * k + t] as f64 * w[r * (k + 2) + t].to_f64())
                        .sum();
                    let g = got[i * n + r] as f64;
                    assert!(
                        (g - exact).abs() <= 1e-5 * (1.0 + exact.abs()) * (k as f64).sqrt(),
                        "{m}x{k}x{n} ({i}, {r}): {g} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_of_x_gives_the_same_bits_alone_as_among_others() {
        let (k, n) = (77, 131);
        let w = values(n * k, 6);
        let rows = Rows {
            data: &w,
            offset: 0,
            row_stride: k,
        };
        for m in [2, 4, 5, 9, 16] {
            let x = values(m * k, 7);
            let together = matmul_t(&x, m, k, k, rows, n, None, None);
            for i in 0..m {
                let alone = matmul_t(&x[i * k..], 1, k, k, rows, n, None, None);
                let same = (0..n).all(|r| together[i * n + r].to_bits() == alone[r].to_bits());
                assert!(same, "row {i} of {m}");
            }
        }
    }

    #[test]
    fn one_thread_and_the_pool_give_the_same_bits() {
        let (m, k, n) = (2, 300, 1000);
        let x = values(m * k, 4);
        let w = values(n * k, 5);
        let rows = Rows {
            data: &w,
            offset: 0,
            row_stride: k,
        };
        let pooled = matmul_t(&x, m, k, k, rows, n, None, None);
        let single = super::super::on_one_thread(|| matmul_t(&x, m, k, k, rows, n, None, None));
        assert!(
            pooled
                .iter()
                .zip(&single)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}
