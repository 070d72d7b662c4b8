//! Gradient clipping by global norm, on the gradients' device: the norm
//! and the clipping factor are device scalars, never read back.

use crate::{Tensor, no_grad};

/// The joint L2 norm of every gradient of `params` (those without one
/// count as zero), each gradient's squares summed in f64: a
/// zero-dimensional tensor on the gradients' device (0 when none has a
/// gradient). What [`clip_grad_norm`] clips, and what a trainer watches
/// for divergence (NaN or infinity).
///
/// ```
/// use zeroformer::{Tensor, optim::grad_norm};
/// let p = Tensor::zeros(&[2]).requires_grad();
/// p.set_grad(Some(Tensor::from_vec(vec![3.0, 4.0], &[2])));
/// assert_eq!(grad_norm(&[p]).item(), 5.0);
/// ```
pub fn grad_norm(params: &[Tensor]) -> Tensor {
    let squares: Vec<Tensor> = params
        .iter()
        .filter_map(Tensor::grad)
        .map(|g| g.squared_norm())
        .collect();
    if squares.is_empty() {
        return Tensor::zeros_on(&[], &crate::Device::Cpu).expect("the CPU is always usable");
    }
    let refs: Vec<&Tensor> = squares.iter().collect();
    Tensor::stack(&refs, 0).sum().sqrt()
}

/// The factor PyTorch's `clip_grad_norm_` scales gradients by:
/// `max_norm / (norm + 1e-6)`, at most 1; a device scalar beside `norm`.
pub fn clip_coefficient(norm: &Tensor, max_norm: f32) -> Tensor {
    norm.scalar_like(max_norm)
        .div(&norm.add_scalar(1e-6))
        .minimum(&norm.scalar_like(1.0))
}

/// Scales every gradient so that their joint L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`,
/// applied only when below 1), on the gradients' device. Returns the norm
/// before clipping, a zero-dimensional tensor, for logging.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> Tensor {
    let norm = grad_norm(params);
    let coef = clip_coefficient(&norm, max_norm);
    for p in params {
        if let Some(g) = p.grad() {
            p.set_grad(Some(no_grad(|| g.mul(&coef))));
        }
    }
    norm
}
