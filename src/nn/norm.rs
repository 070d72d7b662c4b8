//! Normalisation layers: LayerNorm (learned scale, optional shift) and RMSNorm.

use serde::{Deserialize, Serialize};

use super::{Module, join, ones_parameter, zeros_parameter};
use crate::{Device, Tensor};

/// Normalises the last dimension (`torch.nn.LayerNorm(dim, bias=...)`).
#[derive(Clone)]
pub struct LayerNorm {
    /// The scale, `[dim]`, ones at first.
    pub weight: Tensor,
    /// The shift, `[dim]`, zeros at first (when the layer has one).
    pub bias: Option<Tensor>,
    /// Added to the variance, 1e-5.
    pub eps: f32,
}

impl LayerNorm {
    /// Weight one, bias zero, eps 1e-5 (PyTorch's defaults).
    pub(crate) fn new(dim: usize, bias: bool, device: &Device) -> LayerNorm {
        LayerNorm {
            weight: ones_parameter(dim, device),
            bias: bias.then(|| zeros_parameter(dim, device)),
            eps: 1e-5,
        }
    }

    /// Normalises over the last dimension, then scales and shifts.
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

/// Root-mean-square normalisation (Zhang & Sennrich 2019), as
/// `torch.nn.RMSNorm`: `x / sqrt(mean(x²) + eps) · weight` over the last
/// dimension; no centring, no bias.
#[derive(Clone)]
pub struct RmsNorm {
    /// The scale, `[dim]`, ones at first.
    pub weight: Tensor,
    /// Added to the mean square, 1e-6.
    pub eps: f32,
}

impl RmsNorm {
    /// Weight one, eps 1e-6 (LLaMA's).
    pub(crate) fn new(dim: usize, device: &Device) -> RmsNorm {
        RmsNorm {
            weight: ones_parameter(dim, device),
            eps: 1e-6,
        }
    }

    /// `x / √(mean(x²) + eps) · weight` over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.weight.numel();
        assert_eq!(
            x.shape().last(),
            Some(&dim),
            "RmsNorm: input of shape {:?} does not end in {dim}",
            x.shape()
        );
        let rms = x.square().mean_dim(-1, true).add_scalar(self.eps).sqrt();
        x.div(&rms).mul(&self.weight)
    }
}

impl Module for RmsNorm {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
}

/// Which normalisation a layer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    /// Mean and variance, then scale and shift.
    #[default]
    LayerNorm,
    /// Root mean square only, then scale.
    RmsNorm,
}

/// A LayerNorm or an RMSNorm, chosen by a config.
#[derive(Clone)]
pub enum Norm {
    /// A LayerNorm.
    Layer(LayerNorm),
    /// An RMSNorm.
    Rms(RmsNorm),
}

impl Norm {
    /// A fresh norm of `kind` over `dim` features (`bias` applies to LayerNorm).
    pub(crate) fn new(kind: NormKind, dim: usize, bias: bool, device: &Device) -> Norm {
        match kind {
            NormKind::LayerNorm => Norm::Layer(LayerNorm::new(dim, bias, device)),
            NormKind::RmsNorm => Norm::Rms(RmsNorm::new(dim, device)),
        }
    }

    /// The norm over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
}

impl Module for Norm {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match self {
            Norm::Layer(n) => n.visit_parameters(prefix, f),
            Norm::Rms(n) => n.visit_parameters(prefix, f),
        }
    }
}
