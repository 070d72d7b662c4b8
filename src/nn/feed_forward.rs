//! The position-wise feed-forward network of a Transformer block.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Dropout, FeedForwardConfig, Linear, Module, SharedRng};
use crate::{Device, GeluApproximation, Tensor};

/// The non-linearity between the two projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// The 2017 Transformer's.
    Relu,
    /// GELU, exact or tanh-approximated (GPT-2 uses the tanh form).
    Gelu(GeluApproximation),
    /// SwiGLU (Shazeer 2020, LLaMA's): `silu(x W_gate) ⊙ (x W_up)`. `fc`
    /// then holds both, `[2·hidden, d_model]`: the gate's rows first.
    SwiGlu,
}

/// `dropout(proj(act(fc(x))))`, widening to `hidden` in between.
#[derive(Clone, Module)]
pub struct FeedForward {
    /// The projection in, `d_model -> hidden` (twice `hidden` for SwiGLU's gate).
    pub fc: Linear,
    /// The projection out, `hidden -> d_model`.
    pub proj: Linear,
    /// The nonlinearity between them.
    #[module(skip)]
    pub activation: Activation,
    dropout: Dropout,
}

impl FeedForward {
    /// The network `config` describes, its dropout drawing from
    /// `dropout_rng`.
    pub(crate) fn new(
        config: &FeedForwardConfig,
        rng: &mut impl Rng,
        dropout_rng: &SharedRng,
        device: &Device,
    ) -> Self {
        let (d, hidden, bias) = (config.d_model, config.hidden, config.bias);
        let fc_out = if config.activation == Activation::SwiGlu {
            2 * hidden
        } else {
            hidden
        };
        FeedForward {
            fc: Linear::new(d, fc_out, bias, config.std, rng, device),
            proj: Linear::new(hidden, d, bias, config.proj_std, rng, device),
            activation: config.activation,
            dropout: Dropout::new(config.dropout, dropout_rng.clone()),
        }
    }

    /// `proj(act(fc(x)))`, then dropout.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.activate(&self.fc.forward(x));
        self.dropout(&self.proj.forward(&h))
    }

    /// The nonlinearity of `fc`'s output `h` (SwiGLU: the gate's half times
    /// the other).
    pub(crate) fn activate(&self, h: &Tensor) -> Tensor {
        match self.activation {
            Activation::Relu => h.relu(),
            Activation::Gelu(approx) => h.gelu(approx),
            Activation::SwiGlu => {
                let hidden = self.proj.in_features();
                h.narrow(-1, 0, hidden)
                    .silu()
                    .mul(&h.narrow(-1, hidden, hidden))
            }
        }
    }

    /// The network's dropout on `y`.
    pub(crate) fn dropout(&self, y: &Tensor) -> Tensor {
        self.dropout.forward(y)
    }
}
