//! The position-wise feed-forward network of a Transformer block.

use rand::Rng;

use super::{Dropout, Linear, Module, SharedRng, join};
use crate::{GeluApproximation, Tensor};

/// The non-linearity between the two projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// GELU, exact or tanh-approximated (GPT-2 uses the tanh form).
    Gelu(GeluApproximation),
}

/// `dropout(proj(act(fc(x))))`, widening to `hidden` in between.
pub struct FeedForward {
    pub fc: Linear,
    pub proj: Linear,
    pub activation: Activation,
    dropout: Dropout,
}

impl FeedForward {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d_model: usize,
        hidden: usize,
        activation: Activation,
        bias: bool,
        dropout: f32,
        std: f32,
        proj_std: f32,
        rng: &mut impl Rng,
        dropout_rng: &SharedRng,
    ) -> Self {
        FeedForward {
            fc: Linear::new(d_model, hidden, bias, std, rng),
            proj: Linear::new(hidden, d_model, bias, proj_std, rng),
            activation,
            dropout: Dropout::new(dropout, dropout_rng.clone()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.fc.forward(x);
        let h = match self.activation {
            Activation::Relu => h.relu(),
            Activation::Gelu(approx) => h.gelu(approx),
        };
        self.dropout.forward(&self.proj.forward(&h))
    }
}

impl Module for FeedForward {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.fc.visit_parameters(&join(prefix, "fc."), f);
        self.proj.visit_parameters(&join(prefix, "proj."), f);
    }

    fn set_training(&mut self, training: bool) {
        self.dropout.set_training(training);
    }
}
