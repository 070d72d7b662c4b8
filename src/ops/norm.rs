//! Layer normalisation over the last dimension, with optional weight and
//! bias, as one fused op whose backward reuses the forward's per-row
//! statistics.

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::tensor::Storage;

struct LayerNormBackward {
    /// Per-row mean and reciprocal standard deviation, on the op's device.
    stats: Storage,
    has_weight: bool,
    has_bias: bool,
}

impl Backward for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let d = x.shape()[x.rank() - 1];
        let weight = self
            .has_weight
            .then(|| (inputs[1].storage(), inputs[1].layout()));
        let (dx, dw, db) = x.storage().layer_norm_backward(
            x.layout(),
            (&g.storage(), g.layout()),
            d,
            weight.as_ref().map(|(s, l)| (&**s, *l)),
            &self.stats,
        );
        let mut grads = vec![Some(Tensor::from_output(dx, x.shape(), None))];
        if self.has_weight {
            grads.push(Some(Tensor::from_output(dw, &[d], None)));
        }
        if self.has_bias {
            grads.push(Some(Tensor::from_output(db, &[d], None)));
        }
        grads
    }
}

impl Tensor {
    /// Normalises each row over the last dimension to zero mean and unit
    /// variance (biased, as PyTorch), then scales by `weight` and shifts by
    /// `bias` (both of the last dimension's size).
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 4]);
    /// let y = x.layer_norm(None, None, 1e-5);
    /// assert!(y.sum().item().abs() < 1e-5);
    /// ```
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Tensor {
        assert!(self.rank() >= 1, "layer_norm: needs at least one dimension");
        for p in [weight, bias].into_iter().flatten() {
            super::same_device("layer_norm", &[self, p]);
        }
        let d = self.shape()[self.rank() - 1];
        for (name, p) in [("weight", weight), ("bias", bias)] {
            if let Some(p) = p {
                assert_eq!(
                    p.shape(),
                    &[d],
                    "layer_norm: {name} of shape {:?} does not match the normalised size {d} of input {:?}",
                    p.shape(),
                    self.shape()
                );
            }
        }
        let (w, b) = (weight.map(Tensor::storage), bias.map(Tensor::storage));
        let (y, stats) = self.storage().layer_norm(
            self.layout(),
            d,
            w.as_ref().zip(weight).map(|(s, t)| (&**s, t.layout())),
            b.as_ref().zip(bias).map(|(s, t)| (&**s, t.layout())),
            eps,
        );
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let node = autograd::node(&inputs, || LayerNormBackward {
            stats,
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
        });
        Tensor::from_output(y, self.shape(), node)
    }
}
