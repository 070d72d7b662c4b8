//! Launchers for elementwise.cu: unary functions and their
//! gradients, arithmetic, comparisons and `where`, with strides and
//! broadcasting (each operand's layout has the output's shape).

use super::driver::{Dim3, Module};
use super::kernel_layout::KernelLayout;
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::{BinaryOp, CmpOp, UnaryOp, View};
use crate::layout::Layout;

/// elementwise.cu.
pub const MODULE: Module = Module {
    name: "elementwise",
    source: include_str!("elementwise.cu"),
};

const BLOCK: u32 = 256;

/// The output's storage and the kernel's layout of each operand, all of
/// the output's shape on one device and of the dtypes the op takes.
fn prepare<const N: usize>(
    op: &str,
    operands: [(View<CudaStorage>, DType); N],
    out_dtype: DType,
) -> (CudaStorage, [KernelLayout; N], usize) {
    let ((first, first_layout), _) = operands[0];
    for ((s, _), dtype) in operands {
        s.expect(op, dtype);
        first.same_gpu(op, s);
    }
    let n = first_layout.numel();
    let layouts = operands.map(|((_, l), _)| KernelLayout::of(l, op));
    (CudaStorage::uninit(first.gpu(), out_dtype, n), layouts, n)
}

pub fn unary(x: &CudaStorage, layout: &Layout, op: UnaryOp) -> CudaStorage {
    let f = DType::F32;
    let (out, [lx], n) = prepare(op.name(), [((x, layout), f)], f);
    if n > 0 {
        let gpu = out.gpu();
        let (code, [p, q]) = (op.code(), op.params());
        let (o, xp) = (out.ptr(), x.ptr());
        // SAFETY: f32 operands whose layouts lie in their buffers.
        unsafe {
            launch!(gpu, MODULE, "zf_unary", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, lx, code, p, q, n as i64)
        };
    }
    out
}

pub fn unary_backward(
    g: &CudaStorage,
    g_layout: &Layout,
    x: View<CudaStorage>,
    y: View<CudaStorage>,
    op: UnaryOp,
) -> CudaStorage {
    let g = (g, g_layout);
    let f = DType::F32;
    let (out, [lg, lx, ly], n) = prepare(op.name(), [(g, f), (x, f), (y, f)], f);
    if n > 0 {
        let gpu = out.gpu();
        let (code, [p, q]) = (op.code(), op.params());
        let (o, gp, xp, yp) = (out.ptr(), g.0.ptr(), x.0.ptr(), y.0.ptr());
        // SAFETY: as in `unary`.
        unsafe {
            launch!(gpu, MODULE, "zf_unary_backward", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, gp, lg, xp, lx, yp, ly, code, p, q, n as i64)
        };
    }
    out
}

pub fn binary(
    a: &CudaStorage,
    a_layout: &Layout,
    b: View<CudaStorage>,
    op: BinaryOp,
) -> CudaStorage {
    let out = (DType::F32, "zf_binary");
    pairwise((a, a_layout), b, op.name(), op.code(), out)
}

pub fn compare(a: &CudaStorage, a_layout: &Layout, b: View<CudaStorage>, op: CmpOp) -> CudaStorage {
    let out = (DType::Bool, "zf_compare");
    pairwise((a, a_layout), b, op.name(), op.code(), out)
}

/// `a op b` of two f32 operands by `kernel`, into its output's dtype.
fn pairwise(
    a: View<CudaStorage>,
    b: View<CudaStorage>,
    name: &str,
    code: i32,
    (dtype, kernel): (DType, &'static str),
) -> CudaStorage {
    let f = DType::F32;
    let (out, [la, lb], n) = prepare(name, [(a, f), (b, f)], dtype);
    if n > 0 {
        let gpu = out.gpu();
        let (o, ap, bp) = (out.ptr(), a.0.ptr(), b.0.ptr());
        // SAFETY: f32 inputs and the kernel's output type (f32 or bool
        // bytes), laid out as `prepare` checked.
        unsafe {
            launch!(gpu, MODULE, kernel, gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, ap, la, bp, lb, code, n as i64)
        };
    }
    out
}

pub fn where_cond(
    cond: &CudaStorage,
    cond_layout: &Layout,
    on_true: View<CudaStorage>,
    on_false: View<CudaStorage>,
) -> CudaStorage {
    let cond = (cond, cond_layout);
    let f = DType::F32;
    let (out, [lc, la, lb], n) = prepare(
        "where_cond",
        [(cond, DType::Bool), (on_true, f), (on_false, f)],
        f,
    );
    if n > 0 {
        let gpu = out.gpu();
        let (o, c, a, b) = (out.ptr(), cond.0.ptr(), on_true.0.ptr(), on_false.0.ptr());
        // SAFETY: a bool condition, f32 branches and output.
        unsafe {
            launch!(gpu, MODULE, "zf_where", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, c, lc, a, la, b, lb, n as i64)
        };
    }
    out
}
