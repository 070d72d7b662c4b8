//! A BERT-style encoder: bidirectional self-attention over a padded batch,
//! a pooled summary of each sequence, and a classification head.

use serde::{Deserialize, Serialize};

use super::{ModelConfig, ModelInit};
use crate::nn::{
    Activation, EncoderLayer, LayerConfig, Linear, LinearConfig, Module, Norm, NormPlacement,
    Positional, SharedRng, TokenEmbedding, TokenEmbeddingConfig,
};
use crate::{DType, Device, Error, GeluApproximation, Result, Tensor};

/// How a sequence's vectors become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The mean over the unpadded positions.
    #[default]
    Mean,
    /// The first position's vector (BERT's `[CLS]`).
    First,
}

/// The shape of an [`Encoder`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Token ids run from 0 to `vocab_size - 1`.
    pub vocab_size: usize,
    /// The most positions in a sequence.
    pub max_len: usize,
    /// Encoder layers.
    pub n_layer: usize,
    /// The shape of every layer.
    pub layer: LayerConfig,
    /// How positions enter: learned, sinusoidal or rotary.
    pub positional: Positional,
    /// How a sequence becomes one vector for the head.
    pub pooling: Pooling,
    /// Classes of the head; 0 for none.
    pub num_classes: usize,
    /// Activation checkpointing of every layer in training
    /// ([`nn::checkpoint`](crate::nn::checkpoint)): a layer keeps only its
    /// inputs and runs again in the backward pass. Off unless set (and in
    /// configs saved without it).
    #[serde(default)]
    pub checkpoint_activations: bool,
}

impl EncoderConfig {
    /// The names [`preset`](Self::preset) accepts.
    pub const PRESETS: &'static [&'static str] = &["encoder-tiny", "bert-mini", "bert-base"];

    /// A named preset: `encoder-tiny` (2 layers, width 32, 4 heads, for
    /// tests), `bert-mini` (4, 256, 4, FFN 1024) or `bert-base` (12, 768,
    /// 12, FFN 3072); all post-norm with GELU and learned positions, as BERT.
    ///
    /// ```
    /// use zeroformer::models::EncoderConfig;
    /// let c = EncoderConfig::preset("bert-base", 30522, 2, 512).unwrap();
    /// assert_eq!((c.n_layer, c.layer.d_model, c.layer.n_head, c.layer.d_ff), (12, 768, 12, 3072));
    /// ```
    pub fn preset(
        name: &str,
        vocab_size: usize,
        num_classes: usize,
        max_len: usize,
    ) -> Result<EncoderConfig> {
        let (n_layer, d_model, n_head, d_ff) = match name {
            "encoder-tiny" => (2, 32, 4, 64),
            "bert-mini" => (4, 256, 4, 1024),
            "bert-base" => (12, 768, 12, 3072),
            other => return Err(super::unknown_preset("encoder", other, Self::PRESETS)),
        };
        let config = EncoderConfig {
            vocab_size,
            max_len,
            n_layer,
            // BERT's layer: the 2017 one with exact GELU.
            layer: LayerConfig::new(d_model, n_head, d_ff)
                .activation(Activation::Gelu(GeluApproximation::None)),
            positional: Positional::Learned,
            pooling: Pooling::Mean,
            num_classes,
            checkpoint_activations: false,
        };
        config.validate()?;
        Ok(config)
    }

    /// How many numbers a model of this shape holds, counted without
    /// making it ([`count_parameters`](crate::nn::count_parameters));
    /// `None` for a config that makes no model or whose count overflows.
    pub fn parameter_count(&self) -> Option<u64> {
        super::parameter_count(self)
    }

    /// Checks that the numbers make a model.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 || self.max_len == 0 || self.n_layer == 0 {
            return Err(Error::InvalidConfig(format!(
                "vocab_size, max_len and n_layer must be positive: {self:?}"
            )));
        }
        self.layer.validate()
    }
}

/// A stack of bidirectional [`EncoderLayer`]s over token and position
/// embeddings, with pooling and an optional classification head.
///
/// ```
/// use zeroformer::prelude::*;
/// use zeroformer::models::{Encoder, EncoderConfig};
/// let config = EncoderConfig::preset("encoder-tiny", 20, 3, 16).unwrap();
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let ids = Tensor::from_ids(vec![4, 5, 6, 0], &[1, 4]);
/// let padding = zeroformer::nn::padding_mask(&ids, 0);
/// assert_eq!(model.classify(&ids, Some(&padding)).shape(), &[1, 3]);
/// ```
#[derive(Module)]
pub struct Encoder {
    /// The shape of the model.
    #[module(skip)]
    pub config: EncoderConfig,
    /// Token (and position) embeddings.
    pub embed: TokenEmbedding,
    /// The encoder layers, in order.
    pub layers: Vec<EncoderLayer>,
    /// The last norm of a pre-norm stack (post-norm output is normalised already).
    pub final_norm: Option<Norm>,
    /// The classification head (when `num_classes > 0`).
    pub head: Option<Linear>,
    dropout_rng: SharedRng,
}

