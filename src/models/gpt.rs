//! GPT: a decoder-only Transformer (GPT-2's architecture, nanoGPT's layout).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::nn::{
    Activation, BlockMlp, Dropout, Embedding, FeedForward, GptBlock, KvCache, LayerNorm, Module,
    MoeConfig, MoeFeedForward, MultiHeadAttention, Routing, SharedRng,
};
use crate::{DType, Error, GeluApproximation, Result, Tensor};

/// The shape of a GPT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Token ids run from 0 to `vocab_size - 1`.
    pub vocab_size: usize,
    /// The context length: the most positions the model attends over.
    pub block_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block; `n_embd` must divide by it.
    pub n_head: usize,
    /// The model width.
    pub n_embd: usize,
    /// Dropout probability after embeddings, attention and MLPs (0 for none).
    pub dropout: f32,
    /// Biases in Linear and LayerNorm (GPT-2 has them; nanoGPT's benchmark
    /// model does not).
    pub bias: bool,
    /// Activation checkpointing of every block in training
    /// ([`nn::checkpoint`](crate::nn::checkpoint)): a block keeps only its
    /// input, and runs again in the backward pass. Less memory, one more
    /// forward of the blocks; the same gradients, bit for bit. Off unless
    /// set (and in configs saved without it).
    #[serde(default)]
    pub checkpoint_activations: bool,
    /// Each block's sliding attention window, in block order: `Some(w)`
    /// attends over the last `w` positions only (O(T·w) attention, and a KV
    /// cache of `w` positions in generation), `None` over all of them.
    /// Empty (the default, and in configs saved without it): every block
    /// attends over all positions. [`with_sliding_window`](Self::with_sliding_window)
    /// sets local and global blocks alternating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention_windows: Vec<Option<usize>>,
    /// A Mixture-of-Experts feed-forward ([`MoeFeedForward`]) in every
    /// [`MoeConfig::every`]-th block instead of the dense MLP, each expert
    /// the dense MLP's shape (so top-1 routing keeps the active parameters
    /// per token, plus the router). `None` (the default, and in configs
    /// saved without it): every block dense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeConfig>,
}

