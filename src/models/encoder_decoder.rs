//! The Transformer of Vaswani et al. (2017): an encoder stack, a decoder
//! stack with masked self-attention and cross-attention over the encoder
//! output, and an output projection tied to the target embedding.

use serde::{Deserialize, Serialize};

use super::encoder::check_ids;
use super::objective::composed_attention;
use super::{ModelConfig, ModelInit};
use crate::generation::{CausalLm, GenerationCache, Seq2SeqLm};
use crate::nn::{
    DecoderLayer, DecoderLayerCache, EncoderLayer, LayerConfig, Module, Norm, NormPlacement,
    Positional, SharedRng, TokenEmbedding, TokenEmbeddingConfig, xavier_uniform,
};
use crate::{Device, Error, Result, Tensor, no_grad};

/// The shape of an [`EncoderDecoder`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderDecoderConfig {
    /// Source token ids run from 0 to `src_vocab_size - 1`.
    pub src_vocab_size: usize,
    /// Target token ids run from 0 to `tgt_vocab_size - 1`.
    pub tgt_vocab_size: usize,
    /// The most positions in a source or target sequence.
    pub max_len: usize,
    /// Encoder layers.
    pub n_encoder_layers: usize,
    /// Decoder layers.
    pub n_decoder_layers: usize,
    /// The shape of every layer, encoder and decoder.
    pub layer: LayerConfig,
    /// How positions enter: learned, sinusoidal or rotary.
    pub positional: Positional,
    /// Activation checkpointing of every layer in training
    /// ([`nn::checkpoint`](crate::nn::checkpoint)): a layer keeps only its
    /// inputs and runs again in the backward pass. Off unless set (and in
    /// configs saved without it).
    #[serde(default)]
    pub checkpoint_activations: bool,
}

impl EncoderDecoderConfig {
    /// The names [`preset`](Self::preset) accepts.
    pub const PRESETS: &'static [&'static str] = &["transformer-tiny", "transformer-base"];

    /// A named preset, both post-norm with ReLU, sinusoidal positions and
    /// dropout 0.1 as in the paper: `transformer-base` (6 + 6 layers, width
    /// 512, 8 heads, FFN 2048) or `transformer-tiny` (2 + 2, 32, 4, 64; for
    /// tests).
    ///
    /// ```
    /// use zeroformer::models::EncoderDecoderConfig;
    /// let c = EncoderDecoderConfig::preset("transformer-base", 37000, 37000, 256).unwrap();
    /// assert_eq!((c.n_encoder_layers, c.layer.d_model, c.layer.n_head, c.layer.d_ff), (6, 512, 8, 2048));
    /// ```
    pub fn preset(
        name: &str,
        src_vocab_size: usize,
        tgt_vocab_size: usize,
        max_len: usize,
    ) -> Result<EncoderDecoderConfig> {
        let (n_layers, d_model, n_head, d_ff) = match name {
            "transformer-tiny" => (2, 32, 4, 64),
            "transformer-base" => (6, 512, 8, 2048),
            other => {
                return Err(super::unknown_preset(
                    "encoder-decoder",
                    other,
                    Self::PRESETS,
                ));
            }
        };
        let config = EncoderDecoderConfig {
            src_vocab_size,
            tgt_vocab_size,
            max_len,
            n_encoder_layers: n_layers,
            n_decoder_layers: n_layers,
            // The 2017 paper's layer: dropout 0.1, ReLU, post-norm.
            layer: LayerConfig::new(d_model, n_head, d_ff),
            positional: Positional::Sinusoidal,
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
        if self.src_vocab_size == 0
            || self.tgt_vocab_size == 0
            || self.max_len == 0
            || self.n_encoder_layers == 0
            || self.n_decoder_layers == 0
        {
            return Err(Error::InvalidConfig(format!(
                "vocabulary sizes, max_len and layer counts must be positive: {self:?}"
            )));
        }
        self.layer.validate()
    }
}

/// What greedy decoding keeps between steps: every decoder layer's keys and
/// values (its own, growing; the encoder output's, computed once).
#[derive(Default, Clone)]
pub struct DecoderCache {
    /// One cache per decoder layer.
    pub layers: Vec<DecoderLayerCache>,
}