impl EncoderConfig {
    /// An encoder of this shape on `device`, initialised as BERT (weights
    /// N(0, 0.02²)) from `seed`, which seeds its dropout stream too (see
    /// [`GptConfig::init`](crate::GptConfig::init)).
    pub fn init(&self, device: &Device, seed: u64) -> Result<Encoder> {
        super::build(self, device, seed)
    }
}

impl ModelConfig for EncoderConfig {
    type Model = Encoder;

    fn validate(&self) -> Result<()> {
        EncoderConfig::validate(self)
    }

    fn layers(&self, init: &mut ModelInit<'_>) -> Result<Encoder> {
        let (device, rng, dropout_rng) = (init.device, &mut init.rng, &init.dropout);
        let config = self.clone();
        let l = &config.layer;
        let embed = TokenEmbeddingConfig::new(config.vocab_size, l.d_model, config.max_len)
            .positional(config.positional)
            .head_dim(l.d_model / l.n_head)
            .dropout(l.dropout)
            .init_with_dropout(device, rng, dropout_rng)?;
        let layers = (0..config.n_layer)
            .map(|_| l.init_encoder_with_dropout(device, rng, dropout_rng))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = match l.placement {
            NormPlacement::Pre => Some(l.norm_config().init(device)?),
            NormPlacement::Post => None,
        };
        let head = match config.num_classes {
            0 => None,
            classes => Some(LinearConfig::new(l.d_model, classes).init(device, rng)?),
        };
        Ok(Encoder {
            config,
            embed,
            layers,
            final_norm,
            head,
            dropout_rng: dropout_rng.clone(),
        })
    }
}

impl Encoder {
    /// The random stream dropout draws from.
    pub fn dropout_rng(&self) -> &SharedRng {
        &self.dropout_rng
    }

    /// Contextual vectors `[batch, time, d_model]` for ids `[batch, time]`
    /// (i64); `padding` `[batch, time]` (true = pad) hides padded positions
    /// from every other position.
    pub fn forward(&self, ids: &Tensor, padding: Option<&Tensor>) -> Tensor {
        check_ids("Encoder", ids);
        let mut x = self.embed.forward(ids, 0);
        for layer in &self.layers {
            x = if self.config.checkpoint_activations {
                layer.forward_checkpointed(&x, padding, self.embed.rope())
            } else {
                layer.forward(&x, padding, self.embed.rope())
            };
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => x,
        }
    }

    /// One vector `[batch, d_model]` per sequence from `hidden` `[batch,
    /// time, d_model]`, as configured: the mean over unpadded positions, or
    /// the first position.
    pub fn pool(&self, hidden: &Tensor, padding: Option<&Tensor>) -> Tensor {
        match (self.config.pooling, padding) {
            (Pooling::First, _) => hidden.narrow(1, 0, 1).squeeze(1),
            (Pooling::Mean, None) => hidden.mean_dim(1, false),
            (Pooling::Mean, Some(padding)) => {
                let keep = Tensor::where_cond(
                    &padding.unsqueeze(-1),
                    &hidden.scalar_like(0.0),
                    &hidden.scalar_like(1.0),
                );
                // Each sequence has at least one real token; max(·, 1) keeps
                // an all-padding row at zero rather than 0/0.
                let count = keep
                    .sum_dim(1, false)
                    .detach()
                    .maximum(&hidden.scalar_like(1.0));
                hidden.mul(&keep).sum_dim(1, false).div(&count)
            }
        }
    }

    /// Class logits `[batch, num_classes]`.
    pub fn classify(&self, ids: &Tensor, padding: Option<&Tensor>) -> Tensor {
        let head = self
            .head
            .as_ref()
            .expect("Encoder::classify: the config has num_classes = 0, so there is no head");
        head.forward(&self.pool(&self.forward(ids, padding), padding))
    }
}

/// Panics unless `ids` is an i64 `[batch, time]` tensor.
pub(crate) fn check_ids(model: &str, ids: &Tensor) {
    assert!(
        ids.dtype() == DType::I64 && ids.rank() == 2,
        "{model}: token ids must be i64 [batch, time], got {:?} {:?}",
        ids.dtype(),
        ids.shape()
    );
}

/// `(ids, padding, labels)`: `[batch, time]` ids, the bool padding mask of
/// the same shape (all `false` for none) and one class per sequence; the
/// loss is the classification head's cross-entropy.
impl super::Trainable for Encoder {
    type Batch = (Tensor, Tensor, Tensor);

    fn loss(&self, (ids, padding, labels): &Self::Batch) -> Tensor {
        self.classify(ids, Some(padding)).cross_entropy(labels)
    }

    fn dropout_rng(&self) -> Option<&crate::nn::SharedRng> {
        Some(Encoder::dropout_rng(self))
    }
}