impl GptConfig {
    /// The names [`preset`](Self::preset) accepts.
    pub const PRESETS: &'static [&'static str] =
        &["cpu-mini", "gpt-mini", "shakespeare-char", "gpt2"];

    /// A named preset: `cpu-mini` (4 layers, 4 heads, width 128, context 64),
    /// `gpt-mini` (6, 6, 192, 256), `shakespeare-char` (6, 6, 384, 256) or
    /// `gpt2` (12, 12, 768, 1024, vocabulary 50257, with biases as GPT-2
    /// has: 124,439,808 parameters). `vocab_size` is used by all but `gpt2`.
    /// No dropout; the others have no biases (nanoGPT's choice; set them
    /// afterwards).
    ///
    /// ```
    /// use zeroformer::GptConfig;
    /// let c = GptConfig::preset("cpu-mini", 65).unwrap();
    /// assert_eq!((c.n_layer, c.n_head, c.n_embd, c.block_size), (4, 4, 128, 64));
    /// let gpt2 = GptConfig::preset("gpt2", 0).unwrap();
    /// assert!(gpt2.bias);
    /// assert_eq!(gpt2.parameter_count(), Some(124_439_808));
    /// assert!(GptConfig::preset("gpt-9", 65).is_err());
    /// ```
    pub fn preset(name: &str, vocab_size: usize) -> Result<GptConfig> {
        let (n_layer, n_head, n_embd, block_size, vocab_size) = match name {
            "cpu-mini" => (4, 4, 128, 64, vocab_size),
            "gpt-mini" => (6, 6, 192, 256, vocab_size),
            "shakespeare-char" => (6, 6, 384, 256, vocab_size),
            "gpt2" => (12, 12, 768, 1024, 50257),
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown preset '{other}'; choose one of {}",
                    Self::PRESETS.join(", ")
                )));
            }
        };
        let config = GptConfig {
            vocab_size,
            block_size,
            n_layer,
            n_head,
            n_embd,
            dropout: 0.0,
            bias: name == "gpt2",
            checkpoint_activations: false,
            attention_windows: Vec::new(),
            moe: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Sets every block's attention to a sliding window of `window`
    /// positions, except every `global_every`-th block (the last of each
    /// group of that many), which attends over all positions; 0 makes every
    /// block local. (Mistral uses windows in every layer; Gemma 2
    /// alternates local and global layers, `global_every` 2.)
    ///
    /// ```
    /// use zeroformer::GptConfig;
    /// let c = GptConfig::preset("cpu-mini", 65).unwrap().with_sliding_window(16, 2);
    /// assert_eq!(c.attention_windows, vec![Some(16), None, Some(16), None]);
    /// assert_eq!(c.attention_window(1), None);
    /// ```
    pub fn with_sliding_window(mut self, window: usize, global_every: usize) -> GptConfig {
        self.attention_windows = (0..self.n_layer)
            .map(|i| (global_every == 0 || (i + 1) % global_every != 0).then_some(window))
            .collect();
        self
    }

    /// Whether block `layer` has a mixture of experts (every
    /// [`MoeConfig::every`]-th block: the second of each pair for 2).
    pub fn has_experts(&self, layer: usize) -> bool {
        self.moe
            .as_ref()
            .is_some_and(|m| (layer + 1) % m.every.max(1) == 0)
    }

    /// How many blocks have experts.
    pub fn expert_blocks(&self) -> usize {
        self.moe
            .as_ref()
            .map_or(0, |m| self.n_layer / m.every.max(1))
    }

    /// Block `layer`'s attention window (`None`: all positions).
    pub fn attention_window(&self, layer: usize) -> Option<usize> {
        self.attention_windows.get(layer).copied().flatten()
    }

    /// Checks that the numbers make a model.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidConfig(why));
        if self.vocab_size == 0
            || self.block_size == 0
            || self.n_layer == 0
            || self.n_head == 0
            || self.n_embd == 0
        {
            return bad(format!(
                "vocab_size, block_size, n_layer, n_head and n_embd must be positive: {self:?}"
            ));
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!(
                "n_embd {} is not divisible by n_head {}",
                self.n_embd, self.n_head
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !self.attention_windows.is_empty() && self.attention_windows.len() != self.n_layer {
            return bad(format!(
                "attention_windows has {} entries for {} layers (give one per layer, or none)",
                self.attention_windows.len(),
                self.n_layer
            ));
        }
        if self.attention_windows.contains(&Some(0)) {
            return bad("an attention window must be at least 1 position".into());
        }
        if let Some(moe) = &self.moe {
            moe.validate()?;
        }
        if self.parameter_count().is_none() {
            return bad(format!("the parameter count overflows: {self:?}"));
        }
        Ok(())
    }

    /// How many numbers a model of this shape holds, `None` when that
    /// overflows: `V·C + T·C + L·(12C² + 2C) + C`, plus `11C` of biases per
    /// layer and `C` at the end when `bias` is set; a block with experts
    /// holds `E` copies of the MLP (`8C²`, `5C` of biases) and the router's
    /// `E·C` in its place.
    pub fn parameter_count(&self) -> Option<u64> {
        let [v, t, c, l] =
            [self.vocab_size, self.block_size, self.n_embd, self.n_layer].map(|d| d as u64);
        let (layer_bias, end_bias) = if self.bias { (11, 1) } else { (0, 0) };
        let per_layer = c
            .checked_mul(c)?
            .checked_mul(12)?
            .checked_add(c.checked_mul(2 + layer_bias)?)?;
        let dense = v
            .checked_add(t)?
            .checked_mul(c)?
            .checked_add(l.checked_mul(per_layer)?)?
            .checked_add(c.checked_mul(1 + end_bias)?)?;
        let Some(moe) = &self.moe else {
            return Some(dense);
        };
        let experts = moe.n_experts as u64;
        let mlp_bias = if self.bias { 5 } else { 0 };
        let mlp = c
            .checked_mul(c)?
            .checked_mul(8)?
            .checked_add(c.checked_mul(mlp_bias)?)?;
        // Per block with experts: E - 1 more MLPs, and the router.
        let extra = experts
            .checked_sub(1)?
            .checked_mul(mlp)?
            .checked_add(experts.checked_mul(c)?)?;
        dense.checked_add((self.expert_blocks() as u64).checked_mul(extra)?)
    }

    /// How many parameter tensors a model of this shape has (`None` on overflow).
    pub fn parameter_tensors(&self) -> Option<usize> {
        let per_layer = if self.bias { 12 } else { 6 };
        let mlp = if self.bias { 4 } else { 2 };
        let end = if self.bias { 2 } else { 1 };
        let experts = self.moe.as_ref().map_or(0, |m| m.n_experts);
        // A block with experts: the router and E MLPs instead of one.
        let extra = match self.expert_blocks() {
            0 => 0,
            blocks => {
                blocks.checked_mul(experts.checked_sub(1)?.checked_mul(mlp)?.checked_add(1)?)?
            }
        };
        self.n_layer
            .checked_mul(per_layer)?
            .checked_add(2 + end)?
            .checked_add(extra)
    }

    /// Every parameter's name and shape, in the order of
    /// [`Module::named_parameters`], computed from the numbers alone (a
    /// lazy iterator: nothing is allocated per layer up front). Loaders
    /// compare a checkpoint against it before building a model.
    ///
    /// ```
    /// use zeroformer::{Gpt, GptConfig};
    /// use zeroformer::nn::Module;
    /// let config = GptConfig::preset("cpu-mini", 65).unwrap();
    /// let model = Gpt::new(config.clone(), 0).unwrap();
    /// let from_numbers: Vec<_> = config.parameter_shapes().collect();
    /// let built: Vec<_> = model.named_parameters().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    /// assert_eq!(from_numbers, built);
    /// ```
    pub fn parameter_shapes(&self) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
        let (v, t, c, bias) = (self.vocab_size, self.block_size, self.n_embd, self.bias);
        let linear = move |name: String, out: usize, inp: usize| {
            let b = bias.then(|| (format!("{name}.bias"), vec![out]));
            std::iter::once((format!("{name}.weight"), vec![out, inp])).chain(b)
        };
        let norm = move |name: String| {
            let b = bias.then(|| (format!("{name}.bias"), vec![c]));
            std::iter::once((format!("{name}.weight"), vec![c])).chain(b)
        };
        let mlp = move |p: String| {
            linear(format!("{p}.fc"), 4 * c, c).chain(linear(format!("{p}.proj"), c, 4 * c))
        };
        let blocks = (0..self.n_layer).flat_map(move |i| {
            let p = format!("blocks.{i}.");
            let layer: Box<dyn Iterator<Item = _>> = match &self.moe {
                Some(moe) if self.has_experts(i) => {
                    let experts = format!("{p}mlp.experts");
                    Box::new(
                        std::iter::once((format!("{p}mlp.router.weight"), vec![moe.n_experts, c]))
                            .chain(
                                (0..moe.n_experts).flat_map(move |e| mlp(format!("{experts}.{e}"))),
                            ),
                    )
                }
                _ => Box::new(mlp(format!("{p}mlp"))),
            };
            norm(format!("{p}ln_1"))
                .chain(linear(format!("{p}attn.qkv"), 3 * c, c))
                .chain(linear(format!("{p}attn.proj"), c, c))
                .chain(norm(format!("{p}ln_2")))
                .chain(layer)
        });
        [
            ("wte.weight".to_string(), vec![v, c]),
            ("wpe.weight".to_string(), vec![t, c]),
        ]
        .into_iter()
        .chain(blocks)
        .chain(norm("ln_f".into()))
    }

    /// The config stored under `model_config` in `ckpt`, checked before
    /// anything is allocated: it must make a model, and the model's
    /// parameters (their count, names and shapes) must be exactly the
    /// tensors under `prefix` in the file. So a model built from it
    /// allocates what the file already holds, whatever the metadata claims.
    pub fn from_checkpoint(ckpt: &Checkpoint, prefix: &str) -> Result<GptConfig> {
        let config: GptConfig = serde_json::from_str(ckpt.require_meta("model_config")?)
            .map_err(|e| ckpt.error(format!("model_config: {e}")))?;
        config.check_against(ckpt, prefix)?;
        Ok(config)
    }

    /// Checks that this config makes a model whose parameters (their count,
    /// names and shapes) are exactly the tensors under `prefix` in `ckpt`.
    pub fn check_against(&self, ckpt: &Checkpoint, prefix: &str) -> Result<()> {
        self.validate()
            .map_err(|e| ckpt.error(format!("model_config: {e}")))?;
        let expected = self.parameter_tensors().expect("validated");
        ckpt.check_tensors(prefix, expected, self.parameter_shapes())
            .map_err(|e| {
                ckpt.error(format!(
                    "model_config {self:?} does not fit the tensors: {e}"
                ))
            })
    }
}

