//! The CUDA backend in a build without the `cuda` feature: every primitive
//! exists, but the storage type has no values, so none of them can be
//! reached and each costs nothing; the way in, [`upload`], returns
//! [`Error::CudaUnavailable`], as does [`Device::cuda`](crate::Device::cuda).
//! The rest of the crate compiles the same with and without the feature.

use crate::backend::cpu::CpuStorage;
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View, primitives,
};
use crate::layout::Layout;
use crate::{DType, Error, Result};

/// Device memory of a CUDA tensor: uninhabited without the `cuda` feature.
#[derive(Debug, Clone)]
pub enum CudaStorage {}

/// Copies host elements to CUDA device `ordinal`: the one way into this
/// backend, so the stub's error surfaces here, where a user asked for it.
pub fn upload(host: &CpuStorage, ordinal: usize) -> Result<CudaStorage> {
    let _ = host;
    Err(Error::CudaUnavailable(format!(
        "cannot move a tensor to CUDA device {ordinal}: {}",
        crate::Device::cuda(ordinal).expect_err("no CUDA device exists without the feature")
    )))
}

/// `len` f32 elements equal to `value` on CUDA device `ordinal`.
pub fn full(len: usize, value: f32, ordinal: usize) -> Result<CudaStorage> {
    let _ = (len, value);
    upload(&CpuStorage::F32(Vec::new()), ordinal)
}

/// Turns [`primitives!`](crate::backend::primitives!)' declarations into
/// bodies that match on the uninhabited storage.
macro_rules! uninhabited {
    ($meta:tt $name:ident [$($receiver:tt)*] $s:ident [$(, $arg:ident: $ty:ty)* $(,)?]
        [$($ret:ty)?]) => {
        fn $name($($receiver)* $(, $arg: $ty)*) $(-> $ret)? {
            match *$s {}
        }
    };
}

#[allow(unused_variables)]
impl BackendStorage for CudaStorage {
    fn to_host(&self, _: &Layout) -> CpuStorage {
        match *self {}
    }

    primitives!(each uninhabited);
}

impl CudaStorage {
    /// The ordinal of the device holding the storage.
    pub fn ordinal(&self) -> usize {
        match *self {}
    }
}
