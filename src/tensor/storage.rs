//! The memory behind tensors: an enum over devices (the pattern candle uses),
//! so that a device backend adds a variant and kernels, not call sites.

use crate::backend::AdamStep;
use crate::backend::cpu::{optim, pool, reduce, strided};
use crate::backend::cuda::CudaStorage;
use crate::tensor::Layout;
use crate::{DType, Device};

/// Elements in main memory.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Drop for CpuStorage {
    /// Large f32 buffers go back to the pool for the next op to reuse.
    fn drop(&mut self) {
        if let CpuStorage::F32(v) = self {
            pool::give(std::mem::take(v));
        }
    }
}

/// A tensor's memory on its device.
#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

impl Storage {
    /// How many elements the storage holds (every view over it included).
    pub fn elements(&self) -> usize {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v.len(),
            Storage::Cpu(CpuStorage::I64(v)) => v.len(),
            Storage::Cpu(CpuStorage::Bool(v)) => v.len(),
            Storage::Cuda(s) => match *s {},
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(CpuStorage::F32(_)) => DType::F32,
            Storage::Cpu(CpuStorage::I64(_)) => DType::I64,
            Storage::Cpu(CpuStorage::Bool(_)) => DType::Bool,
            Storage::Cuda(s) => match *s {},
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => match *s {},
        }
    }

    /// The f32 elements; panics naming `op` for any other dtype.
    pub fn f32(&self, op: &str) -> &[f32] {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v,
            other => panic!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
        }
    }

    /// The i64 elements; panics naming `op` for any other dtype.
    pub fn i64(&self, op: &str) -> &[i64] {
        match self {
            Storage::Cpu(CpuStorage::I64(v)) => v,
            other => panic!("{op}: expected an i64 tensor, got {:?}", other.dtype()),
        }
    }

    /// The boolean elements; panics naming `op` for any other dtype.
    pub fn bool(&self, op: &str) -> &[bool] {
        match self {
            Storage::Cpu(CpuStorage::Bool(v)) => v,
            other => panic!("{op}: expected a bool tensor, got {:?}", other.dtype()),
        }
    }

    /// Mutable f32 elements, for in-place parameter updates.
    pub fn f32_mut(&mut self, op: &str) -> &mut [f32] {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v,
            other => panic!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
        }
    }
}

