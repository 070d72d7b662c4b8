//! Reverse-mode automatic differentiation over a dynamic graph.
//!
//! Every op result that depends on a tensor requiring gradients carries a
//! [`Node`]: the op's inputs and a [`Backward`] object holding whatever the
//! op saved for its backward rule. `Tensor::backward` sorts the nodes
//! reachable from the root in reverse topological order with an explicit
//! stack (no recursion, so a chain of 100,000 ops is fine), calls each rule
//! once with the summed upstream gradient, and hands leaf gradients to the
//! leaves. Each node is taken out of its tensor as it is used, so the graph is
//! freed by the backward pass, as in PyTorch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Tensor;

/// An op's backward rule: the gradients of its inputs given the gradient of
/// its output. Lives beside the op's forward, in `src/ops/`.
///
/// Anything a rule saves besides the inputs must be a detached tensor (or
/// plain data): a saved tensor with a graph would keep that graph alive, or
/// form a cycle with the output.
pub trait Backward: Send + Sync {
    /// The op's name, for error messages.
    fn name(&self) -> &'static str;

    /// Gradients for `inputs`, in order (`None` where an input gets none).
    /// Each gradient has its input's shape. Called with gradients disabled.
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>>;

    /// For a one-input op: adds the input's gradient into `acc`, the
    /// gradient already summed for that input, in place, and returns true;
    /// or returns false (the default) to have [`backward`](Self::backward)
    /// make the gradient for an out-of-place add. A narrow's gradient is
    /// zeros but for a window: adding the window alone saves making and
    /// adding a full-size tensor of zeros (three of them, and two full adds,
    /// per attention layer, where q, k and v are narrowed out of one
    /// projection).
    fn add_into(&self, _grad: &Tensor, _acc: &mut Tensor) -> bool {
        false
    }
}

/// How an op result was made: its inputs and its backward rule.
pub struct Node {
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) backward: Box<dyn Backward>,
    _live: LiveNode,
}

static LIVE_NODES: AtomicUsize = AtomicUsize::new(0);

/// Counts itself in [`live_nodes`] while it exists.
struct LiveNode;

impl LiveNode {
    fn new() -> Self {
        LIVE_NODES.fetch_add(1, Ordering::Relaxed);
        LiveNode
    }
}

impl Drop for LiveNode {
    fn drop(&mut self) {
        LIVE_NODES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The number of graph nodes alive in the process: a test of graph memory
/// (it returns to its old value once a step's loss and outputs are dropped,
/// or once backward has run).
pub fn live_nodes() -> usize {
    LIVE_NODES.load(Ordering::Relaxed)
}

pub use crate::mode::{NoGradGuard, is_grad_enabled, no_grad};

/// The node for an op's result, or `None` when nothing needs a gradient
/// (then `make` is never called and the op saves nothing).
pub(crate) fn node<B: Backward + 'static>(
    inputs: &[&Tensor],
    make: impl FnOnce() -> B,
) -> Option<Node> {
    if !is_grad_enabled() || !inputs.iter().any(|t| t.is_tracked()) {
        return None;
    }
    Some(Node {
        inputs: inputs.iter().map(|&t| t.clone()).collect(),
        backward: Box::new(make()),
        _live: LiveNode::new(),
    })
}

/// [`node`] for a rule that reads none of its inputs' values (a cast, an
/// add): the node keeps storage-less edges of them
/// ([`Tensor::edge`](crate::Tensor::edge)), so that an intermediate result
/// no other op saved is freed in the forward pass, as PyTorch frees it,
/// not kept until the backward.
pub(crate) fn node_reading_no_values<B: Backward + 'static>(
    inputs: &[&Tensor],
    make: impl FnOnce() -> B,
) -> Option<Node> {
    let edges: Vec<Tensor> = inputs.iter().map(|t| t.edge()).collect();
    node(&edges.iter().collect::<Vec<_>>(), make)
}

/// Attaches a node to `out` for a rule that saves the output itself: `make`
/// gets a detached handle to `out` (saving the graph-carrying handle would
/// form a cycle), and the result is a view of `out` carrying the node.
pub(crate) fn with_saved_output<B: Backward + 'static>(
    out: Tensor,
    inputs: &[&Tensor],
    make: impl FnOnce(Tensor) -> B,
) -> Tensor {
    match node(inputs, || make(out.clone())) {
        Some(node) => out.view(out.layout().clone(), Some(node)),
        None => out,
    }
}

