//! What the trainer needs of a model ([`Trainable`]: a batch type whose
//! examples can be cut into shards, and the batch's mean loss), the
//! data-parallel forward and backward built on it, and evaluation.

use crate::nn::Module;
use crate::nn::SharedRng;
use crate::train::TrainConfig;
use crate::{Result, Tensor, no_grad};

/// A batch of examples, along the first dimension of each of its tensors.
pub trait Batch: Sync {
    /// How many examples it holds.
    fn len(&self) -> usize;

    /// Examples `start..start + len` (views, no copies).
    fn slice(&self, start: usize, len: usize) -> Self;

    /// True for a batch without examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Batch for Tensor {
    fn len(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }

    fn slice(&self, start: usize, len: usize) -> Self {
        self.narrow(0, start, len)
    }
}

macro_rules! tuple_batch {
    ($first:ident $(, $rest:ident)*) => {
        /// Tensors of one batch side by side (inputs, targets, masks): as
        /// many examples as the first holds.
        impl<$first: Batch $(, $rest: Batch)*> Batch for ($first, $($rest,)*) {
            fn len(&self) -> usize {
                self.0.len()
            }

            #[allow(non_snake_case)]
            fn slice(&self, start: usize, len: usize) -> Self {
                let ($first, $($rest,)*) = self;
                ($first.slice(start, len), $($rest.slice(start, len),)*)
            }
        }
    };
}

tuple_batch!(A, B);
tuple_batch!(A, B, C);
tuple_batch!(A, B, C, D);

/// A model the [`Trainer`](crate::train::Trainer) can train: it maps a
/// batch to its mean loss. Implement it for your own model to get
/// accumulation, clipping, the schedule, data-parallel steps and
/// evaluation; with [`Persist`](crate::models::Persist) too, checkpoints
/// and bit-exact resume.
pub trait Trainable: Module + Send + Sync {
    /// What one loss is computed from.
    type Batch: Batch;

    /// The batch's mean loss: a one-element tensor with a graph.
    fn loss(&self, batch: &Self::Batch) -> Tensor;

    /// The loss that evaluation reports ([`mean_loss`], [`batch_losses`]):
    /// the training loss by default; a model whose training adds
    /// regularisers (GPT's router losses) reports its task loss alone.
    fn evaluation_loss(&self, batch: &Self::Batch) -> Tensor {
        self.loss(batch)
    }

    /// The stream dropout draws from, saved with a checkpoint (none by
    /// default: no dropout, or a stream the model does not expose).
    fn dropout_rng(&self) -> Option<&SharedRng> {
        None
    }

    /// How much the batch's mean loss weighs in a mean over many batches
    /// ([`mean_loss`]): the number of terms it averages. Its examples by
    /// default; a model whose loss averages over tokens says so (GPT: every
    /// target).
    fn loss_weight(&self, batch: &Self::Batch) -> usize {
        batch.len()
    }

    /// Checks, before a step allocates anything, that training with
    /// `train` fits in memory (an error a user can act on). Nothing to
    /// check by default.
    fn check_step(&self, train: &TrainConfig) -> Result<()> {
        let _ = train;
        Ok(())
    }
}

