//! Layer normalisation over the last axis, forward and backward written by
//! hand (as llm.c does) rather than composed from a dozen small ops. Rows
//! of f32 or bf16: a bf16 element is widened as it is read and rounded as
//! it is written, the statistics and the arithmetic f32 either way.

use half::bf16;
use rayon::prelude::*;

use super::cast::Float;
use super::pool::Pooled;
use super::simd::multiversion;
use super::{PARALLEL_THRESHOLD, pool};

/// Accumulator lanes: one AVX2 register of f32 (half an AVX-512 one), so
/// that a row's sums vectorise at every width the kernels are built for.
const LANES: usize = 8;

/// Σ f(x) over `x`, accumulated in f32 in a fixed lane order.
#[inline(always)]
fn sum_lanes<T: Float>(x: &[T], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v.widen());
        }
    }
    rest.iter().fold(0.0, |s, &v| s + f(v.widen())) + lanes.iter().sum::<f32>()
}

/// One row's `(x - mean) · rstd · weight + bias` into `dst`; returns its
/// (mean, rstd). Statistics accumulate in f32, in eight lanes (as
/// PyTorch's CPU kernel accumulates in f32), the variance in a second
/// pass around the mean.
#[inline(always)]
fn normalise<T: Float>(
    src: &[T],
    dst: &mut [T],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> (f32, f32) {
    let n = src.len() as f32;
    let mu = sum_lanes(src, |v| v) / n;
    let var = sum_lanes(src, |v| (v - mu) * (v - mu)) / n;
    let rs = 1.0 / (var + eps).sqrt();
    for (((o, &v), &w), &b) in dst.iter_mut().zip(src).zip(weight).zip(bias) {
        *o = T::narrow((v.widen() - mu) * rs * w + b);
    }
    (mu, rs)
}

/// An element layer norm reads and writes: each with its row kernels
/// compiled at the CPU's widest vectors.
pub trait NormElement: Float + Pooled {
    /// [`normalise`] of one row.
    fn normalise_row(
        src: &[Self],
        dst: &mut [Self],
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) -> (f32, f32);

    /// [`backward`] of one row.
    #[allow(clippy::too_many_arguments)]
    fn backward_row(
        src: &[Self],
        g: &[Self],
        dst: &mut [Self],
        weight: &[f32],
        mu: f32,
        rs: f32,
        dw: &mut [f32],
        db: &mut [f32],
    );
}

multiversion! {
    fn normalise_f32(src: &[f32], dst: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) -> (f32, f32) {
        normalise(src, dst, weight, bias, eps)
    }
}

multiversion! {
    fn normalise_bf16(src: &[bf16], dst: &mut [bf16], weight: &[f32], bias: &[f32], eps: f32) -> (f32, f32) {
        normalise(src, dst, weight, bias, eps)
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn backward_f32(src: &[f32], g: &[f32], dst: &mut [f32], weight: &[f32], mu: f32, rs: f32, dw: &mut [f32], db: &mut [f32]) {
        backward(src, g, dst, weight, mu, rs, dw, db)
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn backward_bf16(src: &[bf16], g: &[bf16], dst: &mut [bf16], weight: &[f32], mu: f32, rs: f32, dw: &mut [f32], db: &mut [f32]) {
        backward(src, g, dst, weight, mu, rs, dw, db)
    }
}

impl NormElement for f32 {
    fn normalise_row(
        src: &[f32],
        dst: &mut [f32],
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) -> (f32, f32) {
        normalise_f32(src, dst, weight, bias, eps)
    }

    fn backward_row(
        src: &[f32],
        g: &[f32],
        dst: &mut [f32],
        weight: &[f32],
        mu: f32,
        rs: f32,
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        backward_f32(src, g, dst, weight, mu, rs, dw, db)
    }
}

impl NormElement for bf16 {
    fn normalise_row(
        src: &[bf16],
        dst: &mut [bf16],
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) -> (f32, f32) {
        normalise_bf16(src, dst, weight, bias, eps)
    }

    fn backward_row(
        src: &[bf16],
        g: &[bf16],
        dst: &mut [bf16],
        weight: &[f32],
        mu: f32,
        rs: f32,
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        backward_bf16(src, g, dst, weight, mu, rs, dw, db)
    }
}

/// One row's input gradient into `dst`, adding its share of the weight
/// and bias gradients into `dw` and `db`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward<T: Float>(
    src: &[T],
    g: &[T],
    dst: &mut [T],
    weight: &[f32],
    mu: f32,
    rs: f32,
    dw: &mut [f32],
    db: &mut [f32],
) {
    {
        let n = src.len();
        let (mut s1, mut s2) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (mut r1, mut r2) = (0.0f32, 0.0f32);
        // Whole lane groups as fixed-size arrays (no bounds checks, so the
        // loop vectorises), then the tail.
        let full = n - n % LANES;
        for j in (0..full).step_by(LANES) {
            let xs: &[T; LANES] = src[j..j + LANES].try_into().unwrap();
            let gs: &[T; LANES] = g[j..j + LANES].try_into().unwrap();
            let ws: &[f32; LANES] = weight[j..j + LANES].try_into().unwrap();
            let dws: &mut [f32; LANES] = (&mut dw[j..j + LANES]).try_into().unwrap();
            let dbs: &mut [f32; LANES] = (&mut db[j..j + LANES]).try_into().unwrap();
            for l in 0..LANES {
                let (x, g) = (xs[l].widen(), gs[l].widen());
                let xhat = (x - mu) * rs;
                let dxhat = g * ws[l];
                s1[l] += dxhat;
                s2[l] += dxhat * xhat;
                dws[l] += g * xhat;
                dbs[l] += g;
            }
        }
        for j in full..n {
            let (x, g) = (src[j].widen(), g[j].widen());
            let xhat = (x - mu) * rs;
            let dxhat = g * weight[j];
            r1 += dxhat;
            r2 += dxhat * xhat;
            dw[j] += g * xhat;
            db[j] += g;
        }
        s1[0] += r1;
        s2[0] += r2;
        let m1 = s1.iter().sum::<f32>() / n as f32;
        let m2 = s2.iter().sum::<f32>() / n as f32;
        for (((o, &x), &g), &w) in dst.iter_mut().zip(src).zip(g).zip(weight) {
            let xhat = (x.widen() - mu) * rs;
            *o = T::narrow(rs * (g.widen() * w - m1 - xhat * m2));
        }
    }
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` for every row of
/// length `d`, and the per-row statistics the backward reuses: every row's
/// mean, then every row's reciprocal standard deviation.
pub fn layer_norm_forward<T: NormElement>(
    x: &[T],
    d: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
) -> (Vec<T>, Vec<f32>) {
    let mut y = pool::take(x.len());
    // Absent weight and bias become ones and zeros, so that the row loop
    // has no branch in it and vectorises.
    let (ones, zeros);
    let weight = match weight {
        Some(w) => w,
        None => {
            ones = vec![1.0; d];
            &ones
        }
    };
    let bias = match bias {
        Some(b) => b,
        None => {
            zeros = vec![0.0; d];
            &zeros
        }
    };
    let row = |(src, dst): (&[T], &mut [T])| T::normalise_row(src, dst, weight, bias, eps);
    let stats: Vec<(f32, f32)> = if x.len() < PARALLEL_THRESHOLD {
        x.chunks_exact(d)
            .zip(y.chunks_exact_mut(d))
            .map(row)
            .collect()
    } else {
        x.par_chunks_exact(d)
            .zip(y.par_chunks_exact_mut(d))
            .map(row)
            .collect()
    };
    // From the pool, as the storage it becomes goes back there when dropped.
    let mut mean_rstd = pool::take(2 * stats.len());
    let (mean, rstd) = mean_rstd.split_at_mut(stats.len());
    for ((m, r), &(mu, rs)) in mean.iter_mut().zip(rstd.iter_mut()).zip(&stats) {
        (*m, *r) = (mu, rs);
    }
    (y, mean_rstd)
}

/// Gradients of layer norm: `(dx, dweight, dbias)`, the last two summed
/// over rows, from the forward's `stats`.
pub fn layer_norm_backward<T: NormElement>(
    x: &[T],
    dy: &[T],
    d: usize,
    weight: Option<&[f32]>,
    stats: &[f32],
) -> (Vec<T>, Vec<f32>, Vec<f32>) {
    let (mean, rstd) = stats.split_at(stats.len() / 2);
    let mut dx = pool::take(x.len());
    let ones;
    let weight = match weight {
        Some(w) => w,
        None => {
            ones = vec![1.0; d];
            &ones
        }
    };
    // Each row writes its dx and adds into row-chunk partials of dw and db.
    let row = |i: usize, src: &[T], g: &[T], dst: &mut [T], dw: &mut [f32], db: &mut [f32]| {
        let (mu, rs) = (mean[i], rstd[i]);
        T::backward_row(src, g, dst, weight, mu, rs, dw, db);
    };
    let rows_per_task = (PARALLEL_THRESHOLD / d).max(1);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = x
        .par_chunks(rows_per_task * d)
        .zip(dy.par_chunks(rows_per_task * d))
        .zip(dx.par_chunks_mut(rows_per_task * d))
        .enumerate()
        .map(|(t, ((xs, gs), dxs))| {
            let (mut dw, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
            for (r, ((src, g), dst)) in xs
                .chunks_exact(d)
                .zip(gs.chunks_exact(d))
                .zip(dxs.chunks_exact_mut(d))
                .enumerate()
            {
                row(t * rows_per_task + r, src, g, dst, &mut dw, &mut db);
            }
            (dw, db)
        })
        .collect();
    let (mut dw, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
    for (pw, pb) in partials {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dx, dw, db)
}
