//! The GPT training loop's pieces, kept small enough to read in one go (as
//! nanoGPT's train.py): a [`Trainer`] that owns the model, the AdamW
//! optimizer and the data sampler's RNG and takes one optimisation step at a
//! time, checkpoints that resume bit-exactly, and whole-split evaluation.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::data;
use crate::models::{Gpt, GptConfig};
use crate::nn::Module;
use crate::optim::{
    Adam, AdamConfig, LrSchedule, Optimizer, clip_grad_norm, decay_groups, grad_norm,
};
use crate::{Error, Result, Tensor, no_grad};

/// The optimisation recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Micro-batches per step; their gradients are averaged.
    pub grad_accum: usize,
    pub max_lr: f32,
    pub min_lr: f32,
    pub warmup: usize,
    /// Steps over which the learning rate decays to `min_lr` (usually the run's length).
    pub decay_steps: usize,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f32,
    pub seed: u64,
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
        Ok(())
    }

    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::WarmupCosine {
            max_lr: self.max_lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            decay_steps: self.decay_steps,
        }
    }
}

/// About how many bytes training `model` with `config` holds at the peak
/// of a step (`None` if that overflows): parameters, gradients and both
/// AdamW moments, a gradient buffer per data-parallel shard, and one
/// micro-batch's activations kept for backward (per token, about 18 widths
/// per layer, a few at the ends, and three vocabulary-wide rows for the
/// logits, their log-probabilities and gradient). The fused attention
/// keeps no `time x time` matrix.
pub fn step_memory(model: &GptConfig, config: &TrainConfig) -> Option<u64> {
    let params = model.parameter_count()?;
    let shards = crate::Device::default()
        .parallelism()
        .min(config.batch_size) as u64;
    let state = params.checked_mul(4 + shards)?;
    let (c, l, v) = (
        model.n_embd as u64,
        model.n_layer as u64,
        model.vocab_size as u64,
    );
    let per_token = l
        .checked_mul(18)?
        .checked_mul(c)?
        .checked_add(c.checked_mul(4)?)?
        .checked_add(v.checked_mul(3)?)?;
    let tokens = (config.batch_size as u64).checked_mul(model.block_size as u64)?;
    tokens
        .checked_mul(per_token)?
        .checked_add(state)?
        .checked_mul(4)
}

/// What one step did, for logging.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    pub loss: f32,
    pub lr: f32,
    /// The gradients' joint norm before clipping.
    pub grad_norm: f32,
}

/// A model being trained, with everything a bit-exact resume needs.
pub struct Trainer {
    pub model: Gpt,
    pub optimizer: Adam,
    pub config: TrainConfig,
    /// Steps taken.
    pub step: usize,
    /// Into how many shards each micro-batch is cut, run side by side on
    /// the pool's threads, one thread each (data parallel; see
    /// [`train_step`](Self::train_step)). `None` (the default): one per
    /// pool thread, at most one per sequence. `Some(1)` runs the batch
    /// whole, its kernels split across the threads instead.
    pub shards: Option<usize>,
    /// The lowest validation loss seen so far (infinity before the first
    /// evaluation): which checkpoint is the best, kept across resumes.
    pub best_val_loss: f32,
    data_rng: ChaCha8Rng,
    /// The stream [`estimate_loss`](Self::estimate_loss) draws its batches
    /// from, saved with the rest, so that estimates after a resume are the
    /// ones an uninterrupted run makes.
    eval_rng: ChaCha8Rng,
}

/// The seeds of a trainer's streams, from its config's seed.
const DATA_STREAM: u64 = 1;
const EVAL_STREAM: u64 = 0xe7a1;

