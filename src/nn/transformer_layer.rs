//! The encoder and decoder layers of the 2017 Transformer, with the norm
//! after each residual sum (post-norm, as in the paper) or before each
//! sub-layer (pre-norm, as in GPT-2).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::config::{check_dropout, dropout_inits};
use super::{
    Activation, AttentionMask, FeedForward, FeedForwardConfig, LayerKvCache, Module,
    MultiHeadAttention, MultiHeadAttentionConfig, Norm, NormConfig, NormKind, Rope, SharedRng,
};
use crate::{Device, Error, Result, Tensor};

/// Where each sub-layer's normalisation sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormPlacement {
    /// `x + f(norm(x))` (GPT-2 and most models since): trains without
    /// warmup tricks; the stack ends with one more norm.
    #[default]
    Pre,
    /// `norm(x + f(x))`: the 2017 paper's.
    Post,
}

/// The shape of one encoder or decoder layer. [`new`](Self::new) gives
/// the 2017 Transformer's layer, as PyTorch's `nn.TransformerEncoderLayer`
/// defaults it: dropout 0.1, ReLU, LayerNorm with biases, post-norm. The
/// layers it builds draw their weights from N(0, 0.02²) (models may
/// re-initialise them).
///
/// ```
/// use zeroformer::nn::{LayerConfig, NormPlacement};
/// use zeroformer::prelude::*;
/// let mut rng = StdRng::seed_from_u64(0);
/// let layer = LayerConfig::new(16, 4, 64)
///     .placement(NormPlacement::Pre)
///     .dropout(0.0)
///     .init_encoder(&Device::Cpu, &mut rng)?;
/// let x = Tensor::randn(&[2, 5, 16], &mut rng);
/// assert_eq!(layer.forward(&x, None, None).shape(), &[2, 5, 16]);
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerConfig {
    /// The model width.
    pub d_model: usize,
    /// Attention heads; `d_model` must divide by it.
    pub n_head: usize,
    /// The feed-forward network's hidden width.
    pub d_ff: usize,
    /// Dropout probability in every sub-layer (0 for none).
    pub dropout: f32,
    /// The feed-forward network's nonlinearity.
    pub activation: Activation,
    /// LayerNorm or RMSNorm.
    pub norm: NormKind,
    /// Pre-norm or post-norm.
    pub placement: NormPlacement,
    /// Biases in the linear layers and LayerNorms.
    pub bias: bool,
}

impl LayerConfig {
    /// Width `d_model`, `n_head` heads, a feed-forward network of width
    /// `d_ff`, with the defaults above.
    pub fn new(d_model: usize, n_head: usize, d_ff: usize) -> Self {
        LayerConfig {
            d_model,
            n_head,
            d_ff,
            dropout: 0.1,
            activation: Activation::Relu,
            norm: NormKind::LayerNorm,
            placement: NormPlacement::Post,
            bias: true,
        }
    }

    /// Dropout probability in every sub-layer.
    pub fn dropout(self, dropout: f32) -> Self {
        LayerConfig { dropout, ..self }
    }

    /// The feed-forward network's nonlinearity.
    pub fn activation(self, activation: Activation) -> Self {
        LayerConfig { activation, ..self }
    }

    /// LayerNorm or RMSNorm.
    pub fn norm(self, norm: NormKind) -> Self {
        LayerConfig { norm, ..self }
    }

    /// Pre-norm or post-norm.
    pub fn placement(self, placement: NormPlacement) -> Self {
        LayerConfig { placement, ..self }
    }

    /// With or without biases.
    pub fn bias(self, bias: bool) -> Self {
        LayerConfig { bias, ..self }
    }

    /// An encoder layer, weights from N(0, 0.02²) ([`init_encoder`](Self::init_encoder)).
    fn build_encoder(
        &self,
        rng: &mut impl Rng,
        dropout: &SharedRng,
        device: &Device,
    ) -> EncoderLayer {
        EncoderLayer {
            self_attn: MultiHeadAttention::new(&self.attention(), rng, dropout, device),
            norm_1: self.new_norm(device),
            ff: FeedForward::new(&self.feed_forward(), rng, dropout, device),
            norm_2: self.new_norm(device),
            placement: self.placement,
        }
    }

