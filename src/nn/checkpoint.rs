//! Activation checkpointing (PyTorch's `torch.utils.checkpoint`): a
//! segment of the forward pass keeps only its inputs, and runs again
//! during the backward pass to rebuild what its backward needs, trading
//! one more forward of the segment for its activations' memory.

use std::collections::HashMap;

use super::Module;
use super::dropout::replay;
use crate::Tensor;
use crate::autograd::is_grad_enabled;
use crate::autograd::{self, Backward};

/// `f(module, inputs)`, keeping none of the segment's intermediate tensors
/// for the backward pass: only `inputs` (and the module's parameters,
/// which are kept anyway) are saved, and the backward runs `f` again with
/// gradients on, then backpropagates through it. The recomputation is the
/// same arithmetic, and dropout inside the segment draws the masks its
/// forward drew (each draw's stream state is recorded and replayed), while
/// the model's dropout stream moves on exactly once. So the gradients are
/// the bits an unchecked run gives when each parameter is used inside one
/// segment, as a model's checkpointed blocks use theirs; a parameter used
/// by several segments sums their contributions in another order, equal
/// to f32 rounding.
///
/// `module` is cloned into the graph (a clone shares its parameters:
/// tensors are handles), so `f` sees the same weights when it runs again.
/// Every tensor `f` uses that needs a gradient must be one of `inputs` or
/// a parameter of `module`; anything else panics in the backward pass,
/// naming it. Checkpoints nest, and a segment may run many times. Without
/// a graph to record (under `no_grad`, or nothing needs a gradient), it is
/// just `f(module, inputs)`.
///
/// ```
/// use zeroformer::nn::{LinearConfig, checkpoint};
/// use zeroformer::prelude::*;
/// let layer = LinearConfig::new(4, 4).init(&Device::Cpu, &mut StdRng::seed_from_u64(0))?;
/// let x = Tensor::ones(&[2, 4]).requires_grad();
/// let y = checkpoint(&layer, &[&x], |layer, xs| layer.forward(&xs[0]).relu());
/// y.sum().backward();
/// assert_eq!(layer.weight.grad().unwrap().shape(), &[4, 4]);
/// assert_eq!(x.grad().unwrap().shape(), &[2, 4]);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn checkpoint<M, F>(module: &M, inputs: &[&Tensor], f: F) -> Tensor
where
    M: Module + Clone + Send + Sync + 'static,
    F: Fn(&M, &[Tensor]) -> Tensor + Send + Sync + 'static,
{
    let params: Vec<Tensor> = module
        .parameters()
        .into_iter()
        .filter(Tensor::is_tracked)
        .collect();
    let mut saved: Vec<&Tensor> = inputs.to_vec();
    saved.extend(&params);
    if !is_grad_enabled() || !saved.iter().any(|t| t.is_tracked()) {
        let inputs: Vec<Tensor> = inputs.iter().map(|&t| t.clone()).collect();
        return f(module, &inputs);
    }
    let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let (y, dropout) = replay::record(|| crate::no_grad(|| f(module, &detached)));
    let node = autograd::node(&saved, || CheckpointBackward {
        module: module.clone(),
        f,
        inputs: inputs.len(),
        eval: crate::is_eval_mode(),
        autocast: crate::mode::autocast_dtype(),
        dropout,
    });
    y.view(y.layout().clone(), node)
}

/// What a checkpointed segment needs to run again: the module (sharing
/// its parameters), the segment, the modes it ran in and its dropout
/// draws.
struct CheckpointBackward<M, F> {
    module: M,
    f: F,
    /// How many of the node's inputs are the segment's inputs; the module's
    /// parameters follow them.
    inputs: usize,
    eval: bool,
    autocast: Option<crate::DType>,
    dropout: Vec<replay::State>,
}

impl<M, F> Backward for CheckpointBackward<M, F>
where
    M: Module + Send + Sync,
    F: Fn(&M, &[Tensor]) -> Tensor + Send + Sync,
{
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        // Fresh leaves stand for the segment's inputs, so the recomputed
        // graph ends there; the parameters are the real leaves.
        let leaves: Vec<Tensor> = inputs[..self.inputs]
            .iter()
            .map(|x| {
                let leaf = x.detach();
                if x.is_tracked() {
                    leaf.requires_grad()
                } else {
                    leaf
                }
            })
            .collect();
        let y = crate::mode::recording(self.eval, self.autocast, || {
            replay::replay(&self.dropout, || (self.f)(&self.module, &leaves))
        });
        let mut grads: HashMap<usize, Tensor> = autograd::leaf_gradients(&y, grad.clone())
            .into_iter()
            .map(|(leaf, g)| (leaf.id(), g))
            .collect();
        let out = leaves
            .iter()
            .chain(&inputs[self.inputs..])
            .map(|t| grads.remove(&t.id()))
            .collect();
        assert!(
            grads.is_empty(),
            "checkpoint: the segment used {} tensor(s) that need a gradient but are neither its inputs nor its module's parameters; pass them as inputs",
            grads.len()
        );
        out
    }
}
