//! Launchers for copy.cu: strided copies, adding into a view,
//! fills and dtype casts.

use super::driver::{Dim3, Module};
use super::kernel_layout::KernelLayout;
use super::launch;
use super::storage::{CudaStorage, width};
use crate::DType;
use crate::backend::{BackendStorage, View};
use crate::layout::Layout;

/// copy.cu.
pub const MODULE: Module = Module {
    name: "copy",
    source: include_str!("copy.cu"),
};

/// Threads per block of every kernel here.
const BLOCK: u32 = 256;

/// `n` elements from `src` under `from` to `dst` under `to`.
fn strided(dst: &CudaStorage, to: KernelLayout, src: &CudaStorage, from: KernelLayout, n: usize) {
    if n == 0 {
        return;
    }
    let gpu = dst.gpu();
    let (grid, block, n) = (gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), n as i64);
    let (d, s) = (dst.ptr(), src.ptr());
    // SAFETY: both layouts stay inside their buffers (the views were
    // checked when made), and the kernel's parameters are these types.
    unsafe {
        match width(src.dtype()) {
            1 => launch!(gpu, MODULE, "zf_copy_b1", grid, block, 0; d, to, s, from, n),
            4 => launch!(gpu, MODULE, "zf_copy_b4", grid, block, 0; d, to, s, from, n),
            _ => launch!(gpu, MODULE, "zf_copy_b8", grid, block, 0; d, to, s, from, n),
        }
    }
}

/// The elements under `layout`, row-major in new storage.
pub fn contiguous_copy(src: &CudaStorage, layout: &Layout) -> CudaStorage {
    let n = layout.numel();
    let out = CudaStorage::uninit(src.gpu(), src.dtype(), n);
    match layout.contiguous_range() {
        // SAFETY: the range lies in `src`, and `out` holds `n` elements.
        Some(range) => unsafe {
            src.gpu()
                .copy(out.ptr(), src.ptr_at(range.start), n * width(src.dtype()))
        },
        None => strided(
            &out,
            KernelLayout::contiguous(0),
            src,
            KernelLayout::of(layout, "contiguous"),
            n,
        ),
    }
    out
}

/// Copies `src` under `src_layout` into `dst` under `dst_layout`; the
/// dtypes must match (panics naming `op` otherwise).
pub fn copy_from(dst: &mut CudaStorage, dst_layout: &Layout, src: View<CudaStorage>, op: &str) {
    let (src, src_layout) = src;
    if dst.dtype() != src.dtype() {
        panic!(
            "{op}: dtype mismatch, {:?} and {:?}",
            dst.dtype(),
            src.dtype()
        );
    }
    dst.same_gpu(op, src);
    let n = dst_layout.numel();
    assert_eq!(n, src_layout.numel(), "{op}: element counts differ");
    let to = KernelLayout::of(dst_layout, op);
    strided(dst, to, src, KernelLayout::of(src_layout, op), n);
}

/// Adds f32 `src` under `src_layout` into f32 `dst` under `dst_layout`;
/// false, changing nothing, for other dtypes.
pub fn add_from(dst: &mut CudaStorage, dst_layout: &Layout, src: View<CudaStorage>) -> bool {
    let (src, src_layout) = src;
    if dst.dtype() != DType::F32 || src.dtype() != DType::F32 {
        return false;
    }
    let op = "add_from";
    dst.same_gpu(op, src);
    let n = dst_layout.numel();
    assert_eq!(n, src_layout.numel(), "{op}: element counts differ");
    if n == 0 {
        return true;
    }
    let gpu = dst.gpu();
    let (to, from) = (
        KernelLayout::of(dst_layout, op),
        KernelLayout::of(src_layout, op),
    );
    let (d, s) = (dst.ptr(), src.ptr());
    // SAFETY: as in `strided`; both are f32.
    unsafe {
        launch!(gpu, MODULE, "zf_add_into_f32", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
            d, to, s, from, n as i64)
    };
    true
}

