//! Matrix products through cuBLAS's strided batched SGEMM.
//!
//! cuBLAS is column-major; our tensors are row-major. A row-major `X`
//! `[rows, cols]` read column-major is `Xᵀ`, so `C = A · B` is computed
//! as `Cᵀ = Bᵀ · Aᵀ` with the operands swapped (candle's mapping), and
//! `C` comes out row-major. A transposed view (unit row stride) is the
//! same matrix read with `CUBLAS_OP_T` instead, so transposes cost no
//! copy. Only a view cuBLAS cannot describe (no unit stride in its last
//! two dimensions, or batch dimensions that do not step evenly) is
//! copied first.

use super::copy;
use super::driver::{DevicePtr, Gemm};
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::View;
use crate::layout::Layout;

/// A batch of matrices as cuBLAS reads one side of the swapped product.
struct Operand {
    ptr: DevicePtr,
    /// Read with `CUBLAS_OP_T`.
    trans: bool,
    ld: i32,
    batch_stride: i64,
}

/// How cuBLAS reads the row-major `[batch.., rows, cols]` matrices of
/// `layout` as their transposes, the batch broadcast to `batch_shape`;
/// `None` when it cannot without a copy.
fn describe(storage: &CudaStorage, layout: &Layout, batch_shape: &[usize]) -> Option<Operand> {
    let r = layout.rank();
    let (rows, cols) = (layout.shape()[r - 2], layout.shape()[r - 1]);
    let (mut rs, mut cs) = (layout.strides()[r - 2], layout.strides()[r - 1]);
    // The stride of a dimension of size 1 is never used: pick the one
    // that makes the matrix describable.
    if cols == 1 {
        cs = 1;
    }
    if rows == 1 {
        rs = cols.max(1);
    }
    let (trans, ld) = if cs == 1 && rs >= cols.max(1) {
        (false, rs)
    } else if rs == 1 && cs >= rows.max(1) {
        (true, cs)
    } else {
        return None;
    };
    let batch = Layout::new(
        layout.shape()[..r - 2].to_vec(),
        layout.strides()[..r - 2].to_vec(),
        0,
    )
    .broadcast_to(batch_shape)
    .expect("batch shapes checked by the op");
    let batch_stride = batch_stride(&batch)?;
    Some(Operand {
        ptr: storage.ptr_at(layout.offset()),
        trans,
        ld: i32::try_from(ld).ok()?,
        batch_stride: batch_stride as i64,
    })
}

/// The one stride that steps through every matrix of the batch in
/// row-major order (0 for a batch of one, or a broadcast one), if there is.
fn batch_stride(batch: &Layout) -> Option<usize> {
    let dims: Vec<(usize, usize)> = batch
        .shape()
        .iter()
        .zip(batch.strides())
        .filter(|(size, _)| **size != 1)
        .map(|(&size, &stride)| (size, stride))
        .collect();
    let Some(&(_, inner)) = dims.last() else {
        return Some(0);
    };
    let mut expected = inner;
    for &(size, stride) in dims.iter().rev() {
        if stride != expected {
            return None;
        }
        expected = stride * size;
    }
    Some(inner)
}

/// The operand as cuBLAS can read it: as it is, else its elements copied
/// row-major (the batch broadcast as `batch_shape` asks), with the copy
/// kept alive in `keep`.
fn operand(
    storage: &CudaStorage,
    layout: &Layout,
    batch_shape: &[usize],
    keep: &mut Option<CudaStorage>,
) -> Operand {
    if let Some(described) = describe(storage, layout, batch_shape) {
        return described;
    }
    let r = layout.rank();
    let mut full = batch_shape.to_vec();
    full.extend_from_slice(&layout.shape()[r - 2..]);
    let expanded = layout
        .broadcast_to(&full)
        .expect("batch shapes checked by the op");
    let copy = keep.insert(copy::contiguous_copy(storage, &expanded));
    describe(copy, &Layout::contiguous(&full), batch_shape)
        .expect("a contiguous batch of matrices is describable")
}

