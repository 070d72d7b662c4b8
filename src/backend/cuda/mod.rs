//! The CUDA backend.
//!
//! Today this is the stub the rest of the crate is written against: the
//! storage type has no values, so every `Storage::Cuda` match arm is provably
//! unreachable and costs nothing, and [`Device::cuda`](crate::Device::cuda)
//! returns [`Error::CudaUnavailable`](crate::Error::CudaUnavailable). The CUDA
//! issue fills this module in (cudarc, cuBLAS, NVRTC kernels) without touching
//! call sites.

/// Device memory of a CUDA tensor. Uninhabited until the backend exists.
#[derive(Debug, Clone)]
pub enum CudaStorage {}
