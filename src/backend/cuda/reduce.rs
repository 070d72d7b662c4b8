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

/// Threads of the sum-of-squares blocks (ZF_SQUARES_THREADS in reduce.cu).
const SQUARES_THREADS: u32 = 256;

/// Blocks of the sum of squares' first pass at most: a fixed number, so
/// that the sum's order (and so its bits) does not depend on the GPU.
const SQUARES_BLOCKS: usize = 256;

/// `Σ x²` over the view, one f32 element, summed in double on the device.
pub fn sum_of_squares(x: &CudaStorage, layout: &Layout) -> CudaStorage {
    x.expect("squared_norm", DType::F32);
    let mut copy = None;
    let (whole, start) = x.contiguous(layout, &mut copy);
    let gpu = x.gpu();
    let n = layout.numel();
    let blocks = n
        .div_ceil(SQUARES_THREADS as usize)
        .clamp(1, SQUARES_BLOCKS);
    // f64 partials, held as twice as many f32 elements.
    let partials = CudaStorage::uninit(gpu, DType::F32, 2 * blocks);
    let out = CudaStorage::uninit(gpu, DType::F32, 1);
    let (pp, op, xp, n, b) = (
        partials.ptr(),
        out.ptr(),
        whole.ptr_at(start),
        n as i64,
        blocks as i64,
    );
    // SAFETY: `n` contiguous f32 elements from `xp`, `blocks` f64 in
    // `partials`, one f32 in `out`.
    unsafe {
        launch!(gpu, MODULE, "zf_sum_of_squares_partials", Dim3::x(blocks as u32), Dim3::x(SQUARES_THREADS), 0;
            pp, xp, n);
        launch!(gpu, MODULE, "zf_sum_of_squares_total", Dim3::x(1), Dim3::x(SQUARES_THREADS), 0; op, pp, b);
    }
    out
}

/// Running sums along `axis` (from its end when `reverse`), in double.
pub fn cumsum(x: &CudaStorage, layout: &Layout, axis: Axis, reverse: bool) -> CudaStorage {
    x.expect("cumsum", DType::F32);
    let mut copy = None;
    let (whole, start) = x.contiguous(layout, &mut copy);
    let gpu = x.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    let columns = axis.outer * axis.inner;
    if columns > 0 && axis.n > 0 {
        let (o, xp) = (out.ptr(), whole.ptr_at(start));
        let (outer, n, inner) = (axis.outer as i64, axis.n as i64, axis.inner as i64);
        let reverse = i32::from(reverse);
        // SAFETY: `outer · n · inner` contiguous f32 elements from `xp`, as
        // many in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_cumsum_axis", gpu.grid_for(columns, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, outer, n, inner, reverse)
        };
    }
    out
}
