//! GPT: a decoder-only Transformer (GPT-2's architecture, nanoGPT's layout):
//! its config, the model, and how it trains.

mod config;
mod training;

pub use config::GptConfig;

use super::{ModelConfig, ModelInit};
use crate::nn::shape_only::count_within;
use crate::nn::{
    BlockMlp, BlockOutput, Dropout, Embedding, EmbeddingConfig, FeedForwardConfig, GptBlock,
    KvCache, LayerKvCache, LayerNorm, LayerNormConfig, Module, MultiHeadAttentionConfig, Routing,
    SharedRng,
};
use crate::{DType, Device, Error, Result, Tensor};

/// What [`Gpt::forward`] does beyond the logits of every position
/// (HF's `past_key_values`, `output_attentions`): nothing by default.
#[derive(Default)]
pub struct ForwardOptions<'a> {
    /// A KV cache: the ids are the positions after those it holds, and it
    /// is extended with them (incremental decoding).
    pub cache: Option<&'a mut KvCache>,
    /// The logits of the last position only, `[batch, vocab]`: what
    /// decoding needs, without the head's product for the others.
    pub last_only: bool,
    /// Every layer's attention weights too, `[batch, heads, time, keys]`
    /// (attention then runs composed, holding them).
    pub output_attentions: bool,
}

impl<'a> ForwardOptions<'a> {
    /// With `cache`.
    pub fn cache(self, cache: &'a mut KvCache) -> Self {
        ForwardOptions {
            cache: Some(cache),
            ..self
        }
    }

    /// The last position's logits only.
    pub fn last_only(self) -> Self {
        ForwardOptions {
            last_only: true,
            ..self
        }
    }

    /// Every layer's attention weights too.
    pub fn output_attentions(self) -> Self {
        ForwardOptions {
            output_attentions: true,
            ..self
        }
    }
}

/// What [`Gpt::forward`] gives.
pub struct GptOutput {
    /// `[batch, time, vocab]`, or `[batch, vocab]` for the last position
    /// only.
    pub logits: Tensor,
    /// The routing of every block with experts, in block order (what
    /// training adds [`Gpt::router_loss`] from; empty for a dense model).
    pub routing: Vec<Routing>,
    /// Every layer's attention weights, when asked for.
    pub attentions: Vec<Tensor>,
}

/// A decoder-only Transformer: token and learned position embeddings,
/// pre-norm blocks, a final LayerNorm, and an output head tied to the token
/// embedding.
///
/// ```
/// use zeroformer::prelude::*;
/// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: true, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
/// assert_eq!(model.forward(&ids, Default::default()).logits.shape(), &[1, 3, 10]);
/// ```
#[derive(Module)]
pub struct Gpt {
    /// The shape of the model.
    #[module(skip)]
    pub config: GptConfig,
    /// Token embeddings, `[vocab_size, n_embd]`; also the output head (tied).
    pub wte: Embedding,
    /// Position embeddings, `[block_size, n_embd]`.
    pub wpe: Embedding,
    /// The blocks, in order.
    pub blocks: Vec<GptBlock>,
    /// The final LayerNorm.
    pub ln_f: LayerNorm,
    drop: Dropout,
    dropout_rng: SharedRng,
    /// The tied output head as int8 rows, once quantized.
    #[module(skip)]
    head_int8: Option<crate::ops::quantized::Int8Rows>,
}

impl GptConfig {
    /// A GPT of this shape on `device`, with GPT-2's initialisation from
    /// `seed`: weights N(0, 0.02²), the residual output projections N(0,
    /// (0.02 / √(2·n_layer))²), biases zero, LayerNorm weights one. Dropout
    /// draws from a stream seeded by `seed` too: a model is the root of its
    /// randomness, as `torch.manual_seed` before `GPT(config)` is, where a
    /// layer's `init` draws from its model's generator. The config is
    /// validated and the device's memory checked for the parameters first.
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// let config = GptConfig::preset("cpu-mini", 65)?;
    /// let model = config.init(&Device::Cpu, 0)?;
    /// assert_eq!(model.num_parameters() as u64, config.parameter_count().unwrap());
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn init(&self, device: &Device, seed: u64) -> Result<Gpt> {
        self.validate()?;
        // Counted first, stopping once past what the device can hold.
        let fits = device
            .available_memory()
            .map_or(u64::MAX, |bytes| bytes / 4);
        match count_within(fits, || super::build(self, &Device::Cpu, 0))? {
            Some(count) => device.check_fits(
                count.saturating_mul(4),
                &format!("a model of {count} parameters"),
            )?,
            None if fits == u64::MAX => {
                return Err(Error::InvalidConfig(format!(
                    "the parameter count overflows: {self:?}"
                )));
            }
            None => device.check_fits(
                fits.saturating_add(1).saturating_mul(4),
                &format!("a model of more than {fits} parameters"),
            )?,
        }
        super::build(self, device, seed)
    }
}

impl ModelConfig for GptConfig {
    type Model = Gpt;

    fn validate(&self) -> Result<()> {
        GptConfig::validate(self)
    }

