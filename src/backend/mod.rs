//! Kernels. `cpu` works on plain slices plus [`Layout`](crate::layout::Layout)s
//! and knows nothing of autograd; `cuda` is the device backend behind the
//! `cuda` feature (a stub until the CUDA issue lands).

pub mod cpu;
pub mod cuda;
