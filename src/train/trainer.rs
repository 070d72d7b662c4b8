//! The trainer: a model, AdamW and the random streams, one optimisation
//! step at a time, saved and resumed bit-exactly.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::TrainConfig;
use super::data_parallel::forward_backward;
use super::memory::check_step_fits;
use crate::checkpoint::Checkpoint;
use crate::models::{Batch, MODEL_CONFIG_KEY, Persist, Trainable, batch_losses};
use crate::optim::{
    Adam, AdamConfig, Optimizer, ParamGroup, clip_coefficient, decay_groups, grad_norm,
};
use crate::{DType, Device, Error, Result, Tensor, no_grad};

/// What one step did, for logging. The loss and norm are zero-dimensional
/// tensors on the model's device: reading one (`stats.loss.item()`) waits
/// for the step to finish, so read them when they are logged (nanoGPT's
/// `loss.item()` at its log interval).
#[derive(Clone, Debug)]
pub struct StepStats {
    /// The step's mean loss over its micro-batches.
    pub loss: Tensor,
    /// The learning rate it used.
    pub lr: f32,
    /// The gradients' joint norm before clipping.
    pub grad_norm: Tensor,
}

/// A model being trained, with everything a bit-exact resume needs: any
/// [`Trainable`] model, AdamW with decoupled weight decay on matrices, the
/// warmup-cosine schedule, and the random streams that draw training and
/// evaluation batches. The model is built first, on the device it trains
/// on (`config.init(&device, seed)`), and handed over.
///
/// ```
/// use zeroformer::prelude::*;
/// use zeroformer::models::{EncoderDecoder, EncoderDecoderConfig};
/// use zeroformer::train::{TrainConfig, Trainer};
/// let config = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 8)?;
/// let model = config.init(&Device::Cpu, 0)?;
/// let mut trainer = Trainer::new(model, TrainConfig::nanogpt_cpu(10))?;
/// // A batch source draws from the trainer's data stream; the trainer moves
/// // each batch to the model's device.
/// let stats = trainer.train_step_with(|rng| {
///     let ids: Vec<i64> = (0..8).map(|_| rng.gen_range(2..12)).collect();
///     let t = Tensor::from_ids(ids, &[2, 4]);
///     (t.clone(), t.clone(), t)
/// })?;
/// assert!(stats.loss.item() > 0.0);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub struct Trainer<M: Trainable> {
    /// The model.
    pub model: M,
    /// AdamW over the model's parameters.
    pub optimizer: Adam,
    /// The recipe.
    pub config: TrainConfig,
    /// Steps taken.
    pub step: usize,
    /// Into how many shards each micro-batch is cut, run side by side on
    /// the pool's threads, one thread each (data parallel; see
    /// [`forward_backward`]). `None` (the default): one per pool thread,
    /// at most one per example. `Some(1)` runs the batch whole, its
    /// kernels split across the threads instead.
    pub shards: Option<usize>,
    /// The lowest validation loss seen so far (infinity before the first
    /// evaluation): which checkpoint is the best, kept across resumes.
    pub best_val_loss: f32,
    /// Every how many steps [`train_step_with`](Self::train_step_with)
    /// reads back whether a step diverged ([`check_finite`](Self::check_finite)).
    /// 1 (the default) checks every step, which costs nothing on the CPU;
    /// on a GPU each check waits for the step to finish, so set it to the
    /// logging interval. Either way a non-finite step is never applied.
    pub check_every: usize,
    /// `[first non-finite step, its loss, its gradient norm]` on the
    /// model's device (the step 0 while none was), kept there between checks.
    divergence: Option<Tensor>,
    data_rng: ChaCha8Rng,
    /// The stream [`estimate_loss_with`](Self::estimate_loss_with) draws
    /// its batches from, saved with the rest, so that estimates after a
    /// resume are the ones an uninterrupted run makes.
    eval_rng: ChaCha8Rng,
}

/// The seeds of a trainer's streams, from its config's seed.
const DATA_STREAM: u64 = 1;
const EVAL_STREAM: u64 = 0xe7a1;