/// A decoder-only Transformer: token and learned position embeddings,
/// pre-norm blocks, a final LayerNorm, and an output head tied to the token
/// embedding.
///
/// ```
/// use zeroformer::prelude::*;
/// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: true, checkpoint_activations: false, attention_windows: vec![], moe: None };
/// let model = Gpt::new(config, 0).unwrap();
/// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
/// assert_eq!(model.forward(&ids).shape(), &[1, 3, 10]);
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

impl Gpt {
    /// A model with GPT-2's initialisation from `seed`: weights N(0, 0.02²),
    /// the residual output projections N(0, (0.02 / √(2·n_layer))²), biases
    /// zero, LayerNorm weights one. Dropout draws from a stream seeded by `seed` too.
    /// Built on the default device (`device.as_default(|| Gpt::new(..))`
    /// builds on `device`), whose memory is checked for the parameters first.
    pub fn new(config: GptConfig, seed: u64) -> Result<Gpt> {
        config.validate()?;
        let count = config.parameter_count().expect("validated");
        crate::default_device().check_fits(
            count.saturating_mul(4),
            &format!("a model of {count} parameters"),
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dropout_rng = SharedRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let (c, std) = (config.n_embd, 0.02);
        let proj_std = std / (2.0 * config.n_layer as f32).sqrt();
        let wte = Embedding::new(config.vocab_size, c, std, &mut rng);
        let wpe = Embedding::new(config.block_size, c, std, &mut rng);
        let gelu = Activation::Gelu(GeluApproximation::Tanh);
        let blocks = (0..config.n_layer)
            .map(|layer| GptBlock {
                ln_1: LayerNorm::new(c, config.bias),
                attn: MultiHeadAttention::new(
                    c,
                    config.n_head,
                    config.bias,
                    config.dropout,
                    std,
                    proj_std,
                    &mut rng,
                    &dropout_rng,
                )
                .with_window(config.attention_window(layer)),
                ln_2: LayerNorm::new(c, config.bias),
                mlp: match &config.moe {
                    Some(moe) if config.has_experts(layer) => {
                        BlockMlp::Experts(MoeFeedForward::new(
                            c,
                            4 * c,
                            gelu,
                            moe,
                            config.bias,
                            config.dropout,
                            std,
                            proj_std,
                            &mut rng,
                            &dropout_rng,
                        ))
                    }
                    _ => BlockMlp::Dense(FeedForward::new(
                        c,
                        4 * c,
                        gelu,
                        config.bias,
                        config.dropout,
                        std,
                        proj_std,
                        &mut rng,
                        &dropout_rng,
                    )),
                },
            })
            .collect();
        Ok(Gpt {
            head_int8: None,
            ln_f: LayerNorm::new(c, config.bias),
            drop: Dropout::new(config.dropout, dropout_rng.clone()),
            config,
            wte,
            wpe,
            blocks,
            dropout_rng,
        })
    }

    /// Keeps int8 copies (one scale per row) of every matrix the model
    /// multiplies by: the blocks' linear layers and the tied output head.
    /// Without gradients (generation, evaluation) the forward then reads
    /// those, a quarter of the bytes; training still uses the f32 weights.
    /// Call again after the weights change; [`drop_int8`](Self::drop_int8)
    /// goes back to f32.
    pub fn quantize_int8(&mut self) {
        for block in &mut self.blocks {
            block.attn.qkv.quantize_int8();
            block.attn.proj.quantize_int8();
            for mlp in block.mlp.feed_forwards_mut() {
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
            for mlp in block.mlp.feed_forwards_mut() {
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

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]` (i64).
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        self.forward_impl(ids, None, false, false).0
    }

    /// Logits for the new tokens `ids` given everything in `cache`, which is
    /// extended with them: incremental decoding.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Tensor {
        self.forward_impl(ids, Some(cache), false, false).0
    }

    /// [`forward_cached`](Self::forward_cached)'s logits of the last
    /// position only, `[batch, vocab]`: what decoding needs, without the
    /// output head's product for the other positions.
    pub fn forward_cached_last(&self, ids: &Tensor, cache: &mut KvCache) -> Tensor {
        self.forward_impl(ids, Some(cache), false, true).0
    }

    /// Logits and every layer's attention weights `[batch, heads, time, time]`.
    pub fn forward_with_attention(&self, ids: &Tensor) -> (Tensor, Vec<Tensor>) {
        let (logits, weights, _) = self.forward_impl(ids, None, true, false);
        (logits, weights)
    }

    /// Logits and the routing of every block with experts, in block order
    /// (none for a dense model): what training adds
    /// [`router_loss`](Self::router_loss) from, and expert utilisation is
    /// read from.
    pub fn forward_with_routing(&self, ids: &Tensor) -> (Tensor, Vec<Routing>) {
        let (logits, _, routing) = self.forward_impl(ids, None, false, false);
        (logits, routing)
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
        let (_, routing) = crate::mode::no_grad(|| self.forward_with_routing(ids));
        let tokens = ids.numel().max(1) as f32;
        routing
            .iter()
            .map(|r| {
                r.tokens_per_expert
                    .iter()
                    .map(|&n| n as f32 / tokens)
                    .collect()
            })
            .collect()
    }

    fn forward_impl(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        weights: bool,
        last_only: bool,
    ) -> (Tensor, Vec<Tensor>, Vec<Routing>) {
        // In the device's scope: on the CPU, the layers' kernels then run
        // without a thread hand-off each.
        ids.device()
            .scope(|| self.forward_on_this_thread(ids, cache, weights, last_only))
    }

    fn forward_on_this_thread(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        weights: bool,
        last_only: bool,
    ) -> (Tensor, Vec<Tensor>, Vec<Routing>) {
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
        if let Some(c) = cache.as_mut().filter(|c| c.layers.is_empty()) {
            **c = KvCache::new(self.config.n_layer);
        }
        let positions = ids.new_ids((past as i64..(past + t) as i64).collect(), &[t]);
        let mut x = self
            .drop
            .forward(&self.wte.forward(ids).add(&self.wpe.forward(&positions)));
        let (mut all_weights, mut routing) = (Vec::new(), Vec::new());
        let checkpointed = self.config.checkpoint_activations && cache.is_none() && !weights;
        for (i, block) in self.blocks.iter().enumerate() {
            // A block with experts is not checkpointed: its router losses
            // must keep their graph.
            if checkpointed && matches!(block.mlp, BlockMlp::Dense(_)) {
                x = crate::nn::checkpoint(block, &[&x], |block, xs| block.forward(&xs[0]));
                continue;
            }
            let layer_cache = cache.as_mut().map(|c| &mut c.layers[i]);
            let (y, w, r) = block.forward_routed(&x, layer_cache, weights);
            x = y;
            all_weights.extend(w);
            routing.extend(r);
        }
        let (b, c, v) = (ids.shape()[0], self.config.n_embd, self.config.vocab_size);
        if last_only {
            let x = self.ln_f.forward(&x.narrow(1, t - 1, 1));
            let logits = self.head(&x.reshape(&[b, c]));
            return (logits, all_weights, routing);
        }
        let x = self.ln_f.forward(&x);
        // The head shares the token embedding: logits = x Wteᵀ, as one
        // [batch·time, width] product.
        let logits = self.head(&x.reshape(&[b * t, c])).reshape(&[b, t, v]);
        (logits, all_weights, routing)
    }

    /// Mean cross-entropy of `logits` `[batch, time, vocab]` against `targets` `[batch, time]`.
    pub fn loss(logits: &Tensor, targets: &Tensor) -> Tensor {
        let v = logits.shape()[logits.rank() - 1];
        logits
            .reshape(&[logits.numel() / v, v])
            .cross_entropy(&targets.reshape(&[targets.numel()]))
    }
}

/// `(inputs, targets)`: `[batch, time]` ids and the next token of each.
impl crate::train::Trainable for Gpt {
    type Batch = (Tensor, Tensor);

    /// The next-token cross-entropy, plus [`Gpt::router_loss`] for a
    /// model with experts (evaluation reports the cross-entropy alone).
    fn loss(&self, (inputs, targets): &Self::Batch) -> Tensor {
        let (logits, routing) = self.forward_with_routing(inputs);
        let loss = Gpt::loss(&logits, targets);
        match self.router_loss(&routing) {
            Some(router) => loss.add(&router),
            None => loss,
        }
    }

    /// The cross-entropy alone.
    fn evaluation_loss(&self, (inputs, targets): &Self::Batch) -> Tensor {
        Gpt::loss(&self.forward(inputs), targets)
    }

    fn draws_randomly(&self) -> bool {
        self.config.dropout > 0.0
    }

    fn dropout_rng(&self) -> Option<&crate::nn::SharedRng> {
        Some(Gpt::dropout_rng(self))
    }

    fn loss_weight(&self, (_, targets): &Self::Batch) -> usize {
        targets.numel()
    }

    fn check_step(&self, train: &crate::train::TrainConfig) -> crate::Result<()> {
        crate::train::check_step_fits(&self.config, train, &self.device())
    }
}
