//! Reductions along one axis of contiguous data viewed as `[outer, n, inner]`,
//! and row-wise softmax. Sums accumulate in f64 so that long reductions stay
//! accurate to f32's last digits.

use rayon::prelude::*;

use super::{PARALLEL_THRESHOLD, pool};

/// Sums over the middle axis of `[outer, n, inner]`; the result is `[outer, inner]`.
pub fn sum_axis(data: &[f32], outer: usize, n: usize, inner: usize) -> Vec<f32> {
    let mut out = pool::take(outer * inner);
    let body = |o: usize, dst: &mut [f32]| {
        let block = &data[o * n * inner..(o + 1) * n * inner];
        if inner == 1 {
            dst[0] = block.iter().map(|&x| x as f64).sum::<f64>() as f32;
        } else {
            let mut acc = vec![0.0f64; inner];
            for row in block.chunks_exact(inner) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += x as f64;
                }
            }
            for (d, a) in dst.iter_mut().zip(acc) {
                *d = a as f32;
            }
        }
    };
    if outer == 1 && inner == 1 && data.len() >= PARALLEL_THRESHOLD {
        // One long sum: split it, then add the partial sums.
        out[0] = data
            .par_chunks(PARALLEL_THRESHOLD)
            .map(|c| c.iter().map(|&x| x as f64).sum::<f64>())
            .sum::<f64>() as f32;
    } else if data.len() < PARALLEL_THRESHOLD || outer == 1 {
        out.chunks_mut(inner.max(1))
            .enumerate()
            .for_each(|(o, d)| body(o, d));
    } else {
        out.par_chunks_mut(inner.max(1))
            .enumerate()
            .for_each(|(o, d)| body(o, d));
    }
    out
}

/// The sum of the squares of `x`, accumulated in f64 in eight independent
/// lanes: one running sum is a chain of dependent adds, several times
/// slower (a cpu-mini step's gradient-norm clip spent 1.4 ms in it).
pub fn sum_of_squares(x: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v as f64 * v as f64;
        }
    }
    let tail: f64 = tail.iter().map(|&v| v as f64 * v as f64).sum();
    acc.iter().sum::<f64>() + tail
}

/// Running sums along the middle of row-major `[outer, n, inner]` data
/// (from its end when `reverse`), accumulated in f64 as PyTorch's CPU
/// `cumsum` does.
pub fn cumsum_axis(data: &[f32], outer: usize, n: usize, inner: usize, reverse: bool) -> Vec<f32> {
    let mut out = pool::take(data.len());
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let mut acc = 0.0f64;
            let mut step = |j: usize| {
                acc += data[at(j)] as f64;
                out[at(j)] = acc as f32;
            };
            if reverse {
                (0..n).rev().for_each(&mut step);
            } else {
                (0..n).for_each(&mut step);
            }
        }
    }
    out
}

/// Maxima over the middle axis of `[outer, n, inner]` and the index of the
/// first maximum (as `torch.max(dim)` returns). NaN wins, as in PyTorch.
pub fn max_axis(data: &[f32], outer: usize, n: usize, inner: usize) -> (Vec<f32>, Vec<usize>) {
    assert!(n > 0, "max: cannot reduce over an empty dimension");
    let mut vals = pool::take_filled(outer * inner, f32::NEG_INFINITY);
    let mut idx = vec![0usize; outer * inner];
    let body = |(o, (v, ix)): (usize, (&mut [f32], &mut [usize]))| {
        let block = &data[o * n * inner..(o + 1) * n * inner];
        for (j, row) in block.chunks_exact(inner).enumerate() {
            for ((best, at), &x) in v.iter_mut().zip(ix.iter_mut()).zip(row) {
                if j == 0 || x > *best || (x.is_nan() && !best.is_nan()) {
                    *best = x;
                    *at = j;
                }
            }
        }
    };
    if inner == 0 {
        return (vals, idx);
    }
    if data.len() < PARALLEL_THRESHOLD || outer == 1 {
        vals.chunks_mut(inner)
            .zip(idx.chunks_mut(inner))
            .enumerate()
            .for_each(body);
    } else {
        vals.par_chunks_mut(inner)
            .zip(idx.par_chunks_mut(inner))
            .enumerate()
            .for_each(body);
    }
    (vals, idx)
}

/// Numerically stable softmax (or log-softmax) of every row of length `n`.
pub fn softmax_rows(data: &[f32], n: usize, log: bool) -> Vec<f32> {
    let mut out = pool::take(data.len());
    let row = |(src, dst): (&[f32], &mut [f32])| {
        let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Every entry masked (a padded query that may see no key):
            // probability 0 everywhere rather than 0/0.
            dst.fill(if log { f32::NEG_INFINITY } else { 0.0 });
            return;
        }
        let mut sum = 0.0f64;
        for (d, &x) in dst.iter_mut().zip(src) {
            let e = (x - max).exp();
            *d = e;
            sum += e as f64;
        }
        if log {
            let log_sum = sum.ln() as f32;
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = x - max - log_sum;
            }
        } else {
            let inv = (1.0 / sum) as f32;
            dst.iter_mut().for_each(|d| *d *= inv);
        }
    };
    if n == 0 {
        return out;
    }
    if data.len() < PARALLEL_THRESHOLD {
        data.chunks_exact(n)
            .zip(out.chunks_exact_mut(n))
            .for_each(row);
    } else {
        data.par_chunks_exact(n)
            .zip(out.par_chunks_exact_mut(n))
            .for_each(row);
    }
    out
}