    /// A decoder layer, weights from N(0, 0.02²) ([`init_decoder`](Self::init_decoder)).
    fn build_decoder(
        &self,
        rng: &mut impl Rng,
        dropout: &SharedRng,
        device: &Device,
    ) -> DecoderLayer {
        DecoderLayer {
            self_attn: MultiHeadAttention::new(&self.attention(), rng, dropout, device),
            norm_1: self.new_norm(device),
            cross_attn: MultiHeadAttention::new(&self.attention(), rng, dropout, device),
            norm_2: self.new_norm(device),
            ff: FeedForward::new(&self.feed_forward(), rng, dropout, device),
            norm_3: self.new_norm(device),
            placement: self.placement,
        }
    }

    /// The attention sub-layers' config.
    pub fn attention(&self) -> MultiHeadAttentionConfig {
        MultiHeadAttentionConfig::new(self.d_model, self.n_head)
            .bias(self.bias)
            .dropout(self.dropout)
    }

    /// The feed-forward sub-layer's config.
    pub fn feed_forward(&self) -> FeedForwardConfig {
        FeedForwardConfig::new(self.d_model, self.d_ff)
            .activation(self.activation)
            .bias(self.bias)
            .dropout(self.dropout)
    }

    /// The config of each norm, and of a pre-norm stack's final norm.
    pub fn norm_config(&self) -> NormConfig {
        NormConfig::new(self.d_model)
            .kind(self.norm)
            .bias(self.bias)
    }

    fn new_norm(&self, device: &Device) -> Norm {
        Norm::new(self.norm, self.d_model, self.bias, device)
    }

    /// Checks the numbers, naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.d_model == 0 || self.n_head == 0 || self.d_ff == 0 {
            return Err(Error::InvalidConfig(format!(
                "d_model, n_head and d_ff must be positive: {self:?}"
            )));
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return Err(Error::InvalidConfig(format!(
                "d_model {} is not divisible by n_head {}",
                self.d_model, self.n_head
            )));
        }
        check_dropout(self.dropout)
    }
}

dropout_inits!(LayerConfig, init_encoder, init_encoder_with_dropout => EncoderLayer, LayerConfig::build_encoder);
dropout_inits!(LayerConfig, init_decoder, init_decoder_with_dropout => DecoderLayer, LayerConfig::build_decoder);

/// A residual connection around `f` with the norm placed as configured.
fn residual(
    placement: NormPlacement,
    x: &Tensor,
    norm: &Norm,
    f: impl FnOnce(&Tensor) -> Tensor,
) -> Tensor {
    match placement {
        NormPlacement::Pre => x.add(&f(&norm.forward(x))),
        NormPlacement::Post => norm.forward(&x.add(&f(x))),
    }
}

/// Bidirectional self-attention, then a feed-forward network. Built by
/// [`LayerConfig::init_encoder`].
#[derive(Clone, Module)]
pub struct EncoderLayer {
    /// Bidirectional self-attention.
    pub self_attn: MultiHeadAttention,
    /// The norm around self-attention.
    pub norm_1: Norm,
    /// The feed-forward network.
    pub ff: FeedForward,
    /// The norm around the feed-forward network.
    pub norm_2: Norm,
    /// Where the norms sit.
    #[module(skip)]
    pub placement: NormPlacement,
}

impl EncoderLayer {
    /// [`forward`](Self::forward) as an activation-checkpointed segment
    /// ([`checkpoint`](super::checkpoint)): only `x` is kept, and the
    /// layer runs again in the backward pass.
    pub fn forward_checkpointed(
        &self,
        x: &Tensor,
        padding: Option<&Tensor>,
        rope: Option<&Rope>,
    ) -> Tensor {
        let rope = rope.cloned();
        let mut inputs = vec![x];
        inputs.extend(padding);
        super::checkpoint(self, &inputs, move |layer, xs| {
            layer.forward(&xs[0], xs.get(1), rope.as_ref())
        })
    }

