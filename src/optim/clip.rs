//! Gradient clipping by global norm.

use crate::{Tensor, no_grad};

/// The joint L2 norm of every gradient of `params` (those without one
/// count as zero), summed in f64: what [`clip_grad_norm`] clips, and what a
/// trainer watches for divergence (NaN or infinity).
pub fn grad_norm(params: &[Tensor]) -> f32 {
    let total: f64 = params
        .iter()
        .filter_map(Tensor::grad)
        .map(|g| g.squared_norm())
        .sum();
    total.sqrt() as f32
}

/// Scales every gradient so that their joint L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`,
/// applied only when below 1). Returns the norm before clipping, for logging.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> f32 {
    let norm = grad_norm(params);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for p in params {
            if let Some(g) = p.grad() {
                p.set_grad(Some(no_grad(|| g.mul_scalar(coef))));
            }
        }
    }
    norm
}
