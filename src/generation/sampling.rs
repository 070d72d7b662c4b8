//! Picking the next token from logits.

use crate::{Error, Result};

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

/// Hugging Face's repetition penalty, in place: the logit of every token
/// in `seen` is divided by `penalty` when positive and multiplied by it
/// when negative (each token once, however often it was seen).
///
/// ```
/// use zeroformer::generation::apply_repetition_penalty;
/// let mut logits = [2.0, -1.0, 0.5];
/// apply_repetition_penalty(&mut logits, &[0, 1, 1], 2.0);
/// assert_eq!(logits, [1.0, -2.0, 0.5]);
/// ```
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[i64], penalty: f32) {
    let mut done = vec![false; logits.len()];
    for &id in seen {
        let Some(i) = usize::try_from(id).ok().filter(|&i| i < logits.len()) else {
            continue;
        };
        if !std::mem::replace(&mut done[i], true) {
            let l = logits[i];
            logits[i] = if l > 0.0 { l / penalty } else { l * penalty };
        }
    }
}