    /// `x` `[batch, time, d_model]`; `padding` `[batch, time]` marks padded
    /// positions, which no position attends to.
    pub fn forward(&self, x: &Tensor, padding: Option<&Tensor>, rope: Option<&Rope>) -> Tensor {
        let mask = AttentionMask {
            causal: false,
            window: None,
            key_padding: padding,
        };
        let x = residual(self.placement, x, &self.norm_1, |h| {
            self.self_attn.self_attention(h, mask, None, rope, false).0
        });
        residual(self.placement, &x, &self.norm_2, |h| self.ff.forward(h))
    }
}

/// What one decoder layer keeps between decoding steps: its own keys and
/// values so far, and the keys and values of the encoder output.
#[derive(Default, Clone)]
pub struct DecoderLayerCache {
    /// The self-attention's keys and values so far.
    pub self_attn: LayerKvCache,
    /// The cross-attention's keys and values of the memory, computed once.
    pub cross_attn: LayerKvCache,
}

/// Masked self-attention, cross-attention over the encoder output, then a
/// feed-forward network. Built by [`LayerConfig::init_decoder`].
#[derive(Clone, Module)]
pub struct DecoderLayer {
    /// Causal self-attention.
    pub self_attn: MultiHeadAttention,
    /// The norm around self-attention.
    pub norm_1: Norm,
    /// Attention over the encoder's output.
    pub cross_attn: MultiHeadAttention,
    /// The norm around cross-attention.
    pub norm_2: Norm,
    /// The feed-forward network.
    pub ff: FeedForward,
    /// The norm around the feed-forward network.
    pub norm_3: Norm,
    /// Where the norms sit.
    #[module(skip)]
    pub placement: NormPlacement,
}

impl DecoderLayer {
    /// [`forward`](Self::forward) without a cache as an
    /// activation-checkpointed segment ([`checkpoint`](super::checkpoint)):
    /// only `x` and `memory` are kept, and the layer runs again in the
    /// backward pass.
    pub fn forward_checkpointed(
        &self,
        x: &Tensor,
        memory: &Tensor,
        padding: Option<&Tensor>,
        memory_padding: Option<&Tensor>,
        rope: Option<&Rope>,
    ) -> Tensor {
        let rope = rope.cloned();
        let (padded, memory_padded) = (padding.is_some(), memory_padding.is_some());
        let mut inputs = vec![x, memory];
        inputs.extend(padding);
        inputs.extend(memory_padding);
        super::checkpoint(self, &inputs, move |layer, xs| {
            let mut masks = xs[2..].iter();
            let padding = padded.then(|| masks.next()).flatten();
            let memory_padding = memory_padded.then(|| masks.next()).flatten();
            layer.forward(&xs[0], &xs[1], padding, memory_padding, None, rope.as_ref())
        })
    }

    /// `x` `[batch, time, d_model]` attends causally to itself (hiding
    /// positions in `padding`, `[batch, keys]`) and to `memory` `[batch,
    /// source_time, d_model]` (hiding `memory_padding`). With a `cache`, `x`
    /// holds the new positions only.
    pub fn forward(
        &self,
        x: &Tensor,
        memory: &Tensor,
        padding: Option<&Tensor>,
        memory_padding: Option<&Tensor>,
        cache: Option<&mut DecoderLayerCache>,
        rope: Option<&Rope>,
    ) -> Tensor {
        let (self_cache, cross_cache) = match cache {
            Some(c) => (Some(&mut c.self_attn), Some(&mut c.cross_attn)),
            None => (None, None),
        };
        let mask = AttentionMask {
            causal: true,
            window: None,
            key_padding: padding,
        };
        let x = residual(self.placement, x, &self.norm_1, |h| {
            self.self_attn
                .self_attention(h, mask, self_cache, rope, false)
                .0
        });
        let x = residual(self.placement, &x, &self.norm_2, |h| {
            self.cross_attn
                .cross_attention(h, memory, memory_padding, cross_cache, false)
                .0
        });
        residual(self.placement, &x, &self.norm_3, |h| self.ff.forward(h))
    }
}
