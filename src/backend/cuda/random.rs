//! Launchers for random.cu: dropout masks from Philox4x32-10.

use super::driver::{Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;

/// random.cu.
pub const MODULE: Module = Module {
    name: "random",
    source: include_str!("random.cu"),
};

const BLOCK: u32 = 256;

/// `len` inverted-dropout factors under `key`, on `like`'s device (see
/// [`BackendStorage::dropout_mask`](crate::backend::BackendStorage::dropout_mask)).
pub fn dropout_mask(like: &CudaStorage, len: usize, p: f32, key: u64) -> CudaStorage {
    let gpu = like.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, len);
    if len > 0 {
        let (o, n, scale) = (out.ptr(), len as i64, 1.0 / (1.0 - p));
        let (lo, hi) = (key as u32, (key >> 32) as u32);
        // SAFETY: `out` holds `len` f32 elements.
        unsafe {
            launch!(gpu, MODULE, "zf_dropout_mask", gpu.grid_for(len.div_ceil(4), BLOCK), Dim3::x(BLOCK), 0;
                o, n, p, scale, lo, hi)
        };
    }
    out
}
