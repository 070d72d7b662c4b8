//! Text generation from a decoder: how the next token is picked from the
//! logits ([`Sampling`], [`sample_next`], the repetition penalty) and the
//! cached decoding loop, one API for every model: [`generate_with`] (one
//! prompt, with stop tokens, a seed and a per-token callback),
//! [`generate_batch`] (equal-length prompts side by side) and [`generate`]
//! (the short form) drive any [`CausalLm`]: a decoder such as [`Gpt`], or
//! an encoder-decoder's decoder given its source ([`Seq2SeqLm::condition`]).
//! Sampling parameters are checked once, when a [`Sampling`] or a
//! [`GenerationConfig`] is checked; what a model produces (non-finite
//! logits) is checked at every token.
//!
//! [`Gpt`]: crate::Gpt

mod sampling;

pub use sampling::{Sampling, apply_repetition_penalty, sample_next};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::nn::{KvCache, Module};
use crate::{Error, Result, Tensor, no_grad};

/// A decoder that predicts the next token from a cache of the positions
/// before it: what [`generate_with`] and [`generate_batch`] drive.
/// Implemented for [`Gpt`](crate::Gpt) and for an encoder-decoder's
/// decoder given its source ([`Seq2SeqLm`]); implement it for your own
/// decoder to get the same generation.
pub trait CausalLm: Module + Sync {
    /// What the decoder keeps between steps.
    type Cache: GenerationCache;

    /// Token ids run from 0 to this minus 1.
    fn vocab_size(&self) -> usize;

    /// The most positions the model attends over.
    fn context_len(&self) -> usize;

    /// An empty cache for this model that holds up to `capacity` positions.
    fn new_cache(&self, capacity: usize) -> Self::Cache;

    /// The logits `[batch, vocab]` of the position after `ids` `[batch,
    /// time]` (i64), given the positions `cache` holds; `cache` is extended
    /// with `ids`.
    fn next_logits(&self, ids: &Tensor, cache: &mut Self::Cache) -> Tensor;
}

/// A model that generates a target from a source: its encoder runs once
/// per source, and its decoder, attending to that encoding, is a
/// [`CausalLm`] (the 2017 Transformer's
/// [`EncoderDecoder`](crate::models::EncoderDecoder)).
///
/// ```
/// use zeroformer::generation::{GenerationConfig, Seq2SeqLm, generate_batch};
/// use zeroformer::models::EncoderDecoderConfig;
/// use zeroformer::{Device, Tensor};
/// let config = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 8)?;
/// let model = config.init(&Device::Cpu, 0)?;
/// let src = Tensor::from_ids(vec![3, 4, 5, 6, 7, 8], &[2, 3]);
/// // Two sources side by side, each target starting from token 1.
/// let out = generate_batch(&model.condition(&src, None), &[vec![1], vec![1]], &GenerationConfig::new(4))?;
/// assert_eq!(out.len(), 2);
/// assert_eq!(out[0].tokens.len(), 4);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub trait Seq2SeqLm: Module + Sync {
    /// The decoder given an encoded source.
    type Conditioned<'a>: CausalLm
    where
        Self: 'a;

    /// Encodes `src` `[batch, source_time]` (i64; `src_padding` `[batch,
    /// source_time]` marks padding) once, without gradients and in
    /// [`eval_mode`](crate::eval_mode): the decoder that continues each
    /// row's target.
    fn condition<'a>(&'a self, src: &Tensor, src_padding: Option<&Tensor>)
    -> Self::Conditioned<'a>;
}

/// What a [`CausalLm`] keeps between steps, as far as the decoding loop
/// needs to know it.
pub trait GenerationCache: Send {
    /// The number of positions held.
    fn len(&self) -> usize;

    /// True when nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every position (the context slides: the newest positions
    /// are fed again).
    fn clear(&mut self);
}

impl GenerationCache for KvCache {
    fn len(&self) -> usize {
        KvCache::len(self)
    }

