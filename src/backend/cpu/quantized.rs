//! Weight-only int8: each row of a weight matrix stored as 8-bit integers
//! with one f32 scale (`w ≈ q · s`, `s = max|w| / 127`), and the product of
//! f32 activations with such a matrix. Decoding one token reads every
//! weight once, so a quarter of the bytes is most of the speed; the
//! arithmetic stays f32.

use rayon::prelude::*;

use super::gemv;

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

/// `x @ (q · s)ᵀ`: f32 `x` `[m, k]`, int8 `q` `[n, k]`, scales `[n]`; the
/// `[m, n]` result, row-major. The matrix-vector path's kernel
/// ([`gemv`]): each weight row read once for up to four rows of `x` in
/// registers, blocks of rows on the pool, so decoding streams the bytes
/// once and a prompt's rows share each conversion to f32.
pub fn matmul_t(x: &[f32], m: usize, k: usize, q: &[i8], scales: &[f32], n: usize) -> Vec<f32> {
    let rows = gemv::Rows {
        data: q,
        offset: 0,
        row_stride: k,
    };
    gemv::matmul_t(x, m, k, k, rows, n, None, Some(scales))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_is_the_dequantized_product() {
        for (m, k, n) in [(1, 37, 70), (3, 37, 70), (16, 40, 130), (5, 16, 3)] {
            check(m, k, n);
        }
    }

    fn check(m: usize, k: usize, n: usize) {
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
                assert!(
                    (got[i * n + r] as f64 - exact).abs() < 1e-4,
                    "{m}x{k}x{n}: {i},{r}"
                );
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
