//! Launchers for grouped.cu: a mixture of experts' grouped product and its
//! backward, the groups' row offsets read on the device.

use super::driver::{DevicePtr, Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::View;
use crate::layout::Layout;

/// grouped.cu.
pub const MODULE: Module = Module {
    name: "grouped",
    source: include_str!("grouped.cu"),
};

const BLOCK: u32 = 256;

/// A view's contiguous elements (copied into `keep` when not a contiguous
/// run), checked to hold `dtype` and to be on `first`'s device.
fn contiguous<'a>(
    (s, l): View<'a, CudaStorage>,
    dtype: DType,
    first: &CudaStorage,
    keep: &'a mut Option<CudaStorage>,
    op: &str,
) -> DevicePtr {
    s.expect(op, dtype);
    first.same_gpu(op, s);
    let (whole, start) = s.contiguous(l, keep);
    whole.ptr_at(start)
}

/// `rows @ weights[e]ᵀ + bias[e]` for each group `e` of rows.
pub fn grouped_matmul(
    rows: &CudaStorage,
    layout: &Layout,
    weights: View<CudaStorage>,
    offsets: View<CudaStorage>,
    bias: Option<View<CudaStorage>>,
) -> CudaStorage {
    let op = "grouped_matmul";
    let (n_rows, in_f) = (layout.shape()[0], layout.shape()[1]);
    let (groups, out_f) = (weights.1.shape()[0], weights.1.shape()[1]);
    let mut keep = [None, None, None, None];
    let [k0, k1, k2, k3] = &mut keep;
    let x = contiguous((rows, layout), DType::F32, rows, k0, op);
    let w = contiguous(weights, DType::F32, rows, k1, op);
    let o = contiguous(offsets, DType::I64, rows, k2, op);
    let b = bias.map_or(DevicePtr(0), |b| contiguous(b, DType::F32, rows, k3, op));
    let gpu = rows.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, n_rows * out_f);
    let n = n_rows * out_f;
    if n > 0 {
        let (y, r, i, of, g) = (
            out.ptr(),
            n_rows as i64,
            in_f as i64,
            out_f as i64,
            groups as i64,
        );
        // SAFETY: contiguous f32 rows [r, i], weights [g, of, i], bias
        // [g, of] (or null) and output [r, of]; `groups + 1` i64 offsets.
        unsafe {
            launch!(gpu, MODULE, "zf_grouped_matmul", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                y, x, w, o, b, r, i, of, g)
        };
    }
    out
}

/// `(d_rows, d_weights, d_bias)` of [`grouped_matmul`].
pub fn grouped_matmul_backward(
    g: &CudaStorage,
    layout: &Layout,
    rows: View<CudaStorage>,
    weights: View<CudaStorage>,
    offsets: View<CudaStorage>,
) -> (CudaStorage, CudaStorage, CudaStorage) {
    let op = "grouped_matmul_backward";
    let (n_rows, in_f) = (rows.1.shape()[0], rows.1.shape()[1]);
    let (groups, out_f) = (weights.1.shape()[0], weights.1.shape()[1]);
    let mut keep = [None, None, None, None];
    let [k0, k1, k2, k3] = &mut keep;
    let gp = contiguous((g, layout), DType::F32, g, k0, op);
    let x = contiguous(rows, DType::F32, g, k1, op);
    let w = contiguous(weights, DType::F32, g, k2, op);
    let o = contiguous(offsets, DType::I64, g, k3, op);
    let gpu = g.gpu();
    let d_rows = CudaStorage::uninit(gpu, DType::F32, n_rows * in_f);
    let d_w = CudaStorage::uninit(gpu, DType::F32, groups * out_f * in_f);
    let d_b = CudaStorage::uninit(gpu, DType::F32, groups * out_f);
    let (r, i, of, gs) = (n_rows as i64, in_f as i64, out_f as i64, groups as i64);
    let (dx, dw, db) = (d_rows.ptr(), d_w.ptr(), d_b.ptr());
    if n_rows * in_f > 0 {
        // SAFETY: contiguous f32 g [r, of], weights [gs, of, i] and d_rows
        // [r, i]; `groups + 1` i64 offsets.
        unsafe {
            launch!(gpu, MODULE, "zf_grouped_matmul_dx", gpu.grid_for(n_rows * in_f, BLOCK), Dim3::x(BLOCK), 0;
                dx, gp, w, o, r, i, of, gs)
        };
    }
    let weights_n = groups * out_f * in_f;
    if weights_n > 0 {
        // SAFETY: contiguous f32 g [r, of], rows [r, i], d_w [gs, of, i]
        // and d_b [gs, of]; `groups + 1` i64 offsets within 0..=r.
        unsafe {
            launch!(gpu, MODULE, "zf_grouped_matmul_dw", gpu.grid_for(weights_n, BLOCK), Dim3::x(BLOCK), 0;
                dw, db, gp, x, o, i, of, gs)
        };
    }
    (d_rows, d_w, d_b)
}