impl Trainer {
    /// A fresh model (initialised from `config.seed`) and optimizer. Both
    /// configs are validated, and the step's memory
    /// ([`step_memory`]) is checked against what the machine has before
    /// anything is allocated.
    pub fn new(model_config: GptConfig, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        model_config.validate()?;
        check_step_fits(&model_config, &config)?;
        let model = Gpt::new(model_config, config.seed)?;
        let adam = AdamConfig {
            beta1: config.beta1,
            beta2: config.beta2,
            ..AdamConfig::adamw(config.max_lr)
        };
        let optimizer = Adam::new(
            decay_groups(model.named_parameters(), config.weight_decay),
            adam,
        );
        let data_rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(DATA_STREAM));
        let eval_rng = ChaCha8Rng::seed_from_u64(config.seed ^ EVAL_STREAM);
        Ok(Trainer {
            model,
            optimizer,
            config,
            step: 0,
            shards: None,
            best_val_loss: f32::INFINITY,
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
        if config.seed != self.config.seed {
            return Err(Error::InvalidConfig(format!(
                "the seed cannot change when a run continues ({} -> {}): its random streams are restored from the checkpoint",
                self.config.seed, config.seed
            )));
        }
        check_step_fits(&self.model.config, &config)?;
        self.optimizer.config.beta1 = config.beta1;
        self.optimizer.config.beta2 = config.beta2;
        // Group 0 is the one `decay_groups` decays.
        self.optimizer.set_weight_decay(0, config.weight_decay);
        self.config = config;
        Ok(())
    }

    /// One optimisation step on random windows of `tokens`: forward and
    /// backward over `grad_accum` micro-batches, clip, AdamW at the
    /// scheduled learning rate.
    /// Each micro-batch runs data parallel, in [`shards`](Self::shards)
    /// (see [`forward_backward`]).
    ///
    /// A loss that is NaN or infinite, or a gradient norm that is or whose
    /// square is (from 1.8e19), is [`Error::Diverged`]: the update is not
    /// applied (the model and
    /// optimizer stay as the previous step left them, the gradients are
    /// cleared) and [`step`](Self::step) does not advance.
    pub fn train_step(&mut self, tokens: &[i64]) -> Result<StepStats> {
        // The whole step in the device's scope, loss and clip included (the
        // forward, backward and AdamW would each enter it anyway).
        self.model
            .device()
            .scope(|| self.train_step_in_place(tokens))
    }

    fn train_step_in_place(&mut self, tokens: &[i64]) -> Result<StepStats> {
        let context = self.model.config.block_size;
        let lr = self.config.schedule().lr_at(self.step);
        self.optimizer.set_lr(lr);
        self.model.set_training(true);
        let accum = self.config.grad_accum;
        let mut loss_sum = 0.0;
        for _ in 0..accum {
            let (x, y) =
                data::random_batch(tokens, self.config.batch_size, context, &mut self.data_rng);
            // Each micro-batch contributes 1/accum of the mean gradient.
            let weight = 1.0 / accum as f32;
            loss_sum += forward_backward(&self.model, &x, &y, weight, self.shards);
        }
        let loss = loss_sum / accum as f32;
        let params = self.model.parameters();
        let grad_norm = if self.config.grad_clip > 0.0 {
            clip_grad_norm(&params, self.config.grad_clip)
        } else {
            grad_norm(&params)
        };
        // A norm whose square overflows f32 would leave Adam's second
        // moment infinite, and no checkpoint could be written again.
        if !(loss.is_finite() && grad_norm < f32::MAX.sqrt()) {
            self.optimizer.zero_grad();
            return Err(Error::Diverged {
                step: self.step + 1,
                loss,
                grad_norm,
            });
        }
        self.optimizer.step();
        self.optimizer.zero_grad();
        self.step += 1;
        Ok(StepStats {
            loss,
            lr,
            grad_norm,
        })
    }

    /// Mean loss over `batches` random batches of `tokens` (nanoGPT's
    /// estimate_loss), drawn from the trainer's evaluation stream (seeded
    /// from the config's seed, saved in checkpoints). The batches are drawn
    /// first, in order, then evaluated side by side on the pool's threads
    /// (see [`batch_losses`]), in [`eval_mode`](crate::eval_mode): the
    /// model's training flag is left as it was.
    pub fn estimate_loss(&mut self, tokens: &[i64], batches: usize) -> f32 {
        let context = self.model.config.block_size;
        let (batch_size, rng) = (self.config.batch_size, &mut self.eval_rng);
        let drawn: Vec<_> = (0..batches)
            .map(|_| data::random_batch(tokens, batch_size, context, rng))
            .collect();
        let total: f32 = crate::eval_mode(|| batch_losses(&self.model, &drawn))
            .iter()
            .sum();
        total / batches as f32
    }

    /// Saves model, optimizer, step, both RNG streams, the configs and
    /// `extra` metadata (e.g. the tokenizer) to `path`, atomically.
    pub fn save(&self, path: impl AsRef<Path>, extra: &[(&str, String)]) -> Result<()> {
        let mut ckpt = Checkpoint::default();
        ckpt.add_module("model.", &self.model);
        ckpt.add_optimizer("optim.", &self.optimizer);
        ckpt.set_meta("step", self.step.to_string());
        ckpt.set_rng("rng.data", &self.data_rng);
        ckpt.set_rng("rng.eval", &self.eval_rng);
        ckpt.set_meta("best_val_loss", self.best_val_loss.to_string());
        ckpt.set_shared_rng("rng.dropout", self.model.dropout_rng());
        ckpt.set_meta(
            "model_config",
            serde_json::to_string(&self.model.config).expect("config serialises"),
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

    /// Rebuilds a trainer from a checkpoint written by [`save`](Self::save).
    /// Returns it with the checkpoint, whose other metadata (the tokenizer)
    /// the caller may need. Before anything is allocated, the model config
    /// is checked against the tensors the file holds
    /// ([`GptConfig::from_checkpoint`]) and the training config is
    /// validated, its step's memory checked; the step must agree with the
    /// optimizer's. A checkpoint without an
    /// evaluation stream or best loss (from an earlier version) starts
    /// them afresh.
    pub fn resume(path: impl AsRef<Path>) -> Result<(Trainer, Checkpoint)> {
        let path = path.as_ref();
        let ckpt = Checkpoint::load(path)?;
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let model_config = GptConfig::from_checkpoint(&ckpt, "model.")?;
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
        let mut trainer = Trainer::new(model_config, config)?;
        ckpt.load_module("model.", &trainer.model)?;
        ckpt.load_optimizer("optim.", &mut trainer.optimizer)?;
        ckpt.load_shared_rng("rng.dropout", trainer.model.dropout_rng())?;
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

/// [`step_memory`] against what the machine has, as an error a user can act on.
fn check_step_fits(model: &GptConfig, config: &TrainConfig) -> Result<()> {
    let what = format!(
        "a training step of batch {} x context {} on a model of {} parameters (lower the batch size; gradient accumulation keeps the effective batch)",
        config.batch_size,
        model.block_size,
        model.parameter_count().unwrap_or(u64::MAX)
    );
    let bytes = step_memory(model, config).unwrap_or(u64::MAX);
    crate::Device::default().check_fits(bytes, &what)
}

/// Forward and backward of `model` on one batch of `inputs` and `targets`
/// (`[batch, time]` ids): adds `weight` times the gradient of the batch's
/// mean loss to every parameter's gradient, and returns that mean loss.
///
/// The batch is cut into `shards` runs of whole sequences (`None`: one per
/// pool thread, at most one per sequence), forwarded and back-propagated
/// side by side ([`Device::map_parts`](crate::Device::map_parts): on the
/// CPU, one pool thread each with one-thread kernels). Each shard's
/// loss is weighted by its share of the batch, and the shards' gradients
/// are summed in shard order, so a run is reproducible for a given shard
/// count. Why: a small model's matrix products are too small to split well
/// across threads (each thread packs the same operand again, and waits for
/// the others at every kernel), while whole sequences per thread keep every
/// thread busy until the gradients are summed. A model with dropout runs
/// its batch whole: its masks come from one stream, drawn in order.
///
/// ```
/// use zeroformer::{Gpt, GptConfig, Tensor};
/// use zeroformer::nn::Module;
/// use zeroformer::train::forward_backward;
///
/// let config = GptConfig { vocab_size: 10, block_size: 4, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false };
/// let model = Gpt::new(config, 0).unwrap();
/// let x = Tensor::from_ids(vec![1, 2, 3, 4, 5, 6, 7, 8], &[2, 4]);
/// let y = Tensor::from_ids(vec![2, 3, 4, 5, 6, 7, 8, 9], &[2, 4]);
/// let loss = forward_backward(&model, &x, &y, 1.0, Some(2));
/// assert!(loss > 0.0);
/// assert!(model.parameters().iter().all(|p| p.grad().is_some()));
/// ```
pub fn forward_backward(
    model: &Gpt,
    inputs: &Tensor,
    targets: &Tensor,
    weight: f32,
    shards: Option<usize>,
) -> f32 {
    let batch = inputs.shape()[0];
    let device = model.device();
    let shards = if model.config.dropout > 0.0 {
        1
    } else {
        shards
            .unwrap_or_else(|| device.parallelism())
            .clamp(1, batch)
    };
    if shards == 1 {
        let loss = Gpt::loss(&model.forward(inputs), targets);
        loss.backward_with(&loss.full_like(weight));
        return loss.item();
    }
    let parts: Vec<usize> = (0..shards).collect();
    let per_shard = device.map_parts(parts, |shard| {
        let (start, end) = (shard * batch / shards, (shard + 1) * batch / shards);
        // The shard's share of the batch mean.
        let share = (end - start) as f32 / batch as f32;
        let rows = |t: &Tensor| t.narrow(0, start, end - start);
        let loss = Gpt::loss(&model.forward(&rows(inputs)), &rows(targets));
        let seed = loss.full_like(weight * share);
        (
            loss.item() * share,
            crate::autograd::leaf_gradients(&loss, seed),
        )
    });
    let (losses, grads): (Vec<f32>, Vec<_>) = per_shard.into_iter().unzip();
    crate::autograd::accumulate_shard_gradients(&device, grads);
    losses.iter().sum()
}

/// The mean loss of `model` over all of `tokens`, in non-overlapping windows
/// of its context (every target counted once, whatever the sampling): the
/// figure the Shakespeare target is stated in. Runs in
/// [`eval_mode`](crate::eval_mode), leaving the model's mode as it was.
pub fn evaluate(model: &Gpt, tokens: &[i64], batch: usize) -> f32 {
    let _eval = crate::EvalModeGuard::new();
    let context = model.config.block_size;
    let windows: Vec<_> = data::sliding_windows(tokens, context, context, batch).collect();
    let (mut total, mut count) = (0.0f64, 0usize);
    for ((_, y), loss) in windows.iter().zip(batch_losses(model, &windows)) {
        total += loss as f64 * y.numel() as f64;
        count += y.numel();
    }
    (total / count.max(1) as f64) as f32
}

/// The mean loss of each `(inputs, targets)` batch, without gradients. The
/// batches run side by side, one pool thread each with one-thread kernels,
/// as a training step's shards do: a forward of a small model splits
/// poorly across threads, a list of them splits perfectly. Each loss is
/// computed whole on one thread, whichever thread that is.
pub fn batch_losses(model: &Gpt, batches: &[(Tensor, Tensor)]) -> Vec<f32> {
    model
        .device()
        .map_parts(batches.iter().collect(), |(x, y)| {
            no_grad(|| Gpt::loss(&model.forward(x), y).item())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trainer(dropout: f32, shards: usize) -> Trainer {
        let model = GptConfig {
            vocab_size: 11,
            block_size: 8,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            dropout,
            bias: true,
        };
        let mut t = Trainer::new(model, TrainConfig::nanogpt_cpu(10)).unwrap();
        t.shards = Some(shards);
        t
    }

    /// Every parameter's gradient after one `forward_backward` of the same
    /// batch, and the loss it returned.
    fn gradients(t: &Trainer, weight: f32) -> (f32, Vec<Vec<f32>>) {
        let tokens: Vec<i64> = (0..200).map(|i| (i * 7 % 11) as i64).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (x, y) = data::random_batch(&tokens, 5, 8, &mut rng);
        let loss = forward_backward(&t.model, &x, &y, weight, t.shards);
        let grads = t
            .model
            .parameters()
            .iter()
            .map(|p| p.grad().expect("every parameter gets a gradient").to_vec())
            .collect();
        (loss, grads)
    }

    fn assert_close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1e-2),
                "{x} vs {y}"
            );
        }
    }

    #[test]
    fn shards_give_the_whole_batchs_loss_and_gradients() {
        // 5 sequences in 3 shards of 1, 2 and 2: unequal shares.
        let (whole_loss, whole) = gradients(&trainer(0.0, 1), 0.5);
        let (sharded_loss, sharded) = gradients(&trainer(0.0, 3), 0.5);
        assert_close(&[whole_loss], &[sharded_loss]);
        for (w, s) in whole.iter().zip(&sharded) {
            assert_close(w, s);
        }
        // And they are not all zero: the comparison compares something.
        assert!(whole.iter().flatten().any(|g| g.abs() > 1e-4));
    }

    #[test]
    fn sharded_gradients_are_reproducible() {
        let first = gradients(&trainer(0.0, 2), 1.0);
        for _ in 0..3 {
            assert_eq!(gradients(&trainer(0.0, 2), 1.0), first);
        }
    }

    #[test]
    fn batch_losses_are_each_batchs_loss_in_order() {
        let t = trainer(0.0, 2);
        let tokens: Vec<i64> = (0..300).map(|i| (i * i % 11) as i64).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let batches: Vec<_> = (0..7)
            .map(|_| data::random_batch(&tokens, 3, 8, &mut rng))
            .collect();
        let expected: Vec<f32> = batches
            .iter()
            .map(|(x, y)| no_grad(|| Gpt::loss(&t.model.forward(x), y).item()))
            .collect();
        let got = batch_losses(&t.model, &batches);
        assert_eq!(got.len(), expected.len());
        assert_close(&got, &expected);
        // Distinct batches, distinct losses: a reordering would show.
        assert!(expected.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn a_model_with_dropout_runs_its_batch_whole() {
        // The dropout stream is drawn in order: sharding would change which
        // masks each sequence gets.
        assert_eq!(
            gradients(&trainer(0.2, 2), 1.0),
            gradients(&trainer(0.2, 1), 1.0)
        );
    }
}
