//! Kernels. `cpu` works on plain slices plus [`Layout`](crate::layout::Layout)s
//! and knows nothing of autograd; `cuda` is the device backend behind the
//! `cuda` feature (a stub until the CUDA issue lands).

pub mod cpu;
pub mod cuda;

/// One Adam/AdamW step's constants, shared by every element.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias2_sqrt: f32,
    /// Adam's L2 term, added to the gradient (0 for none).
    pub l2: f32,
    /// AdamW's decoupled decay, `w *= 1 - lr·decay` (0 for none).
    pub decay: f32,
}