/// Forward and backward of `model` on one batch (for GPT, `(inputs,
/// targets)` of `[batch, time]` ids): adds `weight` times the gradient of
/// the batch's mean loss to every parameter's gradient, and returns that
/// mean loss: a zero-dimensional tensor on the model's device, not read
/// back.
///
/// The batch is cut into `shards` runs of whole examples (`None`: one per
/// pool thread, at most one per example), forwarded and back-propagated
/// side by side ([`Device::map_parts`](crate::Device::map_parts): on the
/// CPU, one pool thread each with one-thread kernels). Each shard's
/// loss is weighted by its share of the batch, and the shards' gradients
/// are summed in shard order, so a run is reproducible for a given shard
/// count. Why: a small model's matrix products are too small to split well
/// across threads (each thread packs the same operand again, and waits for
/// the others at every kernel), while whole sequences per thread keep every
/// thread busy until the gradients are summed. A model with dropout runs
/// its batch whole ([`Module::draws_randomly`]): its masks come from one
/// stream, drawn in order.
///
/// ```
/// use zeroformer::{Device, GptConfig, Tensor};
/// use zeroformer::nn::Module;
/// use zeroformer::train::forward_backward;
///
/// let config = GptConfig { vocab_size: 10, block_size: 4, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let x = Tensor::from_ids(vec![1, 2, 3, 4, 5, 6, 7, 8], &[2, 4]);
/// let y = Tensor::from_ids(vec![2, 3, 4, 5, 6, 7, 8, 9], &[2, 4]);
/// let loss = forward_backward(&model, &(x, y), 1.0, Some(2));
/// assert!(loss.item() > 0.0);
/// assert!(model.parameters().iter().all(|p| p.grad().is_some()));
/// ```
pub fn forward_backward<M: Trainable>(
    model: &M,
    batch: &M::Batch,
    weight: f32,
    shards: Option<usize>,
) -> Tensor {
    let examples = batch.len();
    let device = model.device();
    let shards = if model.draws_randomly() {
        1
    } else {
        shards
            .unwrap_or_else(|| device.parallelism())
            .clamp(1, examples.max(1))
    };
    if shards == 1 {
        let loss = model.loss(batch);
        loss.backward_with(&loss.full_like(weight));
        return loss.detach();
    }
    let parts: Vec<usize> = (0..shards).collect();
    let per_shard = device.map_parts(parts, |shard| {
        let (start, end) = (shard * examples / shards, (shard + 1) * examples / shards);
        // The shard's share of the batch mean.
        let share = (end - start) as f32 / examples as f32;
        let loss = model.loss(&batch.slice(start, end - start));
        let seed = loss.full_like(weight * share);
        (
            no_grad(|| loss.detach().mul_scalar(share)),
            crate::autograd::leaf_gradients(&loss, seed),
        )
    });
    let (losses, grads): (Vec<Tensor>, Vec<_>) = per_shard.into_iter().unzip();
    crate::autograd::accumulate_shard_gradients(&device, grads);
    no_grad(|| {
        losses
            .into_iter()
            .reduce(|a, b| a.add(&b))
            .expect("at least one shard")
    })
}

/// The mean loss of `model` over every batch of a split (a whole validation
/// set, say), each batch weighted by [`Trainable::loss_weight`]: the mean
/// over examples (or, for GPT, over targets), whatever the batch sizes.
/// Without gradients, in [`eval_mode`](crate::eval_mode); the batches run
/// side by side as in
/// [`batch_losses`]. NaN when there are no batches.
///
/// ```
/// use zeroformer::{Device, GptConfig, Tensor};
/// use zeroformer::train::mean_loss;
///
/// let config = GptConfig { vocab_size: 10, block_size: 4, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let ids = |v: Vec<i64>, rows| Tensor::from_ids(v, &[rows, 2]);
/// let split = vec![
///     (ids(vec![1, 2, 3, 4], 2), ids(vec![2, 3, 4, 5], 2)),
///     (ids(vec![5, 6], 1), ids(vec![6, 7], 1)),
/// ];
/// let loss = mean_loss(&model, &split);
/// assert!(loss > 0.0 && loss.is_finite());
/// ```
pub fn mean_loss<M: Trainable>(model: &M, batches: &[M::Batch]) -> f32 {
    let losses = crate::eval_mode(|| batch_losses(model, batches));
    let (mut total, mut weight) = (0.0f64, 0usize);
    for (batch, loss) in batches.iter().zip(losses) {
        let w = model.loss_weight(batch);
        total += loss as f64 * w as f64;
        weight += w;
    }
    (total / weight as f64) as f32
}

/// The mean loss of each `(inputs, targets)` batch, without gradients. The
/// batches run side by side, one pool thread each with one-thread kernels,
/// as a training step's shards do: a forward of a small model splits
/// poorly across threads, a list of them splits perfectly. Each loss is
/// computed whole on one thread, whichever thread that is.
pub fn batch_losses<M: Trainable>(model: &M, batches: &[M::Batch]) -> Vec<f32> {
    let losses = model.device().map_parts(batches.iter().collect(), |batch| {
        no_grad(|| model.evaluation_loss(batch))
    });
    if losses.is_empty() {
        return Vec::new();
    }
    // One read for all of them.
    let losses: Vec<&Tensor> = losses.iter().collect();
    Tensor::stack(&losses, 0).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use crate::nn::Module;
    use crate::train::{TrainConfig, Trainer};
    use crate::{Gpt, GptConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn trainer(dropout: f32, shards: usize) -> Trainer {
        let model = GptConfig {
            vocab_size: 11,
            block_size: 8,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            dropout,
            bias: true,
            ..GptConfig::default()
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
        let (x, y) = data::random_batch(&tokens, 5, 8, &mut rng, &t.model.device());
        let loss = forward_backward(&t.model, &(x, y), weight, t.shards).item();
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
            .map(|_| data::random_batch(&tokens, 3, 8, &mut rng, &t.model.device()))
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
