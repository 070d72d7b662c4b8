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
use crate::optim::{Adam, AdamConfig, LrSchedule, Optimizer, clip_grad_norm, decay_groups};
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

    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::WarmupCosine {
            max_lr: self.max_lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            decay_steps: self.decay_steps,
        }
    }
}

/// What one step did, for logging.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    pub loss: f32,
    pub lr: f32,
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
    data_rng: ChaCha8Rng,
}

impl Trainer {
    /// A fresh model (initialised from `config.seed`) and optimizer.
    pub fn new(model_config: GptConfig, config: TrainConfig) -> Result<Trainer> {
        if config.batch_size == 0 || config.grad_accum == 0 {
            return Err(Error::InvalidConfig(
                "batch_size and grad_accum must be positive".into(),
            ));
        }
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
        let data_rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1));
        Ok(Trainer {
            model,
            optimizer,
            config,
            step: 0,
            shards: None,
            data_rng,
        })
    }

    /// One optimisation step on random windows of `tokens`: forward and
    /// backward over `grad_accum` micro-batches, clip, AdamW at the
    /// scheduled learning rate.
    /// Each micro-batch runs data parallel, in [`shards`](Self::shards)
    /// (see [`forward_backward`]).
    pub fn train_step(&mut self, tokens: &[i64]) -> StepStats {
        // The whole step on a pool worker, loss and clip included (see
        // `in_pool`; the forward, backward and AdamW would each go there anyway).
        crate::backend::cpu::in_pool(|| self.train_step_in_place(tokens))
    }

    fn train_step_in_place(&mut self, tokens: &[i64]) -> StepStats {
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
        let grad_norm = if self.config.grad_clip > 0.0 {
            clip_grad_norm(&self.model.parameters(), self.config.grad_clip)
        } else {
            f32::NAN
        };
        self.optimizer.step();
        self.optimizer.zero_grad();
        self.step += 1;
        StepStats {
            loss: loss_sum / accum as f32,
            lr,
            grad_norm,
        }
    }

    /// Mean loss over `batches` random batches of `tokens` (nanoGPT's
    /// estimate_loss). The batches are drawn first, in order, then
    /// evaluated side by side on the pool's threads (see [`batch_losses`]).
    pub fn estimate_loss(&mut self, tokens: &[i64], batches: usize, rng: &mut ChaCha8Rng) -> f32 {
        self.model.set_training(false);
        let context = self.model.config.block_size;
        let drawn: Vec<_> = (0..batches)
            .map(|_| data::random_batch(tokens, self.config.batch_size, context, rng))
            .collect();
        let total: f32 = batch_losses(&self.model, &drawn).iter().sum();
        total / batches as f32
    }

    /// Saves model, optimizer, step, both RNG streams, the configs and
    /// `extra` metadata (e.g. the tokenizer) to `path`, atomically.
    pub fn save(&self, path: &Path, extra: &[(&str, String)]) -> Result<()> {
        let mut ckpt = Checkpoint::default();
        ckpt.add_module("model.", &self.model);
        ckpt.add_optimizer("optim.", &self.optimizer);
        ckpt.set_meta("step", self.step.to_string());
        ckpt.set_rng("rng.data", &self.data_rng);
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
    /// the caller may need.
    pub fn resume(path: &Path) -> Result<(Trainer, Checkpoint)> {
        let ckpt = Checkpoint::load(path)?;
        let parse = |key: &str| -> Result<String> { Ok(ckpt.require_meta(key)?.to_string()) };
        let bad = |what: &str, e: serde_json::Error| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("{what}: {e}"),
        };
        let model_config: GptConfig =
            serde_json::from_str(&parse("model_config")?).map_err(|e| bad("model_config", e))?;
        let config: TrainConfig =
            serde_json::from_str(&parse("train_config")?).map_err(|e| bad("train_config", e))?;
        let mut trainer = Trainer::new(model_config, config)?;
        ckpt.load_module("model.", &trainer.model)?;
        ckpt.load_optimizer("optim.", &mut trainer.optimizer)?;
        ckpt.load_shared_rng("rng.dropout", trainer.model.dropout_rng())?;
        trainer.data_rng = ckpt.rng("rng.data")?;
        trainer.step = parse("step")?.parse().map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("step: {e}"),
        })?;
        Ok((trainer, ckpt))
    }
}

