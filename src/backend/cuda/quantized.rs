//! Launchers for quantized.cu: int8 row quantisation and the int8 × f32
//! product of decoding.

use super::driver::{Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::View;
use crate::layout::Layout;

/// quantized.cu.
pub const MODULE: Module = Module {
    name: "quantized",
    source: include_str!("quantized.cu"),
};

const BLOCK: u32 = 256;

/// `(q, scales)`: each row of the `[rows, cols]` view as int8 and its f32
/// scale, `max |w| / 127`.
pub fn quantize_rows_int8(w: &CudaStorage, layout: &Layout) -> (CudaStorage, CudaStorage) {
    let op = "quantize_rows_int8";
    w.expect(op, DType::F32);
    let (rows, cols) = (
        layout.shape()[0],
        layout.shape().last().copied().unwrap_or(1),
    );
    let mut copy = None;
    let (whole, start) = w.contiguous(layout, &mut copy);
    let gpu = w.gpu();
    let q = CudaStorage::uninit(gpu, DType::I8, rows * cols);
    let scales = CudaStorage::uninit(gpu, DType::F32, rows);
    if rows > 0 {
        let (qp, sp, wp) = (q.ptr(), scales.ptr(), whole.ptr_at(start));
        let (rows_, cols) = (rows as i64, cols as i64);
        // SAFETY: `rows · cols` contiguous f32 elements from `wp`, as many
        // int8 in `q`, `rows` f32 in `scales`.
        unsafe {
            launch!(gpu, MODULE, "zf_quantize_rows", gpu.grid_for(rows * 32, BLOCK), Dim3::x(BLOCK), 0;
                qp, sp, wp, rows_, cols)
        };
    }
    (q, scales)
}

/// `x @ (q · s)ᵀ` for f32 `x` `[m, k]`, int8 `q` `[n, k]` and scales `[n]`.
pub fn matmul_int8(
    x: &CudaStorage,
    layout: &Layout,
    (q, ql): View<CudaStorage>,
    (s, sl): View<CudaStorage>,
) -> CudaStorage {
    let op = "matmul_int8";
    x.expect(op, DType::F32);
    q.expect(op, DType::I8);
    s.expect(op, DType::F32);
    x.same_gpu(op, q);
    let (m, k, n) = (
        layout.shape()[0],
        layout.shape().last().copied().unwrap_or(1),
        ql.shape()[0],
    );
    let (mut x_copy, mut q_copy, mut s_copy) = (None, None, None);
    let (xs, x_start) = x.contiguous(layout, &mut x_copy);
    let (qs, q_start) = q.contiguous(ql, &mut q_copy);
    let (ss, s_start) = s.contiguous(sl, &mut s_copy);
    let gpu = x.gpu();
    let out = CudaStorage::uninit(gpu, DType::F32, m * n);
    if m * n > 0 {
        let (o, xp, qp, sp) = (
            out.ptr(),
            xs.ptr_at(x_start),
            qs.ptr_at(q_start),
            ss.ptr_at(s_start),
        );
        let (m, k, n_) = (m as i64, k as i64, n as i64);
        // SAFETY: `m · k` contiguous f32 elements from `xp`, `n · k` int8
        // from `qp`, `n` f32 from `sp`, `m · n` in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_matmul_int8", gpu.grid_for(n * 32, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, qp, sp, m, k, n_)
        };
    }
    out
}