    fn layers(&self, init: &mut ModelInit<'_>) -> Result<Gpt> {
        let (device, rng, dropout_rng) = (init.device, &mut init.rng, &init.dropout);
        let config = self.clone();
        let (c, std) = (config.n_embd, 0.02);
        let proj_std = std / (2.0 * config.n_layer as f32).sqrt();
        let wte = EmbeddingConfig::new(config.vocab_size, c).init(device, rng)?;
        let wpe = EmbeddingConfig::new(config.block_size, c).init(device, rng)?;
        let norm = LayerNormConfig::new(c).bias(config.bias);
        let attention = MultiHeadAttentionConfig::new(c, config.n_head)
            .bias(config.bias)
            .dropout(config.dropout)
            .std(std, proj_std);
        let mlp = FeedForwardConfig::new(c, 4 * c)
            .bias(config.bias)
            .dropout(config.dropout)
            .std(std, proj_std);
        let blocks = (0..config.n_layer)
            .map(|layer| {
                Ok(GptBlock {
                    ln_1: norm.init(device)?,
                    attn: attention
                        .window(config.attention_window(layer))
                        .init_with_dropout(device, rng, dropout_rng)?,
                    ln_2: norm.init(device)?,
                    mlp: match &config.moe {
                        Some(moe) if config.has_experts(layer) => BlockMlp::Experts(
                            moe.init_with_dropout(&mlp, device, rng, dropout_rng)?,
                        ),
                        _ => BlockMlp::Dense(mlp.init_with_dropout(device, rng, dropout_rng)?),
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gpt {
            head_int8: None,
            ln_f: norm.init(device)?,
            drop: Dropout::new(config.dropout, dropout_rng.clone()),
            config,
            wte,
            wpe,
            blocks,
            dropout_rng: dropout_rng.clone(),
        })
    }
}

impl Gpt {
    /// Keeps int8 copies (one scale per row) of the matrices the model
    /// multiplies by: the blocks' attention and dense MLP layers and the
    /// tied output head (a mixture's experts stay f32: their grouped
    /// product has no int8 kernel). Without gradients (generation,
    /// evaluation) the forward then reads those, a quarter of the bytes;
    /// training still uses the f32 weights. Call again after the weights
    /// change; [`drop_int8`](Self::drop_int8) goes back to f32.
    pub fn quantize_int8(&mut self) {
        for block in &mut self.blocks {
            block.attn.qkv.quantize_int8();
            block.attn.proj.quantize_int8();
            if let Some(mlp) = block.mlp.dense_mut() {
                mlp.fc.quantize_int8();
                mlp.proj.quantize_int8();
            }
        }
        self.head_int8 = Some(self.wte.weight.quantize_rows_int8());
    }

    /// Forgets the int8 copies.
    pub fn drop_int8(&mut self) {
        for block in &mut self.blocks {
            block.attn.qkv.drop_int8();
            block.attn.proj.drop_int8();
            if let Some(mlp) = block.mlp.dense_mut() {
                mlp.fc.drop_int8();
                mlp.proj.drop_int8();
            }
        }
        self.head_int8 = None;
    }

    /// The output head: `x Wteᵀ` for `x` `[rows, width]`, through the int8
    /// copy when there is one and gradients are off.
    fn head(&self, x: &Tensor) -> Tensor {
        match self
            .head_int8
            .as_ref()
            .filter(|_| !crate::mode::is_grad_enabled())
        {
            Some(q) => x.matmul_int8(q),
            None => x.matmul(&self.wte.weight.t()),
        }
    }

    /// The random stream dropout draws from (its state goes into checkpoints).
    pub fn dropout_rng(&self) -> &SharedRng {
        &self.dropout_rng
    }

    /// Logits for token ids `[batch, time]` (i64), and what `options` asks
    /// for besides: nanoGPT's forward. With a KV cache the ids are the
    /// positions after those it holds, and it is extended with them
    /// (incremental decoding: the logits of a full forward).
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// use zeroformer::models::ForwardOptions;
    /// use zeroformer::nn::KvCache;
    /// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 2, n_head: 2, n_embd: 8, ..GptConfig::default() };
    /// let model = config.init(&Device::Cpu, 0)?;
    /// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
    /// let out = model.forward(&ids, ForwardOptions::default().output_attentions());
    /// assert_eq!(out.logits.shape(), &[1, 3, 10]);
    /// assert_eq!(out.attentions.len(), 2); // [1, 2, 3, 3] a layer
    /// // Decoding: the last position's logits, the cache extended.
    /// let mut cache = KvCache::new(2);
    /// let next = model.forward(&ids, ForwardOptions::default().cache(&mut cache).last_only());
    /// assert_eq!((next.logits.shape(), cache.len()), (&[1, 10][..], 3));
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn forward(&self, ids: &Tensor, options: ForwardOptions<'_>) -> GptOutput {
        let ForwardOptions {
            mut cache,
            last_only,
            output_attentions,
        } = options;
        let (b, t) = self.check_ids(ids, cache.as_deref_mut());
        let past = cache.as_ref().map_or(0, |c| c.len());
        let positions = ids.new_ids((past as i64..(past + t) as i64).collect(), &[t]);
        let tokens = self.wte.forward(ids).add(&self.wpe.forward(&positions));
        let mut x = self.drop.forward(&tokens);
        let (mut attentions, mut routing) = (Vec::new(), Vec::new());
        for (i, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_mut().map(|c| &mut c.layers[i]);
            let out = self.run_block(block, &x, layer_cache, output_attentions);
            x = out.x;
            attentions.extend(out.attention);
            routing.extend(out.routing);
        }
        if last_only {
            x = x.narrow(1, t - 1, 1);
        }
        let x = self.ln_f.forward(&x);
        // The head shares the token embedding: logits = x Wteᵀ, one product
        // over every row.
        let (rows, (c, v)) = (x.shape()[1], (self.config.n_embd, self.config.vocab_size));
        let logits = self.head(&x.reshape(&[b * rows, c]));
        let shape = if last_only { vec![b, v] } else { vec![b, t, v] };
        GptOutput {
            logits: logits.reshape(&shape),
            routing,
            attentions,
        }
    }

    /// One block of the forward: activation-checkpointed when the config
    /// asks and nothing else is (no cache, no weights returned; a block
    /// with experts never is, its router losses keep their graph).
    fn run_block(
        &self,
        block: &GptBlock,
        x: &Tensor,
        cache: Option<&mut LayerKvCache>,
        output_attentions: bool,
    ) -> BlockOutput {
        let dense = matches!(block.mlp, BlockMlp::Dense(_));
        if self.config.checkpoint_activations && cache.is_none() && !output_attentions && dense {
            let x = crate::nn::checkpoint(block, &[x], |block, xs| {
                block.forward(&xs[0], None, false).x
            });
            return BlockOutput {
                x,
                attention: None,
                routing: None,
            };
        }
        block.forward(x, cache, output_attentions)
    }

    /// `[batch, time]` from i64 ids that fit the context after what `cache`
    /// holds (made ready for the model's layers when empty); panics naming
    /// what is wrong otherwise.
    fn check_ids(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> (usize, usize) {
        assert_eq!(
            ids.dtype(),
            DType::I64,
            "Gpt: token ids must be i64, got {:?}",
            ids.dtype()
        );
        assert_eq!(
            ids.rank(),
            2,
            "Gpt: token ids must be [batch, time], got {:?}",
            ids.shape()
        );
        let t = ids.shape()[1];
        let past = cache.as_ref().map_or(0, |c| c.len());
        assert!(
            past + t <= self.config.block_size,
            "Gpt: {} positions exceed the context length {}",
            past + t,
            self.config.block_size
        );
        if let Some(c) = cache.filter(|c| c.layers.is_empty()) {
            *c = KvCache::new(self.config.n_layer);
        }
        (ids.shape()[0], t)
    }

    /// The router losses the training loss adds: the mean over blocks with
    /// experts of `load_balancing_coef · load_balancing_loss + z_loss_coef
    /// · z_loss` (a mean, so that the weights mean the same at any depth).
    /// `None` for a dense model.
    pub fn router_loss(&self, routing: &[Routing]) -> Option<Tensor> {
        let moe = self.config.moe.as_ref()?;
        let total = routing
            .iter()
            .map(|r| {
                let balance = r.load_balancing_loss.mul_scalar(moe.load_balancing_coef);
                match moe.z_loss_coef {
                    0.0 => balance,
                    z => balance.add(&r.z_loss.mul_scalar(z)),
                }
            })
            .reduce(|a, b| a.add(&b))?;
        Some(total.mul_scalar(1.0 / routing.len() as f32))
    }

    /// The share of routed tokens each expert of each block with experts
    /// receives for `ids` (one row per such block, in block order; each row
    /// sums to `top_k`), without gradients: expert utilisation, which the
    /// load-balancing loss keeps near `top_k / n_experts`.
    pub fn expert_shares(&self, ids: &Tensor) -> Vec<Vec<f32>> {
        let routing = crate::mode::no_grad(|| self.forward(ids, ForwardOptions::default()).routing);
        let tokens = ids.numel().max(1) as f32;
        routing
            .iter()
            .map(|r| {
                let counts = r.tokens_per_expert.to_vec();
                counts.iter().map(|&n| n / tokens).collect()
            })
            .collect()
    }

    /// Mean cross-entropy of `logits` `[batch, time, vocab]` against `targets` `[batch, time]`.
    pub fn loss(logits: &Tensor, targets: &Tensor) -> Tensor {
        let v = logits.shape()[logits.rank() - 1];
        logits
            .reshape(&[logits.numel() / v, v])
            .cross_entropy(&targets.reshape(&[targets.numel()]))
    }
}

/// Decoding with a KV cache of every block's keys and values.
impl crate::generation::CausalLm for Gpt {
    type Cache = KvCache;

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_len(&self) -> usize {
        self.config.block_size
    }

    fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::with_capacity(self.config.n_layer, capacity)
    }

    fn next_logits(&self, ids: &Tensor, cache: &mut KvCache) -> Tensor {
        let options = ForwardOptions::default().cache(cache).last_only();
        self.forward(ids, options).logits
    }
}
