//! Layer configs: the numbers of a layer with their usual defaults, set by
//! name, then `init(&device, &mut rng)` (burn's pattern). This is the one
//! way to build a layer; the crate's models build theirs the same way.
//!
//! A layer with dropout gets its own dropout stream, drawn from `rng`, from
//! `init`. A model's layers share one stream (the model's, saved with its
//! checkpoints): they are built with `init_with_dropout`, as the crate's
//! models do.
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
use serde::{Deserialize, Serialize};

use super::{
    Activation, Embedding, FeedForward, LayerNorm, Linear, Module, MoeConfig, MoeFeedForward,
    MultiHeadAttention, Norm, NormKind, Positional, SharedRng, TokenEmbedding,
};
use crate::{Device, Error, Result};

/// The layer `build` makes on `device` (checked usable first): its
/// parameters' initial values go from the host straight there.
pub(crate) fn on<M: Module>(device: &Device, build: impl FnOnce(&Device) -> M) -> Result<M> {
    device.ensure_usable()?;
    let layer = build(device);
    // A counting build stops at the first layer past its limit.
    crate::nn::check_count()?;
    Ok(layer)
}

/// `$init(&device, &mut rng)`, which draws the layer's own dropout stream
/// from `rng`, and `$init_with(&device, &mut rng, &stream)`, which shares a
/// model's, for a config with `validate` whose layer `$build(config, rng,
/// dropout)` makes.
macro_rules! dropout_inits {
    ($config:ty, $init:ident, $init_with:ident => $layer:ty, $build:path) => {
        impl $config {
            #[doc = concat!("The [`", stringify!($layer), "`], on `device`; its dropout stream is")]
            /// drawn from `rng`. Errors for numbers
            /// [`validate`](Self::validate) refuses.
            pub fn $init(&self, device: &Device, rng: &mut impl Rng) -> Result<$layer> {
                self.validate()?;
                let dropout = SharedRng::seed_from_u64(rng.next_u64());
                self.$init_with(device, rng, &dropout)
            }

            #[doc = concat!("[`", stringify!($init), "`](Self::", stringify!($init), "), its dropout drawing from `dropout`")]
            /// (a model's stream, shared by its layers).
            pub fn $init_with(
                &self,
                device: &Device,
                rng: &mut impl Rng,
                dropout: &SharedRng,
            ) -> Result<$layer> {
                self.validate()?;
                crate::nn::config::on(device, |device| $build(self, rng, dropout, device))
            }
        }
    };
}
pub(crate) use dropout_inits;

pub(crate) fn check_dropout(p: f32) -> Result<()> {
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
        on(device, |device| {
            Linear::new(
                self.in_features,
                self.out_features,
                self.bias,
                self.std,
                rng,
                device,
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
        on(device, |device| {
            Embedding::new(self.num, self.dim, self.std, rng, device)
        })
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
        on(device, |device| LayerNorm::new(self.dim, self.bias, device))
    }
}

/// A [`Norm`] over `dim`: a LayerNorm with a bias by default, or an RMSNorm.
///
/// ```
/// use zeroformer::nn::{Norm, NormConfig, NormKind};
/// use zeroformer::Device;
/// let norm = NormConfig::new(8).kind(NormKind::RmsNorm).init(&Device::Cpu)?;
/// assert!(matches!(norm, Norm::Rms(_)));
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormConfig {
    /// LayerNorm (default) or RMSNorm.
    pub kind: NormKind,
    /// The normalised width.
    pub dim: usize,
    /// A LayerNorm's bias (default true; an RMSNorm has none).
    pub bias: bool,
}

impl NormConfig {
    /// A LayerNorm over `dim` with a bias.
    pub fn new(dim: usize) -> Self {
        NormConfig {
            kind: NormKind::LayerNorm,
            dim,
            bias: true,
        }
    }

    /// LayerNorm or RMSNorm.
    pub fn kind(self, kind: NormKind) -> Self {
        NormConfig { kind, ..self }
    }

    /// With or without a LayerNorm's bias.
    pub fn bias(self, bias: bool) -> Self {
        NormConfig { bias, ..self }
    }

    /// The norm (weight ones, bias zeros), on `device`.
    pub fn init(&self, device: &Device) -> Result<Norm> {
        on(device, |device| {
            Norm::new(self.kind, self.dim, self.bias, device)
        })
    }
}

/// A [`MultiHeadAttention`] of width `d_model` with `n_head` heads: biases
/// on, no dropout, projections from N(0, 0.02²), every earlier position
/// visible to causal self-attention.
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
    /// `Some(w)`: causal self-attention sees the last `w` positions only
    /// (sliding-window attention; default `None`, all of them).
    pub window: Option<usize>,
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
            window: None,
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

    /// Causal self-attention over the last `window` positions only
    /// (`None`: all of them).
    pub fn window(self, window: Option<usize>) -> Self {
        MultiHeadAttentionConfig { window, ..self }
    }

    /// Checks the numbers: a width the heads divide, a dropout in [0,
    /// 1), a window of at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.n_head == 0 || !self.d_model.is_multiple_of(self.n_head) {
            return Err(Error::InvalidConfig(format!(
                "d_model {} is not divisible by n_head {}",
                self.d_model, self.n_head
            )));
        }
        if self.window == Some(0) {
            return Err(Error::InvalidConfig(
                "an attention window must be at least 1 position".into(),
            ));
        }
        check_dropout(self.dropout)
    }
}