impl Storage {
    /// The elements under `layout`, copied into new row-major storage.
    pub fn gather(&self, layout: &Layout) -> Storage {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => {
                Storage::Cpu(CpuStorage::F32(strided::gather(v, layout)))
            }
            Storage::Cpu(CpuStorage::I64(v)) => {
                Storage::Cpu(CpuStorage::I64(strided::gather(v, layout)))
            }
            Storage::Cpu(CpuStorage::Bool(v)) => {
                Storage::Cpu(CpuStorage::Bool(strided::gather(v, layout)))
            }
            Storage::Cuda(s) => match *s {},
        }
    }

    /// Zero-filled storage of this dtype and device.
    pub fn zeros_like(&self, len: usize) -> Storage {
        match self {
            Storage::Cpu(CpuStorage::F32(_)) => {
                Storage::Cpu(CpuStorage::F32(pool::take_zeroed(len)))
            }
            Storage::Cpu(CpuStorage::I64(_)) => Storage::Cpu(CpuStorage::I64(vec![0; len])),
            Storage::Cpu(CpuStorage::Bool(_)) => Storage::Cpu(CpuStorage::Bool(vec![false; len])),
            Storage::Cuda(s) => match *s {},
        }
    }

    /// Adds f32 `src` (under `src_layout`) into this f32 storage at
    /// `dst_layout`; returns false, changing nothing, for other dtypes.
    pub(crate) fn add_from(
        &mut self,
        dst_layout: &Layout,
        src: &Storage,
        src_layout: &Layout,
    ) -> bool {
        match (self, src) {
            (Storage::Cpu(CpuStorage::F32(d)), Storage::Cpu(CpuStorage::F32(s))) => {
                strided::add_into(d, dst_layout, s, src_layout);
                true
            }
            _ => false,
        }
    }

    /// A copy of this storage on `device` (a clone when it is there
    /// already). Moving to a CUDA device fails with
    /// [`Error::CudaUnavailable`](crate::Error::CudaUnavailable) until the
    /// CUDA backend exists.
    pub(crate) fn to_device(&self, device: &Device) -> crate::Result<Storage> {
        use crate::backend::cuda;
        match (self, device) {
            (Storage::Cpu(s), Device::Cpu) => Ok(Storage::Cpu(s.clone())),
            (Storage::Cpu(CpuStorage::F32(v)), Device::Cuda(i)) => {
                cuda::upload(v, *i).map(Storage::Cuda)
            }
            (Storage::Cpu(CpuStorage::I64(v)), Device::Cuda(i)) => {
                cuda::upload(v, *i).map(Storage::Cuda)
            }
            (Storage::Cpu(CpuStorage::Bool(v)), Device::Cuda(i)) => {
                cuda::upload(v, *i).map(Storage::Cuda)
            }
            (Storage::Cuda(s), _) => match *s {},
        }
    }

    /// Σ x² of the f32 elements under `layout`, accumulated in f64.
    pub(crate) fn sum_of_squares(&self, layout: &Layout, op: &str) -> f64 {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => {
                let n = layout.numel();
                if layout.is_contiguous() {
                    reduce::sum_of_squares(&v[layout.offset()..layout.offset() + n])
                } else {
                    reduce::sum_of_squares(&strided::gather(v, layout))
                }
            }
            Storage::Cuda(s) => match *s {},
            other => panic!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
        }
    }

    /// One Adam/AdamW update of these weights and the moments `m` and `v`
    /// (whole f32 storages of one length) from the gradient `grad` under
    /// `grad_layout`, all on one device.
    pub(crate) fn adam_update(
        &mut self,
        grad: &Storage,
        grad_layout: &Layout,
        m: &mut Storage,
        v: &mut Storage,
        step: AdamStep,
    ) {
        match (self, grad, m, v) {
            (
                Storage::Cpu(CpuStorage::F32(w)),
                Storage::Cpu(CpuStorage::F32(g)),
                Storage::Cpu(CpuStorage::F32(m)),
                Storage::Cpu(CpuStorage::F32(v)),
            ) => {
                let (offset, n) = (grad_layout.offset(), grad_layout.numel());
                if grad_layout.is_contiguous() {
                    optim::adam_update(w, &g[offset..offset + n], m, v, step)
                } else {
                    optim::adam_update(w, &strided::gather(g, grad_layout), m, v, step)
                }
            }
            (Storage::Cuda(s), ..) => match *s {},
            (w, g, m, v) => panic!(
                "adam_update: expected f32 weights, gradient and moments on one device, got {:?} {:?}, {:?} {:?}, {:?} {:?} and {:?} {:?}",
                w.dtype(),
                w.device(),
                g.dtype(),
                g.device(),
                m.dtype(),
                m.device(),
                v.dtype(),
                v.device()
            ),
        }
    }

    /// Copies `src` (under `src_layout`) into this storage at `dst_layout`.
    /// Panics naming `op` when the dtypes differ.
    pub fn copy_from(&mut self, dst_layout: &Layout, src: &Storage, src_layout: &Layout, op: &str) {
        match (self, src) {
            (Storage::Cpu(CpuStorage::F32(d)), Storage::Cpu(CpuStorage::F32(s))) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (Storage::Cpu(CpuStorage::I64(d)), Storage::Cpu(CpuStorage::I64(s))) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (Storage::Cpu(CpuStorage::Bool(d)), Storage::Cpu(CpuStorage::Bool(s))) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (Storage::Cuda(s), _) => match *s {},
            (_, Storage::Cuda(s)) => match *s {},
            (d, s) => panic!("{op}: dtype mismatch, {:?} and {:?}", d.dtype(), s.dtype()),
        }
    }
}
