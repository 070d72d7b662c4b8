//! The data-parallel forward and backward of one micro-batch: whole
//! sequences per shard, each shard on its own thread with its own graph,
//! and the shards' gradients summed in a fixed order.

use std::collections::HashMap;

use crate::autograd::{self, add_in_place_if_unique};
use crate::models::{Batch, Trainable};
use crate::{Tensor, no_grad};

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
/// its batch whole ([`Module::draws_randomly`](crate::nn::Module::draws_randomly)): its masks come from one
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
            autograd::leaf_gradients(&loss, seed),
        )
    });
    let (losses, grads): (Vec<Tensor>, Vec<_>) = per_shard.into_iter().unzip();
    accumulate_shard_gradients(&device, grads);
    no_grad(|| {
        losses
            .into_iter()
            .reduce(|a, b| a.add(&b))
            .expect("at least one shard")
    })
}

/// Adds the data-parallel shards' gradients (from `autograd::leaf_gradients`, one
/// list per shard, in shard order) to their leaves' `grad`: each leaf's
/// gradients summed in shard order, so that the result does not depend on
/// which shard finished first, into the first shard's buffer; the leaves
/// side by side on `device`.
fn accumulate_shard_gradients(device: &crate::Device, per_shard: Vec<Vec<(Tensor, Tensor)>>) {
    let mut per_leaf: Vec<(Tensor, Vec<Tensor>)> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for (leaf, grad) in per_shard.into_iter().flatten() {
        match index.get(&leaf.id()) {
            Some(&i) => per_leaf[i].1.push(grad),
            None => {
                index.insert(leaf.id(), per_leaf.len());
                per_leaf.push((leaf, vec![grad]));
            }
        }
    }
    device.map_parts(per_leaf, |(leaf, grads)| {
        let mut grads = grads.into_iter();
        let first = grads.next().expect("one gradient per shard");
        leaf.accumulate_grad(grads.fold(first, |sum, g| add_in_place_if_unique(sum, &g)));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use crate::models::batch_losses;
    use crate::nn::Module;
    use crate::train::{TrainConfig, Trainer};
    use crate::{Gpt, GptConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn trainer(dropout: f32, shards: usize) -> Trainer<Gpt> {
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
        let train = TrainConfig::nanogpt_cpu(10);
        let model = model.init(&crate::Device::Cpu, train.seed).unwrap();
        let mut t = Trainer::new(model, train).unwrap();
        t.shards = Some(shards);
        t
    }

    /// Every parameter's gradient after one `forward_backward` of the same
    /// batch, and the loss it returned.
    fn gradients(t: &Trainer<Gpt>, weight: f32) -> (f32, Vec<Vec<f32>>) {
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
            .map(|(x, y)| {
                no_grad(|| Gpt::loss(&t.model.forward(x, Default::default()).logits, y).item())
            })
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
