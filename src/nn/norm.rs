//! Layer normalisation with a learned scale and optional shift.

use super::{Module, join};
use crate::Tensor;

/// Normalises the last dimension (`torch.nn.LayerNorm(dim, bias=...)`).
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub eps: f32,
}

impl LayerNorm {
    /// Weight one, bias zero, eps 1e-5 (PyTorch's defaults).
    pub fn new(dim: usize, bias: bool) -> LayerNorm {
        LayerNorm {
            weight: Tensor::ones(&[dim]).requires_grad(),
            bias: bias.then(|| Tensor::zeros(&[dim]).requires_grad()),
            eps: 1e-5,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(Some(&self.weight), self.bias.as_ref(), self.eps)
    }
}

impl Module for LayerNorm {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
