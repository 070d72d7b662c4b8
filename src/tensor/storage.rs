//! The memory behind tensors: an enum over devices (the pattern candle
//! uses) whose methods forward each primitive of [`BackendStorage`] to the
//! device that holds the data. Ops call these; a device backend adds a
//! variant and its kernels, not call sites. The forwarding methods are
//! generated from the primitives' one declaration
//! (`backend::primitives!`): each operand is lowered to the device's own
//! storage (or panics naming the op when it is on another device), and
//! each result is wrapped back into a `Storage`.

pub use crate::backend::cpu::CpuStorage;
use std::sync::{Arc, OnceLock};

use crate::backend::cuda::{self, CudaStorage};
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View, primitives,
};
use crate::tensor::Layout;
use crate::{DType, Device};

/// A tensor's memory on its device.
#[derive(Clone, Debug)]
pub enum Storage {
    /// In main memory.
    Cpu(CpuStorage),
    /// On a CUDA device.
    Cuda(CudaStorage),
}

/// A device's storage type as `Storage` sees it: how to wrap a result,
/// and how to find this device's storage in an operand.
trait DeviceStorage: BackendStorage {
    fn wrap(self) -> Storage;
    fn of(storage: &Storage) -> Option<&Self>;
    fn of_mut(storage: &mut Storage) -> Option<&mut Self>;
}

impl DeviceStorage for CpuStorage {
    fn wrap(self) -> Storage {
        Storage::Cpu(self)
    }

    fn of(storage: &Storage) -> Option<&Self> {
        match storage {
            Storage::Cpu(s) => Some(s),
            _ => None,
        }
    }

    fn of_mut(storage: &mut Storage) -> Option<&mut Self> {
        match storage {
            Storage::Cpu(s) => Some(s),
            _ => None,
        }
    }
}

impl DeviceStorage for CudaStorage {
    fn wrap(self) -> Storage {
        Storage::Cuda(self)
    }

    fn of(storage: &Storage) -> Option<&Self> {
        match storage {
            Storage::Cuda(s) => Some(s),
            _ => None,
        }
    }

    fn of_mut(storage: &mut Storage) -> Option<&mut Self> {
        match storage {
            Storage::Cuda(s) => Some(s),
            _ => None,
        }
    }
}

/// An operand of a primitive as device `D`'s kernels take it: storages
/// become `D`'s own (panicking, naming the op, for one on another device);
/// everything else passes through unchanged.
trait Lower<D> {
    type Out;
    fn lower(self, op: &str) -> Self::Out;
}

/// Panics naming `op` and the device of an operand that is not where the
/// primitive's storage is.
fn elsewhere(op: &str, operand: Device) -> ! {
    panic!("{op}: an operand on {operand:?}, the others on another device")
}

impl<'a, D: DeviceStorage + 'a> Lower<D> for &'a Storage {
    type Out = &'a D;
    fn lower(self, op: &str) -> &'a D {
        D::of(self).unwrap_or_else(|| elsewhere(op, self.device()))
    }
}

impl<'a, D: DeviceStorage + 'a> Lower<D> for &'a mut Storage {
    type Out = &'a mut D;
    fn lower(self, op: &str) -> &'a mut D {
        let device = self.device();
        D::of_mut(self).unwrap_or_else(|| elsewhere(op, device))
    }
}

impl<'a, D: DeviceStorage + 'a> Lower<D> for StorageView<'a> {
    type Out = View<'a, D>;
    fn lower(self, op: &str) -> View<'a, D> {
        (self.0.lower(op), self.1)
    }
}

impl<D, T: Lower<D>> Lower<D> for Option<T> {
    type Out = Option<T::Out>;
    fn lower(self, op: &str) -> Self::Out {
        self.map(|x| x.lower(op))
    }
}

/// `Lower` for arguments that are the same on every device.
macro_rules! same_on_every_device {
    ($($ty:ty),*) => {
        $(impl<'a, D> Lower<D> for $ty {
            type Out = Self;
            fn lower(self, _: &str) -> Self {
                self
            }
        })*
    };
}

same_on_every_device!(
    &'a Layout,
    &'a [usize],
    &'a str,
    &'a AttentionParams,
    usize,
    f32,
    bool,
    u64,
    i64,
    UnaryOp,
    BinaryOp,
    CmpOp,
    Axis,
    AdamStep,
    DType
);

/// A primitive's result as `Storage` holds it: device storages wrapped,
/// everything else unchanged.
trait Wrap {
    type Out;
    fn wrap(self) -> Self::Out;
}

impl Wrap for CpuStorage {
    type Out = Storage;
    fn wrap(self) -> Storage {
        DeviceStorage::wrap(self)
    }
}

impl Wrap for CudaStorage {
    type Out = Storage;
    fn wrap(self) -> Storage {
        DeviceStorage::wrap(self)
    }
}