impl<M: Trainable> Trainer<M> {
    /// A trainer for `model` as built, on its device (its parameters in two
    /// AdamW groups, matrices decayed and the rest not, or in one decayed
    /// group with [`TrainConfig::decay_all`]). The config is validated, and
    /// a step's memory checked against what the device has
    /// ([`memory::check_step_fits`](super::memory::check_step_fits)) before
    /// any step allocates.
    pub fn new(model: M, config: TrainConfig) -> Result<Trainer<M>> {
        config.validate()?;
        check_step_fits(&model, &config)?;
        let adam = AdamConfig {
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            ..AdamConfig::adamw(config.max_lr)
        };
        let groups = if config.decay_all {
            vec![ParamGroup {
                params: model.named_parameters(),
                weight_decay: config.weight_decay,
            }]
        } else {
            decay_groups(model.named_parameters(), config.weight_decay)
        };
        let optimizer = Adam::new(groups, adam);
        let data_rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(DATA_STREAM));
        let eval_rng = ChaCha8Rng::seed_from_u64(config.seed ^ EVAL_STREAM);
        Ok(Trainer {
            model,
            optimizer,
            config,
            step: 0,
            shards: None,
            best_val_loss: f32::INFINITY,
            check_every: 1,
            divergence: None,
            data_rng,
            eval_rng,
        })
    }

    /// Changes the recipe of a trainer (a resumed run given new settings).
    /// The new config is validated and its step's memory checked; the
    /// learning rates, warmup, decay length, clip, batch size and
    /// accumulation take effect from the next step (a new `decay_steps`
    /// re-plans the cosine decay from where the run stands); betas and
    /// weight decay go to the optimizer. The seed cannot change: the
    /// random streams it started are part of the state.
    pub fn set_config(&mut self, config: TrainConfig) -> Result<()> {
        config.validate()?;
        if config.decay_all != self.config.decay_all {
            return Err(Error::InvalidConfig(
                "decay_all cannot change when a run continues: the optimizer's parameter groups are part of its state".into(),
            ));
        }
        if config.seed != self.config.seed {
            return Err(Error::InvalidConfig(format!(
                "the seed cannot change when a run continues ({} -> {}): its random streams are restored from the checkpoint",
                self.config.seed, config.seed
            )));
        }
        check_step_fits(&self.model, &config)?;
        self.optimizer.config.beta1 = config.beta1;
        self.optimizer.config.beta2 = config.beta2;
        self.optimizer.config.eps = config.eps;
        // Group 0 is the one `decay_groups` decays.
        self.optimizer.set_weight_decay(0, config.weight_decay);
        self.config = config;
        Ok(())
    }

    /// One optimisation step: `grad_accum` micro-batches drawn by
    /// `next_batch` from the trainer's data stream (and moved to the
    /// model's device, where they are not there already), each forward and
    /// backward data parallel in [`shards`](Self::shards) (see
    /// [`forward_backward`]; the forward under
    /// [`autocast`](crate::autocast) when the config's
    /// [`precision`](TrainConfig::precision) is bf16), then the gradient clip and AdamW at the
    /// scheduled learning rate, folded into one update on the model's
    /// device: nothing is read back to the host, except every
    /// [`check_every`](Self::check_every) steps whether one diverged.
    ///
    /// A loss that is NaN or infinite, or a gradient norm that is or whose
    /// square is (from 1.8e19), makes the step's update a no-op on the
    /// device, and every update after it until the check: the model and
    /// optimizer stay as the step before left them. The check then returns
    /// [`Error::Diverged`] naming that step and winds [`step`](Self::step)
    /// back to just before it. A batch that cannot be moved to the model's
    /// device is an error, and the step is not taken.
    pub fn train_step_with(
        &mut self,
        next_batch: impl FnMut(&mut ChaCha8Rng) -> M::Batch + Send,
    ) -> Result<StepStats> {
        // The step's one entry into the device: on the CPU, its thousands of
        // kernels are then issued from a pool worker (see `Device::scope`).
        let device = self.model.device();
        let stats = device.scope(|| self.take_step(&device, next_batch))?;
        if self.step.is_multiple_of(self.check_every.max(1)) {
            self.check_finite()?;
        }
        Ok(stats)
    }

    /// The step itself, inside the device's scope.
    fn take_step(
        &mut self,
        device: &Device,
        mut next_batch: impl FnMut(&mut ChaCha8Rng) -> M::Batch,
    ) -> Result<StepStats> {
        let batches = (0..self.config.grad_accum)
            .map(|_| next_batch(&mut self.data_rng).to_device(device))
            .collect::<Result<Vec<_>>>()?;
        let lr = self.config.lr_at(self.step);
        self.optimizer.set_lr(lr);
        let accum = self.config.grad_accum;
        let mut loss_sum: Option<Tensor> = None;
        for batch in batches {
            // Each micro-batch contributes 1/accum of the mean gradient.
            let weight = 1.0 / accum as f32;
            let precision = self.config.precision.dtype();
            let loss = crate::autocast(precision, || {
                forward_backward(&self.model, &batch, weight, self.shards)
            });
            loss_sum = Some(match loss_sum {
                Some(sum) => sum.add(&loss),
                None => loss,
            });
        }
        let loss = no_grad(|| {
            let sum = loss_sum.expect("grad_accum is at least 1");
            if accum == 1 {
                sum
            } else {
                sum.mul_scalar(1.0 / accum as f32)
            }
        });
        let params = self.model.parameters();
        let (grad_norm, scale) = no_grad(|| {
            let norm = grad_norm(&params);
            let coef = if self.config.grad_clip > 0.0 {
                clip_coefficient(&norm, self.config.grad_clip)
            } else {
                norm.scalar_like(1.0)
            };
            let scale = self.record_divergence(&loss, &norm, coef);
            (norm, scale)
        });
        self.optimizer.step_scaled(&scale);
        self.optimizer.zero_grad();
        self.step += 1;
        Ok(StepStats {
            loss,
            lr,
            grad_norm,
        })
    }

    /// Notes on the device whether this step is the first non-finite one
    /// since the last check, and returns the gradient scale for the update:
    /// `coef`, or NaN (no update) from that step on.
    fn record_divergence(&mut self, loss: &Tensor, norm: &Tensor, coef: Tensor) -> Tensor {
        let as_f32 = |b: Tensor| b.to_dtype(DType::F32);
        // A norm whose square overflows f32 would leave Adam's second
        // moment infinite, and no checkpoint could be written again.
        let finite = as_f32(loss.abs().lt(&loss.scalar_like(f32::INFINITY)))
            .mul(&as_f32(norm.lt(&norm.scalar_like(f32::MAX.sqrt()))));
        let record = self
            .divergence
            .take()
            .unwrap_or_else(|| loss.zeros_like_shape(&[3]));
        let this_step = Tensor::stack(&[&loss.scalar_like((self.step + 1) as f32), loss, norm], 0);
        // First bad step: none recorded yet (step 0) and this one not finite.
        let clean = as_f32(record.narrow(0, 0, 1).eq(&record.scalar_like(0.0)));
        let first = clean
            .mul(&finite.neg().add_scalar(1.0))
            .gt(&record.scalar_like(0.0));
        let record = Tensor::where_cond(&first, &this_step, &record);
        let skip = record
            .narrow(0, 0, 1)
            .ne(&record.scalar_like(0.0))
            .reshape(&[]);
        let scale = Tensor::where_cond(&skip, &coef.scalar_like(f32::NAN), &coef);
        self.divergence = Some(record);
        scale
    }

    /// Reads back whether a step since the last check was not finite. If
    /// one was, its update and every later one were skipped: the trainer
    /// winds [`step`](Self::step) (and the optimizer's count) back to just
    /// before it, clears the gradients, and returns [`Error::Diverged`]
    /// naming it. [`train_step_with`](Self::train_step_with) calls this
    /// every [`check_every`](Self::check_every) steps.
    pub fn check_finite(&mut self) -> Result<()> {
        let Some(diverged) = self.pending_divergence() else {
            return Ok(());
        };
        let Error::Diverged { step, .. } = diverged else {
            unreachable!("pending_divergence gives Diverged")
        };
        self.divergence = None;
        self.step = step - 1;
        self.optimizer.set_steps((step - 1) as u64);
        self.optimizer.zero_grad();
        Err(diverged)
    }

    /// The divergence recorded on the device and not yet reported, if any.
    fn pending_divergence(&self) -> Option<Error> {
        let record = self.divergence.as_ref()?.to_vec();
        (record[0] != 0.0).then(|| Error::Diverged {
            step: record[0] as usize,
            loss: record[1],
            grad_norm: record[2],
        })
    }

    /// Mean loss over `batches` batches drawn by `next_batch` from the
    /// trainer's evaluation stream (seeded from the config's seed, saved in
    /// checkpoints) and moved to the model's device. The batches are drawn
    /// first, in order, then evaluated side by side on the pool's threads
    /// (see [`batch_losses`](super::batch_losses)), in
    /// [`eval_mode`](crate::eval_mode) and the config's
    /// [`precision`](TrainConfig::precision).
    pub fn estimate_loss_with(
        &mut self,
        batches: usize,
        mut next_batch: impl FnMut(&mut ChaCha8Rng) -> M::Batch,
    ) -> Result<f32> {
        let device = self.model.device();
        let drawn = (0..batches)
            .map(|_| next_batch(&mut self.eval_rng).to_device(&device))
            .collect::<Result<Vec<_>>>()?;
        let precision = self.config.precision.dtype();
        let losses =
            crate::eval_mode(|| crate::autocast(precision, || batch_losses(&self.model, &drawn)));
        let total: f32 = losses.iter().sum();
        Ok(total / batches as f32)
    }
}