    fn clear(&mut self) {
        KvCache::clear(self)
    }
}

/// What happens when the context is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContextEnd {
    /// Keep the newest positions (all but one) and recompute their cache.
    #[default]
    Slide,
    /// Stop generating.
    Stop,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// `max_new_tokens` were generated.
    Length,
    /// A stop token was generated (it is the last of the tokens).
    StopToken,
    /// The context was full and [`ContextEnd::Stop`] was asked for.
    ContextFull,
    /// The callback asked to stop.
    Callback,
}

/// Everything [`generate_with`] does besides the model and the prompt.
///
/// ```
/// use zeroformer::generation::{GenerationConfig, Sampling};
/// let config = GenerationConfig::new(64)
///     .sampling(Sampling::new(0.8, Some(40), None).unwrap())
///     .repetition_penalty(1.2)
///     .stop_tokens(&[50256])
///     .seed(7);
/// assert!(config.validate().is_ok());
/// assert!(GenerationConfig::new(8).repetition_penalty(0.0).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// At most this many new tokens.
    pub max_new_tokens: usize,
    /// How each token is picked.
    pub sampling: Sampling,
    /// Hugging Face's repetition penalty: logits of tokens already in the
    /// prompt or the output are divided by it when positive and multiplied
    /// when negative. 1 turns it off; finite and > 0.
    pub repetition_penalty: f32,
    /// Generation ends after any of these.
    pub stop_tokens: Vec<i64>,
    /// Seeds the sampling stream (ChaCha8).
    pub seed: u64,
    /// Slide or stop when the context is full.
    pub at_context_end: ContextEnd,
}

impl GenerationConfig {
    /// Greedy, no penalty, no stop tokens, seed 0, sliding context.
    pub fn new(max_new_tokens: usize) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens,
            sampling: Sampling::GREEDY,
            repetition_penalty: 1.0,
            stop_tokens: Vec::new(),
            seed: 0,
            at_context_end: ContextEnd::Slide,
        }
    }

    /// With this sampling.
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// With this repetition penalty (1: none).
    pub fn repetition_penalty(mut self, penalty: f32) -> Self {
        self.repetition_penalty = penalty;
        self
    }

    /// With these stop tokens.
    pub fn stop_tokens(mut self, tokens: &[i64]) -> Self {
        self.stop_tokens = tokens.to_vec();
        self
    }

    /// With this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Slide or stop at the end of the context.
    pub fn at_context_end(mut self, end: ContextEnd) -> Self {
        self.at_context_end = end;
        self
    }

    /// An error naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        let p = self.repetition_penalty;
        if !(p.is_finite() && p > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "repetition_penalty must be finite and > 0 (1: off), got {p}"
            )));
        }
        Ok(())
    }
}

/// What [`generate_with`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens (not the prompt).
    pub tokens: Vec<i64>,
    /// Why it ended.
    pub finish: Finish,
}

/// Continues `prompt` (token ids, at least one: a start token where there
/// is no text) as `config` says, calling `on_token` with each new token as
/// it is picked (streaming; return `false` to stop). The KV cache holds the
/// whole context in buffers allocated once and written in place. Errors: an
/// empty prompt, a token outside the vocabulary, settings out of range, or
/// logits that are not finite (a model whose weights hold NaN). Runs in
/// [`eval_mode`](crate::eval_mode), without gradients.
///
/// ```
/// use zeroformer::generation::{Finish, GenerationConfig, generate_with};
/// use zeroformer::{Device, GptConfig};
/// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let mut streamed = Vec::new();
/// let out = generate_with(&model, &[1, 2], &GenerationConfig::new(5), |t| {
///     streamed.push(t);
///     true
/// })?;
/// assert_eq!((out.tokens.len(), out.finish), (5, Finish::Length));
/// assert_eq!(streamed, out.tokens);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn generate_with<M: CausalLm>(
    model: &M,
    prompt: &[i64],
    config: &GenerationConfig,
    mut on_token: impl FnMut(i64) -> bool,
) -> Result<Generation> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let rows = decode(model, &[prompt], config, &mut rng, |_, token| {
        on_token(token)
    })?;
    Ok(rows.into_iter().next().expect("one row"))
}