impl DecoderCache {
    /// The number of target positions cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.self_attn.len())
    }

    /// True before the first cached step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EncoderDecoderConfig {
    /// [`GptConfig::activations_per_token`](crate::GptConfig::activations_per_token)
    /// for an encoder-decoder, whose source and target windows are both
    /// `window` tokens. Per token the activations are about 13 widths and
    /// 2.75 feed-forward widths an encoder layer, 21 and 2.75 a decoder
    /// layer (self- and cross-attention), 22 widths at the ends and three
    /// target-vocabulary rows. With the parameters, gradients and moments
    /// ([`train::memory::step_bytes`](crate::train::memory::step_bytes)),
    /// calibrated against `examples/seq2seq` (batch 128 to 1024, windows 64
    /// and 128, widths 64 to 512, feed-forward 256 to 2048, with and
    /// without dropout): 11-16% above the peak.
    ///
    /// ```
    /// use zeroformer::models::EncoderDecoderConfig;
    ///
    /// let model = EncoderDecoderConfig::preset("transformer-base", 37000, 37000, 256).unwrap();
    /// // Three rows of the vocabulary, and the attentions' weights with dropout.
    /// assert!(model.activations_per_token(256).unwrap() > 3 * 37000);
    /// ```
    pub fn activations_per_token(&self, window: usize) -> Option<u64> {
        let model = self;
        let (c, f, v) = (
            model.layer.d_model as u64,
            model.layer.d_ff as u64,
            model.tgt_vocab_size as u64,
        );
        // In quarters of a width, so that fractional coefficients stay exact.
        let encoder = c.checked_mul(52)?.checked_add(f.checked_mul(11)?)?;
        let decoder = c.checked_mul(84)?.checked_add(f.checked_mul(11)?)?;
        let quarter_widths = encoder
            .checked_mul(model.n_encoder_layers as u64)?
            .checked_add(decoder.checked_mul(model.n_decoder_layers as u64)?)?
            .checked_add(c.checked_mul(88)?)?;
        let per_token = quarter_widths.div_ceil(4).checked_add(v.checked_mul(3)?)?;
        // Self-attention in each layer, and cross-attention in the decoder's.
        let attentions = model
            .n_encoder_layers
            .checked_add(model.n_decoder_layers.checked_mul(2)?)?;
        let attention =
            composed_attention(model.layer.dropout, attentions, model.layer.n_head, window)?;
        per_token.checked_add(attention)
    }
}

/// An encoder-decoder Transformer. It generates through
/// [`Seq2SeqLm::condition`]: the source encoded once, then the decoder
/// driven by the [`generation`](crate::generation) functions.
///
/// ```
/// use zeroformer::prelude::*;
/// use zeroformer::generation::{GenerationConfig, Seq2SeqLm, generate_with};
/// use zeroformer::models::{EncoderDecoder, EncoderDecoderConfig};
/// let config = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 16)?;
/// let model = config.init(&Device::Cpu, 0)?;
/// let src = Tensor::from_ids(vec![1, 5, 6, 7], &[1, 4]);
/// // Greedy, from start token 1, ending at token 2 or after 4 tokens.
/// let greedy = GenerationConfig::new(4).stop_tokens(&[2]);
/// let out = generate_with(&model.condition(&src, None), &[1], &greedy, |_| true)?;
/// assert!(!out.tokens.is_empty() && out.tokens.len() <= 4);
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Module)]
pub struct EncoderDecoder {
    /// The shape of the model.
    #[module(skip)]
    pub config: EncoderDecoderConfig,
    /// Source token (and position) embeddings.
    pub src_embed: TokenEmbedding,
    /// Also the output projection (weights tied, as in the paper).
    pub tgt_embed: TokenEmbedding,
    /// The encoder layers, in order.
    pub encoder: Vec<EncoderLayer>,
    /// The encoder stack's final norm (pre-norm only).
    pub encoder_norm: Option<Norm>,
    /// The decoder layers, in order.
    pub decoder: Vec<DecoderLayer>,
    /// The decoder stack's final norm (pre-norm only).
    pub decoder_norm: Option<Norm>,
    dropout_rng: SharedRng,
}

