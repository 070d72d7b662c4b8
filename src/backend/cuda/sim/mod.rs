//! The simulated GPU's machinery: the fiber scheduler that runs a grid
//! ([`fibers`]), the shim header kernels compile against (shim.h, and
//! runtime.cpp for its per-thread state), and the reference cuBLAS
//! ([`cublas`]). The driver that uses them is `driver::sim`.

pub(crate) mod cublas;
pub(crate) mod fibers;
