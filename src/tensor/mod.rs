//! The [`Tensor`]: a cheap-to-clone handle to storage, a layout, and (for op
//! results that need gradients) the graph node that made it.

mod convert;
mod creation;
mod display;
pub mod storage;
mod transfer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::autograd::{self, Node};
use crate::backend::AdamStep;
pub use crate::layout::Layout;
use crate::{DType, Device};
pub use storage::{CpuStorage, Storage};

/// An n-dimensional array with reverse-mode autograd.
///
/// Cloning is cheap (an `Arc`); views share storage. Ops are eager and
/// define-by-run: each call computes its result at once and, when an input
/// requires gradients, records how to differentiate it.
///
/// ```
/// use zeroformer::prelude::*;
/// let mut rng = StdRng::seed_from_u64(0);
/// let x = Tensor::randn(&[4, 8], &mut rng);
/// let w = Tensor::randn(&[8, 3], &mut rng).requires_grad();
/// let loss = x.matmul(&w).relu().sum();
/// loss.backward();
/// assert_eq!(w.grad().unwrap().shape(), &[8, 3]);
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    /// Swapped (not mutated through shared references) by in-place updates,
    /// so a reader clones the `Arc` and never holds the lock during a kernel.
    storage: RwLock<Arc<Storage>>,
    layout: Layout,
    /// Its place in the autograd graph, shared with its [`edge`](Tensor::edge)s.
    graph: Arc<GraphSlot>,
}

/// A tensor's identity in the autograd graph: its id, the node that made
/// it, and a leaf's gradient. A tensor and the storage-less edges that
/// graph nodes keep of it share one, so the graph reaches (and a leaf's
/// gradient lands in) the tensor itself.
pub(crate) struct GraphSlot {
    id: usize,
    /// A leaf whose gradient is kept in `grad`.
    requires_grad: bool,
    /// Ops on this tensor record graph nodes: a leaf requiring grad, or a
    /// result made from one.
    tracked: bool,
    node: Mutex<Option<Node>>,
    grad: Mutex<Option<Tensor>>,
}

