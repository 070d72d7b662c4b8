//! Launchers for reduce.cu: sums and maxima over one axis.

use super::driver::{Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::Axis;
use crate::layout::Layout;

/// reduce.cu.
pub const MODULE: Module = Module {
    name: "reduce",
    source: include_str!("reduce.cu"),
};

const BLOCK: u32 = 256;

/// Sums over `axis` of the row-major view `layout` gives: `[outer, inner]`.
pub fn sum_axis(x: &CudaStorage, layout: &Layout, axis: Axis) -> CudaStorage {
    x.expect("sum", DType::F32);
    let mut copy = None;
    let (whole, start) = x.contiguous(layout, &mut copy);
    let gpu = x.gpu();
    let outputs = axis.outer * axis.inner;
    let out = CudaStorage::uninit(gpu, DType::F32, outputs);
    if outputs == 0 {
        return out;
    }
    let (o, xp) = (out.ptr(), whole.ptr_at(start));
    let (outer, n, inner) = (axis.outer as i64, axis.n as i64, axis.inner as i64);
    // SAFETY: `outer · n · inner` contiguous f32 elements from `xp`.
    unsafe {
        if axis.inner == 1 {
            // A warp per row.
            let grid = gpu.grid_for(axis.outer * 32, BLOCK);
            launch!(gpu, MODULE, "zf_sum_rows", grid, Dim3::x(BLOCK), 0; o, xp, outer, n)
        } else {
            launch!(gpu, MODULE, "zf_sum_axis", gpu.grid_for(outputs, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, outer, n, inner)
        }
    };
    out
}

/// Maxima over `axis` and the index of each one's first occurrence.
pub fn max_axis(x: &CudaStorage, layout: &Layout, axis: Axis) -> (CudaStorage, CudaStorage) {
    x.expect("max", DType::F32);
    assert!(axis.n > 0, "max: cannot reduce over an empty dimension");
    let mut copy = None;
    let (whole, start) = x.contiguous(layout, &mut copy);
    let gpu = x.gpu();
    let outputs = axis.outer * axis.inner;
    let values = CudaStorage::uninit(gpu, DType::F32, outputs);
    let argmax = CudaStorage::uninit(gpu, DType::I64, outputs);
    if outputs > 0 {
        let (v, a, xp) = (values.ptr(), argmax.ptr(), whole.ptr_at(start));
        let (outer, n, inner) = (axis.outer as i64, axis.n as i64, axis.inner as i64);
        // SAFETY: as in `sum_axis`; the outputs hold `outer · inner` each.
        unsafe {
            launch!(gpu, MODULE, "zf_max_axis", gpu.grid_for(outputs, BLOCK), Dim3::x(BLOCK), 0;
                v, a, xp, outer, n, inner)
        };
    }
    (values, argmax)
}
