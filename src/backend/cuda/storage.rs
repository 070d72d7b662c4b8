//! [`CudaStorage`]: a device buffer and its dtype, and its implementation
//! of the primitives, each a launcher call (a kernel or cuBLAS).

use std::sync::Arc;

use super::copy;
use super::driver::DevicePtr;
use super::gpu::{DeviceBuffer, Gpu};
use crate::backend::cpu::CpuStorage;
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View, primitives,
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
        DType::BF16 => 2,
        DType::Bool | DType::I8 => 1,
    }
}

/// Element types copied to and from the device as raw bytes.
trait Plain: Copy + Default {}
impl Plain for f32 {}
impl Plain for i64 {}
impl Plain for i8 {}
impl Plain for u8 {}
impl Plain for half::bf16 {}

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
            CpuStorage::BF16(v) => (DType::BF16, gpu.upload(bytes_of(v))),
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
            DType::BF16 => CpuStorage::BF16(from_bytes(&bytes)),
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
                DType::BF16 => "a bf16",
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

/// Each primitive's launcher under the primitive's name (the CUDA row of
/// `dispatch` in PyTorch's native_functions.yaml): `CudaStorage`'s
/// implementation below is generated from the primitives' declaration,
/// each method passing its arguments, in order, to the function of its
/// name here.
mod launchers {
    pub(super) use super::{dtype, elements};
    pub(super) use crate::backend::cuda::attention::{attention, attention_backward};
    pub(super) use crate::backend::cuda::copy::{
        add_from, contiguous_copy, copy_from, full_like, to_dtype, zeros_like,
    };
    pub(super) use crate::backend::cuda::elementwise::{
        binary, compare, unary, unary_backward, where_cond,
    };
    pub(super) use crate::backend::cuda::grouped::{grouped_matmul, grouped_matmul_backward};
    pub(super) use crate::backend::cuda::index::{
        embedding, embedding_backward, gather_dim, max_axis_backward, scatter_add_dim, topk_indices,
    };
    pub(super) use crate::backend::cuda::loss::{cross_entropy, cross_entropy_backward};
    pub(super) use crate::backend::cuda::matmul::{addmm, matmul};
    pub(super) use crate::backend::cuda::norm::{layer_norm, layer_norm_backward};
    pub(super) use crate::backend::cuda::optim::adam_update;
    pub(super) use crate::backend::cuda::quantized::{matmul_int8, quantize_rows_int8};
    pub(super) use crate::backend::cuda::random::dropout_mask;
    pub(super) use crate::backend::cuda::reduce::{cumsum, max_axis, sum_axis, sum_of_squares};
    pub(super) use crate::backend::cuda::softmax::{causal_softmax, softmax, softmax_backward};
}

/// The storage's element type.
fn dtype(storage: &CudaStorage) -> DType {
    storage.dtype
}

/// How many elements the storage holds.
fn elements(storage: &CudaStorage) -> usize {
    storage.len
}

/// Turns [`primitives!`](crate::backend::primitives!)' declarations into
/// methods that call the launcher of the same name.
macro_rules! launch_each {
    ($meta:tt $name:ident [$($receiver:tt)*] $s:ident [$(, $arg:ident: $ty:ty)* $(,)?]
        [$($ret:ty)?]) => {
        fn $name($($receiver)* $(, $arg: $ty)*) $(-> $ret)? {
            launchers::$name($s $(, $arg)*)
        }
    };
}

impl BackendStorage for CudaStorage {
    fn to_host(&self, layout: &Layout) -> CpuStorage {
        let mut copy = None;
        let (whole, start) = self.contiguous(layout, &mut copy);
        whole.download(start..start + layout.numel())
    }

    primitives!(each launch_each);
}
