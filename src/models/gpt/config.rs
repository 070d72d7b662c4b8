//! The shape of a GPT: presets, validation, parameter counts, and the
//! activations a training step of it holds.

use serde::{Deserialize, Serialize};

use crate::models::objective::composed_attention;
use crate::nn::MoeConfig;
use crate::{Error, Result};

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
            .is_some_and(|m| (layer + 1).is_multiple_of(m.every.max(1)))
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
        if !self.n_embd.is_multiple_of(self.n_head) {
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
        Ok(())
    }

    /// How many numbers a model of this shape holds, counted by building
    /// it with placeholders ([`count_parameters`](crate::nn::count_parameters):
    /// nothing drawn or allocated at full size); `None` for a config that
    /// makes no model or whose count overflows.
    pub fn parameter_count(&self) -> Option<u64> {
        crate::models::parameter_count(self)
    }
}

impl GptConfig {
    /// About how many f32 values of activations a training step of this
    /// model holds at its peak for each token of `window`-token sequences
    /// (`None` on overflow): about 24 widths a layer (the block's saved
    /// inputs and outputs, the heads' contiguous copies, and the buffers the
    /// pool keeps for reuse), four at the ends, and three vocabulary-wide
    /// rows (the logits, their log-probabilities and gradient). With
    /// activation checkpointing a block keeps one width, and one block's 24
    /// are held again during its backward; a block with experts adds its
    /// MLP's activations for each further expert a token visits and the
    /// gathered rows. With the parameters, gradients and moments
    /// ([`train::memory::step_bytes`](crate::train::memory::step_bytes)),
    /// calibrated against `examples/step_time` (cpu-mini at batch 12 to
    /// 512, gpt-mini, shakespeare-char, GPT-2 on 64-token windows, cpu-mini
    /// checkpointed and with 4 experts): 5-23% above the peak.
    ///
    /// ```
    /// use zeroformer::GptConfig;
    /// let model = GptConfig::preset("gpt2", 0).unwrap();
    /// // 24 widths of 768 a layer, four more and three rows of the vocabulary.
    /// assert_eq!(model.activations_per_token(64), Some(12 * 24 * 768 + 4 * 768 + 3 * 50257));
    /// ```
    pub fn activations_per_token(&self, window: usize) -> Option<u64> {
        let model = self;
        let (c, l, v) = (
            model.n_embd as u64,
            model.n_layer as u64,
            model.vocab_size as u64,
        );
        let block = c.checked_mul(24)?;
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
        let attentions = if checkpointed {
            1 + model.expert_blocks()
        } else {
            model.n_layer
        };
        let attention = composed_attention(model.dropout, attentions, model.n_head, window)?;
        per_token.checked_add(attention)
    }
}
