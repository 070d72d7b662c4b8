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
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

/// Panics naming `op` and the devices of storages that an op was given
/// together (ops check this first, with the tensors' shapes at hand).
fn mixed(op: &str, storages: &[&Storage]) -> ! {
    let devices: Vec<Device> = storages.iter().map(|s| s.device()).collect();
    panic!("{op}: storages on different devices, {devices:?}")
}

/// The CPU storage of an optional operand that must be on the CPU.
fn cpu_part<'a>(
    op: &str,
    x: Option<(&'a Storage, &'a Layout)>,
) -> Option<(&'a CpuStorage, &'a Layout)> {
    x.map(|(s, l)| match s {
        Storage::Cpu(s) => (s, l),
        other => panic!(
            "{op}: storages on different devices, {:?} and Cpu",
            other.device()
        ),
    })
}

/// The CUDA storage of an optional operand that must be on the same device.
fn cuda_part<'a>(
    op: &str,
    x: Option<(&'a Storage, &'a Layout)>,
) -> Option<(&'a CudaStorage, &'a Layout)> {
    x.map(|(s, l)| match s {
        Storage::Cuda(s) => (s, l),
        other => panic!(
            "{op}: storages on different devices, {:?} and CUDA",
            other.device()
        ),
    })
}

/// A device's cross-entropy results as `Storage`.
fn wrap_forward<S>(
    f: CrossEntropyForward<S>,
    wrap: fn(S) -> Storage,
) -> CrossEntropyForward<Storage> {
    CrossEntropyForward {
        loss: wrap(f.loss),
        log_probs: wrap(f.log_probs),
        count: f.count,
    }
}

/// Storage paired with the layout that reads it.
pub(crate) type StorageView<'a> = (&'a Storage, &'a Layout);

// Until the CUDA backend lands its storage type is uninhabited, so the
// compiler sees every call into it as unreachable.
#[allow(unreachable_code)]
impl Storage {
    /// How many elements the storage holds (every view over it included).
    pub fn elements(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.elements(),
            Storage::Cuda(s) => s.elements(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => match *s {},
        }
    }

