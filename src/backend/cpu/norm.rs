//! Layer normalisation over the last axis, forward and backward written by
//! hand (as llm.c does) rather than composed from a dozen small ops.

use rayon::prelude::*;

use super::{PARALLEL_THRESHOLD, pool};

/// Per-row statistics the backward pass reuses.
pub struct LayerNormStats {
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` for every row of length `d`.
pub fn layer_norm_forward(
    x: &[f32],
    d: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
) -> (Vec<f32>, LayerNormStats) {
    let mut y = pool::take(x.len());
    // Normalises one row into `dst`, returning its (mean, 1 / std).
    let row = |(src, dst): (&[f32], &mut [f32])| -> (f32, f32) {
        let mu = src.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = src.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / d as f64;
        let rs = 1.0 / (var + eps as f64).sqrt();
        for (j, (o, &v)) in dst.iter_mut().zip(src).enumerate() {
            let xhat = ((v as f64 - mu) * rs) as f32;
            let w = weight.map_or(1.0, |w| w[j]);
            let b = bias.map_or(0.0, |b| b[j]);
            *o = xhat * w + b;
        }
        (mu as f32, rs as f32)
    };
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
    let (mean, rstd) = stats.into_iter().unzip();
    (y, LayerNormStats { mean, rstd })
}

/// Gradients of layer norm: `(dx, dweight, dbias)`, the last two summed over rows.
pub fn layer_norm_backward(
    x: &[f32],
    dy: &[f32],
    d: usize,
    weight: Option<&[f32]>,
    stats: &LayerNormStats,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = pool::take(x.len());
    // Each row writes its dx and adds into row-chunk partials of dw and db.
    let row =
        |i: usize, src: &[f32], g: &[f32], dst: &mut [f32], dw: &mut [f32], db: &mut [f32]| {
            let (mu, rs) = (stats.mean[i], stats.rstd[i]);
            let mut mean_dxhat = 0.0f64;
            let mut mean_dxhat_xhat = 0.0f64;
            for j in 0..d {
                let xhat = (src[j] - mu) * rs;
                let dxhat = g[j] * weight.map_or(1.0, |w| w[j]);
                mean_dxhat += dxhat as f64;
                mean_dxhat_xhat += (dxhat * xhat) as f64;
                dw[j] += g[j] * xhat;
                db[j] += g[j];
            }
            let (m1, m2) = (
                (mean_dxhat / d as f64) as f32,
                (mean_dxhat_xhat / d as f64) as f32,
            );
            for j in 0..d {
                let xhat = (src[j] - mu) * rs;
                let dxhat = g[j] * weight.map_or(1.0, |w| w[j]);
                dst[j] = rs * (dxhat - m1 - xhat * m2);
            }
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