/// A user-defined op: `forward` computes the output from the inputs
/// (detached, with gradients off, so nothing inside it is recorded), and
/// when some input needs a gradient the output carries a node whose rule is
/// `backward(output)` (`output` detached, for a rule that reuses it). The
/// rule's [`Backward::backward`] gets the output's gradient and the inputs
/// and returns one gradient (or `None`) per input, each of its input's
/// shape and on its device; it runs with gradients off, so it may use any
/// tensor op, and the op then works on every device those ops do. candle's
/// `CustomOp` and PyTorch's `autograd.Function` play this part.
///
/// ```
/// use zeroformer::autograd::{Backward, custom_op};
/// use zeroformer::Tensor;
///
/// /// softplus(x) = ln(1 + eˣ), whose derivative is the sigmoid.
/// struct SoftplusBackward;
///
/// impl Backward for SoftplusBackward {
///     fn name(&self) -> &'static str {
///         "softplus"
///     }
///     fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
///         vec![Some(grad.mul(&inputs[0].sigmoid()))]
///     }
/// }
///
/// fn softplus(x: &Tensor) -> Tensor {
///     custom_op(&[x], |xs| xs[0].exp().add_scalar(1.0).log(), |_| SoftplusBackward)
/// }
///
/// let x = Tensor::from_vec(vec![0.0, 2.0], &[2]).requires_grad();
/// softplus(&x).sum().backward();
/// let g = x.grad().unwrap().to_vec();
/// assert!((g[0] - 0.5).abs() < 1e-6 && (g[1] - 0.880_797).abs() < 1e-5);
/// ```
pub fn custom_op<B: Backward + 'static>(
    inputs: &[&Tensor],
    forward: impl FnOnce(&[Tensor]) -> Tensor,
    backward: impl FnOnce(Tensor) -> B,
) -> Tensor {
    let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let out = no_grad(|| forward(&detached)).detach();
    with_saved_output(out, inputs, |out| CheckedBackward(backward(out)))
}

/// A user's rule, its gradients checked against its inputs: a wrong count,
/// shape or device panics naming the op, at the rule, not somewhere later in
/// the backward pass.
struct CheckedBackward<B>(B);

impl<B: Backward> Backward for CheckedBackward<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let name = self.0.name();
        let grads = self.0.backward(grad, inputs);
        assert_eq!(
            grads.len(),
            inputs.len(),
            "{name}: the backward rule returned {} gradients for {} inputs",
            grads.len(),
            inputs.len()
        );
        for (i, (g, x)) in grads.iter().zip(inputs).enumerate() {
            if let Some(g) = g {
                assert!(
                    g.shape() == x.shape() && g.device() == x.device(),
                    "{name}: input {i}'s gradient is {:?} on {:?}, the input {:?} on {:?}",
                    g.shape(),
                    g.device(),
                    x.shape(),
                    x.device()
                );
            }
        }
        grads
    }
}

/// Back-propagates `grad` (the gradient of some scalar with respect to
/// `root`) to every leaf that requires gradients.
pub(crate) fn backward(root: &Tensor, grad: Tensor) {
    walk(root, grad, &mut |leaf, g| leaf.accumulate_grad(g))
}

/// Back-propagates like [`backward`], but returns each leaf's gradient
/// with the leaf instead of adding it to the leaf's `grad`: for
/// data-parallel shards, whose gradients are then summed in a fixed order
/// whichever shard finishes first, and for activation checkpointing.
pub(crate) fn leaf_gradients(root: &Tensor, grad: Tensor) -> Vec<(Tensor, Tensor)> {
    let mut out = Vec::new();
    walk(root, grad, &mut |leaf, g| out.push((leaf.clone(), g)));
    out
}