/// `len` zeros (or `false`s) of `like`'s dtype, on its device.
pub fn zeros_like(like: &CudaStorage, len: usize) -> CudaStorage {
    let out = CudaStorage::uninit(like.gpu(), like.dtype(), len);
    // SAFETY: the buffer holds `len` elements of this dtype.
    unsafe { out.gpu().memset(out.ptr(), 0, len * width(like.dtype())) };
    out
}

/// `len` f32 elements equal to `value`, on `like`'s device.
pub fn full_like(like: &CudaStorage, len: usize, value: f32) -> CudaStorage {
    let out = CudaStorage::uninit(like.gpu(), DType::F32, len);
    fill(&out, value);
    out
}

/// Every element of the f32 storage `out` set to `value`.
pub fn fill(out: &CudaStorage, value: f32) {
    let (gpu, n) = (out.gpu(), out.elements());
    if n == 0 {
        return;
    }
    if value.to_bits() == 0 {
        // SAFETY: the buffer holds `n` f32 elements.
        unsafe { gpu.memset(out.ptr(), 0, n * 4) };
        return;
    }
    let ptr = out.ptr();
    // SAFETY: `out` holds `n` f32 elements.
    unsafe {
        launch!(gpu, MODULE, "zf_fill_f32", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
            ptr, value, n as i64)
    };
}

/// The elements under `layout` converted to `dtype`, row-major.
pub fn to_dtype(src: &CudaStorage, layout: &Layout, dtype: DType) -> CudaStorage {
    let from = src.dtype();
    if from == dtype {
        return contiguous_copy(src, layout);
    }
    assert!(
        from != DType::BF16 && dtype != DType::BF16,
        "to_dtype: CUDA has no kernel casting {from:?} to {dtype:?} yet (bf16 runs on the CPU; cast there)"
    );
    let n = layout.numel();
    let gpu = src.gpu();
    let out = CudaStorage::uninit(gpu, dtype, n);
    if n == 0 {
        return out;
    }
    let (grid, block) = (gpu.grid_for(n, BLOCK), Dim3::x(BLOCK));
    let (d, s, l, n) = (
        out.ptr(),
        src.ptr(),
        KernelLayout::of(layout, "to_dtype"),
        n as i64,
    );
    use DType::*;
    // SAFETY: the kernel's element types are the storages' dtypes.
    unsafe {
        match (from, dtype) {
            (F32, I64) => launch!(gpu, MODULE, "zf_cast_f32_i64", grid, block, 0; d, s, l, n),
            (F32, Bool) => launch!(gpu, MODULE, "zf_cast_f32_bool", grid, block, 0; d, s, l, n),
            (F32, I8) => launch!(gpu, MODULE, "zf_cast_f32_i8", grid, block, 0; d, s, l, n),
            (I64, F32) => launch!(gpu, MODULE, "zf_cast_i64_f32", grid, block, 0; d, s, l, n),
            (I64, Bool) => launch!(gpu, MODULE, "zf_cast_i64_bool", grid, block, 0; d, s, l, n),
            (I64, I8) => launch!(gpu, MODULE, "zf_cast_i64_i8", grid, block, 0; d, s, l, n),
            (Bool, F32) => launch!(gpu, MODULE, "zf_cast_bool_f32", grid, block, 0; d, s, l, n),
            (Bool, I64) => launch!(gpu, MODULE, "zf_cast_bool_i64", grid, block, 0; d, s, l, n),
            (Bool, I8) => launch!(gpu, MODULE, "zf_cast_bool_i8", grid, block, 0; d, s, l, n),
            (I8, F32) => launch!(gpu, MODULE, "zf_cast_i8_f32", grid, block, 0; d, s, l, n),
            (I8, I64) => launch!(gpu, MODULE, "zf_cast_i8_i64", grid, block, 0; d, s, l, n),
            (I8, Bool) => launch!(gpu, MODULE, "zf_cast_i8_bool", grid, block, 0; d, s, l, n),
            (F32, F32) | (I64, I64) | (Bool, Bool) | (I8, I8) | (BF16, _) | (_, BF16) => {
                unreachable!("handled above")
            }
        }
    }
    out
}
