//! Launchers for index.cu: embedding rows by id and their gradient,
//! gathering along a dimension and its gradient, top-k indices, and the
//! gradient of a maximum.

use super::driver::{Dim3, Module};
use super::kernel_layout::KernelLayout;
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::{Axis, View};
use crate::layout::Layout;

/// index.cu.
pub const MODULE: Module = Module {
    name: "index",
    source: include_str!("index.cu"),
};

const BLOCK: u32 = 256;

/// The rows of the `[vocab, d]` table that `ids` name, `[ids.., d]`; rows
/// of NaN for ids out of range.
pub fn embedding(
    table: &CudaStorage,
    layout: &Layout,
    (ids, il): View<CudaStorage>,
) -> CudaStorage {
    let op = "embedding";
    table.expect(op, DType::F32);
    ids.expect(op, DType::I64);
    table.same_gpu(op, ids);
    let d = layout.shape().last().copied().unwrap_or(1);
    let vocab = layout.numel() / d.max(1);
    let (mut w_copy, mut id_copy) = (None, None);
    let (w, w_start) = table.contiguous(layout, &mut w_copy);
    let (idv, id_start) = ids.contiguous(il, &mut id_copy);
    let gpu = table.gpu();
    let n = il.numel();
    let out = CudaStorage::uninit(gpu, DType::F32, n * d);
    if n * d > 0 {
        let (o, wp, ip) = (out.ptr(), w.ptr_at(w_start), idv.ptr_at(id_start));
        let (n_, d, vocab) = (n as i64, d as i64, vocab as i64);
        // SAFETY: `vocab · d` contiguous f32 elements from `wp`, `n` i64
        // ids from `ip`, `n · d` in `out`; ids out of range are not read.
        unsafe {
            launch!(gpu, MODULE, "zf_embedding", gpu.grid_for(n * d as usize, BLOCK), Dim3::x(BLOCK), 0;
                o, wp, ip, n_, d, vocab)
        };
    }
    out
}

/// The gradient of [`embedding`]: the rows of `g` (`[ids.., d]`) added into
/// `vocab x d` zeros at their ids, in position order.
pub fn embedding_backward(
    g: &CudaStorage,
    layout: &Layout,
    (ids, il): View<CudaStorage>,
    vocab: usize,
) -> CudaStorage {
    let op = "embedding backward";
    g.expect(op, DType::F32);
    ids.expect(op, DType::I64);
    let d = layout.shape().last().copied().unwrap_or(1);
    let (mut g_copy, mut id_copy) = (None, None);
    let (gs, g_start) = g.contiguous(layout, &mut g_copy);
    let (idv, id_start) = ids.contiguous(il, &mut id_copy);
    let gpu = g.gpu();
    let dw = CudaStorage::uninit(gpu, DType::F32, vocab * d);
    if vocab * d > 0 {
        let (o, gp, ip) = (dw.ptr(), gs.ptr_at(g_start), idv.ptr_at(id_start));
        let (n, d, vocab_) = (il.numel() as i64, d as i64, vocab as i64);
        // SAFETY: `n · d` contiguous f32 elements from `gp`, `n` i64 ids from
        // `ip`, `vocab · d` in `dw`; each warp writes only its own row.
        unsafe {
            launch!(gpu, MODULE, "zf_embedding_backward", gpu.grid_for(vocab * 32, BLOCK), Dim3::x(BLOCK), 0;
                o, gp, ip, n, d, vocab_)
        };
    }
    dw
}

/// The gradient of a maximum over `axis`: `g` (`[outer, inner]`) at each
/// `argmax`, zeros elsewhere.
pub fn max_axis_backward(
    g: &CudaStorage,
    layout: &Layout,
    argmax: &CudaStorage,
    axis: Axis,
) -> CudaStorage {
    let op = "max backward";
    g.expect(op, DType::F32);
    argmax.expect(op, DType::I64);
    let mut copy = None;
    let (gs, start) = g.contiguous(layout, &mut copy);
    let gpu = g.gpu();
    let n = axis.outer * axis.n * axis.inner;
    let dx = CudaStorage::uninit(gpu, DType::F32, n);
    if n > 0 {
        let (o, gp, ap) = (dx.ptr(), gs.ptr_at(start), argmax.ptr());
        let (outer, len, inner) = (axis.outer as i64, axis.n as i64, axis.inner as i64);
        // SAFETY: `outer · inner` contiguous f32 elements from `gp` and i64
        // from `ap`, `outer · n · inner` in `dx`.
        unsafe {
            launch!(gpu, MODULE, "zf_max_backward", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, gp, ap, outer, len, inner)
        };
    }
    dx
}

