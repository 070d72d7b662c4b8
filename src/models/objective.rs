//! What training needs of a model ([`Trainable`]: a batch type whose
//! examples can be cut into shards, the batch's mean loss, and what a step
//! holds in memory), and evaluation built on it. The trainer
//! (`crate::train`) drives it; models implement it beside themselves.

use crate::nn::Module;
use crate::nn::SharedRng;
use crate::{Device, Result, Tensor, no_grad};

/// A batch of examples, along the first dimension of each of its tensors.
pub trait Batch: Sync {
    /// How many examples it holds.
    fn len(&self) -> usize;

    /// Examples `start..start + len` (views, no copies).
    fn slice(&self, start: usize, len: usize) -> Self;

    /// The batch on `device`: itself where it is there already, else a
    /// copy (what the trainer does with each batch a source gives it,
    /// PyTorch's `x.to(device)`).
    fn to_device(&self, device: &Device) -> Result<Self>
    where
        Self: Sized;

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

    fn to_device(&self, device: &Device) -> Result<Self> {
        Tensor::to_device(self, device)
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

            #[allow(non_snake_case)]
            fn to_device(&self, device: &Device) -> Result<Self> {
                let ($first, $($rest,)*) = self;
                Ok(($first.to_device(device)?, $($rest.to_device(device)?,)*))
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

    /// The longest sequence the model takes, when it has one: the trainer
    /// refuses a longer `TrainConfig::context`. `None` by default.
    fn max_len(&self) -> Option<usize> {
        None
    }

    /// About how many f32 values of activations a training step holds at
    /// its peak for each token of a micro-batch of `window`-token
    /// sequences (`None`: unknown, the default; then the trainer checks
    /// nothing). The trainer adds the parameters, their gradients, Adam's
    /// moments and the data-parallel buffers (`train::memory`), and refuses
    /// a step the device cannot hold before it allocates.
    fn activations_per_token(&self, window: usize) -> Option<u64> {
        let _ = window;
        None
    }
}

/// Floats per query token that `attentions` attentions of `heads` heads
/// over `keys` keys hold when dropout composes them (the fused kernel does
/// not drop weights): about 5.5 rows of `keys` a head (the scores, the
/// weights, the dropout mask and the dropped weights, and their
/// gradients' buffers). Nothing without dropout, where attention is fused
/// and its memory is its outputs.
pub(crate) fn composed_attention(
    dropout: f32,
    attentions: usize,
    heads: usize,
    keys: usize,
) -> Option<u64> {
    if dropout <= 0.0 {
        return Some(0);
    }
    let rows = (attentions as u64)
        .checked_mul(heads as u64)?
        .checked_mul(keys as u64)?;
    Some(rows.checked_mul(11)?.div_ceil(2))
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