/// Continues each of `prompts` (token ids, all of one length, at least
/// one each) as `config` says, side by side: one forward a step for the
/// whole batch. Each row ends at its own stop token (the batch runs on
/// until every row has ended or the length is reached); rows draw from one
/// sampling stream, in row order. The errors of [`generate_with`], and
/// prompts of different lengths.
///
/// ```
/// use zeroformer::generation::{Finish, GenerationConfig, generate_batch, generate_with};
/// use zeroformer::{Device, GptConfig};
/// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let greedy = GenerationConfig::new(5);
/// let out = generate_batch(&model, &[vec![1, 2], vec![3, 4]], &greedy)?;
/// assert_eq!(out[1], generate_with(&model, &[3, 4], &greedy, |_| true)?);
/// assert!(generate_batch(&model, &[vec![1], vec![3, 4]], &greedy).is_err());
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn generate_batch<M: CausalLm>(
    model: &M,
    prompts: &[Vec<i64>],
    config: &GenerationConfig,
) -> Result<Vec<Generation>> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let prompts: Vec<&[i64]> = prompts.iter().map(Vec::as_slice).collect();
    decode(model, &prompts, config, &mut rng, |_, _| true)
}

/// Continues `prompt` by `new_tokens` tokens drawn with `rng` as `sampling`
/// says, sliding the context when it is full; returns the prompt and the
/// new tokens. The short form of [`generate_with`].
///
/// ```
/// use rand::SeedableRng;
/// use zeroformer::generation::{Sampling, generate};
/// use zeroformer::{Device, GptConfig};
/// let config = GptConfig { vocab_size: 10, block_size: 4, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0).unwrap();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let out = generate(&model, &[1, 2], 6, &Sampling::GREEDY, &mut rng).unwrap();
/// assert_eq!(out.len(), 8);
/// assert!(generate(&model, &[], 6, &Sampling::GREEDY, &mut rng).is_err());
/// ```
pub fn generate<M: CausalLm>(
    model: &M,
    prompt: &[i64],
    new_tokens: usize,
    sampling: &Sampling,
    rng: &mut impl rand::Rng,
) -> Result<Vec<i64>> {
    let config = GenerationConfig::new(new_tokens).sampling(*sampling);
    let generated = decode(model, &[prompt], &config, rng, |_, _| true)?;
    Ok([prompt, &generated[0].tokens].concat())
}

/// Checks the prompts: at least one, of one length, at least one token
/// each, every token inside the vocabulary.
fn check_prompts(prompts: &[&[i64]], vocab: usize) -> Result<()> {
    let Some(first) = prompts.first() else {
        return Err(Error::InvalidData("generate: no prompts".into()));
    };
    if first.is_empty() {
        return Err(Error::InvalidData(
            "generate: the prompt is empty; give at least one token (a start token where there is no text)".into(),
        ));
    }
    if let Some(other) = prompts.iter().find(|p| p.len() != first.len()) {
        return Err(Error::InvalidData(format!(
            "generate: prompts side by side must be of one length, got {} and {} tokens",
            first.len(),
            other.len()
        )));
    }
    match prompts
        .iter()
        .flat_map(|p| p.iter())
        .find(|&&id| id < 0 || id as u64 >= vocab as u64)
    {
        Some(id) => Err(Error::InvalidData(format!(
            "generate: prompt token {id} is outside the vocabulary of {vocab}"
        ))),
        None => Ok(()),
    }
}

