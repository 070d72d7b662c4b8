//! [`CudaStorage`]: a device buffer and its dtype, and its implementation
//! of the primitives, each a launcher call (a kernel or cuBLAS).

use std::sync::Arc;

use super::driver::DevicePtr;
use super::gpu::{DeviceBuffer, Gpu};
use super::{
    attention, copy, elementwise, index, loss, matmul, norm, optim, quantized, random, reduce,
    softmax,
};
use crate::backend::cpu::CpuStorage;
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View,
};
use crate::layout::Layout;
use crate::{DType, Result};

/// Elements in the memory of a CUDA device (or the simulated GPU's). Host
/// code reaches them only through the primitives and copies: there is no
/// slice to read by accident.
pub struct CudaStorage {
    buffer: DeviceBuffer,
    dtype: DType,
    len: usize,
}

/// Bytes per element of each dtype on the device (bool as one byte, 0 or 1).
pub(crate) fn width(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 4,
        DType::I64 => 8,
        DType::Bool | DType::I8 => 1,
    }
}

/// Element types copied to and from the device as raw bytes.
trait Plain: Copy + Default {}
impl Plain for f32 {}
impl Plain for i64 {}
impl Plain for i8 {}
impl Plain for u8 {}

fn bytes_of<T: Plain>(values: &[T]) -> &[u8] {
    // SAFETY: plain numbers have no padding and any bytes are valid reads.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

fn from_bytes<T: Plain>(bytes: &[u8]) -> Vec<T> {
    let mut out = vec![T::default(); bytes.len() / std::mem::size_of::<T>()];
    // SAFETY: `out` has room for exactly these bytes, and every bit
    // pattern is a valid value of a plain number.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast::<u8>(), bytes.len())
    };
    out
}

/// Host elements on CUDA device `ordinal`; why not, when it cannot be used.
pub fn upload(host: &CpuStorage, ordinal: usize) -> Result<CudaStorage> {
    let gpu = super::gpu::gpu(ordinal).map_err(|why| {
        crate::Error::CudaUnavailable(format!(
            "cannot move a tensor to CUDA device {ordinal}: {why}"
        ))
    })?;
    Ok(CudaStorage::from_host(&gpu, host))
}

/// `len` f32 elements equal to `value` on CUDA device `ordinal`.
pub fn full(len: usize, value: f32, ordinal: usize) -> Result<CudaStorage> {
    let gpu = super::open(ordinal)?;
    let out = CudaStorage::uninit(&gpu, DType::F32, len);
    copy::fill(&out, value);
    Ok(out)
}

impl CudaStorage {
    /// `len` elements of `dtype` whose values the caller writes.
    pub(crate) fn uninit(gpu: &Arc<Gpu>, dtype: DType, len: usize) -> CudaStorage {
        CudaStorage {
            buffer: gpu.alloc(len * width(dtype)),
            dtype,
            len,
        }
    }

    /// A copy of host elements.
    pub(crate) fn from_host(gpu: &Arc<Gpu>, host: &CpuStorage) -> CudaStorage {
        let (dtype, buffer) = match host {
            CpuStorage::F32(v) => (DType::F32, gpu.upload(bytes_of(v))),
            CpuStorage::I64(v) => (DType::I64, gpu.upload(bytes_of(v))),
            CpuStorage::I8(v) => (DType::I8, gpu.upload(bytes_of(v))),
            CpuStorage::Bool(v) => {
                let bytes: Vec<u8> = v.iter().map(|&b| b as u8).collect();
                (DType::Bool, gpu.upload(&bytes))
            }
        };
        CudaStorage {
            buffer,
            dtype,
            len: host.elements(),
        }
    }

    /// Elements `range` of the storage, copied to the host.
    pub(crate) fn download(&self, range: std::ops::Range<usize>) -> CpuStorage {
        let w = width(self.dtype);
        let bytes = self
            .gpu()
            .download(self.ptr().offset(range.start * w), range.len() * w);
        match self.dtype {
            DType::F32 => CpuStorage::F32(from_bytes(&bytes)),
            DType::I64 => CpuStorage::I64(from_bytes(&bytes)),
            DType::I8 => CpuStorage::I8(from_bytes(&bytes)),
            DType::Bool => CpuStorage::Bool(bytes.iter().map(|&b| b != 0).collect()),
        }
    }

    /// The device holding the storage.
    pub(crate) fn gpu(&self) -> &Arc<Gpu> {
        self.buffer.gpu()
    }

    /// The ordinal of the device holding the storage.
    pub fn ordinal(&self) -> usize {
        self.gpu().ordinal()
    }

    /// The buffer's address.
    pub(crate) fn ptr(&self) -> DevicePtr {
        self.buffer.ptr()
    }