/// Causal softmax of `scale · x` over rows of length `keys`, for blocks of
/// `queries` rows: row `i` of a block (the query at absolute position
/// `offset + i`) sees keys `0..=offset + i`; later keys get probability 0.
pub fn causal_softmax_rows(
    data: &[f32],
    queries: usize,
    keys: usize,
    offset: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = pool::take(data.len());
    let row = |(r, (src, dst)): (usize, (&[f32], &mut [f32]))| {
        let visible = (offset + r % queries + 1).min(keys);
        let (src, (dst, hidden)) = (&src[..visible], dst.split_at_mut(visible));
        let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max) * scale;
        let mut sum = 0.0f32;
        for (d, &x) in dst.iter_mut().zip(src) {
            let e = (x * scale - max).exp();
            *d = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        dst.iter_mut().for_each(|d| *d *= inv);
        hidden.fill(0.0);
    };
    if keys == 0 {
        return out;
    }
    if data.len() < PARALLEL_THRESHOLD {
        data.chunks_exact(keys)
            .zip(out.chunks_exact_mut(keys))
            .enumerate()
            .for_each(row);
    } else {
        data.par_chunks_exact(keys)
            .zip(out.par_chunks_exact_mut(keys))
            .enumerate()
            .for_each(row);
    }
    out
}

/// The backward of `softmax(scale · x)` over rows of length `n`, from the
/// output `y` and its gradient `g`: `scale · y ⊙ (g - Σ g ⊙ y)`.
pub fn softmax_rows_backward(y: &[f32], g: &[f32], n: usize, scale: f32) -> Vec<f32> {
    let mut out = pool::take(y.len());
    let row = |((y, g), dst): ((&[f32], &[f32]), &mut [f32])| {
        let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
        for ((d, &y), &g) in dst.iter_mut().zip(y).zip(g) {
            *d = scale * y * (g - dot);
        }
    };
    if n == 0 {
        return out;
    }
    if y.len() < PARALLEL_THRESHOLD {
        y.chunks_exact(n)
            .zip(g.chunks_exact(n))
            .zip(out.chunks_exact_mut(n))
            .for_each(row);
    } else {
        y.par_chunks_exact(n)
            .zip(g.par_chunks_exact(n))
            .zip(out.par_chunks_exact_mut(n))
            .for_each(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_of_squares_matches_the_closed_form() {
        // 1² + … + n² = n(n+1)(2n+1)/6, exact in f64 here; n = 1003 leaves
        // a tail of three after the eight-lane chunks.
        for n in [0usize, 5, 8, 1003] {
            let x: Vec<f32> = (1..=n).map(|i| i as f32).collect();
            let n = n as f64;
            assert_eq!(sum_of_squares(&x), n * (n + 1.0) * (2.0 * n + 1.0) / 6.0);
        }
    }

    #[test]
    fn sums_each_axis() {
        // [2, 3, 2]
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(sum_axis(&x, 2, 3, 2), vec![6.0, 9.0, 24.0, 27.0]);
        assert_eq!(sum_axis(&x, 1, 12, 1), vec![66.0]);
        assert_eq!(sum_axis(&x, 6, 2, 1), vec![1.0, 5.0, 9.0, 13.0, 17.0, 21.0]);
    }

    #[test]
    fn max_reports_the_first_maximum() {
        let x = [1.0, 5.0, 5.0, 2.0];
        assert_eq!(max_axis(&x, 1, 4, 1), (vec![5.0], vec![1]));
    }

    #[test]
    fn parallel_max_finds_the_known_maxima() {
        // [outer=64, n=1000, inner=2], above the parallel threshold; the
        // maximum of column (o, i) is at j = (7 * o + 3 * i) % 1000.
        let (outer, n, inner) = (64, 1000, 2);
        let peak = |o: usize, i: usize| (7 * o + 3 * i) % n;
        let mut x = vec![0.0f32; outer * n * inner];
        for o in 0..outer {
            for j in 0..n {
                for i in 0..inner {
                    x[(o * n + j) * inner + i] = -((j as f32 - peak(o, i) as f32).abs()) + o as f32;
                }
            }
        }
        let (vals, idx) = max_axis(&x, outer, n, inner);
        for o in 0..outer {
            for i in 0..inner {
                assert_eq!(idx[o * inner + i], peak(o, i));
                assert_eq!(vals[o * inner + i], o as f32);
            }
        }
    }

    #[test]
    fn softmax_survives_huge_logits() {
        let p = softmax_rows(&[1000.0, 1000.0, -1000.0], 3, false);
        assert_eq!(p, vec![0.5, 0.5, 0.0]);
        let lp = softmax_rows(&[1000.0, 1000.0], 2, true);
        assert!((lp[0] + std::f32::consts::LN_2).abs() < 1e-6);
    }
}
