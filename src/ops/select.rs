//! Choosing elements by a boolean mask: `where_cond`, `masked_fill`, and the
//! comparisons that make masks.

use crate::autograd::{self, Backward};
use crate::backend::CmpOp;
use crate::ops::binary::broadcast_or_panic;
use crate::ops::sum_to_shape;
use crate::{DType, Tensor};

struct WhereBackward {
    /// The condition, detached, broadcast to the output's shape.
    cond: Tensor,
}

impl Backward for WhereBackward {
    fn name(&self) -> &'static str {
        "where_cond"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let zeros = g.scalar_like(0.0);
        inputs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.is_tracked().then(|| {
                    let routed = if i == 0 {
                        Tensor::where_cond(&self.cond, g, &zeros)
                    } else {
                        Tensor::where_cond(&self.cond, &zeros, g)
                    };
                    sum_to_shape(&routed, x.shape())
                })
            })
            .collect()
    }
}

impl Tensor {
    /// Elementwise `if cond { on_true } else { on_false }`, all three broadcast
    /// together (`torch.where`).
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let cond = Tensor::from_bools(vec![true, false], &[2]);
    /// let a = Tensor::from_vec(vec![1.0, 2.0], &[2]);
    /// let out = Tensor::where_cond(&cond, &a, &Tensor::scalar(0.0));
    /// assert_eq!(out.to_vec(), vec![1.0, 0.0]);
    /// ```
    pub fn where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Tensor {
        // An f32 and a bf16 choice: both in f32 (PyTorch's promotion).
        let (on_true, on_false) = if on_true.dtype() != on_false.dtype() {
            (&super::widened(on_true), &super::widened(on_false))
        } else {
            (on_true, on_false)
        };
        super::same_device("where_cond", &[cond, on_true, on_false]);
        assert_eq!(
            cond.dtype(),
            DType::Bool,
            "where_cond: the condition must be a bool tensor, got {:?}",
            cond.dtype()
        );
        let shape = broadcast_or_panic("where_cond", on_true.shape(), on_false.shape());
        let shape = broadcast_or_panic("where_cond", cond.shape(), &shape);
        let lc = cond.layout().broadcast_to(&shape).expect("checked");
        let la = on_true.layout().broadcast_to(&shape).expect("checked");
        let lb = on_false.layout().broadcast_to(&shape).expect("checked");
        let data =
            cond.storage()
                .where_cond(&lc, (&on_true.storage(), &la), (&on_false.storage(), &lb));
        let node = autograd::node(&[on_true, on_false], || WhereBackward {
            cond: cond.detach().broadcast_to(&shape),
        });
        Tensor::from_output(data, &shape, node)
    }

    /// `value` where `mask` is true, `self` elsewhere; `mask` broadcasts to
    /// `self`'s shape. The usual way to apply a causal attention mask.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Tensor {
        let out = Tensor::where_cond(mask, &self.scalar_like(value), self);
        assert_eq!(
            out.shape(),
            self.shape(),
            "masked_fill: mask of shape {:?} does not broadcast to the tensor's shape {:?}",
            mask.shape(),
            self.shape()
        );
        out
    }
}

/// `a op b` elementwise as a bool tensor, broadcasting.
fn compare(a: &Tensor, b: &Tensor, op: CmpOp) -> Tensor {
    super::same_device(op.name(), &[a, b]);
    let shape = broadcast_or_panic(op.name(), a.shape(), b.shape());
    let la = a.layout().broadcast_to(&shape).expect("checked");
    let lb = b.layout().broadcast_to(&shape).expect("checked");
    let data = a.storage().compare(&la, (&b.storage(), &lb), op);
    Tensor::from_output(data, &shape, None)
}

crate::backend::compare_ops!(pairwise_methods [compare CmpOp:]);

impl Tensor {
    /// The upper triangle above the diagonal of an `n x n` matrix as `true`:
    /// the positions a causal mask hides (a query may not see later keys).
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let m = Tensor::causal_mask(2);
    /// assert_eq!(m.to_vec_bool(), vec![false, true, false, false]);
    /// ```
    pub fn causal_mask(n: usize) -> Tensor {
        let data = (0..n * n).map(|k| k % n > k / n).collect();
        Tensor::from_bools(data, &[n, n])
    }
}