impl EncoderDecoderConfig {
    /// An encoder-decoder of this shape on `device`, from `seed` (which
    /// seeds its dropout stream too, see
    /// [`GptConfig::init`](crate::GptConfig::init)), with Glorot-uniform
    /// matrices (the Annotated Transformer's initialisation); embeddings are
    /// scaled by √d_model.
    pub fn init(&self, device: &Device, seed: u64) -> Result<EncoderDecoder> {
        super::build(self, device, seed)
    }
}

impl ModelConfig for EncoderDecoderConfig {
    type Model = EncoderDecoder;

    fn validate(&self) -> Result<()> {
        EncoderDecoderConfig::validate(self)
    }

    fn layers(&self, init: &mut ModelInit<'_>) -> Result<EncoderDecoder> {
        let (device, rng, dropout_rng) = (init.device, &mut init.rng, &init.dropout);
        let config = self.clone();
        let l = &config.layer;
        let embed = |vocab| {
            TokenEmbeddingConfig::new(vocab, l.d_model, config.max_len)
                .positional(config.positional)
                .head_dim(l.d_model / l.n_head)
                .scale((l.d_model as f32).sqrt())
                .dropout(l.dropout)
        };
        let src_embed = embed(config.src_vocab_size).init_with_dropout(device, rng, dropout_rng)?;
        let tgt_embed = embed(config.tgt_vocab_size).init_with_dropout(device, rng, dropout_rng)?;
        let encoder = (0..config.n_encoder_layers)
            .map(|_| l.init_encoder_with_dropout(device, rng, dropout_rng))
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..config.n_decoder_layers)
            .map(|_| l.init_decoder_with_dropout(device, rng, dropout_rng))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = || match l.placement {
            NormPlacement::Pre => l.norm_config().init(device).map(Some),
            NormPlacement::Post => Ok(None),
        };
        let model = EncoderDecoder {
            encoder_norm: final_norm()?,
            decoder_norm: final_norm()?,
            config,
            src_embed,
            tgt_embed,
            encoder,
            decoder,
            dropout_rng: dropout_rng.clone(),
        };
        xavier_uniform(&model, rng);
        Ok(model)
    }
}

impl EncoderDecoder {
    /// The random stream dropout draws from.
    pub fn dropout_rng(&self) -> &SharedRng {
        &self.dropout_rng
    }

    /// The encoder output `[batch, source_time, d_model]` for source ids
    /// `[batch, source_time]`; `src_padding` (true = pad) hides padding.
    pub fn encode(&self, src: &Tensor, src_padding: Option<&Tensor>) -> Tensor {
        check_ids("EncoderDecoder source", src);
        let mut x = self.src_embed.forward(src, 0);
        for layer in &self.encoder {
            x = if self.config.checkpoint_activations {
                layer.forward_checkpointed(&x, src_padding, self.src_embed.rope())
            } else {
                layer.forward(&x, src_padding, self.src_embed.rope())
            };
        }
        match &self.encoder_norm {
            Some(norm) => norm.forward(&x),
            None => x,
        }
    }

