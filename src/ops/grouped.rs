//! The grouped product of a mixture of experts: consecutive groups of rows,
//! each through its own linear map, in one op whose group boundaries stay
//! on the device (MegaBlocks' grouped GEMM; `torch._grouped_mm`).

use crate::autograd::{self, Backward};
use crate::{DType, Tensor};

struct GroupedLinearBackward {
    /// The groups' row offsets, detached.
    offsets: Tensor,
}

impl Backward for GroupedLinearBackward {
    fn name(&self) -> &'static str {
        "grouped_linear"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let (rows, weights) = (&inputs[0], &inputs[1]);
        let (d_rows, d_weights, d_bias) = g.storage().grouped_matmul_backward(
            g.layout(),
            (&rows.storage(), rows.layout()),
            (&weights.storage(), weights.layout()),
            (&self.offsets.storage(), self.offsets.layout()),
        );
        let (groups, out) = (weights.shape()[0], weights.shape()[1]);
        let mut grads = vec![
            Some(Tensor::from_output(d_rows, rows.shape(), None)),
            Some(Tensor::from_output(d_weights, weights.shape(), None)),
        ];
        if inputs.len() == 3 {
            grads.push(Some(Tensor::from_output(d_bias, &[groups, out], None)));
        }
        grads
    }
}

impl Tensor {
    /// Each group of consecutive rows of `self` (`[rows, in]`) through its
    /// own linear map: rows `offsets[e]..offsets[e + 1]` times `weights[e]ᵀ`
    /// (`weights` `[groups, out, in]`, each group's `Linear` weight), plus
    /// `bias[e]` (`[groups, out]`) when given; `[rows, out]`. `offsets` is
    /// i64 `[groups + 1]`, from 0 to `rows` without decreasing, and is read
    /// by the kernels only, never by the host (a mixture of experts keeps
    /// its routing on the device). Differentiable in the rows, the weights
    /// and the bias; an empty group's weights get zero gradients. On the
    /// CPU each group is the product a `Linear` layer makes, bit for bit.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// // Rows 0..1 through the identity, rows 1..3 through twice it.
    /// let rows = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    /// let w = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0], &[2, 2, 2]);
    /// let offsets = Tensor::from_ids(vec![0, 1, 3], &[3]);
    /// let y = rows.grouped_linear(&w, &offsets, None);
    /// assert_eq!(y.to_vec(), vec![1.0, 2.0, 6.0, 8.0, 10.0, 12.0]);
    /// ```
    pub fn grouped_linear(
        &self,
        weights: &Tensor,
        offsets: &Tensor,
        bias: Option<&Tensor>,
    ) -> Tensor {
        let op = "grouped_linear";
        let mut operands = vec![self, weights, offsets];
        operands.extend(bias);
        super::same_device(op, &operands);
        let shapes_fit = self.rank() == 2
            && weights.rank() == 3
            && weights.shape()[2] == self.shape()[1]
            && offsets.shape() == [weights.shape()[0] + 1]
            && bias.is_none_or(|b| b.shape() == &weights.shape()[..2]);
        assert!(
            shapes_fit,
            "{op}: needs [rows, in] rows, [groups, out, in] weights, [groups + 1] offsets and a [groups, out] bias, got {:?}, {:?}, {:?} and {:?}",
            self.shape(),
            weights.shape(),
            offsets.shape(),
            bias.map(Tensor::shape)
        );
        assert_eq!(
            offsets.dtype(),
            DType::I64,
            "{op}: the offsets must be i64, got {:?}",
            offsets.dtype()
        );
        let out = self.storage().grouped_matmul(
            self.layout(),
            (&weights.storage(), weights.layout()),
            (&offsets.storage(), offsets.layout()),
            bias.map(|b| (b.storage(), b.layout().clone()))
                .as_ref()
                .map(|(s, l)| (&**s, l)),
        );
        let mut inputs = vec![self, weights];
        inputs.extend(bias);
        let node = autograd::node(&inputs, || GroupedLinearBackward {
            offsets: offsets.detach(),
        });
        Tensor::from_output(out, &[self.shape()[0], weights.shape()[1]], node)
    }
}
