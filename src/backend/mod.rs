//! Devices and their kernels, behind one seam.
//!
//! [`BackendStorage`] lists the primitives a device implements; `cpu`
//! implements them with rayon-parallel kernels on host slices, and `cuda`
//! with CUDA kernels on an NVIDIA GPU (or the simulated GPU) behind the
//! `cuda` feature; without it, `cuda` is a stub whose storage cannot
//! exist. Kernels work on storage
//! plus [`Layout`](crate::layout::Layout)s and know nothing of `Tensor` or
//! autograd; `tensor::Storage` forwards each primitive to the device that
//! holds the data.

pub mod cpu;
pub mod cuda;
mod op_tables;
mod primitives;

pub(crate) use op_tables::{binary_ops, compare_ops, unary_ops};
pub use primitives::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View,
};
pub(crate) use primitives::{each_primitive, primitives};
