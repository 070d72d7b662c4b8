//! The optimisation recipe.

use serde::{Deserialize, Serialize};

use crate::optim::LrSchedule;
use crate::{DType, Error, Result};

/// The dtype a training step's matrix products and attention compute in.
/// Parameters, gradients, the optimizer and checkpoints stay f32 either
/// way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision: the forward under [`autocast`](crate::autocast)`(DType::BF16)`.
    Bf16,
}

impl Precision {
    /// The dtype [`autocast`](crate::autocast) takes for it.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// `f32` or `bf16`, as `--precision` takes them.
    ///
    /// ```
    /// use zeroformer::train::Precision;
    /// assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
    /// assert!("fp16".parse::<Precision>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Precision> {
        match name {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::InvalidConfig(format!(
                "precision must be f32 or bf16, got {other:?}"
            ))),
        }
    }
}

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
    /// The learning-rate schedule when it is not the warmup-cosine one that
    /// `max_lr`, `min_lr`, `warmup` and `decay_steps` describe (`None`, the
    /// default): the 2017 Transformer's Noam schedule, or a constant rate.
    #[serde(default)]
    pub lr_schedule: Option<LrSchedule>,
    /// The last fraction of `decay_steps` over which the rate falls
    /// linearly to zero, multiplying the schedule (0, the default: none).
    #[serde(default)]
    pub cooldown: f32,
    /// AdamW's epsilon (1e-8, PyTorch's).
    #[serde(default = "default_eps")]
    pub eps: f32,
    /// Weight decay on every parameter, biases, norms and embeddings
    /// included (the grokking recipe), instead of on the matrices alone
    /// (false, the default: [`decay_groups`](crate::optim::decay_groups)).
    #[serde(default)]
    pub decay_all: bool,
    /// The dtype the forward's matrix products and attention compute in
    /// ([`Precision::F32`], the default, or mixed precision with bf16).
    #[serde(default)]
    pub precision: Precision,
}

fn checked() -> bool {
    true
}

fn default_eps() -> f32 {
    1e-8
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
            lr_schedule: None,
            cooldown: 0.0,
            eps: default_eps(),
            decay_all: false,
            precision: Precision::F32,
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
        if !(0.0..=1.0).contains(&self.cooldown) {
            return bad(format!("cooldown must be in [0, 1], got {}", self.cooldown));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps must be finite and > 0, got {}", self.eps));
        }
        Ok(())
    }

    /// The learning-rate schedule: [`lr_schedule`](Self::lr_schedule), else
    /// the warmup-cosine one these numbers describe (before the cooldown).
    pub fn schedule(&self) -> LrSchedule {
        self.lr_schedule.unwrap_or(LrSchedule::WarmupCosine {
            max_lr: self.max_lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            decay_steps: self.decay_steps,
        })
    }

    /// The learning rate at `step` (from 0): the schedule's, times the
    /// cooldown's linear fall to zero over the last `cooldown` of
    /// `decay_steps`.
    ///
    /// ```
    /// use zeroformer::optim::LrSchedule;
    /// use zeroformer::train::TrainConfig;
    /// let config = TrainConfig {
    ///     lr_schedule: Some(LrSchedule::Constant(0.1)),
    ///     cooldown: 0.25,
    ///     ..TrainConfig::nanogpt_cpu(100)
    /// };
    /// assert_eq!(config.lr_at(10), 0.1);
    /// assert_eq!(config.lr_at(75), 0.1);
    /// assert!((config.lr_at(90) - 0.1 * 10.0 / 25.0).abs() < 1e-7);
    /// ```
    pub fn lr_at(&self, step: usize) -> f32 {
        let rate = self.schedule().lr_at(step);
        if self.cooldown == 0.0 {
            return rate;
        }
        let cooldown_steps = (self.cooldown * self.decay_steps as f32).max(1.0);
        let remaining = self.decay_steps.saturating_sub(step) as f32;
        rate * (remaining / cooldown_steps).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_saved_without_the_later_fields_loads_with_their_defaults() {
        let mut json = serde_json::to_value(TrainConfig::nanogpt_cpu(10)).unwrap();
        let fields = json.as_object_mut().unwrap();
        for later in [
            "lr_schedule",
            "cooldown",
            "eps",
            "decay_all",
            "precision",
            "context",
            "memory_check",
        ] {
            assert!(fields.remove(later).is_some(), "{later}");
        }
        let loaded: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(loaded, TrainConfig::nanogpt_cpu(10));
    }

    #[test]
    fn the_cooldown_falls_linearly_to_zero_over_its_last_steps() {
        let config = TrainConfig {
            cooldown: 0.2,
            ..TrainConfig::nanogpt_cpu(100)
        };
        let schedule = config.schedule();
        // Untouched before the last 20 steps, then (100 - step) / 20 of the schedule.
        assert_eq!(config.lr_at(79), schedule.lr_at(79));
        assert_eq!(config.lr_at(80), schedule.lr_at(80));
        assert_eq!(config.lr_at(90), schedule.lr_at(90) * 0.5);
        assert_eq!(config.lr_at(99), schedule.lr_at(99) * 0.05);
        assert_eq!(config.lr_at(100), 0.0);
        // A Noam schedule replaces the warmup-cosine one.
        let noam = LrSchedule::Noam {
            d_model: 64,
            warmup: 10,
            factor: 1.0,
        };
        let config = TrainConfig {
            lr_schedule: Some(noam),
            ..config
        };
        assert_eq!(config.lr_at(5), noam.lr_at(5));
    }

    #[test]
    fn out_of_range_cooldown_and_eps_are_refused() {
        for bad in [
            TrainConfig {
                cooldown: 1.5,
                ..TrainConfig::nanogpt_cpu(10)
            },
            TrainConfig {
                eps: 0.0,
                ..TrainConfig::nanogpt_cpu(10)
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
