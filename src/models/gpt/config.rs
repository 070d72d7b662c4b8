//! The shape of a GPT: presets, validation, parameter counts, and the
//! memory a training step of it holds.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::nn::MoeConfig;
use crate::train::{TrainConfig, memory};
use crate::{Device, Error, Result};

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
    /// A Mixture-of-Experts feed-forward ([`MoeFeedForward`](crate::nn::MoeFeedForward)) in every
    /// [`MoeConfig::every`]-th block instead of the dense MLP, each expert
    /// the dense MLP's shape (so top-1 routing keeps the active parameters
    /// per token, plus the router). `None` (the default, and in configs
    /// saved without it): every block dense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeConfig>,
}

/// nanoGPT's `GPTConfig` defaults: GPT-2 small's shape (12 layers, 12
/// heads, width 768, context 1024) over a vocabulary of 50304 (GPT-2's
/// 50257 padded up to a multiple of 64), with biases, no dropout, every
/// block dense and attending over all positions. A small model names the
/// numbers it changes:
///
/// ```
/// use zeroformer::GptConfig;
/// let config = GptConfig { vocab_size: 65, n_layer: 2, n_embd: 64, n_head: 4, ..GptConfig::default() };
/// assert_eq!(config.block_size, 1024);
/// assert!(config.validate().is_ok());
/// // nanoGPT prints 123.69M for it: this less the 1024 x 768 position embeddings.
/// assert_eq!(GptConfig::default().parameter_count(), Some(123_689_472 + 1024 * 768));
/// ```
impl Default for GptConfig {
    fn default() -> GptConfig {
        GptConfig {
            vocab_size: 50304,
            block_size: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            dropout: 0.0,
            bias: true,
            checkpoint_activations: false,
            attention_windows: Vec::new(),
            moe: None,
        }
    }
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
            other => return Err(super::super::unknown_preset("GPT", other, Self::PRESETS)),
        };
        let config = GptConfig {
            vocab_size,
            block_size,
            n_layer,
            n_head,
            n_embd,
            dropout: 0.0,
            bias: name == "gpt2",
            ..GptConfig::default()
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
    /// [`Module::named_parameters`](crate::nn::Module::named_parameters), computed from the numbers alone (a
    /// lazy iterator: nothing is allocated per layer up front). Loaders
    /// compare a checkpoint against it before building a model.
    ///
    /// ```
    /// use zeroformer::{Device, GptConfig};
    /// use zeroformer::nn::Module;
    /// let config = GptConfig::preset("cpu-mini", 65).unwrap();
    /// let model = config.init(&Device::Cpu, 0).unwrap();
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

impl GptConfig {
    /// About how many bytes a process training this model with `config` on
    /// `device` holds at the peak of a step (`None` if that overflows). Per
    /// token of the window ([`TrainConfig::context`], else the model's) the
    /// activations are about 26 widths a layer (the block's saved inputs and
    /// outputs, the heads' contiguous copies, and the buffers the pool keeps
    /// for reuse), four at the ends, and three vocabulary-wide rows (the
    /// logits, their log-probabilities and gradient). With activation
    /// checkpointing a block keeps one width, and one block's 26 are held
    /// again during its backward; a block with experts adds its MLP's
    /// activations for each further expert a token visits and the gathered
    /// rows. Calibrated against `examples/step_time` (cpu-mini at batch 12 to
    /// 512, gpt-mini, shakespeare-char, GPT-2 on 64-token windows, cpu-mini
    /// checkpointed and with 4 experts): 3-19% above the peak.
    ///
    /// ```
    /// use zeroformer::{Device, GptConfig};
    /// use zeroformer::train::TrainConfig;
    ///
    /// let model = GptConfig::preset("gpt2", 0).unwrap();
    /// let short = TrainConfig { batch_size: 32, context: Some(64), ..TrainConfig::nanogpt_cpu(100) };
    /// let bytes = model.step_memory(&short, &Device::Cpu).unwrap();
    /// // 124M parameters, their gradients and moments are 2 GiB; 2,048 tokens'
    /// // activations about 3 GiB more.
    /// assert!(bytes > 5 << 30, "{bytes}");
    /// ```
    pub fn step_memory(&self, config: &TrainConfig, device: &Device) -> Option<u64> {
        let model = self;
        let (c, l, v) = (
            model.n_embd as u64,
            model.n_layer as u64,
            model.vocab_size as u64,
        );
        let block = c.checked_mul(26)?;
        // A block with experts: its MLP's activations once per expert a token
        // visits (about 10 widths each), the rows gathered for the experts and
        // back with their gradients (9 widths a visit), and the router's rows.
        let (experts, k) = model
            .moe
            .as_ref()
            .map_or((0, 1), |m| (m.n_experts as u64, m.top_k as u64));
        let moe_block = block
            .checked_add(k.checked_sub(1)?.checked_mul(10)?.checked_mul(c)?)?
            .checked_add(k.checked_mul(9)?.checked_mul(c)?)?
            .checked_add(experts.checked_mul(2)?)?;
        let moe_blocks = model.expert_blocks() as u64;
        let dense_blocks = l.checked_sub(moe_blocks)?;
        // Checkpointed (dense) blocks keep their input, and one of them holds
        // its activations again, and their gradients' buffers (10 widths),
        // while its backward runs.
        let checkpointed = model.checkpoint_activations && dense_blocks > 0;
        let dense = if checkpointed {
            dense_blocks
                .checked_mul(c)?
                .checked_add(block)?
                .checked_add(c.checked_mul(10)?)?
        } else {
            dense_blocks.checked_mul(block)?
        };
        let per_token = dense
            .checked_add(moe_blocks.checked_mul(moe_block)?)?
            .checked_add(c.checked_mul(4)?)?
            .checked_add(v.checked_mul(3)?)?;
        let window = config.context.unwrap_or(model.block_size);
        let attentions = if checkpointed {
            1 + model.expert_blocks()
        } else {
            model.n_layer
        };
        let attention =
            memory::composed_attention(model.dropout, attentions, model.n_head, window)?;
        let per_token = per_token.checked_add(attention)?;
        memory::step_bytes(model.parameter_count()?, config, window, per_token, device)
    }
}
