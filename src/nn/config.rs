//! Layer configs: the numbers of a layer with their usual defaults, set by
//! name, then `init(&device, &mut rng)` (burn's pattern) instead of a
//! constructor with a row of unnamed arguments.
//!
//! ```
//! use zeroformer::nn::{LinearConfig, MultiHeadAttentionConfig};
//! use zeroformer::prelude::*;
//! let (device, mut rng) = (Device::Cpu, StdRng::seed_from_u64(0));
//! let proj = LinearConfig::new(16, 32).bias(false).init(&device, &mut rng)?;
//! assert!(proj.bias.is_none());
//! let attn = MultiHeadAttentionConfig::new(32, 4).dropout(0.1).init(&device, &mut rng)?;
//! assert_eq!(attn.n_head, 4);
//! # Ok::<(), zeroformer::Error>(())
//! ```

use rand::Rng;

use super::{
    Activation, Embedding, FeedForward, LayerNorm, Linear, Module, MultiHeadAttention, SharedRng,
};
use crate::{Device, Error, Result};

/// The layer `build` makes, built on `device`: its parameters' initial
/// values go from the host straight there.
fn on<M: Module>(device: &Device, build: impl FnOnce() -> M) -> Result<M> {
    device.ensure_usable()?;
    Ok(device.as_default(build))
}

/// A dropout stream drawn from `rng`, for a layer whose dropout is on.
fn dropout_stream(rng: &mut impl Rng) -> SharedRng {
    SharedRng::seed_from_u64(rng.next_u64())
}

fn check_dropout(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "dropout must be in [0, 1), got {p}"
        )))
    }
}

/// A [`Linear`] layer: `in_features -> out_features`, with a bias, weights
/// from N(0, 0.02²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearConfig {
    /// The input width.
    pub in_features: usize,
    /// The output width.
    pub out_features: usize,
    /// Whether it has a bias (default true).
    pub bias: bool,
    /// The weights' standard deviation (default 0.02).
    pub std: f32,
}

impl LinearConfig {
    /// `in_features -> out_features` with the defaults.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        LinearConfig {
            in_features,
            out_features,
            bias: true,
            std: 0.02,
        }
    }

    /// With or without a bias.
    pub fn bias(self, bias: bool) -> Self {
        LinearConfig { bias, ..self }
    }

    /// Weights from N(0, std²).
    pub fn std(self, std: f32) -> Self {
        LinearConfig { std, ..self }
    }

    /// The layer, on `device`.
    pub fn init(&self, device: &Device, rng: &mut impl Rng) -> Result<Linear> {
        on(device, || {
            Linear::new(
                self.in_features,
                self.out_features,
                self.bias,
                self.std,
                rng,
            )
        })
    }
}

/// An [`Embedding`] table of `num` rows of width `dim`, from N(0, 0.02²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingConfig {
    /// Rows (the vocabulary size).
    pub num: usize,
    /// The width of each row.
    pub dim: usize,
    /// The weights' standard deviation (default 0.02).
    pub std: f32,
}

impl EmbeddingConfig {
    /// `num` rows of width `dim` with the default initialisation.
    pub fn new(num: usize, dim: usize) -> Self {
        EmbeddingConfig {
            num,
            dim,
            std: 0.02,
        }
    }

    /// Weights from N(0, std²).
    pub fn std(self, std: f32) -> Self {
        EmbeddingConfig { std, ..self }
    }

    /// The table, on `device`.
    pub fn init(&self, device: &Device, rng: &mut impl Rng) -> Result<Embedding> {
        on(device, || Embedding::new(self.num, self.dim, self.std, rng))
    }
}

/// A [`LayerNorm`] over `dim`, with a bias by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormConfig {
    /// The normalised width.
    pub dim: usize,
    /// Whether it has a bias (default true).
    pub bias: bool,
}

impl LayerNormConfig {
    /// A LayerNorm over `dim` with a bias.
    pub fn new(dim: usize) -> Self {
        LayerNormConfig { dim, bias: true }
    }

    /// With or without a bias.
    pub fn bias(self, bias: bool) -> Self {
        LayerNormConfig { bias, ..self }
    }

    /// The layer (weight ones, bias zeros), on `device`.
    pub fn init(&self, device: &Device) -> Result<LayerNorm> {
        on(device, || LayerNorm::new(self.dim, self.bias))
    }
}

