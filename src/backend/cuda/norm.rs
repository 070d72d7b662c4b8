//! Launchers for norm.cu: layer norm over the last dimension, forward and
//! backward.

use super::driver::{DevicePtr, Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::View;
use crate::layout::Layout;

/// norm.cu.
pub const MODULE: Module = Module {
    name: "norm",
    source: include_str!("norm.cu"),
};

const BLOCK: u32 = 256;

/// Rows per partial sum of the weight and bias gradients: a fixed number,
/// so that the sums' order (and so their bits) does not depend on the GPU.
const CHUNK_ROWS: usize = 32;

/// The contiguous elements of an optional f32 view (null when absent),
/// copied into `keep` when the view is not a contiguous run.
fn optional_ptr(
    view: Option<View<CudaStorage>>,
    keep: &mut Option<CudaStorage>,
    op: &str,
) -> DevicePtr {
    match view {
        Some((s, l)) => {
            s.expect(op, DType::F32);
            let (whole, start) = s.contiguous(l, keep);
            whole.ptr_at(start)
        }
        None => DevicePtr(0),
    }
}

/// `(y, stats)`: each row of `d` normalised, scaled and shifted, and
/// every row's mean followed by every row's reciprocal standard deviation.
pub fn layer_norm(
    x: &CudaStorage,
    layout: &Layout,
    d: usize,
    weight: Option<View<CudaStorage>>,
    bias: Option<View<CudaStorage>>,
    eps: f32,
) -> (CudaStorage, CudaStorage) {
    let op = "layer_norm";
    x.expect(op, DType::F32);
    let (mut x_copy, mut w_copy, mut b_copy) = (None, None, None);
    let (whole, start) = x.contiguous(layout, &mut x_copy);
    let (xp, wp, bp) = (
        whole.ptr_at(start),
        optional_ptr(weight, &mut w_copy, op),
        optional_ptr(bias, &mut b_copy, op),
    );
    let gpu = x.gpu();
    let count = layout.numel() / d.max(1);
    let y = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    let stats = CudaStorage::uninit(gpu, DType::F32, 2 * count);
    if count > 0 && d > 0 {
        let (yp, sp, rows, d) = (y.ptr(), stats.ptr(), count as i64, d as i64);
        // SAFETY: `rows · d` contiguous f32 elements from `xp` and in `y`,
        // `d` from `wp` and `bp` unless null, `2 · rows` in `stats`.
        unsafe {
            launch!(gpu, MODULE, "zf_layer_norm_rows", gpu.grid_for(count * 32, BLOCK), Dim3::x(BLOCK), 0;
                yp, sp, xp, wp, bp, rows, d, eps)
        };
    }
    (y, stats)
}

/// `(dx, dweight, dbias)` of layer norm from the input `x`, the upstream
/// gradient `g` and the forward's `stats`.
pub fn layer_norm_backward(
    x: &CudaStorage,
    layout: &Layout,
    (g, gl): View<CudaStorage>,
    d: usize,
    weight: Option<View<CudaStorage>>,
    stats: &CudaStorage,
) -> (CudaStorage, CudaStorage, CudaStorage) {
    let op = "layer_norm backward";
    x.expect(op, DType::F32);
    g.expect(op, DType::F32);
    stats.expect(op, DType::F32);
    let (mut x_copy, mut g_copy, mut w_copy) = (None, None, None);
    let (xs, x_start) = x.contiguous(layout, &mut x_copy);
    let (gs, g_start) = g.contiguous(gl, &mut g_copy);
    let (xp, gp) = (xs.ptr_at(x_start), gs.ptr_at(g_start));
    let wp = optional_ptr(weight, &mut w_copy, op);
    let gpu = x.gpu();
    let count = layout.numel() / d.max(1);
    let dx = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    let (dw, db) = (
        CudaStorage::uninit(gpu, DType::F32, d),
        CudaStorage::uninit(gpu, DType::F32, d),
    );
    if d == 0 {
        return (dx, dw, db);
    }
    let chunks = count.div_ceil(CHUNK_ROWS);
    let partials = CudaStorage::uninit(gpu, DType::F32, 2 * chunks * d);
    let (rows, d_, chunk_rows, n_chunks) =
        (count as i64, d as i64, CHUNK_ROWS as i64, chunks as i64);
    let (dxp, sp, pp, dwp, dbp) = (dx.ptr(), stats.ptr(), partials.ptr(), dw.ptr(), db.ptr());
    // SAFETY: `rows · d` contiguous f32 elements from `xp` and `gp` and in
    // `dx`; `d` from `wp` unless null; `2 · rows` from `stats`;
    // `2 · chunks · d` in `partials`; `d` in `dw` and `db`.
    unsafe {
        if count > 0 {
            launch!(gpu, MODULE, "zf_layer_norm_backward_rows", gpu.grid_for(count * 32, BLOCK),
                Dim3::x(BLOCK), 0; dxp, xp, gp, wp, sp, rows, d_);
            launch!(gpu, MODULE, "zf_layer_norm_param_partials", gpu.grid_for(chunks * d, BLOCK),
                Dim3::x(BLOCK), 0; pp, xp, gp, sp, rows, d_, chunk_rows);
        }
        launch!(gpu, MODULE, "zf_layer_norm_param_sums", gpu.grid_for(d, BLOCK), Dim3::x(BLOCK), 0;
            dwp, dbp, pp, n_chunks, d_);
    }
    (dx, dw, db)
}