/// The decoding loop of [`generate`], [`generate_with`] and
/// [`generate_batch`]: the rows of `prompts` side by side, `on_token(row,
/// token)` called with each new token of a row that has not ended.
fn decode<M: CausalLm>(
    model: &M,
    prompts: &[&[i64]],
    config: &GenerationConfig,
    rng: &mut impl rand::Rng,
    mut on_token: impl FnMut(usize, i64) -> bool,
) -> Result<Vec<Generation>> {
    config.validate()?;
    let vocab = model.vocab_size();
    check_prompts(prompts, vocab)?;
    let _eval = crate::EvalModeGuard::new();
    let (rows, prompt_len) = (prompts.len(), prompts[0].len());
    let context = model.context_len();
    // What the window keeps when it slides: all but the newest position,
    // which the next token takes (the one last token for a context of 1).
    let kept = context.saturating_sub(1).max(1);
    // Each row's prompt and tokens so far; a row that has ended is fed its
    // last token again (the batch runs in step) but keeps no more.
    let mut all: Vec<Vec<i64>> = prompts.iter().map(|p| p.to_vec()).collect();
    let mut ended: Vec<Option<Finish>> = vec![None; rows];
    let mut lengths = vec![prompt_len; rows];
    let device = model.device();
    let penalised = config.repetition_penalty != 1.0;
    no_grad(|| {
        // Room for what this call can hold: the whole context only when
        // the prompt and the new tokens fill it.
        let capacity = context.min(prompt_len.saturating_add(config.max_new_tokens).max(1));
        let mut cache = model.new_cache(capacity);
        let mut pending = all[0].len().saturating_sub(context)..all[0].len();
        for n in 0..config.max_new_tokens {
            if cache.len() + pending.len() > context {
                if config.at_context_end == ContextEnd::Stop {
                    end_all(&mut ended, Finish::ContextFull);
                    break;
                }
                cache.clear();
                pending = all[0].len() - kept.min(all[0].len())..all[0].len();
            }
            let ids: Vec<i64> = all
                .iter()
                .flat_map(|row| row[pending.clone()].iter().copied())
                .collect();
            let ids = Tensor::from_ids_on(ids, &[rows, pending.len()], &device)?;
            // In the device's scope: on the CPU, the step's kernels are
            // issued from a pool worker (see `Device::scope`).
            let logits = device.scope(|| model.next_logits(&ids, &mut cache).to_vec());
            assert_eq!(
                logits.len(),
                rows * vocab,
                "generate: next_logits gave {} logits for {rows} rows of a vocabulary of {vocab}",
                logits.len()
            );
            for (row, logits) in logits.chunks_exact(vocab).enumerate() {
                let history = &mut all[row];
                if ended[row].is_some() {
                    history.push(*history.last().expect("a prompt"));
                    continue;
                }
                let mut logits = logits.to_vec();
                if penalised {
                    apply_repetition_penalty(&mut logits, history, config.repetition_penalty);
                }
                let next = sample_next(&logits, &config.sampling, rng).map_err(|e| {
                    Error::InvalidData(format!(
                        "generate: at new token {n}: {e} (does the model hold non-finite weights?)"
                    ))
                })? as i64;
                history.push(next);
                lengths[row] = history.len();
                if !on_token(row, next) {
                    ended[row] = Some(Finish::Callback);
                } else if config.stop_tokens.contains(&next) {
                    ended[row] = Some(Finish::StopToken);
                }
            }
            if ended.iter().all(Option::is_some) {
                break;
            }
            pending = all[0].len() - 1..all[0].len();
        }
        end_all(&mut ended, Finish::Length);
        Ok(())
    })?;
    Ok(all
        .into_iter()
        .zip(lengths)
        .zip(ended)
        .map(|((row, length), finish)| Generation {
            tokens: row[prompt_len..length].to_vec(),
            finish: finish.expect("every row ended"),
        })
        .collect())
}

