//! Cross-entropy of logits against class targets, fused with its
//! log-softmax; the backward is `(softmax - one_hot) · scale` row by row.

use super::{pool, reduce};

/// `(mean loss, log-probabilities, counted targets)` of row-major
/// `[rows, classes]` logits `x` against `targets`, skipping
/// `ignore_index`. Panics for a target out of range.
pub fn cross_entropy(
    x: &[f32],
    classes: usize,
    targets: &[i64],
    ignore_index: Option<i64>,
) -> (f32, Vec<f32>, usize) {
    let log_probs = reduce::softmax_rows(x, classes, true);
    let mut total = 0.0f64;
    let mut count = 0usize;
    for (lp, &t) in log_probs.chunks_exact(classes.max(1)).zip(targets) {
        if Some(t) == ignore_index {
            continue;
        }
        assert!(
            (0..classes as i64).contains(&t),
            "cross_entropy: target {t} is out of range for {classes} classes"
        );
        total -= lp[t as usize] as f64;
        count += 1;
    }
    ((total / count as f64) as f32, log_probs, count)
}

/// The gradient of [`cross_entropy`]'s mean loss times `scale / count`
/// folded into `scale`: `(exp(log_probs) - one_hot(target)) · scale` for
/// each counted row, zeros for ignored ones.
pub fn cross_entropy_backward(
    log_probs: &[f32],
    classes: usize,
    targets: &[i64],
    ignore_index: Option<i64>,
    scale: f32,
) -> Vec<f32> {
    let mut dx = pool::take_zeroed(log_probs.len());
    for ((row, lp), &t) in dx
        .chunks_exact_mut(classes.max(1))
        .zip(log_probs.chunks_exact(classes.max(1)))
        .zip(targets)
    {
        if Some(t) == ignore_index {
            continue;
        }
        for (d, &l) in row.iter_mut().zip(lp) {
            *d = l.exp() * scale;
        }
        row[t as usize] -= scale;
    }
    dx
}