    /// Next-token logits `[batch, time, tgt_vocab]` for target ids `[batch,
    /// time]` given the encoder output `memory`. With a `cache`, `tgt` holds
    /// only the new positions and the cache is extended with them.
    pub fn decode(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        src_padding: Option<&Tensor>,
        tgt_padding: Option<&Tensor>,
        mut cache: Option<&mut DecoderCache>,
    ) -> Tensor {
        check_ids("EncoderDecoder target", tgt);
        if let Some(c) = cache.as_mut().filter(|c| c.layers.is_empty()) {
            c.layers = vec![DecoderLayerCache::default(); self.decoder.len()];
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        let mut x = self.tgt_embed.forward(tgt, past);
        for (i, layer) in self.decoder.iter().enumerate() {
            if self.config.checkpoint_activations && cache.is_none() {
                let rope = self.tgt_embed.rope();
                x = layer.forward_checkpointed(&x, memory, tgt_padding, src_padding, rope);
                continue;
            }
            let layer_cache = cache.as_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(
                &x,
                memory,
                tgt_padding,
                src_padding,
                layer_cache,
                self.tgt_embed.rope(),
            );
        }
        if let Some(norm) = &self.decoder_norm {
            x = norm.forward(&x);
        }
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        x.reshape(&[b * t, c])
            .matmul(&self.tgt_embed.tokens.weight.t())
            .reshape(&[b, t, self.config.tgt_vocab_size])
    }

    /// Teacher-forced logits `[batch, tgt_time, tgt_vocab]`: encode `src`,
    /// then decode `tgt` (the target shifted right, starting with a start token).
    pub fn forward(
        &self,
        src: &Tensor,
        tgt: &Tensor,
        src_padding: Option<&Tensor>,
        tgt_padding: Option<&Tensor>,
    ) -> Tensor {
        let memory = self.encode(src, src_padding);
        self.decode(tgt, &memory, src_padding, tgt_padding, None)
    }
}

/// The decoder of an [`EncoderDecoder`] given an encoded source
/// ([`EncoderDecoder::condition`]): a [`CausalLm`] over the target
/// vocabulary, one row of the batch per source.
pub struct ConditionedDecoder<'a> {
    model: &'a EncoderDecoder,
    memory: Tensor,
    memory_padding: Option<Tensor>,
}

impl Module for ConditionedDecoder<'_> {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.model.visit_parameters(prefix, f)
    }
}

impl CausalLm for ConditionedDecoder<'_> {
    type Cache = DecoderCache;

    fn vocab_size(&self) -> usize {
        self.model.config.tgt_vocab_size
    }

    fn context_len(&self) -> usize {
        self.model.config.max_len
    }

    fn new_cache(&self, _capacity: usize) -> DecoderCache {
        DecoderCache::default()
    }

    fn next_logits(&self, ids: &Tensor, cache: &mut DecoderCache) -> Tensor {
        let logits = self.model.decode(
            ids,
            &self.memory,
            self.memory_padding.as_ref(),
            None,
            Some(cache),
        );
        let t = logits.shape()[1];
        logits
            .narrow(1, t - 1, 1)
            .reshape(&[logits.shape()[0], self.vocab_size()])
    }
}

/// The source encoded once; the decoder continues each row's target
/// through its KV caches, feeding only the newest token at each step.
impl Seq2SeqLm for EncoderDecoder {
    type Conditioned<'a> = ConditionedDecoder<'a>;

    fn condition<'a>(
        &'a self,
        src: &Tensor,
        src_padding: Option<&Tensor>,
    ) -> ConditionedDecoder<'a> {
        let memory = crate::eval_mode(|| no_grad(|| self.encode(src, src_padding)));
        ConditionedDecoder {
            model: self,
            memory,
            memory_padding: src_padding.cloned(),
        }
    }
}

impl GenerationCache for DecoderCache {
    fn len(&self) -> usize {
        DecoderCache::len(self)
    }

    fn clear(&mut self) {
        self.layers.clear()
    }
}

/// `(source, target_in, target_out)`: `[batch, time]` ids (teacher
/// forcing: `target_out` is `target_in` shifted by one); targets equal to
/// -100 are ignored.
impl super::Trainable for EncoderDecoder {
    type Batch = (Tensor, Tensor, Tensor);

    fn loss(&self, (source, target_in, target_out): &Self::Batch) -> Tensor {
        let logits = self.forward(source, target_in, None, None);
        let (rows, vocab) = (target_out.numel(), logits.shape()[2]);
        logits
            .reshape(&[rows, vocab])
            .cross_entropy(&target_out.reshape(&[rows]))
    }

    fn dropout_rng(&self) -> Option<&crate::nn::SharedRng> {
        Some(EncoderDecoder::dropout_rng(self))
    }

    fn max_len(&self) -> Option<usize> {
        Some(self.config.max_len)
    }

    fn activations_per_token(&self, window: usize) -> Option<u64> {
        self.config.activations_per_token(window)
    }
}
