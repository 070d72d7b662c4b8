//! Training a causal language model on a stream of tokens: each batch is
//! random windows of the stream and the next token of each position
//! (nanoGPT's `get_batch`).

use crate::data;
use crate::generation::CausalLm;
use crate::models::Trainable;
use crate::{Result, Tensor};

use super::{StepStats, Trainer};

impl<M> Trainer<M>
where
    M: Trainable<Batch = (Tensor, Tensor)> + CausalLm,
{
    /// One optimisation step on random windows of `tokens`, each
    /// [`TrainConfig::context`](super::TrainConfig::context) tokens long
    /// (else the model's context; see
    /// [`train_step_with`](Self::train_step_with)).
    pub fn train_step(&mut self, tokens: &[i64]) -> Result<StepStats> {
        let (batch, context) = self.windows();
        let device = self.model.device();
        self.train_step_with(|rng| data::random_batch(tokens, batch, context, rng, &device))
    }

    /// Mean loss over `batches` batches of random windows of `tokens`
    /// (nanoGPT's estimate_loss; see
    /// [`estimate_loss_with`](Self::estimate_loss_with)).
    pub fn estimate_loss(&mut self, tokens: &[i64], batches: usize) -> Result<f32> {
        let (batch, context) = self.windows();
        let device = self.model.device();
        self.estimate_loss_with(batches, |rng| {
            data::random_batch(tokens, batch, context, rng, &device)
        })
    }

    /// Windows per batch, and tokens per window.
    fn windows(&self) -> (usize, usize) {
        let context = self.config.context.unwrap_or(self.model.context_len());
        (self.config.batch_size, context)
    }
}