/// `out (+)= a @ b` for every matrix of the batch, `out` row-major
/// `[batch, m, n]`; `accumulate` adds onto what `out` holds.
fn gemm(
    a: View<CudaStorage>,
    b: View<CudaStorage>,
    batch_shape: &[usize],
    out: &CudaStorage,
    accumulate: bool,
) {
    let (la, lb) = (a.1, b.1);
    let (ra, rb) = (la.rank(), lb.rank());
    let (m, k, n) = (la.shape()[ra - 2], la.shape()[ra - 1], lb.shape()[rb - 1]);
    let batch: usize = batch_shape.iter().product();
    if m == 0 || n == 0 || batch == 0 {
        return;
    }
    let (mut keep_a, mut keep_b) = (None, None);
    let oa = operand(a.0, la, batch_shape, &mut keep_a);
    let ob = operand(b.0, lb, batch_shape, &mut keep_b);
    let int = |x: usize, what: &str| {
        i32::try_from(x)
            .unwrap_or_else(|_| panic!("matmul: {what} {x} exceeds cuBLAS's 32-bit sizes"))
    };
    let call = Gemm {
        transa: ob.trans,
        transb: oa.trans,
        m: int(n, "n"),
        n: int(m, "m"),
        k: int(k, "k"),
        alpha: 1.0,
        a: ob.ptr,
        lda: ob.ld,
        stride_a: ob.batch_stride,
        b: oa.ptr,
        ldb: oa.ld,
        stride_b: oa.batch_stride,
        beta: if accumulate { 1.0 } else { 0.0 },
        c: out.ptr(),
        ldc: int(n.max(1), "n"),
        stride_c: (m * n) as i64,
        batch: int(batch, "the batch"),
    };
    // SAFETY: every operand's pointer, leading dimension and batch
    // stride come from a layout inside its buffer; `out` holds
    // `batch · m · n` elements.
    unsafe { out.gpu().gemm(&call) };
}

/// `a @ b` with the leading dimensions broadcast to `batch_shape`.
pub fn matmul(
    a: &CudaStorage,
    a_layout: &Layout,
    b: View<CudaStorage>,
    batch_shape: &[usize],
) -> CudaStorage {
    let a = (a, a_layout);
    a.0.expect("matmul", DType::F32);
    b.0.expect("matmul", DType::F32);
    a.0.same_gpu("matmul", b.0);
    let (ra, rb) = (a.1.rank(), b.1.rank());
    let (m, n) = (a.1.shape()[ra - 2], b.1.shape()[rb - 1]);
    let len = batch_shape.iter().product::<usize>() * m * n;
    let out = CudaStorage::uninit(a.0.gpu(), DType::F32, len);
    if a.1.shape()[ra - 1] == 0 {
        // An empty sum: zeros (cuBLAS with k = 0 leaves C as it is).
        // SAFETY: `out` holds `len` f32 elements.
        unsafe { out.gpu().memset(out.ptr(), 0, len * 4) };
        return out;
    }
    gemm(a, b, batch_shape, &out, false);
    out
}

/// `bias + a @ b` for a bias `[n]`, `a` `[m, k]` and `b` `[k, n]`: the bias
/// copied into every row, the product accumulated onto it.
pub fn addmm(
    bias: &CudaStorage,
    bias_layout: &Layout,
    a: View<CudaStorage>,
    b: View<CudaStorage>,
) -> CudaStorage {
    let bias = (bias, bias_layout);
    for s in [bias.0, a.0, b.0] {
        s.expect("addmm", DType::F32);
        bias.0.same_gpu("addmm", s);
    }
    let (m, n) = (a.1.shape()[0], b.1.shape()[1]);
    let rows = bias
        .1
        .broadcast_to(&[m, n])
        .expect("addmm: the op checks the bias's shape");
    let mut out = CudaStorage::uninit(bias.0.gpu(), DType::F32, m * n);
    copy::copy_from(
        &mut out,
        &Layout::contiguous(&[m, n]),
        (bias.0, &rows),
        "addmm",
    );
    gemm(a, b, &[], &out, true);
    out
}
