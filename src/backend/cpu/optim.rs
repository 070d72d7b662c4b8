//! Optimizer updates: one pass over each parameter and its state.

use rayon::prelude::*;

use super::{PARALLEL_CHUNK, PARALLEL_THRESHOLD, simd};
use crate::backend::AdamStep;

/// Updates weights `w` and moments `m`, `v` in place from gradient `g`
/// times `scale` (a clipping factor; 1 leaves `g` exactly as it is):
/// PyTorch's Adam/AdamW formulas, element by element, in the same order of
/// operations. Vectorised at the CPU's widest width; parallel above the
/// elementwise threshold (elements are independent, so the bits do not
/// depend on the split).
pub fn adam_update(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    c: AdamStep,
    scale: f32,
) {
    assert!(
        w.len() == g.len() && w.len() == m.len() && w.len() == v.len(),
        "adam_update: weights {}, gradient {}, moments {} and {} differ in length",
        w.len(),
        g.len(),
        m.len(),
        v.len()
    );
    let chunk = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        simd::widest!({
            let decay = 1.0 - c.lr * c.decay;
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g * scale;
                let g = if c.l2 != 0.0 { g + c.l2 * *w } else { g };
                if c.decay != 0.0 {
                    *w *= decay;
                }
                *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                let denom = v.sqrt() / c.bias2_sqrt + c.eps;
                *w -= c.step_size * *m / denom;
            }
        })
    };
    if w.len() < PARALLEL_THRESHOLD {
        chunk(w, g, m, v);
    } else {
        w.par_chunks_mut(PARALLEL_CHUNK)
            .zip(g.par_chunks(PARALLEL_CHUNK))
            .zip(m.par_chunks_mut(PARALLEL_CHUNK))
            .zip(v.par_chunks_mut(PARALLEL_CHUNK))
            .for_each(|(((w, g), m), v)| chunk(w, g, m, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_vectorised_update_equals_one_element_at_a_time() {
        // Above the parallel threshold and not a multiple of the chunk, so
        // that rayon chunks, vector lanes and remainders all take part.
        let n = 3 * PARALLEL_CHUNK + 77;
        assert!(n >= PARALLEL_THRESHOLD);
        let f = |i: usize, s: usize| ((i * s) % 1013) as f32 / 1013.0 - 0.5;
        let (w0, g): (Vec<f32>, Vec<f32>) = (0..n).map(|i| (f(i, 7), f(i, 13))).unzip();
        let (m0, v0): (Vec<f32>, Vec<f32>) = (0..n)
            .map(|i| (f(i, 3) * 0.1, f(i, 5).abs() * 0.01))
            .unzip();
        for (l2, decay) in [(0.0, 0.1), (0.01, 0.0)] {
            let c = AdamStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                step_size: 1e-3 / (1.0 - 0.9f32.powi(3)),
                bias2_sqrt: (1.0 - 0.999f32.powi(3)).sqrt(),
                l2,
                decay,
            };
            let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
            adam_update(&mut w, &g, &mut m, &mut v, c, 1.0);
            for i in 0..n {
                let gi = g[i] + l2 * w0[i];
                let mut wi = w0[i] * (1.0 - c.lr * decay);
                let mi = c.beta1 * m0[i] + (1.0 - c.beta1) * gi;
                let vi = c.beta2 * v0[i] + (1.0 - c.beta2) * gi * gi;
                wi -= c.step_size * mi / (vi.sqrt() / c.bias2_sqrt + c.eps);
                assert_eq!(
                    (w[i].to_bits(), m[i].to_bits(), v[i].to_bits()),
                    (wi.to_bits(), mi.to_bits(), vi.to_bits()),
                    "element {i}"
                );
            }
        }
    }
}
