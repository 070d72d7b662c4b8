//! The optimisation recipe.

use serde::{Deserialize, Serialize};

use crate::optim::LrSchedule;
use crate::{Error, Result};

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
    /// (`GptConfig::step_memory`, `EncoderDecoderConfig::step_memory`) exceeds what the device has (true by default);
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