dropout_inits!(MultiHeadAttentionConfig, init, init_with_dropout => MultiHeadAttention, MultiHeadAttention::new);

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

    /// The input projection from N(0, std²), the output one from N(0,
    /// proj_std²).
    pub fn std(self, std: f32, proj_std: f32) -> Self {
        FeedForwardConfig {
            std,
            proj_std,
            ..self
        }
    }

    /// Checks the numbers: a dropout in [0, 1).
    pub fn validate(&self) -> Result<()> {
        check_dropout(self.dropout)
    }
}

dropout_inits!(FeedForwardConfig, init, init_with_dropout => FeedForward, FeedForward::new);

impl MoeConfig {
    /// A [`MoeFeedForward`] of these experts, each built as `expert`
    /// describes (its dropout on each expert's output), on `device`; the
    /// router (no bias) from N(0, `expert.std`²). Its dropout stream is
    /// drawn from `rng`.
    ///
    /// ```
    /// use zeroformer::nn::{FeedForwardConfig, MoeConfig};
    /// use zeroformer::prelude::*;
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let expert = FeedForwardConfig::new(8, 32).bias(false);
    /// let moe = MoeConfig::new(4, 1).init(&expert, &Device::Cpu, &mut rng)?;
    /// let (y, routing) = moe.forward(&Tensor::randn(&[2, 5, 8], &mut rng));
    /// assert_eq!(y.shape(), &[2, 5, 8]);
    /// assert_eq!(routing.tokens_per_expert.sum().item(), 10.0);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn init(
        &self,
        expert: &FeedForwardConfig,
        device: &Device,
        rng: &mut impl Rng,
    ) -> Result<MoeFeedForward> {
        self.validate()?;
        check_dropout(expert.dropout)?;
        let dropout = SharedRng::seed_from_u64(rng.next_u64());
        self.init_with_dropout(expert, device, rng, &dropout)
    }

    /// [`init`](Self::init), its dropout drawing from `dropout` (a model's
    /// stream, shared by its layers).
    pub fn init_with_dropout(
        &self,
        expert: &FeedForwardConfig,
        device: &Device,
        rng: &mut impl Rng,
        dropout: &SharedRng,
    ) -> Result<MoeFeedForward> {
        self.validate()?;
        check_dropout(expert.dropout)?;
        on(device, |device| {
            MoeFeedForward::new(self, expert, rng, dropout, device)
        })
    }
}

/// A [`TokenEmbedding`]: a `[vocab_size, d_model]` table from N(0, 0.02²)
/// with learned positions up to `max_len`, unscaled, no dropout.
///
/// ```
/// use zeroformer::nn::{Positional, TokenEmbeddingConfig};
/// use zeroformer::prelude::*;
/// let mut rng = StdRng::seed_from_u64(0);
/// let embed = TokenEmbeddingConfig::new(100, 16, 32)
///     .positional(Positional::Sinusoidal)
///     .scale(4.0)
///     .init(&Device::Cpu, &mut rng)?;
/// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
/// assert_eq!(embed.forward(&ids, 0).shape(), &[1, 3, 16]);
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenEmbeddingConfig {
    /// Rows of the token table.
    pub vocab_size: usize,
    /// The width of each vector.
    pub d_model: usize,
    /// The most positions it covers.
    pub max_len: usize,
    /// How positions are told apart (default learned).
    pub positional: Positional,
    /// The attention heads' width, which sizes rotary tables (default
    /// `d_model`, one head).
    pub head_dim: usize,
    /// Multiplies the token vectors (default 1; √d_model in the 2017
    /// Transformer).
    pub scale: f32,
    /// The tables' standard deviation (default 0.02).
    pub std: f32,
    /// Dropout on the output (default 0).
    pub dropout: f32,
}

impl TokenEmbeddingConfig {
    /// `vocab_size` tokens of width `d_model` over `max_len` positions,
    /// with the defaults.
    pub fn new(vocab_size: usize, d_model: usize, max_len: usize) -> Self {
        TokenEmbeddingConfig {
            vocab_size,
            d_model,
            max_len,
            positional: Positional::Learned,
            head_dim: d_model,
            scale: 1.0,
            std: 0.02,
            dropout: 0.0,
        }
    }

    /// Learned, sinusoidal or rotary positions.
    pub fn positional(self, positional: Positional) -> Self {
        TokenEmbeddingConfig { positional, ..self }
    }

    /// The attention heads' width, for rotary positions.
    pub fn head_dim(self, head_dim: usize) -> Self {
        TokenEmbeddingConfig { head_dim, ..self }
    }

    /// Token vectors multiplied by `scale`.
    pub fn scale(self, scale: f32) -> Self {
        TokenEmbeddingConfig { scale, ..self }
    }

    /// Tables from N(0, std²).
    pub fn std(self, std: f32) -> Self {
        TokenEmbeddingConfig { std, ..self }
    }

    /// Dropout probability on the output.
    pub fn dropout(self, dropout: f32) -> Self {
        TokenEmbeddingConfig { dropout, ..self }
    }

    /// Checks the numbers: a dropout in [0, 1), an even head width for
    /// rotary positions.
    pub fn validate(&self) -> Result<()> {
        if self.positional == Positional::Rotary
            && (self.head_dim == 0 || !self.head_dim.is_multiple_of(2))
        {
            return Err(Error::InvalidConfig(format!(
                "rotary positions need an even, positive head width, got {}",
                self.head_dim
            )));
        }
        check_dropout(self.dropout)
    }
}

dropout_inits!(TokenEmbeddingConfig, init, init_with_dropout => TokenEmbedding, TokenEmbedding::new);