impl<A: Wrap, B: Wrap> Wrap for (A, B) {
    type Out = (A::Out, B::Out);
    fn wrap(self) -> Self::Out {
        (self.0.wrap(), self.1.wrap())
    }
}

impl<A: Wrap, B: Wrap, C: Wrap> Wrap for (A, B, C) {
    type Out = (A::Out, B::Out, C::Out);
    fn wrap(self) -> Self::Out {
        (self.0.wrap(), self.1.wrap(), self.2.wrap())
    }
}

impl<S: Wrap> Wrap for CrossEntropyForward<S> {
    type Out = CrossEntropyForward<S::Out>;
    fn wrap(self) -> Self::Out {
        self.map(Wrap::wrap)
    }
}

/// `Wrap` for results that are the same on every device.
macro_rules! host_result {
    ($($ty:ty),*) => {
        $(impl Wrap for $ty {
            type Out = Self;
            fn wrap(self) -> Self {
                self
            }
        })*
    };
}

host_result!((), bool, usize, DType);

/// Turns [`primitives!`]' declarations into `Storage` methods that call the
/// primitive on the device holding `self`, with every operand lowered to
/// that device's storage.
macro_rules! forward {
    ([$($meta:tt)*] $name:ident [$($receiver:tt)*] $s:ident
        [$(, $arg:ident: $ty:ty)* $(,)?] [$($ret:ty)?]) => {
        $($meta)*
        pub(crate) fn $name($($receiver)* $(, $arg: $ty)*) $(-> $ret)? {
            match $s {
                Storage::Cpu(s) => Wrap::wrap(BackendStorage::$name(
                    s $(, Lower::<CpuStorage>::lower($arg, stringify!($name)))*
                )),
                Storage::Cuda(s) => Wrap::wrap(BackendStorage::$name(
                    s $(, Lower::<CudaStorage>::lower($arg, stringify!($name)))*
                )),
            }
        }
    };
}

/// Storage paired with the layout that reads it.
pub(crate) type StorageView<'a> = (&'a Storage, &'a Layout);

// Without the `cuda` feature the CUDA storage type is uninhabited, so the
// compiler sees every call into it as unreachable.
#[cfg_attr(not(feature = "cuda"), allow(unreachable_code))]
impl Storage {
    /// Where the elements live.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
        }
    }

    /// An empty storage of this one's dtype on the CPU, one shared per
    /// dtype (what a graph edge holds in place of elements its backward
    /// never reads); `None` on another device.
    pub(crate) fn placeholder(&self) -> Option<Arc<Storage>> {
        static EMPTY: [OnceLock<Arc<Storage>>; 5] = [const { OnceLock::new() }; 5];
        match self {
            Storage::Cpu(s) => {
                let slot = match s.dtype() {
                    DType::F32 => 0,
                    DType::I64 => 1,
                    DType::Bool => 2,
                    DType::I8 => 3,
                    DType::BF16 => 4,
                };
                Some(Arc::clone(
                    EMPTY[slot].get_or_init(|| Arc::new(Storage::Cpu(s.empty_like()))),
                ))
            }
            Storage::Cuda(_) => None,
        }
    }

    /// `data` on `device`: the host's own buffer for the CPU, a copy for
    /// another device ([`Error::CudaUnavailable`](crate::Error::CudaUnavailable)
    /// when it cannot be used).
    pub(crate) fn from_host(data: CpuStorage, device: &Device) -> crate::Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(data)),
            Device::Cuda(i) => cuda::upload(&data, *i).map(Storage::Cuda),
        }
    }

    /// `len` f32 elements equal to `value` on `device`.
    pub(crate) fn full(len: usize, value: f32, device: &Device) -> crate::Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::filled(len, value))),
            Device::Cuda(i) => cuda::full(len, value, *i).map(Storage::Cuda),
        }
    }

    /// A copy of this storage on `device` (a clone when it is there already).
    pub(crate) fn to_device(&self, device: &Device) -> crate::Result<Storage> {
        match (self, device) {
            (Storage::Cpu(s), Device::Cpu) => Ok(Storage::Cpu(s.clone())),
            (Storage::Cpu(s), Device::Cuda(i)) => cuda::upload(s, *i).map(Storage::Cuda),
            (Storage::Cuda(s), Device::Cuda(i)) if s.ordinal() == *i => {
                Ok(Storage::Cuda(s.clone()))
            }
            (Storage::Cuda(s), _) => {
                let host = s.to_host(&Layout::contiguous(&[s.elements()]));
                Storage::from_host(host, device)
            }
        }
    }

    /// The elements under `layout`, copied to host memory, row-major.
    pub(crate) fn to_host(&self, layout: &Layout) -> CpuStorage {
        match self {
            Storage::Cpu(s) => s.to_host(layout),
            Storage::Cuda(s) => s.to_host(layout),
        }
    }

    primitives!(each forward);
}
