//! Launchers for softmax.cu: softmax, log-softmax and causal softmax over
//! rows, and the softmax backward, a warp per row.

use super::driver::{Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::layout::Layout;

/// softmax.cu.
pub const MODULE: Module = Module {
    name: "softmax",
    source: include_str!("softmax.cu"),
};

const BLOCK: u32 = 256;

/// The rows of `n` of the row-major view `layout` gives, as one contiguous
/// operand, and their count.
fn rows<'a>(
    x: &'a CudaStorage,
    layout: &Layout,
    n: usize,
    copy: &'a mut Option<CudaStorage>,
    op: &str,
) -> (super::driver::DevicePtr, usize) {
    x.expect(op, DType::F32);
    let (whole, start) = x.contiguous(layout, copy);
    (whole.ptr_at(start), layout.numel() / n.max(1))
}

/// Softmax (or, with `log`, log-softmax) of each row of `n`.
pub fn softmax(x: &CudaStorage, layout: &Layout, n: usize, log: bool) -> CudaStorage {
    let op = if log { "log_softmax" } else { "softmax" };
    let mut copy = None;
    let (xp, count) = rows(x, layout, n, &mut copy, op);
    let gpu = x.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    if count > 0 && n > 0 {
        let (o, rows, n, log) = (out.ptr(), count as i64, n as i64, i32::from(log));
        // SAFETY: `rows · n` contiguous f32 elements from `xp`, as many in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_softmax_rows", gpu.grid_for(count * 32, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, rows, n, log)
        };
    }
    out
}

/// Causal softmax of `scale · x` over the last dimension (keys), in blocks
/// of `queries` rows whose first sits at position `offset`.
pub fn causal_softmax(
    x: &CudaStorage,
    layout: &Layout,
    queries: usize,
    offset: usize,
    scale: f32,
) -> CudaStorage {
    let keys = layout.shape().last().copied().unwrap_or(1);
    let mut copy = None;
    let (xp, count) = rows(x, layout, keys, &mut copy, "causal_softmax");
    let gpu = x.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    if count > 0 && keys > 0 {
        let (o, rows, keys, queries, offset) = (
            out.ptr(),
            count as i64,
            keys as i64,
            queries.max(1) as i64,
            offset as i64,
        );
        // SAFETY: `rows · keys` contiguous f32 elements from `xp`, as many in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_causal_softmax_rows", gpu.grid_for(count * 32, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, rows, keys, queries, offset, scale)
        };
    }
    out
}

/// `scale · y ⊙ (g - Σ g ⊙ y)` over rows of the last dimension, from the
/// softmax output `y` and its gradient `g`.
pub fn softmax_backward(
    y: &CudaStorage,
    layout: &Layout,
    (g, gl): (&CudaStorage, &Layout),
    scale: f32,
) -> CudaStorage {
    let op = "softmax_backward";
    let n = layout.shape().last().copied().unwrap_or(1);
    let (mut y_copy, mut g_copy) = (None, None);
    let (yp, count) = rows(y, layout, n, &mut y_copy, op);
    let (gp, _) = rows(g, gl, n, &mut g_copy, op);
    let gpu = y.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    if count > 0 && n > 0 {
        let (o, rows, n) = (out.ptr(), count as i64, n as i64);
        // SAFETY: `rows · n` contiguous f32 elements from `yp` and from `gp`
        // (the same shape), as many in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_softmax_backward_rows", gpu.grid_for(count * 32, BLOCK), Dim3::x(BLOCK), 0;
                o, yp, gp, rows, n, scale)
        };
    }
    out
}
