//! How a GPT trains: its loss and memory for the
//! [`Trainer`](crate::train::Trainer), and the evaluation on a split.

use super::Gpt;
use crate::Tensor;
use crate::data;
use crate::models::{Trainable, mean_loss};
use crate::nn::{Module, SharedRng};

/// `(inputs, targets)`: `[batch, time]` ids and the next token of each.
impl Trainable for Gpt {
    type Batch = (Tensor, Tensor);

    /// The next-token cross-entropy, plus [`Gpt::router_loss`] for a
    /// model with experts (evaluation reports the cross-entropy alone).
    fn loss(&self, (inputs, targets): &Self::Batch) -> Tensor {
        let out = self.forward(inputs, Default::default());
        let loss = Gpt::loss(&out.logits, targets);
        match self.router_loss(&out.routing) {
            Some(router) => loss.add(&router),
            None => loss,
        }
    }

    /// The cross-entropy alone.
    fn evaluation_loss(&self, (inputs, targets): &Self::Batch) -> Tensor {
        Gpt::loss(&self.forward(inputs, Default::default()).logits, targets)
    }

    fn dropout_rng(&self) -> Option<&SharedRng> {
        Some(Gpt::dropout_rng(self))
    }

    fn loss_weight(&self, (_, targets): &Self::Batch) -> usize {
        targets.numel()
    }

    fn max_len(&self) -> Option<usize> {
        Some(self.config.block_size)
    }

    fn activations_per_token(&self, window: usize) -> Option<u64> {
        self.config.activations_per_token(window)
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
