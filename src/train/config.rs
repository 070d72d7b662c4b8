//! The optimisation recipe, and what a GPT training step costs in memory.

use serde::{Deserialize, Serialize};

use crate::models::GptConfig;
use crate::optim::LrSchedule;
use crate::{Device, Error, Result};

/// The optimisation recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per step; their gradients are averaged.
    pub grad_accum: usize,
    /// The learning rate after warmup.
    pub max_lr: f32,
    /// The learning rate the cosine decay ends at.
    pub min_lr: f32,
    /// Steps of linear warmup.
    pub warmup: usize,
    /// Steps over which the learning rate decays to `min_lr` (usually the run's length).
    pub decay_steps: usize,
    /// AdamW's decoupled weight decay on matrices.
    pub weight_decay: f32,
    /// AdamW's first moment decay.
    pub beta1: f32,
    /// AdamW's second moment decay.
    pub beta2: f32,
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f32,
    /// Seeds the model's initialisation and every random stream of the run.
    pub seed: u64,
    /// Tokens in each training window, when shorter than the model's
    /// context (fine-tuning GPT-2 on short texts); `None`: the model's.
    /// The memory check counts these, not the context.
    #[serde(default)]
    pub context: Option<usize>,
    /// Whether the trainer refuses a step whose estimated memory
    /// ([`step_memory`]) exceeds what the device has (true by default);
    /// false tries anyway.
    #[serde(default = "checked")]
    pub memory_check: bool,
}

fn checked() -> bool {
    true
}

impl TrainConfig {
    /// nanoGPT's CPU recipe for `iters` steps: batch 12, lr 1e-3 → 1e-4 with
    /// 100 warmup steps, AdamW betas (0.9, 0.99), weight decay 0.1, clip 1.0.
    pub fn nanogpt_cpu(iters: usize) -> TrainConfig {
        TrainConfig {
            batch_size: 12,
            grad_accum: 1,
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            decay_steps: iters,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            seed: 1337,
            context: None,
            memory_check: true,
        }
    }

    /// An error naming the first setting out of range: positive batch
    /// size and accumulation; a finite, positive `max_lr`; `min_lr` finite
    /// in [0, `max_lr`]; finite, non-negative weight decay and clip; betas
    /// in [0, 1); at least one decay step.
    ///
    /// ```
    /// use zeroformer::train::TrainConfig;
    /// assert!(TrainConfig::nanogpt_cpu(100).validate().is_ok());
    /// let bad = TrainConfig { max_lr: -1.0, ..TrainConfig::nanogpt_cpu(100) };
    /// assert!(bad.validate().unwrap_err().to_string().contains("max_lr"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidConfig(why));
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch_size and grad_accum must be positive".into());
        }
        if !(self.max_lr.is_finite() && self.max_lr > 0.0) {
            return bad(format!(
                "max_lr must be finite and > 0, got {}",
                self.max_lr
            ));
        }
        if !(self.min_lr.is_finite() && (0.0..=self.max_lr).contains(&self.min_lr)) {
            return bad(format!(
                "min_lr must be in [0, max_lr = {}], got {}",
                self.max_lr, self.min_lr
            ));
        }
        for (name, v) in [
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be finite and >= 0, got {v}"));
            }
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1), got {v}"));
            }
        }
        if self.decay_steps == 0 {
            return bad("decay_steps must be at least 1".into());
        }
        if self.context == Some(0) {
            return bad("context must be at least 1 token".into());
        }
        Ok(())
    }

    /// The warmup-cosine learning-rate schedule these numbers describe.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::WarmupCosine {
            max_lr: self.max_lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            decay_steps: self.decay_steps,
        }
    }
}

/// About how many bytes a process training `model` with `config` on
/// `device` holds at the peak of a step (`None` if that overflows):
/// parameters, gradients and both AdamW moments, a gradient buffer per
/// data-parallel shard, one micro-batch's activations kept for backward,
/// and 16 MiB for the process itself. Per token of the window
/// ([`TrainConfig::context`], else the model's) the activations are about
/// 26 widths a layer (the block's saved inputs and outputs, the heads'
/// contiguous copies, and the buffers the pool keeps for reuse), four at
/// the ends, and three vocabulary-wide rows (the logits, their
/// log-probabilities and gradient). Calibrated against the peak resident
/// memory of `examples/step_time` (cpu-mini at batch 12 to 512, gpt-mini,
/// shakespeare-char): the estimate is 3-19% above it.
pub fn step_memory(model: &GptConfig, config: &TrainConfig, device: &Device) -> Option<u64> {
    const PROCESS: u64 = 16 << 20;
    let params = model.parameter_count()?;
    let shards = device.parallelism().min(config.batch_size) as u64;
    let state = params.checked_mul(4 + shards)?;
    let (c, l, v) = (
        model.n_embd as u64,
        model.n_layer as u64,
        model.vocab_size as u64,
    );
    let per_token = l
        .checked_mul(26)?
        .checked_mul(c)?
        .checked_add(c.checked_mul(4)?)?
        .checked_add(v.checked_mul(3)?)?;
    let window = config.context.unwrap_or(model.block_size) as u64;
    let tokens = (config.batch_size as u64).checked_mul(window)?;
    tokens
        .checked_mul(per_token)?
        .checked_add(state)?
        .checked_mul(4)?
        .checked_add(PROCESS)
}

/// [`step_memory`] against what `device` has, as an error a user can act
/// on (unless [`TrainConfig::memory_check`] is off); a window longer than
/// the model's context is an error too.
pub(crate) fn check_step_fits(
    model: &GptConfig,
    config: &TrainConfig,
    device: &Device,
) -> Result<()> {
    if let Some(context) = config.context.filter(|&c| c > model.block_size) {
        return Err(Error::InvalidConfig(format!(
            "context {context} is longer than the model's {}",
            model.block_size
        )));
    }
    if !config.memory_check {
        return Ok(());
    }
    let what = format!(
        "a training step of batch {} x context {} on a model of {} parameters (lower the batch size, as gradient accumulation keeps the effective batch; or turn the check off: TrainConfig::memory_check, --no-memory-check)",
        config.batch_size,
        config.context.unwrap_or(model.block_size),
        model.parameter_count().unwrap_or(u64::MAX)
    );
    let bytes = step_memory(model, config, device).unwrap_or(u64::MAX);
    device.check_fits(bytes, &what)
}
