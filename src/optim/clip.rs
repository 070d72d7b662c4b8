//! Gradient clipping by global norm.

use crate::backend::cpu::reduce::sum_of_squares;
use crate::ops::with_contiguous_f32;
use crate::{Tensor, no_grad};

/// Scales every gradient so that their joint L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`,
/// applied only when below 1). Returns the norm before clipping, for logging.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> f32 {
    let grads: Vec<(&Tensor, Tensor)> = params
        .iter()
        .filter_map(|p| p.grad().map(|g| (p, g)))
        .collect();
    let total: f64 = grads
        .iter()
        .map(|(_, g)| with_contiguous_f32(g, "clip_grad_norm", sum_of_squares))
        .sum();
    let norm = total.sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (p, g) in grads {
            p.set_grad(Some(no_grad(|| g.mul_scalar(coef))));
        }
    }
    norm
}
