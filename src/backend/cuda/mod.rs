//! The CUDA backend.
//!
//! Today this is the stub the rest of the crate is written against: the
//! storage type has no values, so every `Storage::Cuda` match arm is provably
//! unreachable and costs nothing, and [`Device::cuda`](crate::Device::cuda)
//! returns [`Error::CudaUnavailable`](crate::Error::CudaUnavailable). The CUDA
//! issue fills this module in (cudarc, cuBLAS, NVRTC kernels) without touching
//! call sites.

use crate::{Error, Result};

/// Device memory of a CUDA tensor. Uninhabited until the backend exists.
#[derive(Debug, Clone)]
pub enum CudaStorage {}

/// Copies host elements to CUDA device `ordinal`: the one way into this
/// backend, so the stub's error surfaces here, where a user asked for it.
pub fn upload<T: Copy>(host: &[T], ordinal: usize) -> Result<CudaStorage> {
    let _ = host;
    Err(Error::CudaUnavailable(format!(
        "cannot move a tensor to CUDA device {ordinal}: {}",
        crate::Device::cuda(ordinal).expect_err("no CUDA device exists in this build")
    )))
}