/// Forward and backward of `model` on one batch of `inputs` and `targets`
/// (`[batch, time]` ids): adds `weight` times the gradient of the batch's
/// mean loss to every parameter's gradient, and returns that mean loss.
///
/// The batch is cut into `shards` runs of whole sequences (`None`: one per
/// pool thread, at most one per sequence), forwarded and back-propagated
/// side by side, one pool thread each with one-thread kernels (see
/// [`on_one_thread`](crate::backend::cpu::on_one_thread)). Each shard's
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
    let shards = if model.config.dropout > 0.0 {
        1
    } else {
        let threads = crate::backend::cpu::kernel_threads;
        shards.unwrap_or_else(threads).clamp(1, batch)
    };
    if shards == 1 {
        let loss = Gpt::loss(&model.forward(inputs), targets);
        loss.backward_with(&Tensor::full(loss.shape(), weight));
        return loss.item();
    }
    let parts: Vec<usize> = (0..shards).collect();
    let per_shard = crate::backend::cpu::side_by_side(parts, |shard| {
        let (start, end) = (shard * batch / shards, (shard + 1) * batch / shards);
        // The shard's share of the batch mean.
        let share = (end - start) as f32 / batch as f32;
        let rows = |t: &Tensor| t.narrow(0, start, end - start);
        let loss = Gpt::loss(&model.forward(&rows(inputs)), &rows(targets));
        let seed = Tensor::full(loss.shape(), weight * share);
        (
            loss.item() * share,
            crate::autograd::leaf_gradients(&loss, seed),
        )
    });
    let mut mean = 0.0;
    // Each parameter's gradients from every shard, in shard order.
    let mut per_param: Vec<(Tensor, Vec<Tensor>)> = Vec::new();
    let mut index: std::collections::HashMap<usize, usize> = Default::default();
    for (loss, grads) in per_shard {
        mean += loss;
        for (param, grad) in grads {
            match index.get(&param.id()) {
                Some(&i) => per_param[i].1.push(grad),
                None => {
                    index.insert(param.id(), per_param.len());
                    per_param.push((param, vec![grad]));
                }
            }
        }
    }
    // Summed in that order, into the first shard's buffer: one parameter
    // per task, the parameters side by side.
    crate::backend::cpu::side_by_side(per_param, |(param, grads)| {
        let mut grads = grads.into_iter();
        let first = grads.next().expect("one gradient per shard");
        let sum = grads.fold(first, |sum, g| {
            crate::autograd::add_in_place_if_unique(sum, &g)
        });
        param.accumulate_grad(sum);
    });
    mean
}

/// The mean loss of `model` over all of `tokens`, in non-overlapping windows
/// of its context (every target counted once, whatever the sampling): the
/// figure the Shakespeare target is stated in.
pub fn evaluate(model: &mut Gpt, tokens: &[i64], batch: usize) -> f32 {
    model.set_training(false);
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
    crate::backend::cpu::side_by_side(batches.iter().collect(), |(x, y)| {
        no_grad(|| Gpt::loss(&model.forward(x), y).item())
    })
}

/// Logits to the next token: greedy when `temperature` is 0, otherwise a
/// sample after temperature scaling and optional top-k / top-p filtering.
pub fn sample_next(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    rng: &mut impl rand::Rng,
) -> usize {
    if temperature <= 0.0 {
        return logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best });
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = top_k {
        order.truncate(k.max(1));
    }
    let max = logits[order[0]];
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| (((logits[i] - max) / temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = top_p {
        let mut cumulative = 0.0;
        let keep = probs.iter().take_while(|&&q| {
            let inside = cumulative < p as f64;
            cumulative += q;
            inside
        });
        let n = keep.count().max(1);
        order.truncate(n);
        probs.truncate(n);
    }
    let total: f64 = probs.iter().sum();
    let mut r = rng.gen_range(0.0..total);
    for (&i, &p) in order.iter().zip(&probs) {
        if r < p {
            return i;
        }
        r -= p;
    }
    order[order.len() - 1]
}

/// Continues `prompt` (token ids) by `new_tokens` tokens with a KV cache,
/// sliding the window when the context is full.
pub fn generate(
    model: &mut Gpt,
    prompt: &[i64],
    new_tokens: usize,
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    rng: &mut impl rand::Rng,
) -> Vec<i64> {
    model.set_training(false);
    let context = model.config.block_size;
    let mut out = prompt.to_vec();
    if out.is_empty() {
        out.push(0);
    }
    no_grad(|| {
        let mut cache = crate::nn::KvCache::default();
        let mut pending: Vec<i64> = out[out.len().saturating_sub(context)..].to_vec();
        for _ in 0..new_tokens {
            if cache.len() + pending.len() > context {
                // The window is full: start again from the last context - 1 tokens.
                cache = crate::nn::KvCache::default();
                pending = out[out.len() - (context - 1)..].to_vec();
            }
            let ids = Tensor::from_ids(pending.clone(), &[1, pending.len()]);
            let logits = model.forward_cached(&ids, &mut cache);
            let v = logits.shape()[2];
            let last = logits
                .narrow(1, pending.len() - 1, 1)
                .reshape(&[v])
                .to_vec();
            let next = sample_next(&last, temperature, top_k, top_p, rng) as i64;
            out.push(next);
            pending = vec![next];
        }
    });
    out
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
