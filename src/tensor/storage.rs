//! The memory behind tensors: an enum over devices (the pattern candle
//! uses) whose methods forward each primitive of
//! [`BackendStorage`] to the device that holds the data. Ops call these;
//! a device backend adds a variant and its kernels, not call sites.

pub use crate::backend::cpu::CpuStorage;
use crate::backend::cuda::{self, CudaStorage};
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
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
}

/// Runs `$body` with each storage's device-specific insides bound to the
/// names given, and `$device` naming that device's storage type, when all
/// are on one device; panics naming `$op` and the devices otherwise (ops
/// check devices first, with the tensors' shapes at hand).
macro_rules! on_device {
    ($op:expr; $($storage:expr => $inner:ident),+; |$device:ident| $body:expr) => {
        match ($($storage,)+) {
            ($(Storage::Cpu($inner),)+) => {
                #[allow(dead_code)]
                type $device = CpuStorage;
                $body
            }
            ($(Storage::Cuda($inner),)+) => {
                #[allow(dead_code)]
                type $device = CudaStorage;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => mixed($op, &[$($storage),+]),
        }
    };
}

/// Panics naming `op` and the devices of storages that an op was given
/// together.
fn mixed(op: &str, storages: &[&Storage]) -> ! {
    let devices: Vec<Device> = storages.iter().map(|s| s.device()).collect();
    panic!("{op}: storages on different devices, {devices:?}")
}

/// An optional operand's storage on device `D`; panics naming `op` when it
/// is on another.
fn operand<'a, D: DeviceStorage>(op: &str, x: Option<&'a Storage>) -> Option<&'a D> {
    x.map(|s| {
        D::of(s).unwrap_or_else(|| {
            panic!(
                "{op}: an operand on {:?}, the others on another device",
                s.device()
            )
        })
    })
}

/// An optional operand's view on device `D`; panics naming `op` when it
/// is on another.
fn part<'a, D: DeviceStorage>(op: &str, x: Option<StorageView<'a>>) -> Option<(&'a D, &'a Layout)> {
    x.map(|(s, l)| (operand::<D>(op, Some(s)).expect("an operand"), l))
}

/// Storage paired with the layout that reads it.
pub(crate) type StorageView<'a> = (&'a Storage, &'a Layout);

// Without the `cuda` feature the CUDA storage type is uninhabited, so the
// compiler sees every call into it as unreachable.
#[cfg_attr(not(feature = "cuda"), allow(unreachable_code))]
impl Storage {
    /// How many elements the storage holds (every view over it included).
    pub fn elements(&self) -> usize {
        on_device!("elements"; self => s; |D| s.elements())
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        on_device!("dtype"; self => s; |D| s.dtype())
    }

