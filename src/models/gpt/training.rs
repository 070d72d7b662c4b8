//! How a GPT trains: its loss for the [`Trainer`](crate::train::Trainer),
//! the trainer built from a config, and the evaluation on a split.

use super::{Gpt, GptConfig};
use crate::data;
use crate::nn::Module;
use crate::nn::SharedRng;
use crate::train::{StepStats, TrainConfig, Trainable, Trainer, mean_loss, memory};
use crate::{Device, Result, Tensor};

/// `(inputs, targets)`: `[batch, time]` ids and the next token of each.
impl Trainable for Gpt {
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

    fn dropout_rng(&self) -> Option<&SharedRng> {
        Some(Gpt::dropout_rng(self))
    }

    fn loss_weight(&self, (_, targets): &Self::Batch) -> usize {
        targets.numel()
    }

    fn check_step(&self, train: &TrainConfig) -> Result<()> {
        check_step_fits(&self.config, train, &self.device())
    }
}

impl Trainer<Gpt> {
    /// A fresh GPT (initialised from `config.seed`) and optimizer, on the
    /// default device (`device.as_default(|| Trainer::new(..))` trains on
    /// `device`). Both configs are validated, and the step's memory
    /// ([`GptConfig::step_memory`]) is checked against what the
    /// device has before anything is allocated.
    pub fn new(model_config: GptConfig, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        model_config.validate()?;
        check_step_fits(&model_config, &config, &crate::default_device())?;
        let model = Gpt::new(model_config, config.seed)?;
        Trainer::from_model(model, config)
    }

    /// One optimisation step on random windows of `tokens`, each
    /// [`TrainConfig::context`] tokens long (else the model's context; see
    /// [`train_step_with`](Self::train_step_with)).
    pub fn train_step(&mut self, tokens: &[i64]) -> Result<StepStats> {
        let batch = self.config.batch_size;
        let context = self.config.context.unwrap_or(self.model.config.block_size);
        let device = self.model.device();
        self.train_step_with(|rng| data::random_batch(tokens, batch, context, rng, &device))
    }

    /// Mean loss over `batches` random windows of `tokens` (nanoGPT's
    /// estimate_loss; see [`estimate_loss_with`](Self::estimate_loss_with)).
    pub fn estimate_loss(&mut self, tokens: &[i64], batches: usize) -> f32 {
        let batch = self.config.batch_size;
        let context = self.config.context.unwrap_or(self.model.config.block_size);
        let device = self.model.device();
        self.estimate_loss_with(batches, |rng| {
            data::random_batch(tokens, batch, context, rng, &device)
        })
    }
}

impl Gpt {
    /// The mean loss over all of `tokens`, in non-overlapping windows of
    /// the context (every target counted once, whatever the sampling): the
    /// figure the Shakespeare target is stated in. Runs in
    /// [`eval_mode`](crate::eval_mode).
    pub fn evaluate(&self, tokens: &[i64], batch: usize) -> f32 {
        let context = self.config.block_size;
        let windows: Vec<_> =
            data::sliding_windows(tokens, context, context, batch, &self.device()).collect();
        mean_loss(self, &windows)
    }
}

/// [`GptConfig::step_memory`] against what `device` has
/// ([`memory::check_step_fits`]).
fn check_step_fits(model: &GptConfig, train: &TrainConfig, device: &Device) -> Result<()> {
    memory::check_step_fits(
        train,
        model.block_size,
        model.parameter_count(),
        || model.step_memory(train, device),
        device,
    )
}
