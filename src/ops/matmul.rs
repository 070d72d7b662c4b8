//! Matrix products of 2-D tensors and batches of them, with broadcast batch
//! dimensions (`torch.matmul` for inputs of rank >= 2).

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::layout::broadcast_shape;
use crate::ops::sum_to_shape;

struct MatmulBackward;

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        // Transposes are views: gemm reads them through their strides.
        let ga = a
            .is_tracked()
            .then(|| sum_to_shape(&g.matmul(&b.transpose(-1, -2)), a.shape()));
        let gb = b
            .is_tracked()
            .then(|| sum_to_shape(&right_operand_grad(a, b, g), b.shape()));
        vec![ga, gb]
    }
}

struct AddmmBackward;

impl Backward for AddmmBackward {
    fn name(&self) -> &'static str {
        "addmm"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let (bias, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
        let gbias = bias.is_tracked().then(|| g.sum_dim(0, false));
        let ga = a.is_tracked().then(|| g.matmul(&b.transpose(0, 1)));
        let gb = b.is_tracked().then(|| right_operand_grad(a, b, g));
        vec![gbias, ga, gb]
    }
}

/// `aᵀ @ g`, the gradient of a product's right operand `b`, laid out as `b`
/// is. When `b` is a transposed matrix (a `Linear` weight, `W.t()`), it is
/// computed as `(gᵀ @ a)ᵀ`: the gradient then flows back through the
/// transpose into a contiguous `[out, in]` buffer, instead of arriving as a
/// transposed view that the weight's gradient must copy to lay out.
fn right_operand_grad(a: &Tensor, b: &Tensor, g: &Tensor) -> Tensor {
    let transposed = b.rank() == 2 && {
        let strides = b.layout().strides();
        strides[0] == 1 && strides[1] != 1
    };
    if transposed && a.rank() == 2 {
        g.transpose(0, 1).matmul(a).transpose(0, 1)
    } else {
        a.transpose(-1, -2).matmul(g)
    }
}

impl Tensor {
    /// The matrix product over the last two dimensions; leading (batch)
    /// dimensions broadcast. `[.., m, k] @ [.., k, n] -> [.., m, n]`.
    /// Both operands have one dtype, f32 or bf16 (f32 sums either way);
    /// under [`autocast`](crate::autocast) f32 operands are cast to its
    /// dtype first.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    /// let i = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]);
    /// assert_eq!(a.matmul(&i).to_vec(), a.to_vec());
    /// // A batch of 3 matrices times one shared matrix.
    /// let x = Tensor::ones(&[3, 4, 2]);
    /// assert_eq!(x.matmul(&a).shape(), &[3, 4, 2]);
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        let (a, b) = (
            &super::autocast_operand(self),
            &super::autocast_operand(other),
        );
        super::same_device("matmul", &[a, b]);
        super::same_dtype("matmul", &[a, b]);
        assert!(
            a.rank() >= 2 && b.rank() >= 2,
            "matmul: needs inputs of rank >= 2, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k, k2, n) = (
            a.shape()[ra - 2],
            a.shape()[ra - 1],
            b.shape()[rb - 2],
            b.shape()[rb - 1],
        );
        assert_eq!(
            k,
            k2,
            "matmul: inner dimensions differ, shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
        let batch_shape = broadcast_shape(&a.shape()[..ra - 2], &b.shape()[..rb - 2])
            .unwrap_or_else(|| {
                panic!(
                    "matmul: batch dimensions of {:?} and {:?} cannot be broadcast",
                    a.shape(),
                    b.shape()
                )
            });
        let out = a
            .storage()
            .matmul(a.layout(), (&b.storage(), b.layout()), &batch_shape);
        let mut shape = batch_shape;
        shape.extend([m, n]);
        let node = autograd::node(&[a, b], || MatmulBackward);
        Tensor::from_output(out, &shape, node)
    }

    /// `self + a @ b` for a bias `self` of shape `[n]`, `a` `[m, k]` and `b`
    /// `[k, n]` (PyTorch's `torch.addmm(bias, a, b)`): the bias is written
    /// into the output first and the product accumulated onto it, saving
    /// the separate pass (and buffer) of `a.matmul(b).add(bias)`. `Linear`
    /// uses it.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    /// let w = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]);
    /// let b = Tensor::from_vec(vec![10.0, 20.0], &[2]);
    /// assert_eq!(b.addmm(&x, &w).to_vec(), vec![11.0, 22.0, 13.0, 24.0]);
    /// ```
    pub fn addmm(&self, a: &Tensor, b: &Tensor) -> Tensor {
        let [bias, a, b] = &[self, a, b].map(super::autocast_operand);
        super::same_device("addmm", &[bias, a, b]);
        super::same_dtype("addmm", &[bias, a, b]);
        assert!(
            a.rank() == 2 && b.rank() == 2 && bias.rank() == 1,
            "addmm: needs a [n] bias, [m, k] and [k, n] matrices, got shapes {:?}, {:?} and {:?}",
            bias.shape(),
            a.shape(),
            b.shape()
        );
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        assert!(
            b.shape()[0] == k && bias.shape()[0] == n,
            "addmm: shapes {:?} + {:?} @ {:?} do not fit",
            bias.shape(),
            a.shape(),
            b.shape()
        );
        let out = bias.storage().addmm(
            bias.layout(),
            (&a.storage(), a.layout()),
            (&b.storage(), b.layout()),
        );
        let node = autograd::node(&[bias, a, b], || AddmmBackward);
        Tensor::from_output(out, &[m, n], node)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn a_weight_used_transposed_receives_a_contiguous_gradient() {
        // A Linear's weight enters its product as `W.t()`. The product's
        // backward lays the right operand's gradient out as that operand
        // is, so the gradient reaches W contiguous, with no copy to store.
        let x = Tensor::from_vec((0..6).map(|i| i as f32).collect(), &[3, 2]);
        let w = Tensor::from_vec((1..=8).map(|i| i as f32).collect(), &[4, 2]).requires_grad();
        let b = Tensor::zeros(&[4]).requires_grad();
        for y in [b.addmm(&x, &w.t()), x.matmul(&w.t())] {
            let loss = y.sum();
            let grads = crate::autograd::leaf_gradients(&loss, Tensor::ones(loss.shape()));
            let (_, grad) = grads.iter().find(|(leaf, _)| leaf.id() == w.id()).unwrap();
            assert!(grad.is_contiguous());
            // d(sum)/dW[o, i] is the sum of x's column i.
            assert_eq!(grad.to_vec(), [6.0, 9.0].repeat(4));
        }
    }
}