    /// `data` on `device`: the host's own buffer for the CPU, a copy for
    /// another device ([`Error::CudaUnavailable`](crate::Error::CudaUnavailable)
    /// for CUDA until its backend exists).
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
            (Storage::Cuda(s), _) => match *s {},
        }
    }

    /// The elements under `layout`, copied to host memory, row-major.
    pub(crate) fn to_host(&self, layout: &Layout) -> CpuStorage {
        match self {
            Storage::Cpu(s) => s.to_host(layout),
            Storage::Cuda(s) => s.to_host(layout),
        }
    }

    /// The elements under `layout` converted to `dtype`, row-major.
    pub(crate) fn to_dtype(&self, layout: &Layout, dtype: DType) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.to_dtype(layout, dtype)),
            Storage::Cuda(s) => Storage::Cuda(s.to_dtype(layout, dtype)),
        }
    }

    pub(crate) fn cumsum(&self, layout: &Layout, axis: Axis, reverse: bool) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.cumsum(layout, axis, reverse)),
            Storage::Cuda(s) => Storage::Cuda(s.cumsum(layout, axis, reverse)),
        }
    }

    pub(crate) fn topk_indices(&self, layout: &Layout, axis: Axis, k: usize) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.topk_indices(layout, axis, k)),
            Storage::Cuda(s) => Storage::Cuda(s.topk_indices(layout, axis, k)),
        }
    }

    pub(crate) fn gather_dim(&self, layout: &Layout, dim: usize, (i, il): StorageView) -> Storage {
        match (self, i) {
            (Storage::Cpu(x), Storage::Cpu(i)) => Storage::Cpu(x.gather_dim(layout, dim, (i, il))),
            (Storage::Cuda(x), Storage::Cuda(i)) => {
                Storage::Cuda(x.gather_dim(layout, dim, (i, il)))
            }
            (x, i) => mixed("gather", &[x, i]),
        }
    }

    pub(crate) fn scatter_add_dim(
        &self,
        layout: &Layout,
        dim: usize,
        (i, il): StorageView,
        shape: &[usize],
    ) -> Storage {
        match (self, i) {
            (Storage::Cpu(g), Storage::Cpu(i)) => {
                Storage::Cpu(g.scatter_add_dim(layout, dim, (i, il), shape))
            }
            (Storage::Cuda(g), Storage::Cuda(i)) => {
                Storage::Cuda(g.scatter_add_dim(layout, dim, (i, il), shape))
            }
            (g, i) => mixed("gather backward", &[g, i]),
        }
    }

    /// The elements under `layout`, copied into new row-major storage.
    pub fn gather(&self, layout: &Layout) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.gather(layout)),
            Storage::Cuda(s) => Storage::Cuda(s.gather(layout)),
        }
    }

    /// Zero-filled storage of this dtype and device.
    pub fn zeros_like(&self, len: usize) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.zeros_like(len)),
            Storage::Cuda(s) => Storage::Cuda(s.zeros_like(len)),
        }
    }

    /// `len` f32 elements equal to `value` on this storage's device.
    pub(crate) fn full_like(&self, len: usize, value: f32) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.full_like(len, value)),
            Storage::Cuda(s) => Storage::Cuda(s.full_like(len, value)),
        }
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
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.unary(layout, op)),
            Storage::Cuda(s) => Storage::Cuda(s.unary(layout, op)),
        }
    }

    pub(crate) fn unary_backward(
        &self,
        layout: &Layout,
        (x, xl): StorageView,
        (y, yl): StorageView,
        op: UnaryOp,
    ) -> Storage {
        match (self, x, y) {
            (Storage::Cpu(g), Storage::Cpu(x), Storage::Cpu(y)) => {
                Storage::Cpu(g.unary_backward(layout, (x, xl), (y, yl), op))
            }
            (Storage::Cuda(g), Storage::Cuda(x), Storage::Cuda(y)) => {
                Storage::Cuda(g.unary_backward(layout, (x, xl), (y, yl), op))
            }
            (g, x, y) => mixed(op.name(), &[g, x, y]),
        }
    }

    pub(crate) fn binary(&self, layout: &Layout, (rhs, rl): StorageView, op: BinaryOp) -> Storage {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(a.binary(layout, (b, rl), op)),
            (Storage::Cuda(a), Storage::Cuda(b)) => Storage::Cuda(a.binary(layout, (b, rl), op)),
            (a, b) => mixed(op.name(), &[a, b]),
        }
    }

    pub(crate) fn compare(&self, layout: &Layout, (rhs, rl): StorageView, op: CmpOp) -> Storage {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(a.compare(layout, (b, rl), op)),
            (Storage::Cuda(a), Storage::Cuda(b)) => Storage::Cuda(a.compare(layout, (b, rl), op)),
            (a, b) => mixed(op.name(), &[a, b]),
        }
    }

    pub(crate) fn where_cond(
        &self,
        layout: &Layout,
        (a, la): StorageView,
        (b, lb): StorageView,
    ) -> Storage {
        match (self, a, b) {
            (Storage::Cpu(c), Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::Cpu(c.where_cond(layout, (a, la), (b, lb)))
            }
            (Storage::Cuda(c), Storage::Cuda(a), Storage::Cuda(b)) => {
                Storage::Cuda(c.where_cond(layout, (a, la), (b, lb)))
            }
            (c, a, b) => mixed("where_cond", &[c, a, b]),
        }
    }

    pub(crate) fn sum_axis(&self, layout: &Layout, axis: Axis) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.sum_axis(layout, axis)),
            Storage::Cuda(s) => Storage::Cuda(s.sum_axis(layout, axis)),
        }
    }

    /// `(maxima, argmax)`.
    pub(crate) fn max_axis(&self, layout: &Layout, axis: Axis) -> (Storage, Storage) {
        match self {
            Storage::Cpu(s) => {
                let (values, argmax) = s.max_axis(layout, axis);
                (Storage::Cpu(values), Storage::Cpu(argmax))
            }
            Storage::Cuda(s) => {
                let (values, argmax) = s.max_axis(layout, axis);
                (Storage::Cuda(values), Storage::Cuda(argmax))
            }
        }
    }

    pub(crate) fn max_axis_backward(
        &self,
        layout: &Layout,
        argmax: &Storage,
        axis: Axis,
    ) -> Storage {
        match (self, argmax) {
            (Storage::Cpu(g), Storage::Cpu(i)) => {
                Storage::Cpu(g.max_axis_backward(layout, i, axis))
            }
            (Storage::Cuda(g), Storage::Cuda(i)) => {
                Storage::Cuda(g.max_axis_backward(layout, i, axis))
            }
            (g, i) => mixed("max backward", &[g, i]),
        }
    }

    /// Σ x² of the f32 elements under `layout`, accumulated in f64.
    pub(crate) fn sum_of_squares(&self, layout: &Layout) -> f64 {
        match self {
            Storage::Cpu(s) => s.sum_of_squares(layout),
            Storage::Cuda(s) => s.sum_of_squares(layout),
        }
    }

    pub(crate) fn softmax(&self, layout: &Layout, n: usize, log: bool) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.softmax(layout, n, log)),
            Storage::Cuda(s) => Storage::Cuda(s.softmax(layout, n, log)),
        }
    }

    pub(crate) fn causal_softmax(
        &self,
        layout: &Layout,
        queries: usize,
        offset: usize,
        scale: f32,
    ) -> Storage {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.causal_softmax(layout, queries, offset, scale)),
            Storage::Cuda(s) => Storage::Cuda(s.causal_softmax(layout, queries, offset, scale)),
        }
    }

    pub(crate) fn softmax_backward(
        &self,
        layout: &Layout,
        (g, gl): StorageView,
        scale: f32,
    ) -> Storage {
        match (self, g) {
            (Storage::Cpu(y), Storage::Cpu(g)) => {
                Storage::Cpu(y.softmax_backward(layout, (g, gl), scale))
            }
            (Storage::Cuda(y), Storage::Cuda(g)) => {
                Storage::Cuda(y.softmax_backward(layout, (g, gl), scale))
            }
            (y, g) => mixed("softmax backward", &[y, g]),
        }
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
        match self {
            Storage::Cpu(x) => {
                let (w, b) = (cpu_part(op, weight), cpu_part(op, bias));
                let (y, stats) = x.layer_norm(layout, d, w, b, eps);
                (Storage::Cpu(y), Storage::Cpu(stats))
            }
            Storage::Cuda(x) => {
                let (w, b) = (cuda_part(op, weight), cuda_part(op, bias));
                let (y, stats) = x.layer_norm(layout, d, w, b, eps);
                (Storage::Cuda(y), Storage::Cuda(stats))
            }
        }
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
        match (self, g, stats) {
            (Storage::Cpu(x), Storage::Cpu(g), Storage::Cpu(stats)) => {
                let w = cpu_part(op, weight);
                let (dx, dw, db) = x.layer_norm_backward(layout, (g, gl), d, w, stats);
                (Storage::Cpu(dx), Storage::Cpu(dw), Storage::Cpu(db))
            }
            (Storage::Cuda(x), Storage::Cuda(g), Storage::Cuda(stats)) => {
                let w = cuda_part(op, weight);
                let (dx, dw, db) = x.layer_norm_backward(layout, (g, gl), d, w, stats);
                (Storage::Cuda(dx), Storage::Cuda(dw), Storage::Cuda(db))
            }
            (x, g, s) => mixed(op, &[x, g, s]),
        }
    }

    pub(crate) fn cross_entropy(
        &self,
        layout: &Layout,
        (t, tl): StorageView,
        classes: usize,
        ignore_index: Option<i64>,
    ) -> CrossEntropyForward<Storage> {
        match (self, t) {
            (Storage::Cpu(x), Storage::Cpu(t)) => wrap_forward(
                x.cross_entropy(layout, (t, tl), classes, ignore_index),
                Storage::Cpu,
            ),
            (Storage::Cuda(x), Storage::Cuda(t)) => wrap_forward(
                x.cross_entropy(layout, (t, tl), classes, ignore_index),
                Storage::Cuda,
            ),
            (x, t) => mixed("cross_entropy", &[x, t]),
        }
    }

    pub(crate) fn cross_entropy_backward(
        &self,
        (t, tl): StorageView,
        (g, gl): StorageView,
        classes: usize,
        ignore_index: Option<i64>,
        count: usize,
    ) -> Storage {
        match (self, t, g) {
            (Storage::Cpu(lp), Storage::Cpu(t), Storage::Cpu(g)) => Storage::Cpu(
                lp.cross_entropy_backward((t, tl), (g, gl), classes, ignore_index, count),
            ),
            (Storage::Cuda(lp), Storage::Cuda(t), Storage::Cuda(g)) => Storage::Cuda(
                lp.cross_entropy_backward((t, tl), (g, gl), classes, ignore_index, count),
            ),
            (lp, t, g) => mixed("cross_entropy backward", &[lp, t, g]),
        }
    }

    pub(crate) fn embedding(&self, layout: &Layout, (ids, il): StorageView) -> Storage {
        match (self, ids) {
            (Storage::Cpu(w), Storage::Cpu(i)) => Storage::Cpu(w.embedding(layout, (i, il))),
            (Storage::Cuda(w), Storage::Cuda(i)) => Storage::Cuda(w.embedding(layout, (i, il))),
            (w, i) => mixed("embedding", &[w, i]),
        }
    }

    pub(crate) fn embedding_backward(
        &self,
        layout: &Layout,
        (ids, il): StorageView,
        vocab: usize,
    ) -> Storage {
        match (self, ids) {
            (Storage::Cpu(g), Storage::Cpu(i)) => {
                Storage::Cpu(g.embedding_backward(layout, (i, il), vocab))
            }
            (Storage::Cuda(g), Storage::Cuda(i)) => {
                Storage::Cuda(g.embedding_backward(layout, (i, il), vocab))
            }
            (g, i) => mixed("embedding backward", &[g, i]),
        }
    }

    pub(crate) fn matmul(
        &self,
        layout: &Layout,
        (b, lb): StorageView,
        batch_shape: &[usize],
    ) -> Storage {
        match (self, b) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::Cpu(a.matmul(layout, (b, lb), batch_shape))
            }
            (Storage::Cuda(a), Storage::Cuda(b)) => {
                Storage::Cuda(a.matmul(layout, (b, lb), batch_shape))
            }
            (a, b) => mixed("matmul", &[a, b]),
        }
    }

    pub(crate) fn addmm(
        &self,
        layout: &Layout,
        (a, la): StorageView,
        (b, lb): StorageView,
    ) -> Storage {
        match (self, a, b) {
            (Storage::Cpu(bias), Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::Cpu(bias.addmm(layout, (a, la), (b, lb)))
            }
            (Storage::Cuda(bias), Storage::Cuda(a), Storage::Cuda(b)) => {
                Storage::Cuda(bias.addmm(layout, (a, la), (b, lb)))
            }
            (bias, a, b) => mixed("addmm", &[bias, a, b]),
        }
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
        match (self, k, v) {
            (Storage::Cpu(q), Storage::Cpu(k), Storage::Cpu(v)) => {
                let pad = cpu_part(op, key_padding);
                let (out, lse) = q.attention(layout, (k, kl), (v, vl), pad, params);
                (Storage::Cpu(out), Storage::Cpu(lse))
            }
            (Storage::Cuda(q), Storage::Cuda(k), Storage::Cuda(v)) => {
                let pad = cuda_part(op, key_padding);
                let (out, lse) = q.attention(layout, (k, kl), (v, vl), pad, params);
                (Storage::Cuda(out), Storage::Cuda(lse))
            }
            (q, k, v) => mixed(op, &[q, k, v]),
        }
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
        match (self, k, v, o, lse, g) {
            (
                Storage::Cpu(q),
                Storage::Cpu(k),
                Storage::Cpu(v),
                Storage::Cpu(o),
                Storage::Cpu(lse),
                Storage::Cpu(g),
            ) => {
                let pad = cpu_part(op, key_padding);
                let (dq, dk, dv) = q.attention_backward(
                    layout,
                    (k, kl),
                    (v, vl),
                    (o, ol),
                    lse,
                    (g, gl),
                    pad,
                    params,
                );
                (Storage::Cpu(dq), Storage::Cpu(dk), Storage::Cpu(dv))
            }
            (
                Storage::Cuda(q),
                Storage::Cuda(k),
                Storage::Cuda(v),
                Storage::Cuda(o),
                Storage::Cuda(lse),
                Storage::Cuda(g),
            ) => {
                let pad = cuda_part(op, key_padding);
                let (dq, dk, dv) = q.attention_backward(
                    layout,
                    (k, kl),
                    (v, vl),
                    (o, ol),
                    lse,
                    (g, gl),
                    pad,
                    params,
                );
                (Storage::Cuda(dq), Storage::Cuda(dk), Storage::Cuda(dv))
            }
            (q, k, v, o, lse, g) => mixed(op, &[q, k, v, o, lse, g]),
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
            (Storage::Cpu(w), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => {
                w.adam_update((g, grad_layout), m, v, step)
            }
            (Storage::Cuda(w), Storage::Cuda(g), Storage::Cuda(m), Storage::Cuda(v)) => {
                w.adam_update((g, grad_layout), m, v, step)
            }
            (w, g, m, v) => mixed("adam_update", &[w, g, m, v]),
        }
    }
}