impl<M: Trainable + Persist> Trainer<M> {
    /// Saves model, optimizer, step, both RNG streams, the configs and
    /// `extra` metadata (e.g. the tokenizer) to `path`, atomically. (For
    /// the weights alone, save the model: `trainer.model.save(path)`.)
    pub fn save(&self, path: impl AsRef<Path>, extra: &[(&str, String)]) -> Result<()> {
        // The weights hold no skipped step, but `step` would count it.
        if let Some(diverged) = self.pending_divergence() {
            return Err(diverged);
        }
        let mut ckpt = Checkpoint::default();
        ckpt.add_module("model.", &self.model);
        ckpt.add_optimizer("optim.", &self.optimizer);
        ckpt.set_meta("step", self.step.to_string());
        ckpt.set_rng("rng.data", &self.data_rng);
        ckpt.set_rng("rng.eval", &self.eval_rng);
        ckpt.set_meta("best_val_loss", self.best_val_loss.to_string());
        if let Some(rng) = self.model.dropout_rng() {
            ckpt.set_shared_rng("rng.dropout", rng);
        }
        ckpt.set_meta(
            MODEL_CONFIG_KEY,
            serde_json::to_string(self.model.config()).expect("config serialises"),
        );
        ckpt.set_meta(
            "train_config",
            serde_json::to_string(&self.config).expect("config serialises"),
        );
        for (k, v) in extra {
            ckpt.set_meta(*k, v.clone());
        }
        ckpt.save(path)
    }

