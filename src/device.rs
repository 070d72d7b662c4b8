//! Where a tensor lives and what its elements are.

use crate::{Error, Result};

/// The device a tensor's storage lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Main memory; every kernel exists here.
    #[default]
    Cpu,
    /// The CUDA device with this ordinal (the `cuda` feature).
    Cuda(usize),
}

impl Device {
    /// The CUDA device `ordinal`, or an error saying why it cannot be used.
    ///
    /// ```
    /// use zeroformer::{Device, Error};
    /// // Without a CUDA backend this is an error the caller can act on, not a panic.
    /// match Device::cuda(0) {
    ///     Ok(dev) => println!("using {dev:?}"),
    ///     Err(Error::CudaUnavailable(why)) => println!("falling back to the CPU: {why}"),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn cuda(ordinal: usize) -> Result<Device> {
        let why = if cfg!(feature = "cuda") {
            "the CUDA kernels are not implemented yet in this version of zeroformer"
        } else {
            "zeroformer was built without the `cuda` feature; add `features = [\"cuda\"]`"
        };
        let _ = ordinal;
        Err(Error::CudaUnavailable(why.to_string()))
    }
}

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floats: every differentiable tensor.
    F32,
    /// 64-bit signed integers: token ids and class targets (as PyTorch's `long`).
    I64,
    /// Booleans: masks for `masked_fill` and `where_cond`, results of comparisons.
    Bool,
}
