//! Weight-only int8: each row of a weight matrix stored as 8-bit integers
//! with one f32 scale (`w ≈ q · s`, `s = max|w| / 127`), and the product of
//! f32 activations with such a matrix. Decoding one token reads every
//! weight once, so a quarter of the bytes is most of the speed; the
//! arithmetic stays f32.

use rayon::prelude::*;

use super::simd::{LANES, multiversion};

/// The rows of `w` (`[rows, cols]`, row-major) as int8 and their scales.
/// A row of zeros has scale 0.
pub fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    q.par_chunks_mut(cols.max(1))
        .zip(scales.par_iter_mut())
        .enumerate()
        .for_each(|(r, (q, s))| {
            let row = &w[r * cols..(r + 1) * cols];
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            *s = max / 127.0;
            if max > 0.0 {
                let inv = 127.0 / max;
                for (q, &v) in q.iter_mut().zip(row) {
                    *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
                }
            }
        });
    (q, scales)
}

multiversion! {
    /// `out[r · m + i] = s[r] · (x_i · q_r)` for the `rows` rows of `q` and
    /// the `m` rows of `x` (each `k` long): every weight row is read once
    /// for all of `x`. Lane accumulators keep the sum's order the same at
    /// every vector width.
    fn rows_times_x(x: &[f32], m: usize, k: usize, q: &[i8], scales: &[f32], out: &mut [f32]) {
        for (r, (row, &s)) in q.chunks_exact(k).zip(scales).enumerate() {
            for i in 0..m {
                let xi = &x[i * k..(i + 1) * k];
                let mut lanes = [0f32; LANES];
                let (qc, xc) = (row.chunks_exact(LANES), xi.chunks_exact(LANES));
                let (qr, xr) = (qc.remainder(), xc.remainder());
                for (a, b) in qc.zip(xc) {
                    for l in 0..LANES {
                        lanes[l] += f32::from(a[l]) * b[l];
                    }
                }
                let mut sum = lanes.iter().sum::<f32>();
                for (a, b) in qr.iter().zip(xr) {
                    sum += f32::from(*a) * b;
                }
                out[r * m + i] = sum * s;
            }
        }
    }
}

/// `x @ (q · s)ᵀ`: f32 `x` `[m, k]`, int8 `q` `[n, k]`, scales `[n]`; the
/// `[m, n]` result, row-major. Blocks of weight rows run on the pool.
pub fn matmul_t(x: &[f32], m: usize, k: usize, q: &[i8], scales: &[f32], n: usize) -> Vec<f32> {
    const BLOCK: usize = 32;
    let mut out_t = vec![0f32; n * m];
    if m > 0 && k > 0 {
        out_t
            .par_chunks_mut(BLOCK * m)
            .zip(q.par_chunks(BLOCK * k))
            .zip(scales.par_chunks(BLOCK))
            .for_each(|((out, q), s)| rows_times_x(x, m, k, q, s, out));
    }
    let mut out = vec![0f32; m * n];
    for r in 0..n {
        for i in 0..m {
            out[i * n + r] = out_t[r * m + i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_is_the_dequantized_product() {
        let (m, k, n) = (3, 37, 70);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104_729) % 211) as f32 / 100.0 - 1.05)
            .collect();
        let (q, s) = quantize_rows(&w, n, k);
        let got = matmul_t(&x, m, k, &q, &s, n);
        for i in 0..m {
            for r in 0..n {
                let exact: f64 = (0..k)
                    .map(|t| x[i * k + t] as f64 * q[r * k + t] as f64 * s[r] as f64)
                    .sum();
                assert!((got[i * n + r] as f64 - exact).abs() < 1e-4, "{i},{r}");
            }
        }
        // Quantization error: at most half a step per weight.
        for r in 0..n {
            for t in 0..k {
                assert!((q[r * k + t] as f32 * s[r] - w[r * k + t]).abs() <= s[r] / 2.0 + 1e-7);
            }
        }
        let (zq, zs) = quantize_rows(&[0.0; 4], 1, 4);
        assert_eq!((zq, zs), (vec![0; 4], vec![0.0]));
    }
}