/// `torch.gather` along `dim`: for each position of the index's shape, the
/// element of `x` there with `dim` replaced by the index; NaN for an index
/// out of range.
pub fn gather_dim(
    x: &CudaStorage,
    layout: &Layout,
    dim: usize,
    (index, il): View<CudaStorage>,
) -> CudaStorage {
    let op = "gather";
    x.expect(op, DType::F32);
    index.expect(op, DType::I64);
    x.same_gpu(op, index);
    let gpu = x.gpu();
    let n = il.numel();
    let out = CudaStorage::uninit(gpu, DType::F32, n);
    if n > 0 {
        let (xl, kl) = (
            KernelLayout::unmerged(layout, op),
            KernelLayout::unmerged(il, op),
        );
        let (size, stride) = (layout.shape()[dim] as i64, layout.strides()[dim] as i64);
        let (o, xp, ip, dim, n_) = (out.ptr(), x.ptr(), index.ptr(), dim as i32, n as i64);
        // SAFETY: the layouts view `x` and `index` in bounds; the kernel
        // reads `x` only at indices inside `0..size`; `n` elements in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_gather_dim", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, xl, ip, kl, dim, size, stride, n_)
        };
    }
    out
}

/// The gradient of [`gather_dim`]: each element of `g` (the index's shape)
/// added at its index into row-major zeros of `shape`, in the CPU's order.
pub fn scatter_add_dim(
    g: &CudaStorage,
    layout: &Layout,
    dim: usize,
    (index, il): View<CudaStorage>,
    shape: &[usize],
) -> CudaStorage {
    let op = "gather backward";
    g.expect(op, DType::F32);
    index.expect(op, DType::I64);
    let gpu = g.gpu();
    let out_layout = Layout::contiguous(shape);
    let n = out_layout.numel();
    let out = CudaStorage::uninit(gpu, DType::F32, n);
    if n > 0 {
        let (ol, gl, kl) = (
            KernelLayout::unmerged(&out_layout, op),
            KernelLayout::unmerged(layout, op),
            KernelLayout::unmerged(il, op),
        );
        let along = il.shape()[dim] as i64;
        let (index_stride, g_stride) = (il.strides()[dim] as i64, layout.strides()[dim] as i64);
        let (o, gp, ip, dim, n_) = (out.ptr(), g.ptr(), index.ptr(), dim as i32, n as i64);
        // SAFETY: the layouts view `g` and `index` in bounds (the same
        // shape); `n` elements in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_scatter_add_dim", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                o, ol, gp, gl, ip, kl, dim, along, index_stride, g_stride, n_)
        };
    }
    out
}

/// The indices of the `k` largest along `axis` (NaN largest, ties by lower
/// index), largest first, as `[outer, k, inner]`.
pub fn topk_indices(x: &CudaStorage, layout: &Layout, axis: Axis, k: usize) -> CudaStorage {
    let op = "topk";
    x.expect(op, DType::F32);
    assert!(
        k <= axis.n,
        "{op}: k = {k} is more than the {} elements",
        axis.n
    );
    let mut copy = None;
    let (whole, start) = x.contiguous(layout, &mut copy);
    let gpu = x.gpu();
    let columns = axis.outer * axis.inner;
    let out = CudaStorage::uninit(gpu, DType::I64, columns * k);
    if columns * k > 0 {
        let (o, xp) = (out.ptr(), whole.ptr_at(start));
        let (outer, n, inner, k) = (
            axis.outer as i64,
            axis.n as i64,
            axis.inner as i64,
            k as i64,
        );
        // SAFETY: `outer · n · inner` contiguous f32 elements from `xp`,
        // `outer · k · inner` i64 in `out`.
        unsafe {
            launch!(gpu, MODULE, "zf_topk_indices", gpu.grid_for(columns * 32, BLOCK), Dim3::x(BLOCK), 0;
                o, xp, outer, n, inner, k)
        };
    }
    out
}
