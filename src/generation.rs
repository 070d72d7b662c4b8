//! Text generation from a GPT: how the next token is picked from the
//! logits ([`Sampling`], [`sample_next`]) and the cached decoding loop
//! ([`generate`]). Sampling parameters are checked once, when a
//! [`Sampling`] is made; what a model produces (non-finite logits) is
//! checked at every token.

use crate::models::Gpt;
use crate::nn::{KvCache, Module};
use crate::{Error, Result, Tensor, no_grad};

/// How the next token is picked: greedy when `temperature` is 0, otherwise
/// a sample from `softmax(logits / temperature)` restricted to the `top_k`
/// most likely tokens and then to the smallest set whose probability
/// reaches `top_p` (nucleus sampling). `None` turns a filter off.
///
/// ```
/// use zeroformer::generation::Sampling;
/// let s = Sampling::new(0.8, Some(40), Some(0.95)).unwrap();
/// assert_eq!(s.top_k, Some(40));
/// assert!(Sampling::new(f32::NAN, None, None).is_err());
/// assert!(Sampling::new(1.0, Some(0), None).is_err());
/// assert!(Sampling::new(1.0, None, Some(0.0)).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Finite and at least 0; 0 picks the most likely token.
    pub temperature: f32,
    /// At least 1; `None`: every token.
    pub top_k: Option<usize>,
    /// In (0, 1]; `None`: no nucleus filter.
    pub top_p: Option<f32>,
}

impl Sampling {
    /// Always the most likely token.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };

    /// Checked parameters; see [`validate`](Self::validate).
    pub fn new(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> Result<Sampling> {
        let sampling = Sampling {
            temperature,
            top_k,
            top_p,
        };
        sampling.validate()?;
        Ok(sampling)
    }

    /// An error naming the first parameter out of range: `temperature`
    /// must be finite and >= 0, `top_k` >= 1, `top_p` in (0, 1].
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidConfig(why));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be finite and >= 0 (0: greedy), got {}",
                self.temperature
            ));
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1 (or off)".into());
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return bad(format!("top_p must be in (0, 1] (or off), got {p}"));
        }
        Ok(())
    }
}

/// The next token from `logits` (one per vocabulary entry) as `sampling`
/// says. `-inf` logits are allowed (tokens masked out); an empty slice,
/// NaN or `+inf`, or every logit `-inf`, is an error, as are parameters
/// that [`Sampling::validate`] refuses.
///
/// ```
/// use rand::SeedableRng;
/// use zeroformer::generation::{Sampling, sample_next};
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let logits = [0.1, 2.0, f32::NEG_INFINITY, 0.3];
/// assert_eq!(sample_next(&logits, &Sampling::GREEDY, &mut rng).unwrap(), 1);
/// let top1 = Sampling::new(1.0, Some(1), None).unwrap();
/// assert_eq!(sample_next(&logits, &top1, &mut rng).unwrap(), 1);
/// assert!(sample_next(&[f32::NAN, 1.0], &top1, &mut rng).is_err());
/// ```
pub fn sample_next(logits: &[f32], sampling: &Sampling, rng: &mut impl rand::Rng) -> Result<usize> {
    sampling.validate()?;
    let bad = |why: &str| Err(Error::InvalidData(format!("sample_next: {why}")));
    if logits.is_empty() {
        return bad("no logits to sample from");
    }
    if let Some(i) = logits
        .iter()
        .position(|v| v.is_nan() || *v == f32::INFINITY)
    {
        return bad(&format!("logit {i} is {}", logits[i]));
    }
    if logits.iter().all(|v| *v == f32::NEG_INFINITY) {
        return bad("every logit is -inf");
    }
    let greedy = logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best });
    if sampling.temperature == 0.0 {
        return Ok(greedy);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = sampling.top_k {
        order.truncate(k);
    }
    let max = logits[order[0]];
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max as f64) / sampling.temperature as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = sampling.top_p {
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
    // Underflow can leave only the most likely token with any weight.
    if !(total > 0.0 && total.is_finite()) {
        return Ok(greedy);
    }
    let mut r = rng.gen_range(0.0..total);
    for (&i, &p) in order.iter().zip(&probs) {
        if r < p {
            return Ok(i);
        }
        r -= p;
    }
    Ok(order[order.len() - 1])
}

/// Continues `prompt` (token ids, at least one: a start token where there
/// is no text) by `new_tokens` tokens with a KV cache, sliding the window
/// when the context is full. Errors: an empty prompt, a token outside the
/// vocabulary, sampling parameters out of range, or logits that are not
/// finite (a model whose weights hold NaN). Runs in
/// [`eval_mode`](crate::eval_mode): the model's own mode is left as it was.
///
/// ```
/// use rand::SeedableRng;
/// use zeroformer::generation::{Sampling, generate};
/// use zeroformer::{Gpt, GptConfig};
/// let config = GptConfig { vocab_size: 10, block_size: 4, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: false };
/// let mut model = Gpt::new(config, 0).unwrap();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let out = generate(&model, &[1, 2], 6, &Sampling::GREEDY, &mut rng).unwrap();
/// assert_eq!(out.len(), 8);
/// assert!(generate(&model, &[], 6, &Sampling::GREEDY, &mut rng).is_err());
/// ```
pub fn generate(
    model: &Gpt,
    prompt: &[i64],
    new_tokens: usize,
    sampling: &Sampling,
    rng: &mut impl rand::Rng,
) -> Result<Vec<i64>> {
    sampling.validate()?;
    if prompt.is_empty() {
        return Err(Error::InvalidData(
            "generate: the prompt is empty; give at least one token (a start token where there is no text)".into(),
        ));
    }
    let vocab = model.config.vocab_size;
    if let Some(&id) = prompt
        .iter()
        .find(|&&id| id < 0 || id as u64 >= vocab as u64)
    {
        return Err(Error::InvalidData(format!(
            "generate: prompt token {id} is outside the vocabulary of {vocab}"
        )));
    }
    let _eval = crate::EvalModeGuard::new();
    let context = model.config.block_size;
    // What the window keeps when it slides: all but the newest position,
    // which the next token takes (the one last token for a context of 1).
    let kept = context.saturating_sub(1).max(1);
    let mut out = prompt.to_vec();
    let device = model.device();
    no_grad(|| {
        let mut cache = KvCache::default();
        let mut pending: Vec<i64> = out[out.len().saturating_sub(context)..].to_vec();
        for n in 0..new_tokens {
            if cache.len() + pending.len() > context {
                cache = KvCache::default();
                pending = out[out.len() - kept.min(out.len())..].to_vec();
            }
            let ids = Tensor::from_ids_on(pending.clone(), &[1, pending.len()], &device)?;
            let logits = model.forward_cached(&ids, &mut cache);
            let last = logits
                .narrow(1, pending.len() - 1, 1)
                .reshape(&[vocab])
                .to_vec();
            let next = sample_next(&last, sampling, rng).map_err(|e| {
                Error::InvalidData(format!(
                    "generate: at new token {n}: {e} (does the model hold non-finite weights?)"
                ))
            })?;
            out.push(next as i64);
            pending = vec![next as i64];
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GptConfig;
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
        };
        Gpt::new(config, 0).unwrap()
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
            let logits = no_grad(|| m.forward(&ids));
            let last = logits.narrow(1, i - 1, 1).reshape(&[7]).to_vec();
            let best = sample_next(&last, &Sampling::GREEDY, &mut rng).unwrap();
            assert_eq!(out[i], best as i64, "token {i}");
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
}
