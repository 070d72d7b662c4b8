//! `y = x Wᵀ + b`.

use rand::Rng;

use super::{Module, normal_parameter, zeros_parameter};
use crate::ops::quantized::Int8Rows;
use crate::{Device, Tensor};

/// A fully connected layer. The weight is `[out, in]` as in PyTorch, applied
/// through a transposed view (no copy: gemm reads it through its strides).
#[derive(Clone, Module)]
pub struct Linear {
    /// `[out_features, in_features]`, applied as `x @ weightᵀ`.
    pub weight: Tensor,
    /// `[out_features]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// An int8 copy of the weight ([`quantize_int8`](Self::quantize_int8)),
    /// used instead of it when gradients are off: decoding reads a quarter
    /// of the bytes. Training always uses `weight`.
    #[module(skip)]
    pub int8: Option<Int8Rows>,
}

impl Linear {
    /// Weights from N(0, std²), bias zero (GPT-2's initialisation uses std 0.02).
    pub(crate) fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        std: f32,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Linear {
        Linear {
            weight: normal_parameter(&[out_features, in_features], std, rng, device),
            bias: bias.then(|| zeros_parameter(out_features, device)),
            int8: None,
        }
    }

    /// Keeps an int8 copy of the weight (per-row scales) for inference:
    /// without gradients, [`forward`](Self::forward) multiplies by it
    /// instead of the f32 weight. Call again after the weight changes;
    /// [`drop_int8`](Self::drop_int8) goes back to f32.
    pub fn quantize_int8(&mut self) {
        self.int8 = Some(self.weight.quantize_rows_int8());
    }

    /// Forgets the int8 copy.
    pub fn drop_int8(&mut self) {
        self.int8 = None;
    }

    /// The input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Applies the layer to `x` of shape `[..., in]`, giving `[..., out]`.
    /// Leading dimensions are flattened into one product, the best shape for gemm.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_rows(x, 0, self.out_features())
    }

    /// Outputs `start..start + len` only, `[..., len]`: the layer restricted
    /// to those rows of its weight (a view, no copy). Cross-attention uses
    /// it to project queries and keys/values with parts of one fused weight.
    pub fn forward_rows(&self, x: &Tensor, start: usize, len: usize) -> Tensor {
        let in_features = self.in_features();
        assert_eq!(
            x.shape().last(),
            Some(&in_features),
            "Linear: input of shape {:?} does not end in in_features = {in_features}",
            x.shape()
        );
        let lead = &x.shape()[..x.rank() - 1];
        let rows: usize = lead.iter().product();
        let whole = start == 0 && len == self.out_features();
        let weight = if whole {
            self.weight.clone()
        } else {
            self.weight.narrow(0, start, len)
        };
        let x = x.reshape(&[rows, in_features]);
        if let Some(q) = self
            .int8
            .as_ref()
            .filter(|_| whole && !crate::mode::is_grad_enabled())
        {
            let y = x.matmul_int8(q);
            let y = match &self.bias {
                Some(b) => y.add(b),
                None => y,
            };
            let mut shape = lead.to_vec();
            shape.push(len);
            return y.reshape(&shape);
        }
        let y = match &self.bias {
            // The bias goes into the product's output pass (addmm).
            Some(b) if whole => b.addmm(&x, &weight.t()),
            Some(b) => b.narrow(0, start, len).addmm(&x, &weight.t()),
            None => x.matmul(&weight.t()),
        };
        let mut shape = lead.to_vec();
        shape.push(len);
        y.reshape(&shape)
    }
}