impl GraphSlot {
    fn new(requires_grad: bool, tracked: bool, node: Option<Node>) -> Arc<GraphSlot> {
        Arc::new(GraphSlot {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad,
            tracked,
            node: Mutex::new(node),
            grad: Mutex::new(None),
        })
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl Drop for GraphSlot {
    /// Frees the graph behind this tensor without recursion: a chain of
    /// 100,000 ops would otherwise overflow the stack when dropped.
    fn drop(&mut self) {
        let Some(node) = self
            .node
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let mut pending = node.inputs;
        while let Some(tensor) = pending.pop() {
            let Ok(inner) = Arc::try_unwrap(tensor.0) else {
                continue;
            };
            if let Ok(mut slot) = Arc::try_unwrap(inner.graph) {
                let node = slot
                    .node
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(node) = node {
                    pending.extend(node.inputs);
                }
            }
        }
    }
}

impl Tensor {
    pub(crate) fn from_storage(
        storage: Arc<Storage>,
        layout: Layout,
        node: Option<Node>,
    ) -> Tensor {
        let tracked = node.is_some();
        Tensor(Arc::new(Inner {
            storage: RwLock::new(storage),
            layout,
            graph: GraphSlot::new(false, tracked, node),
        }))
    }

    /// A new contiguous tensor of `shape` over the whole of `storage` (an
    /// op's result), with an optional graph node.
    pub(crate) fn from_output(storage: Storage, shape: &[usize], node: Option<Node>) -> Tensor {
        debug_assert_eq!(storage.elements(), shape.iter().product::<usize>());
        Tensor::from_storage(Arc::new(storage), Layout::contiguous(shape), node)
    }

    /// A new contiguous f32 tensor holding `data`, on the default device.
    pub(crate) fn from_f32(data: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_host(CpuStorage::F32(data), shape, "from_vec")
    }

    /// A new contiguous tensor holding host `data`, on the default device
    /// ([`default_device`](crate::default_device)); panics naming `op`
    /// if that device cannot take it.
    pub(crate) fn from_host(data: CpuStorage, shape: &[usize], op: &str) -> Tensor {
        let storage = Storage::from_host(data, &crate::default_device())
            .unwrap_or_else(|e| panic!("{op}: {e}"));
        Tensor::from_output(storage, shape, None)
    }

    /// A view of this tensor's storage with another layout.
    pub(crate) fn view(&self, layout: Layout, node: Option<Node>) -> Tensor {
        Tensor::from_storage(self.storage(), layout, node)
    }

    /// The storage, shared (an `Arc` clone; the lock is released at once).
    pub(crate) fn storage(&self) -> Arc<Storage> {
        self.0
            .storage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds `g` into the elements of this contiguous f32 tensor that
    /// `window` (a layout over its storage, of `g`'s shape) names, in place,
    /// when nothing else can see this tensor's storage: no other handle, no
    /// view, no graph. Returns false, changing nothing, otherwise.
    pub(crate) fn add_in_place_if_unique(&mut self, window: &Layout, g: &Tensor) -> bool {
        if self.layout() != &Layout::contiguous(self.shape()) {
            return false;
        }
        let g_storage = g.storage();
        let Some(inner) = Arc::get_mut(&mut self.0) else {
            return false;
        };
        if inner.graph.tracked {
            return false;
        }
        let storage = inner.storage.get_mut().unwrap_or_else(|e| e.into_inner());
        match Arc::get_mut(storage) {
            Some(storage) => storage.add_from(window, (&g_storage, g.layout())),
            None => false,
        }
    }

    /// A process-unique id, stable for the tensor's life.
    pub fn id(&self) -> usize {
        self.0.graph.id
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// Shape, strides and offset into the storage.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0
            .storage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .dtype()
    }

    /// Where the elements live.
    pub fn device(&self) -> Device {
        self.0
            .storage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .device()
    }

    /// True when the elements are row-major without gaps in storage.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// Marks this tensor as a leaf whose gradient `backward` keeps in [`grad`](Self::grad).
    ///
    /// Returns a new handle over the same storage. Panics for op results
    /// (use [`detach`](Self::detach) first) and for tensors that are not
    /// floating-point (f32 or bf16).
    pub fn requires_grad(self) -> Tensor {
        assert!(
            !self.0.graph.tracked || self.0.graph.requires_grad,
            "requires_grad: only a leaf tensor can require grad; this one is an op result (call detach() first)"
        );
        assert!(
            matches!(self.dtype(), DType::F32 | DType::BF16),
            "requires_grad: only floating-point tensors (f32, bf16) have gradients, not {:?}",
            self.dtype()
        );
        Tensor(Arc::new(Inner {
            storage: RwLock::new(self.storage()),
            layout: self.0.layout.clone(),
            graph: GraphSlot::new(true, true, None),
        }))
    }

    /// True when ops on this tensor record a graph (it requires grad, or was
    /// computed from one that does, with gradients enabled).
    pub fn is_tracked(&self) -> bool {
        self.0.graph.tracked
    }

    /// True for a leaf that keeps its gradient.
    pub fn is_leaf_requiring_grad(&self) -> bool {
        self.0.graph.requires_grad
    }

    /// The same data with no graph: gradients stop here.
    pub fn detach(&self) -> Tensor {
        self.view(self.0.layout.clone(), None)
    }

    /// The gradient accumulated by `backward`, for a leaf that requires grad.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .graph
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.0.graph.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the stored gradient (gradient clipping and accumulation use it).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        if let Some(g) = &grad {
            assert_eq!(
                g.shape(),
                self.shape(),
                "set_grad: gradient of shape {:?} for a tensor of shape {:?}",
                g.shape(),
                self.shape()
            );
        }
        *self.0.graph.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad.map(|g| g.detach());
    }

    pub(crate) fn accumulate_grad(&self, g: Tensor) {
        let g = g.contiguous();
        let mut slot = self.0.graph.grad.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(match slot.take() {
            Some(sum) => sum.add(&g),
            None => g,
        });
    }

    pub(crate) fn take_node(&self) -> Option<Node> {
        self.0
            .graph
            .node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// This tensor as a graph node keeps an input whose values its backward
    /// never reads (a cast's, an add's): the same place in the graph (id,
    /// node, a leaf's gradient) over an empty storage of its dtype, so the
    /// graph does not keep the elements alive until the backward. On a
    /// device other than the CPU, the tensor itself.
    pub(crate) fn edge(&self) -> Tensor {
        match self.storage().placeholder() {
            Some(empty) => Tensor(Arc::new(Inner {
                storage: RwLock::new(empty),
                layout: self.0.layout.clone(),
                graph: Arc::clone(&self.0.graph),
            })),
            None => self.clone(),
        }
    }

    pub(crate) fn node_inputs(&self) -> Vec<Tensor> {
        let node = self.0.graph.node.lock().unwrap_or_else(|e| e.into_inner());
        node.as_ref().map(|n| n.inputs.clone()).unwrap_or_default()
    }

    /// Back-propagates from this one-element tensor (usually a loss): every
    /// leaf that requires grad and contributed to it gets `d self / d leaf`
    /// added to its [`grad`](Self::grad). The graph is freed as it goes.
    pub fn backward(&self) {
        assert_eq!(
            self.numel(),
            1,
            "backward: needs a one-element tensor, got shape {:?}; use backward_with(grad) for others",
            self.shape()
        );
        autograd::backward(self, self.ones_like());
    }

    /// Back-propagates an explicit upstream gradient of this tensor's shape.
    pub fn backward_with(&self, grad: &Tensor) {
        autograd::backward(self, grad.detach());
    }

    /// The elements in row-major order (f32 tensors, or bf16 ones widened
    /// exactly), copied to the host.
    ///
    /// ```
    /// use zeroformer::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![1.5, -2.0], &[2]);
    /// assert_eq!(x.to_dtype(DType::BF16).to_vec(), x.to_vec());
    /// ```
    pub fn to_vec(&self) -> Vec<f32> {
        if self.dtype() == DType::BF16 {
            return self.detach().to_dtype(DType::F32).to_vec();
        }
        self.storage().to_host(self.layout()).into_f32("to_vec")
    }

    /// The elements in row-major order (i64 tensors), copied to the host.
    pub fn to_vec_i64(&self) -> Vec<i64> {
        self.storage().to_host(self.layout()).into_i64("to_vec_i64")
    }

    /// The elements in row-major order (bf16 tensors), copied to the host.
    ///
    /// ```
    /// use zeroformer::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![1.5, -2.0], &[2]).to_dtype(DType::BF16);
    /// use zeroformer::half::bf16;
    /// assert_eq!(x.to_vec_bf16(), vec![bf16::from_f32(1.5), bf16::from_f32(-2.0)]);
    /// ```
    pub fn to_vec_bf16(&self) -> Vec<half::bf16> {
        self.storage()
            .to_host(self.layout())
            .into_bf16("to_vec_bf16")
    }

    /// The elements in row-major order (bool tensors), copied to the host.
    pub fn to_vec_bool(&self) -> Vec<bool> {
        self.storage()
            .to_host(self.layout())
            .into_bool("to_vec_bool")
    }

    /// The value of a one-element f32 tensor.
    pub fn item(&self) -> f32 {
        assert_eq!(
            self.numel(),
            1,
            "item: needs a one-element tensor, got shape {:?}",
            self.shape()
        );
        self.to_vec()[0]
    }

    /// This tensor's storage, locked for writing in place, unshared (a
    /// copy when another handle holds it). Panics naming `op` unless the
    /// tensor covers all its storage contiguously. Records no graph.
    fn storage_for_update(&self, op: &str) -> std::sync::RwLockWriteGuard<'_, Arc<Storage>> {
        let mut slot = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        assert!(
            self.0.layout.offset() == 0 && self.is_contiguous() && slot.elements() == self.numel(),
            "{op}: needs a tensor that owns all its storage contiguously (shape {:?})",
            self.shape()
        );
        Arc::make_mut(&mut slot);
        slot
    }

    /// Overwrites the elements with `src`'s (same shape and dtype), in
    /// place: what an optimizer does to a parameter. Views taken earlier
    /// keep the old values. Records no graph.
    pub(crate) fn assign(&self, src: &Tensor) {
        assert_eq!(
            self.shape(),
            src.shape(),
            "assign: shapes differ, {:?} and {:?}",
            self.shape(),
            src.shape()
        );
        let src_storage = src.storage();
        let mut slot = self.storage_for_update("assign");
        Arc::get_mut(&mut slot).expect("unshared").copy_from(
            &self.0.layout,
            (&src_storage, src.layout()),
            "assign",
        );
    }

    /// Overwrites positions `start..start + src.shape()[dim]` of dimension
    /// `dim` with `src` (this tensor's shape elsewhere, same dtype), in
    /// place: a KV cache written step by step into a buffer allocated once.
    /// Views taken earlier keep the old values. Records no graph.
    pub(crate) fn write_window(&self, dim: usize, start: usize, src: &Tensor) {
        let mut expected = self.shape().to_vec();
        expected[dim] = src.shape()[dim];
        assert!(
            src.shape() == expected.as_slice() && start + src.shape()[dim] <= self.shape()[dim],
            "write_window: {:?} does not fit {:?} at {start} along dimension {dim}",
            src.shape(),
            self.shape()
        );
        let window = self.0.layout.narrow(dim, start, src.shape()[dim]);
        let src_storage = src.storage();
        let mut slot = self.storage_for_update("write_window");
        Arc::get_mut(&mut slot).expect("unshared").copy_from(
            &window,
            (&src_storage, src.layout()),
            "write_window",
        );
    }

    /// One Adam/AdamW update of this parameter and its moments `m` and `v`
    /// (tensors of its shape that the optimizer owns) from `grad` times the
    /// optional one-element `grad_scale` (NaN skips the update), in place.
    pub(crate) fn adam_update(
        &self,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        step: AdamStep,
        grad_scale: Option<&Tensor>,
    ) {
        assert!(
            grad.shape() == self.shape() && m.shape() == self.shape() && v.shape() == self.shape(),
            "adam_update: parameter {:?}, gradient {:?}, moments {:?} and {:?} differ in shape",
            self.shape(),
            grad.shape(),
            m.shape(),
            v.shape()
        );
        let g = grad.storage();
        let scale = grad_scale.map(|s| {
            assert_eq!(
                s.numel(),
                1,
                "adam_update: the gradient scale must be one element"
            );
            s.contiguous().storage()
        });
        let (mut w, mut m, mut v) = (
            self.storage_for_update("adam_update"),
            m.storage_for_update("adam_update"),
            v.storage_for_update("adam_update"),
        );
        let unshared = "unshared";
        Arc::get_mut(&mut w).expect(unshared).adam_update(
            (&g, grad.layout()),
            Arc::get_mut(&mut m).expect(unshared),
            Arc::get_mut(&mut v).expect(unshared),
            step,
            scale.as_deref(),
        );
    }

    /// Updates the elements in place (for optimizers written by hand): `f`
    /// gets a host copy of the row-major data, which then replaces the
    /// tensor's, on its device. Views taken earlier keep the old values.
    /// Records no graph. Panics unless the tensor is contiguous over all
    /// its storage.
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// let w = Tensor::ones(&[3]).requires_grad();
    /// w.update_data(|d| d.iter_mut().for_each(|x| *x -= 0.5));
    /// assert_eq!(w.to_vec(), vec![0.5; 3]);
    /// ```
    pub fn update_data(&self, f: impl FnOnce(&mut [f32])) {
        let mut data = self.to_vec();
        f(&mut data);
        let storage = Storage::from_host(CpuStorage::F32(data), &self.device())
            .unwrap_or_else(|e| panic!("update_data: {e}"));
        self.assign(&Tensor::from_output(storage, self.shape(), None));
    }
}
