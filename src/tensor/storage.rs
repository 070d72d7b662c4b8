//! The memory behind tensors: an enum over devices (the pattern candle uses),
//! so that a device backend adds a variant and kernels, not call sites.

use crate::backend::cpu::{pool, strided};
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