/// Ends, for `why`, every row that has not ended.
fn end_all(ended: &mut [Option<Finish>], why: Finish) {
    ended.iter_mut().for_each(|e| {
        e.get_or_insert(why);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ForwardOptions;
    use crate::{Device, Gpt, GptConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn model(block_size: usize) -> Gpt {
        let config = GptConfig {
            vocab_size: 7,
            block_size,
            n_layer: 1,
            n_head: 1,
            n_embd: 4,
            dropout: 0.0,
            bias: true,
            ..GptConfig::default()
        };
        config.init(&Device::Cpu, 0).unwrap()
    }

    #[test]
    fn a_context_of_one_generates() {
        let m = model(1);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = generate(&m, &[3, 4, 5], 10, &Sampling::GREEDY, &mut rng).unwrap();
        assert_eq!(out.len(), 13);
        assert!(out.iter().all(|&t| (0..7).contains(&t)));
    }

    #[test]
    fn cached_tokens_equal_recomputed_ones() {
        // Until the window slides, each greedy token is the one a full
        // forward of everything before it picks.
        let m = model(4);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = generate(&m, &[1, 2], 9, &Sampling::GREEDY, &mut rng).unwrap();
        assert_eq!(out.len(), 11);
        for i in 2..=4 {
            let ids = Tensor::from_ids(out[..i].to_vec(), &[1, i]);
            let logits = no_grad(|| m.forward(&ids, Default::default()).logits);
            let last = logits.narrow(1, i - 1, 1).reshape(&[7]).to_vec();
            let best = sample_next(&last, &Sampling::GREEDY, &mut rng).unwrap();
            assert_eq!(out[i], best as i64, "token {i}");
        }
    }

    /// The uncached reference: each token from a full forward of the
    /// window, which slides as the cached loop's does.
    fn recomputed(m: &Gpt, prompt: &[i64], new_tokens: usize) -> Vec<i64> {
        let context = m.config.block_size;
        let kept = context.saturating_sub(1).max(1);
        let mut all = prompt.to_vec();
        let mut start = all.len().saturating_sub(context);
        for _ in 0..new_tokens {
            if all.len() - start > context {
                start = all.len() - kept;
            }
            let window = &all[start..];
            let ids = Tensor::from_ids(window.to_vec(), &[1, window.len()]);
            let logits = no_grad(|| m.forward(&ids, Default::default()).logits);
            let last = logits.narrow(1, window.len() - 1, 1).reshape(&[7]).to_vec();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            all.push(sample_next(&last, &Sampling::GREEDY, &mut rng).unwrap() as i64);
        }
        all
    }

    #[test]
    fn cached_generation_equals_recomputation_across_slides() {
        for (block, prompt) in [
            (4, vec![1, 2]),
            (5, vec![6, 0, 3, 3, 1, 2, 5]),
            (1, vec![2]),
        ] {
            let m = model(block);
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let cached = generate(&m, &prompt, 17, &Sampling::GREEDY, &mut rng).unwrap();
            assert_eq!(cached, recomputed(&m, &prompt, 17), "context {block}");
        }
    }

    #[test]
    fn a_buffered_cache_gives_the_concatenating_caches_logits() {
        let m = model(6);
        let ids = [1i64, 5, 2, 6, 0, 3];
        let (mut grown, mut buffered) = (KvCache::default(), m.new_cache(6));
        for step in [&ids[..2], &ids[2..3], &ids[3..6]] {
            let x = Tensor::from_ids(step.to_vec(), &[1, step.len()]);
            let a = no_grad(|| {
                m.forward(&x, ForwardOptions::default().cache(&mut grown))
                    .logits
            });
            let b = no_grad(|| {
                m.forward(&x, ForwardOptions::default().cache(&mut buffered))
                    .logits
            });
            assert_eq!(a.to_vec(), b.to_vec());
            let last = no_grad(|| {
                m.forward(
                    &Tensor::from_ids(ids[..grown.len()].to_vec(), &[1, grown.len()]),
                    Default::default(),
                )
                .logits
            });
            let want = last
                .narrow(1, grown.len() - step.len(), step.len())
                .to_vec();
            let got = a.to_vec();
            assert!(got.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        }
        // Cleared, the buffers serve again from position 0.
        buffered.clear();
        let x = Tensor::from_ids(ids[..3].to_vec(), &[1, 3]);
        let again = no_grad(|| {
            m.forward(&x, ForwardOptions::default().cache(&mut buffered))
                .logits
        });
        let fresh = no_grad(|| m.forward(&x, Default::default()).logits);
        assert_eq!(again.to_vec(), fresh.to_vec());
    }

    #[test]
    fn stop_tokens_callbacks_and_a_full_context_end_generation() {
        let m = model(4);
        let free = generate_with(&m, &[1], &GenerationConfig::new(12), |_| true).unwrap();
        assert_eq!((free.tokens.len(), free.finish), (12, Finish::Length));
        let stop = free.tokens[2];
        let first = free.tokens.iter().position(|&t| t == stop).unwrap();
        let stopped = generate_with(
            &m,
            &[1],
            &GenerationConfig::new(12).stop_tokens(&[stop]),
            |_| true,
        )
        .unwrap();
        assert_eq!(stopped.tokens, free.tokens[..=first]);
        assert_eq!(stopped.finish, Finish::StopToken);
        let mut seen = 0;
        let called = generate_with(&m, &[1], &GenerationConfig::new(12), |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
        assert_eq!((called.tokens.len(), called.finish), (3, Finish::Callback));
        let full = GenerationConfig::new(12).at_context_end(ContextEnd::Stop);
        let ended = generate_with(&m, &[1, 2], &full, |_| true).unwrap();
        // The third token is the last predicted from at most 4 positions.
        assert_eq!((ended.tokens.len(), ended.finish), (3, Finish::ContextFull));
        assert_eq!(
            ended.tokens,
            generate_with(&m, &[1, 2], &GenerationConfig::new(3), |_| true)
                .unwrap()
                .tokens
        );
        // The same seed draws the same tokens; the penalty changes the greedy path.
        let sampled = GenerationConfig::new(10)
            .sampling(Sampling::new(1.0, None, None).unwrap())
            .seed(5);
        let a = generate_with(&m, &[1], &sampled, |_| true).unwrap();
        assert_eq!(a, generate_with(&m, &[1], &sampled, |_| true).unwrap());
        let penalised = generate_with(
            &m,
            &[1],
            &GenerationConfig::new(12).repetition_penalty(1e6),
            |_| true,
        )
        .unwrap();
        assert_ne!(penalised.tokens, free.tokens);
        // Its first tokens avoid everything seen before them.
        let mut seen = vec![1i64];
        for &t in &penalised.tokens[..4] {
            assert!(!seen.contains(&t), "{:?}", penalised.tokens);
            seen.push(t);
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let m = model(4);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let g = Sampling::GREEDY;
        assert!(generate(&m, &[], 3, &g, &mut rng).is_err());
        assert!(generate(&m, &[7], 3, &g, &mut rng).is_err());
        assert!(generate(&m, &[-1], 3, &g, &mut rng).is_err());
        for bad in [
            Sampling {
                temperature: f32::NAN,
                ..g
            },
            Sampling {
                temperature: -1.0,
                ..g
            },
            Sampling {
                temperature: f32::INFINITY,
                ..g
            },
            Sampling {
                top_k: Some(0),
                ..g
            },
            Sampling {
                top_p: Some(0.0),
                ..g
            },
            Sampling {
                top_p: Some(-1.0),
                ..g
            },
            Sampling {
                top_p: Some(1.5),
                ..g
            },
            Sampling {
                top_p: Some(f32::NAN),
                ..g
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
            assert!(generate(&m, &[1], 3, &bad, &mut rng).is_err(), "{bad:?}");
            assert!(sample_next(&[0.0, 1.0], &bad, &mut rng).is_err(), "{bad:?}");
        }
        let s = Sampling::new(1.0, None, None).unwrap();
        assert!(sample_next(&[], &s, &mut rng).is_err());
        assert!(sample_next(&[1.0, f32::NAN], &s, &mut rng).is_err());
        assert!(sample_next(&[1.0, f32::INFINITY], &s, &mut rng).is_err());
        assert!(sample_next(&[f32::NEG_INFINITY; 3], &s, &mut rng).is_err());
        // A model whose weights went NaN: an error naming the token.
        let mut poisoned = m.wte.weight.to_vec();
        poisoned[0] = f32::NAN;
        m.wte
            .weight
            .assign(&Tensor::from_vec(poisoned, m.wte.weight.shape()));
        let e = generate(&m, &[0], 3, &s, &mut rng).unwrap_err();
        assert!(e.to_string().contains("new token 0"), "{e}");
    }

    #[test]
    fn sampling_respects_masks_and_filters() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let logits = [0.0, 1.0, f32::NEG_INFINITY, 0.5, -3.0];
        let top2 = Sampling::new(1.0, Some(2), None).unwrap();
        let nucleus = Sampling::new(1.0, None, Some(0.5)).unwrap();
        let mut seen = [0usize; 5];
        for _ in 0..2000 {
            seen[sample_next(&logits, &top2, &mut rng).unwrap()] += 1;
            // p(1) = e / (1 + e + e^.5 + e^-3) = 0.50...: the nucleus is token 1 alone.
            assert_eq!(sample_next(&logits, &nucleus, &mut rng).unwrap(), 1);
        }
        assert_eq!((seen[0], seen[2], seen[4]), (0, 0, 0));
        // Tokens 1 and 3 in the ratio e^1 : e^0.5 = 0.62 : 0.38.
        let share = seen[1] as f64 / 2000.0;
        assert!((share - 0.6225).abs() < 0.04, "{share}");
    }

    #[test]
    fn a_batch_gives_each_rows_own_generation_and_ends_rows_at_their_stop_tokens() {
        // A context of 4 with 10 new tokens: the batch slides as one. Wide
        // enough, and its weights scaled up, for greedy tokens that depend
        // on the context.
        let config = GptConfig {
            vocab_size: 7,
            block_size: 4,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            dropout: 0.0,
            bias: true,
            ..GptConfig::default()
        };
        let m = config.init(&Device::Cpu, 3).unwrap();
        for p in m.parameters() {
            p.assign(&no_grad(|| p.mul_scalar(30.0)));
        }
        let prompts = vec![vec![1, 2], vec![3, 4], vec![5, 6]];
        let greedy = GenerationConfig::new(10);
        let alone: Vec<Vec<i64>> = prompts
            .iter()
            .map(|p| generate_with(&m, p, &greedy, |_| true).unwrap().tokens)
            .collect();
        let batch = generate_batch(&m, &prompts, &greedy).unwrap();
        for (row, single) in batch.iter().zip(&alone) {
            assert_eq!((&row.tokens, row.finish), (single, Finish::Length));
        }
        // Stop at the first row's first token: each row ends where that
        // token first comes in its own generation, or runs to the length.
        let stop = alone[0][0];
        let stopping = generate_batch(&m, &prompts, &greedy.clone().stop_tokens(&[stop])).unwrap();
        for (row, single) in stopping.iter().zip(&alone) {
            match single.iter().position(|&t| t == stop) {
                Some(at) => {
                    assert_eq!(row.tokens, single[..=at]);
                    assert_eq!(row.finish, Finish::StopToken);
                }
                None => assert_eq!((&row.tokens, row.finish), (single, Finish::Length)),
            }
        }
        assert_eq!(stopping[0].tokens, [stop]);
    }
}