    /// Rebuilds a trainer from a checkpoint written by [`save`](Self::save),
    /// its model on `device` (name the model type:
    /// `Trainer::<Gpt>::resume(path, &device)`). Returns it
    /// with the checkpoint, whose other metadata (the tokenizer) the caller
    /// may need. Before anything is allocated, the model config is checked
    /// against the tensors the file holds (their count of numbers, then
    /// every name and shape) and the training config is validated, its
    /// step's memory checked; the step must agree with the optimizer's. A
    /// checkpoint without an evaluation stream or best loss (one written
    /// without them) starts them afresh.
    pub fn resume(path: impl AsRef<Path>, device: &Device) -> Result<(Trainer<M>, Checkpoint)> {
        let path = path.as_ref();
        let ckpt = Checkpoint::load(path)?;
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let config: TrainConfig = serde_json::from_str(ckpt.require_meta("train_config")?)
            .map_err(|e| bad(format!("train_config: {e}")))?;
        config
            .validate()
            .map_err(|e| bad(format!("train_config: {e}")))?;
        let step: usize = ckpt
            .require_meta("step")?
            .parse()
            .map_err(|e| bad(format!("step: {e}")))?;
        let optimizer_steps = ckpt.require_meta("optim.step")?;
        if optimizer_steps != step.to_string() {
            return Err(bad(format!(
                "optim.step {optimizer_steps} differs from step {step}"
            )));
        }
        let model = M::from_checkpoint(&ckpt, "model.", device)?;
        let mut trainer = Trainer::new(model, config)?;
        ckpt.load_optimizer("optim.", &mut trainer.optimizer)?;
        if let Some(rng) = trainer.model.dropout_rng() {
            ckpt.load_shared_rng("rng.dropout", rng)?;
        }
        trainer.data_rng = ckpt.rng("rng.data")?;
        if ckpt.meta("rng.eval").is_some() {
            trainer.eval_rng = ckpt.rng("rng.eval")?;
        }
        if let Some(best) = ckpt.meta("best_val_loss") {
            trainer.best_val_loss = best
                .parse()
                .ok()
                .filter(|b: &f32| !b.is_nan())
                .ok_or_else(|| bad(format!("best_val_loss '{best}' is not a number")))?;
        }
        trainer.step = step;
        Ok((trainer, ckpt))
    }
}