/// The backward walk, handing each leaf's gradient to `leaf_grad`.
fn walk(root: &Tensor, grad: Tensor, leaf_grad: &mut dyn FnMut(&Tensor, Tensor)) {
    assert_eq!(
        root.shape(),
        grad.shape(),
        "backward: the gradient's shape {:?} differs from the tensor's {:?}",
        grad.shape(),
        root.shape()
    );
    if !root.is_tracked() {
        panic!(
            "backward: the tensor does not require grad and has no graph (did you forget requires_grad(), or run under no_grad?)"
        );
    }
    let _guard = NoGradGuard::new();
    // A gradient has its tensor's dtype (a bf16 root's seed of ones, made
    // in f32, included).
    let grad = if grad.dtype() == root.dtype() {
        grad
    } else {
        grad.to_dtype(root.dtype())
    };
    // Each op's backward computes in the dtypes its forward chose.
    let _autocast = crate::mode::AutocastGuard::set(None);
    let order = reverse_topological_order(root);
    let mut grads: HashMap<usize, Tensor> = HashMap::new();
    grads.insert(root.id(), grad);
    for tensor in order {
        let Some(grad) = grads.remove(&tensor.id()) else {
            continue;
        };
        let node = tensor.take_node();
        let Some(node) = node else {
            if tensor.is_leaf_requiring_grad() {
                leaf_grad(&tensor, grad);
            }
            continue;
        };
        if let [input] = node.inputs.as_slice()
            && let Some(acc) = grads.get_mut(&input.id())
            && node.backward.add_into(&grad, acc)
        {
            continue;
        }
        let input_grads = node.backward.backward(&grad, &node.inputs);
        assert_eq!(
            input_grads.len(),
            node.inputs.len(),
            "{}: backward returned the wrong number of gradients",
            node.backward.name()
        );
        for (input, g) in node.inputs.iter().zip(input_grads) {
            let Some(g) = g else { continue };
            if !input.is_tracked() {
                continue;
            }
            assert_eq!(
                g.shape(),
                input.shape(),
                "{}: backward produced a gradient of shape {:?} for an input of shape {:?}",
                node.backward.name(),
                g.shape(),
                input.shape()
            );
            match grads.remove(&input.id()) {
                Some(sum) => grads.insert(input.id(), add_in_place_if_unique(sum, &g)),
                None => grads.insert(input.id(), g),
            };
        }
    }
}

/// `sum + g`, written into `sum`'s storage when nothing else holds it (no
/// new buffer to allocate and fill; the same bits as `sum.add(g)`).
pub(crate) fn add_in_place_if_unique(mut sum: Tensor, g: &Tensor) -> Tensor {
    let whole = crate::tensor::Layout::contiguous(sum.shape());
    if sum.add_in_place_if_unique(&whole, g) {
        sum
    } else {
        sum.add(g)
    }
}

/// Tensors reachable from `root` through graph nodes, each after every
/// tensor that uses it. Iterative depth-first search.
fn reverse_topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut post_order = Vec::new();
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((tensor, children_done)) = stack.pop() {
        if children_done {
            post_order.push(tensor);
            continue;
        }
        if !visited.insert(tensor.id()) {
            continue;
        }
        let inputs = tensor.node_inputs();
        stack.push((tensor, true));
        for input in inputs {
            if input.is_tracked() && !visited.contains(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    post_order.reverse();
    post_order
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{DType, Tensor};

    /// What keeps `t`'s elements alive besides `t`: other handles of it
    /// (graph nodes' inputs) and other tensors over its storage (views).
    fn other_holders(t: &Tensor) -> usize {
        // Less `t`'s own handle, and its storage's and this call's.
        (Arc::strong_count(&t.0) - 1) + (Arc::strong_count(&t.storage()) - 2)
    }

    #[test]
    fn nodes_that_read_no_values_do_not_keep_their_inputs_elements() {
        let values = [1.0f32, -2.0, 3.0, 0.5];
        let x = Tensor::from_vec(values.to_vec(), &[2, 2]).requires_grad();
        let y = x.mul(&x);
        assert_eq!(other_holders(&y), 0);
        // A cast, an add and a sum keep storage-less edges of y; a view
        // shares y's storage only while it lives.
        let cast = y.to_dtype(DType::BF16);
        let sum = y.add(&x);
        let total = y.sum();
        let view = y.t();
        assert_eq!(other_holders(&y), 1);
        drop(view);
        assert_eq!(other_holders(&y), 0);
        // A product, whose backward reads y, keeps y's elements.
        let product = y.mul(&x);
        assert_eq!(other_holders(&y), 1);
        // Gradients still reach x through every one of them: the loss is
        // 3x² + x + x³ summed, so d/dx = 6x + 1 + 3x².
        let loss = cast
            .to_dtype(DType::F32)
            .sum()
            .add(&sum.sum())
            .add(&total)
            .add(&product.sum());
        drop(y);
        loss.backward();
        let want: Vec<f32> = values.iter().map(|v| 6.0 * v + 1.0 + 3.0 * v * v).collect();
        assert_eq!(x.grad().unwrap().to_vec(), want);
    }
}
