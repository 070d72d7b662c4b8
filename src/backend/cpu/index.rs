//! Kernels that move elements by index: embedding rows gathered by id and
//! their gradient scattered back, and a maximum's gradient routed to its
//! argmax.

use super::pool;

/// The rows of the row-major `[vocab, d]` table `w` that `ids` name, one
/// after another. Panics for an id outside `0..vocab`.
pub fn embedding(w: &[f32], d: usize, ids: &[i64]) -> Vec<f32> {
    let vocab = w.len().checked_div(d).unwrap_or(0);
    let mut out = pool::take(ids.len() * d);
    for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(d.max(1))) {
        assert!(
            (0..vocab as i64).contains(&id),
            "embedding: id {id} is out of range for a table of {vocab} rows"
        );
        dst.copy_from_slice(&w[id as usize * d..(id as usize + 1) * d]);
    }
    out
}

/// The gradient of [`embedding`]: each row of `g` added into row `ids[i]`
/// of `vocab x d` zeros.
pub fn embedding_backward(g: &[f32], d: usize, ids: &[i64], vocab: usize) -> Vec<f32> {
    let mut dw = pool::take_zeroed(vocab * d);
    for (&id, row) in ids.iter().zip(g.chunks_exact(d.max(1))) {
        let dst = &mut dw[id as usize * d..(id as usize + 1) * d];
        dst.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
    }
    dw
}

/// The gradient of a maximum over the middle of `[outer, n, inner]`: `g`
/// (`[outer, inner]`) placed at each `argmax`, zeros elsewhere.
pub fn max_backward(g: &[f32], argmax: &[i64], outer: usize, n: usize, inner: usize) -> Vec<f32> {
    let mut dx = pool::take_zeroed(outer * n * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = o * inner + i;
            dx[(o * n + argmax[at] as usize) * inner + i] = g[at];
        }
    }
    dx
}