/// A [`MultiHeadAttention`] of width `d_model` with `n_head` heads: biases
/// on, no dropout, projections from N(0, 0.02²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiHeadAttentionConfig {
    /// The model width.
    pub d_model: usize,
    /// Heads; `d_model` must divide by it.
    pub n_head: usize,
    /// Biases in the projections (default true).
    pub bias: bool,
    /// Dropout on the attention weights and the output (default 0).
    pub dropout: f32,
    /// The q/k/v projection's standard deviation (default 0.02).
    pub std: f32,
    /// The output projection's (default 0.02; GPT-2 scales it by depth).
    pub proj_std: f32,
}

impl MultiHeadAttentionConfig {
    /// `n_head` heads over width `d_model` with the defaults.
    pub fn new(d_model: usize, n_head: usize) -> Self {
        MultiHeadAttentionConfig {
            d_model,
            n_head,
            bias: true,
            dropout: 0.0,
            std: 0.02,
            proj_std: 0.02,
        }
    }

    /// With or without biases.
    pub fn bias(self, bias: bool) -> Self {
        MultiHeadAttentionConfig { bias, ..self }
    }

    /// Dropout probability on the weights and the output.
    pub fn dropout(self, dropout: f32) -> Self {
        MultiHeadAttentionConfig { dropout, ..self }
    }

    /// Projections from N(0, std²); the output one from N(0, proj_std²).
    pub fn std(self, std: f32, proj_std: f32) -> Self {
        MultiHeadAttentionConfig {
            std,
            proj_std,
            ..self
        }
    }

    /// The layer, on `device`; its dropout stream is drawn from `rng`.
    /// Errors for a width the heads do not divide or a dropout outside
    /// [0, 1).
    pub fn init(&self, device: &Device, rng: &mut impl Rng) -> Result<MultiHeadAttention> {
        if self.n_head == 0 || self.d_model % self.n_head != 0 {
            return Err(Error::InvalidConfig(format!(
                "d_model {} is not divisible by n_head {}",
                self.d_model, self.n_head
            )));
        }
        check_dropout(self.dropout)?;
        let drop = dropout_stream(rng);
        on(device, || {
            MultiHeadAttention::new(
                self.d_model,
                self.n_head,
                self.bias,
                self.dropout,
                self.std,
                self.proj_std,
                rng,
                &drop,
            )
        })
    }
}

/// A [`FeedForward`] network `d_model -> hidden -> d_model`: GELU (tanh),
/// biases on, no dropout, weights from N(0, 0.02²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeedForwardConfig {
    /// The model width.
    pub d_model: usize,
    /// The hidden width.
    pub hidden: usize,
    /// The nonlinearity (default GELU, tanh approximation).
    pub activation: Activation,
    /// Biases in both projections (default true).
    pub bias: bool,
    /// Dropout on the output (default 0).
    pub dropout: f32,
    /// The input projection's standard deviation (default 0.02).
    pub std: f32,
    /// The output projection's (default 0.02).
    pub proj_std: f32,
}

impl FeedForwardConfig {
    /// `d_model -> hidden -> d_model` with the defaults.
    pub fn new(d_model: usize, hidden: usize) -> Self {
        FeedForwardConfig {
            d_model,
            hidden,
            activation: Activation::Gelu(crate::GeluApproximation::Tanh),
            bias: true,
            dropout: 0.0,
            std: 0.02,
            proj_std: 0.02,
        }
    }

    /// Another nonlinearity.
    pub fn activation(self, activation: Activation) -> Self {
        FeedForwardConfig { activation, ..self }
    }

    /// With or without biases.
    pub fn bias(self, bias: bool) -> Self {
        FeedForwardConfig { bias, ..self }
    }

    /// Dropout probability on the output.
    pub fn dropout(self, dropout: f32) -> Self {
        FeedForwardConfig { dropout, ..self }
    }

    /// The network, on `device`; its dropout stream is drawn from `rng`.
    pub fn init(&self, device: &Device, rng: &mut impl Rng) -> Result<FeedForward> {
        check_dropout(self.dropout)?;
        let drop = dropout_stream(rng);
        on(device, || {
            FeedForward::new(
                self.d_model,
                self.hidden,
                self.activation,
                self.bias,
                self.dropout,
                self.std,
                self.proj_std,
                rng,
                &drop,
            )
        })
    }
}
