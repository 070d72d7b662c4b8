//! Gradient clipping by global norm.

use crate::Tensor;

/// Scales every gradient so that their joint L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`,
/// applied only when below 1). Returns the norm before clipping, for logging.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> f32 {
    let grads: Vec<(usize, Vec<f32>)> = params
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.grad().map(|g| (i, g.to_vec())))
        .collect();
    let total: f64 = grads
        .iter()
        .flat_map(|(_, g)| g.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum();
    let norm = total.sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (i, g) in grads {
            let p = &params[i];
            let scaled = g.iter().map(|x| x * coef).collect();
            p.set_grad(Some(Tensor::from_vec(scaled, p.shape())));
        }
    }
    norm
}