    /// The address of element `index`.
    pub(crate) fn ptr_at(&self, index: usize) -> DevicePtr {
        self.ptr().offset(index * width(self.dtype))
    }

    /// Panics naming `op` unless the storage holds `dtype`.
    pub(crate) fn expect(&self, op: &str, dtype: DType) -> &CudaStorage {
        assert!(
            self.dtype == dtype,
            "{op}: expected {} tensor, got {:?}",
            match dtype {
                DType::F32 => "an f32",
                DType::I64 => "an i64",
                DType::Bool => "a bool",
                DType::I8 => "an int8",
            },
            self.dtype
        );
        self
    }

    /// Panics naming `op` unless `other` is on the same device.
    pub(crate) fn same_gpu(&self, op: &str, other: &CudaStorage) {
        assert_eq!(
            self.ordinal(),
            other.ordinal(),
            "{op}: operands on CUDA devices {} and {}",
            self.ordinal(),
            other.ordinal()
        );
    }

    /// The row-major elements of `layout` as contiguous storage and the
    /// index of the first: the storage itself when the view is a
    /// contiguous run, else a copy.
    pub(crate) fn contiguous<'a>(
        &'a self,
        layout: &Layout,
        copy: &'a mut Option<CudaStorage>,
    ) -> (&'a CudaStorage, usize) {
        match layout.contiguous_range() {
            Some(range) => (self, range.start),
            None => (copy.insert(self.contiguous_copy(layout)), 0),
        }
    }
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({:?} x {}, {:?})",
            self.dtype, self.len, self.buffer
        )
    }
}

impl Clone for CudaStorage {
    /// A copy in new device memory.
    fn clone(&self) -> Self {
        let out = CudaStorage::uninit(self.gpu(), self.dtype, self.len);
        // SAFETY: both buffers hold `len` elements of this dtype.
        unsafe {
            self.gpu()
                .copy(out.ptr(), self.ptr(), self.len * width(self.dtype))
        };
        out
    }
}

impl BackendStorage for CudaStorage {
    fn dtype(&self) -> DType {
        self.dtype
    }

    fn elements(&self) -> usize {
        self.len
    }

    fn contiguous_copy(&self, layout: &Layout) -> Self {
        copy::contiguous_copy(self, layout)
    }

    fn copy_from(&mut self, dst_layout: &Layout, (src, src_layout): View<Self>, op: &str) {
        if self.dtype != src.dtype {
            panic!("{op}: dtype mismatch, {:?} and {:?}", self.dtype, src.dtype);
        }
        self.same_gpu(op, src);
        copy::copy_into(self, dst_layout, src, src_layout);
    }

    fn add_from(&mut self, dst_layout: &Layout, (src, src_layout): View<Self>) -> bool {
        if self.dtype != DType::F32 || src.dtype != DType::F32 {
            return false;
        }
        self.same_gpu("add_from", src);
        copy::add_into(self, dst_layout, src, src_layout);
        true
    }

    fn zeros_like(&self, len: usize) -> Self {
        let out = CudaStorage::uninit(self.gpu(), self.dtype, len);
        // SAFETY: the buffer holds `len` elements.
        unsafe { self.gpu().memset(out.ptr(), 0, len * width(self.dtype)) };
        out
    }

    fn full_like(&self, len: usize, value: f32) -> Self {
        let out = CudaStorage::uninit(self.gpu(), DType::F32, len);
        copy::fill(&out, value);
        out
    }

    fn dropout_mask(&self, len: usize, p: f32, key: u64) -> Self {
        random::dropout_mask(self.gpu(), len, p, key)
    }

    fn to_host(&self, layout: &Layout) -> CpuStorage {
        let mut copy = None;
        let (whole, start) = self.contiguous(layout, &mut copy);
        whole.download(start..start + layout.numel())
    }

    fn to_dtype(&self, layout: &Layout, dtype: DType) -> Self {
        copy::cast(self, layout, dtype)
    }

    fn unary(&self, layout: &Layout, op: UnaryOp) -> Self {
        elementwise::unary(self, layout, op)
    }

    fn unary_backward(&self, layout: &Layout, x: View<Self>, y: View<Self>, op: UnaryOp) -> Self {
        elementwise::unary_backward((self, layout), x, y, op)
    }

    fn binary(&self, layout: &Layout, rhs: View<Self>, op: BinaryOp) -> Self {
        elementwise::binary((self, layout), rhs, op)
    }

    fn compare(&self, layout: &Layout, rhs: View<Self>, op: CmpOp) -> Self {
        elementwise::compare((self, layout), rhs, op)
    }

    fn where_cond(&self, layout: &Layout, on_true: View<Self>, on_false: View<Self>) -> Self {
        elementwise::where_cond((self, layout), on_true, on_false)
    }

