//! Learning-rate schedules.

use std::f32::consts::PI;

/// A learning rate as a function of the step (counting from 0).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The same rate at every step.
    Constant(f32),
    /// nanoGPT's: linear warmup to `max_lr` over `warmup` steps, cosine decay
    /// to `min_lr` at `decay_steps`, then `min_lr`.
    WarmupCosine {
        /// The rate after warmup.
        max_lr: f32,
        /// The rate from `decay_steps` on.
        min_lr: f32,
        /// Steps of linear warmup from 0.
        warmup: usize,
        /// The step the cosine decay reaches `min_lr` at.
        decay_steps: usize,
    },
    /// "Attention is all you need": `factor · d_model^-0.5 · min(s^-0.5, s · warmup^-1.5)` with `s = step + 1`.
    Noam {
        /// The model width in `d_model^-0.5`.
        d_model: usize,
        /// Steps of linear warmup.
        warmup: usize,
        /// The factor in front.
        factor: f32,
    },
}

impl LrSchedule {
    /// The learning rate at `step`.
    ///
    /// ```
    /// use zeroformer::optim::LrSchedule;
    /// let s = LrSchedule::WarmupCosine { max_lr: 1e-3, min_lr: 1e-4, warmup: 100, decay_steps: 2000 };
    /// assert!(s.lr_at(0) < s.lr_at(99));
    /// assert!((s.lr_at(100) - 1e-3).abs() < 1e-9);
    /// assert!((s.lr_at(2000) - 1e-4).abs() < 1e-9);
    /// ```
    pub fn lr_at(&self, step: usize) -> f32 {
        match *self {
            LrSchedule::Constant(lr) => lr,
            LrSchedule::WarmupCosine {
                max_lr,
                min_lr,
                warmup,
                decay_steps,
            } => {
                if step < warmup {
                    max_lr * (step + 1) as f32 / (warmup + 1) as f32
                } else if step >= decay_steps {
                    min_lr
                } else {
                    let ratio = (step - warmup) as f32 / (decay_steps - warmup).max(1) as f32;
                    min_lr + 0.5 * (1.0 + (PI * ratio).cos()) * (max_lr - min_lr)
                }
            }
            LrSchedule::Noam {
                d_model,
                warmup,
                factor,
            } => {
                let s = (step + 1) as f32;
                factor
                    * (d_model as f32).powf(-0.5)
                    * s.powf(-0.5).min(s * (warmup as f32).powf(-1.5))
            }
        }
    }
}