    /// Where the elements live.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
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
        on_device!("to_host"; self => s; |D| s.to_host(layout))
    }

    /// The elements under `layout` converted to `dtype`, row-major.
    pub(crate) fn to_dtype(&self, layout: &Layout, dtype: DType) -> Storage {
        on_device!("to_dtype"; self => s; |D| s.to_dtype(layout, dtype).wrap())
    }

    /// The elements under `layout`, copied into new row-major storage.
    pub fn contiguous_copy(&self, layout: &Layout) -> Storage {
        on_device!("contiguous_copy"; self => s; |D| s.contiguous_copy(layout).wrap())
    }

    /// Zero-filled storage of this dtype and device.
    pub fn zeros_like(&self, len: usize) -> Storage {
        on_device!("zeros_like"; self => s; |D| s.zeros_like(len).wrap())
    }

    /// `len` f32 elements equal to `value` on this storage's device.
    pub(crate) fn full_like(&self, len: usize, value: f32) -> Storage {
        on_device!("full_like"; self => s; |D| s.full_like(len, value).wrap())
    }

    /// `len` inverted-dropout factors on this storage's device (see
    /// [`BackendStorage::dropout_mask`]).
    pub(crate) fn dropout_mask(&self, len: usize, p: f32, key: u64) -> Storage {
        on_device!("dropout"; self => s; |D| s.dropout_mask(len, p, key).wrap())
    }

    /// Copies `src` (under `src_layout`) into this storage at `dst_layout`.
    /// Panics naming `op` when the dtypes differ.
    pub fn copy_from(&mut self, dst_layout: &Layout, src: &Storage, src_layout: &Layout, op: &str) {
        match (self, src) {
            (Storage::Cpu(d), Storage::Cpu(s)) => d.copy_from(dst_layout, (s, src_layout), op),
            (Storage::Cuda(d), Storage::Cuda(s)) => d.copy_from(dst_layout, (s, src_layout), op),
            (d, s) => mixed(op, &[d, s]),
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
            (Storage::Cpu(d), Storage::Cpu(s)) => d.add_from(dst_layout, (s, src_layout)),
            (Storage::Cuda(d), Storage::Cuda(s)) => d.add_from(dst_layout, (s, src_layout)),
            (d, s) => mixed("add_from", &[d, s]),
        }
    }

    pub(crate) fn unary(&self, layout: &Layout, op: UnaryOp) -> Storage {
        on_device!(op.name(); self => x; |D| x.unary(layout, op).wrap())
    }

    pub(crate) fn unary_backward(
        &self,
        layout: &Layout,
        (x, xl): StorageView,
        (y, yl): StorageView,
        op: UnaryOp,
    ) -> Storage {
        on_device!(op.name(); self => g, x => x, y => y; |D| {
            g.unary_backward(layout, (x, xl), (y, yl), op).wrap()
        })
    }

    pub(crate) fn binary(&self, layout: &Layout, (rhs, rl): StorageView, op: BinaryOp) -> Storage {
        on_device!(op.name(); self => a, rhs => b; |D| a.binary(layout, (b, rl), op).wrap())
    }

    pub(crate) fn compare(&self, layout: &Layout, (rhs, rl): StorageView, op: CmpOp) -> Storage {
        on_device!(op.name(); self => a, rhs => b; |D| a.compare(layout, (b, rl), op).wrap())
    }

    pub(crate) fn where_cond(
        &self,
        layout: &Layout,
        (a, la): StorageView,
        (b, lb): StorageView,
    ) -> Storage {
        on_device!("where_cond"; self => c, a => a, b => b; |D| {
            c.where_cond(layout, (a, la), (b, lb)).wrap()
        })
    }

    pub(crate) fn sum_axis(&self, layout: &Layout, axis: Axis) -> Storage {
        on_device!("sum"; self => x; |D| x.sum_axis(layout, axis).wrap())
    }

    /// `(maxima, argmax)`.
    pub(crate) fn max_axis(&self, layout: &Layout, axis: Axis) -> (Storage, Storage) {
        on_device!("max"; self => x; |D| {
            let (values, argmax) = x.max_axis(layout, axis);
            (values.wrap(), argmax.wrap())
        })
    }

    pub(crate) fn max_axis_backward(
        &self,
        layout: &Layout,
        argmax: &Storage,
        axis: Axis,
    ) -> Storage {
        on_device!("max backward"; self => g, argmax => i; |D| {
            g.max_axis_backward(layout, i, axis).wrap()
        })
    }

    /// Σ x² of the f32 elements under `layout`, accumulated in f64: one f32
    /// element on the device.
    pub(crate) fn sum_of_squares(&self, layout: &Layout) -> Storage {
        on_device!("squared_norm"; self => x; |D| x.sum_of_squares(layout).wrap())
    }

    pub(crate) fn cumsum(&self, layout: &Layout, axis: Axis, reverse: bool) -> Storage {
        on_device!("cumsum"; self => x; |D| x.cumsum(layout, axis, reverse).wrap())
    }

    pub(crate) fn topk_indices(&self, layout: &Layout, axis: Axis, k: usize) -> Storage {
        on_device!("topk"; self => x; |D| x.topk_indices(layout, axis, k).wrap())
    }

    pub(crate) fn gather_dim(&self, layout: &Layout, dim: usize, (i, il): StorageView) -> Storage {
        on_device!("gather"; self => x, i => i; |D| x.gather_dim(layout, dim, (i, il)).wrap())
    }

    pub(crate) fn scatter_add_dim(
        &self,
        layout: &Layout,
        dim: usize,
        (i, il): StorageView,
        shape: &[usize],
    ) -> Storage {
        on_device!("gather backward"; self => g, i => i; |D| {
            g.scatter_add_dim(layout, dim, (i, il), shape).wrap()
        })
    }

    pub(crate) fn softmax(&self, layout: &Layout, n: usize, log: bool) -> Storage {
        on_device!("softmax"; self => x; |D| x.softmax(layout, n, log).wrap())
    }

    pub(crate) fn causal_softmax(
        &self,
        layout: &Layout,
        queries: usize,
        offset: usize,
        scale: f32,
    ) -> Storage {
        on_device!("causal_softmax"; self => x; |D| {
            x.causal_softmax(layout, queries, offset, scale).wrap()
        })
    }

    pub(crate) fn softmax_backward(
        &self,
        layout: &Layout,
        (g, gl): StorageView,
        scale: f32,
    ) -> Storage {
        on_device!("softmax backward"; self => y, g => g; |D| {
            y.softmax_backward(layout, (g, gl), scale).wrap()
        })
    }

    /// `(y, stats)`.
    pub(crate) fn layer_norm(
        &self,
        layout: &Layout,
        d: usize,
        weight: Option<StorageView>,
        bias: Option<StorageView>,
        eps: f32,
    ) -> (Storage, Storage) {
        let op = "layer_norm";
        on_device!(op; self => x; |D| {
            let (w, b) = (part::<D>(op, weight), part::<D>(op, bias));
            let (y, stats) = x.layer_norm(layout, d, w, b, eps);
            (y.wrap(), stats.wrap())
        })
    }

    /// `(dx, dweight, dbias)`.
    pub(crate) fn layer_norm_backward(
        &self,
        layout: &Layout,
        (g, gl): StorageView,
        d: usize,
        weight: Option<StorageView>,
        stats: &Storage,
    ) -> (Storage, Storage, Storage) {
        let op = "layer_norm backward";
        on_device!(op; self => x, g => g, stats => stats; |D| {
            let w = part::<D>(op, weight);
            let (dx, dw, db) = x.layer_norm_backward(layout, (g, gl), d, w, stats);
            (dx.wrap(), dw.wrap(), db.wrap())
        })
    }

    pub(crate) fn cross_entropy(
        &self,
        layout: &Layout,
        (t, tl): StorageView,
        classes: usize,
        ignore_index: Option<i64>,
    ) -> CrossEntropyForward<Storage> {
        on_device!("cross_entropy"; self => x, t => t; |D| {
            x.cross_entropy(layout, (t, tl), classes, ignore_index)
                .map(DeviceStorage::wrap)
        })
    }

    pub(crate) fn cross_entropy_backward(
        &self,
        (t, tl): StorageView,
        (g, gl): StorageView,
        classes: usize,
        ignore_index: Option<i64>,
        count: &Storage,
    ) -> Storage {
        on_device!("cross_entropy backward"; self => lp, t => t, g => g, count => count; |D| {
            lp.cross_entropy_backward((t, tl), (g, gl), classes, ignore_index, count)
                .wrap()
        })
    }

    pub(crate) fn embedding(&self, layout: &Layout, (ids, il): StorageView) -> Storage {
        on_device!("embedding"; self => w, ids => i; |D| w.embedding(layout, (i, il)).wrap())
    }

    pub(crate) fn embedding_backward(
        &self,
        layout: &Layout,
        (ids, il): StorageView,
        vocab: usize,
    ) -> Storage {
        on_device!("embedding backward"; self => g, ids => i; |D| {
            g.embedding_backward(layout, (i, il), vocab).wrap()
        })
    }

    pub(crate) fn matmul(
        &self,
        layout: &Layout,
        (b, lb): StorageView,
        batch_shape: &[usize],
    ) -> Storage {
        on_device!("matmul"; self => a, b => b; |D| a.matmul(layout, (b, lb), batch_shape).wrap())
    }

    /// `(int8 rows, f32 scales)`.
    pub(crate) fn quantize_rows_int8(&self, layout: &Layout) -> (Storage, Storage) {
        on_device!("quantize_rows_int8"; self => w; |D| {
            let (q, s) = w.quantize_rows_int8(layout);
            (q.wrap(), s.wrap())
        })
    }

    pub(crate) fn matmul_int8(
        &self,
        layout: &Layout,
        (q, lq): StorageView,
        (s, ls): StorageView,
    ) -> Storage {
        on_device!("matmul_int8"; self => x, q => q, s => s; |D| {
            x.matmul_int8(layout, (q, lq), (s, ls)).wrap()
        })
    }

    pub(crate) fn addmm(
        &self,
        layout: &Layout,
        (a, la): StorageView,
        (b, lb): StorageView,
    ) -> Storage {
        on_device!("addmm"; self => bias, a => a, b => b; |D| {
            bias.addmm(layout, (a, la), (b, lb)).wrap()
        })
    }

    /// `(out, logsumexp)`.
    pub(crate) fn attention(
        &self,
        layout: &Layout,
        (k, kl): StorageView,
        (v, vl): StorageView,
        key_padding: Option<StorageView>,
        params: &AttentionParams,
    ) -> (Storage, Storage) {
        let op = "scaled_dot_product_attention";
        on_device!(op; self => q, k => k, v => v; |D| {
            let pad = part::<D>(op, key_padding);
            let (out, lse) = q.attention(layout, (k, kl), (v, vl), pad, params);
            (out.wrap(), lse.wrap())
        })
    }

    /// `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_backward(
        &self,
        layout: &Layout,
        (k, kl): StorageView,
        (v, vl): StorageView,
        (o, ol): StorageView,
        lse: &Storage,
        (g, gl): StorageView,
        key_padding: Option<StorageView>,
        params: &AttentionParams,
    ) -> (Storage, Storage, Storage) {
        let op = "scaled_dot_product_attention backward";
        on_device!(op; self => q, k => k, v => v, o => o, lse => lse, g => g; |D| {
            let pad = part::<D>(op, key_padding);
            let (dq, dk, dv) =
                q.attention_backward(layout, (k, kl), (v, vl), (o, ol), lse, (g, gl), pad, params);
            (dq.wrap(), dk.wrap(), dv.wrap())
        })
    }

    /// One Adam/AdamW update of these weights and the moments `m` and `v`
    /// (whole f32 storages of one length) from the gradient `grad` under
    /// `grad_layout` times the optional one-element `grad_scale` (NaN
    /// skips the update), all on one device.
    pub(crate) fn adam_update(
        &mut self,
        grad: &Storage,
        grad_layout: &Layout,
        m: &mut Storage,
        v: &mut Storage,
        step: AdamStep,
        grad_scale: Option<&Storage>,
    ) {
        let op = "adam_update";
        match (self, grad, m, v) {
            (Storage::Cpu(w), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => {
                let scale = operand::<CpuStorage>(op, grad_scale);
                w.adam_update((g, grad_layout), m, v, step, scale)
            }
            (Storage::Cuda(w), Storage::Cuda(g), Storage::Cuda(m), Storage::Cuda(v)) => {
                let scale = operand::<CudaStorage>(op, grad_scale);
                w.adam_update((g, grad_layout), m, v, step, scale)
            }
            (w, g, m, v) => mixed(op, &[w, g, m, v]),
        }
    }
}