    fn sum_axis(&self, layout: &Layout, axis: Axis) -> Self {
        reduce::sum_axis(self, layout, axis)
    }

    fn max_axis(&self, layout: &Layout, axis: Axis) -> (Self, Self) {
        reduce::max_axis(self, layout, axis)
    }

    fn max_axis_backward(&self, layout: &Layout, argmax: &Self, axis: Axis) -> Self {
        index::max_backward(self, layout, argmax, axis)
    }
    fn sum_of_squares(&self, layout: &Layout) -> Self {
        reduce::sum_of_squares(self, layout)
    }
    fn cumsum(&self, layout: &Layout, axis: Axis, reverse: bool) -> Self {
        reduce::cumsum(self, layout, axis, reverse)
    }
    fn topk_indices(&self, layout: &Layout, axis: Axis, k: usize) -> Self {
        index::topk_indices(self, layout, axis, k)
    }
    fn gather_dim(&self, layout: &Layout, dim: usize, index: View<Self>) -> Self {
        index::gather_dim(self, layout, dim, index)
    }
    fn scatter_add_dim(
        &self,
        layout: &Layout,
        dim: usize,
        index: View<Self>,
        shape: &[usize],
    ) -> Self {
        index::scatter_add_dim(self, layout, dim, index, shape)
    }
    fn softmax(&self, layout: &Layout, n: usize, log: bool) -> Self {
        softmax::softmax(self, layout, n, log)
    }

    fn causal_softmax(&self, layout: &Layout, queries: usize, offset: usize, scale: f32) -> Self {
        softmax::causal_softmax(self, layout, queries, offset, scale)
    }

    fn softmax_backward(&self, layout: &Layout, g: View<Self>, scale: f32) -> Self {
        softmax::softmax_backward(self, layout, g, scale)
    }

    fn layer_norm(
        &self,
        layout: &Layout,
        d: usize,
        weight: Option<View<Self>>,
        bias: Option<View<Self>>,
        eps: f32,
    ) -> (Self, Self) {
        norm::layer_norm(self, layout, d, weight, bias, eps)
    }

    fn layer_norm_backward(
        &self,
        layout: &Layout,
        g: View<Self>,
        d: usize,
        weight: Option<View<Self>>,
        stats: &Self,
    ) -> (Self, Self, Self) {
        norm::layer_norm_backward(self, layout, g, d, weight, stats)
    }

    fn cross_entropy(
        &self,
        layout: &Layout,
        targets: View<Self>,
        classes: usize,
        ignore_index: Option<i64>,
    ) -> CrossEntropyForward<Self> {
        loss::cross_entropy(self, layout, targets, classes, ignore_index)
    }
    fn cross_entropy_backward(
        &self,
        targets: View<Self>,
        g: View<Self>,
        classes: usize,
        ignore_index: Option<i64>,
        count: &Self,
    ) -> Self {
        loss::cross_entropy_backward(self, targets, g, classes, ignore_index, count)
    }
    fn embedding(&self, layout: &Layout, ids: View<Self>) -> Self {
        index::embedding(self, layout, ids)
    }
    fn embedding_backward(&self, layout: &Layout, ids: View<Self>, vocab: usize) -> Self {
        index::embedding_backward(self, layout, ids, vocab)
    }
    fn matmul(&self, layout: &Layout, rhs: View<Self>, batch_shape: &[usize]) -> Self {
        matmul::matmul((self, layout), rhs, batch_shape)
    }

    fn addmm(&self, layout: &Layout, a: View<Self>, b: View<Self>) -> Self {
        matmul::addmm((self, layout), a, b)
    }

    fn attention(
        &self,
        layout: &Layout,
        k: View<Self>,
        v: View<Self>,
        key_padding: Option<View<Self>>,
        params: &AttentionParams,
    ) -> (Self, Self) {
        attention::forward((self, layout), k, v, key_padding, params)
    }

    fn attention_backward(
        &self,
        layout: &Layout,
        k: View<Self>,
        v: View<Self>,
        out: View<Self>,
        lse: &Self,
        g: View<Self>,
        key_padding: Option<View<Self>>,
        params: &AttentionParams,
    ) -> (Self, Self, Self) {
        attention::backward((self, layout), k, v, out, lse, g, key_padding, params)
    }

    fn adam_update(
        &mut self,
        g: View<Self>,
        m: &mut Self,
        v: &mut Self,
        step: AdamStep,
        grad_scale: Option<&Self>,
    ) {
        optim::adam_update(self, g, m, v, step, grad_scale)
    }

    fn quantize_rows_int8(&self, layout: &Layout) -> (Self, Self) {
        quantized::quantize_rows(self, layout)
    }

    fn matmul_int8(&self, layout: &Layout, q: View<Self>, scales: View<Self>) -> Self {
        quantized::matmul_int8(self, layout, q, scales)
    }
}
