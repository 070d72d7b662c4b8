//! A model's own attention, drawn: run it on one sequence and plot every
//! layer and head with the tokens as labels.

use std::path::Path;

use super::{attention_grid, attention_map};
use crate::models::ForwardOptions;
use crate::tokenizer::Tokenizer;
use crate::{Error, Gpt, Result, Tensor, eval_mode, no_grad};

/// Each token of `ids` decoded on its own, for labels. A token that is not
/// text by itself (a byte-level BPE token holding part of a character) is
/// shown as `#id`.
pub fn token_strings(tokenizer: &dyn Tokenizer, ids: &[i64]) -> Vec<String> {
    ids.iter()
        .map(|&id| tokenizer.decode(&[id]).unwrap_or_else(|_| format!("#{id}")))
        .collect()
}

/// Runs `model` on the token ids `ids` (in eval mode, without gradients)
/// and draws its attention, every layer x head, with the tokens as labels
/// ([`attention_grid`]). Fails when `ids` is empty or longer than the
/// model's context.
///
/// ```no_run
/// use zeroformer::prelude::*;
/// use zeroformer::tokenizer::{BpeTokenizer, Tokenizer};
///
/// let model = Gpt::from_pretrained("gpt2", &Device::Cpu)?;
/// let tokenizer = BpeTokenizer::from_gpt2_files("gpt2/vocab.json", "gpt2/merges.txt")?;
/// let ids = tokenizer.encode("The cat sat on the mat because it was tired.")?;
/// zeroformer::plot::gpt_attention(&model, &tokenizer, &ids, "attention.png")?;
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn gpt_attention(
    model: &Gpt,
    tokenizer: &dyn Tokenizer,
    ids: &[i64],
    path: impl AsRef<Path>,
) -> Result<()> {
    let weights = attention_weights(model, ids)?;
    let labels = token_strings(tokenizer, ids);
    attention_grid(&weights, &labels, &labels, path)
}

/// [`gpt_attention`] for one head: `layer` and `head` count from 0; fails
/// when the model has no such head.
pub fn gpt_attention_head(
    model: &Gpt,
    tokenizer: &dyn Tokenizer,
    ids: &[i64],
    (layer, head): (usize, usize),
    path: impl AsRef<Path>,
) -> Result<()> {
    let (n_layer, n_head) = (model.config.n_layer, model.config.n_head);
    if layer >= n_layer || head >= n_head {
        return Err(Error::InvalidConfig(format!(
            "attention head {layer}.{head}: the model has layers 0..{n_layer} and heads 0..{n_head}"
        )));
    }
    let weights = attention_weights(model, ids)?;
    let t = ids.len();
    let one = weights[layer].narrow(1, head, 1).reshape(&[t, t]);
    let labels = token_strings(tokenizer, ids);
    attention_map(&one, &labels, &labels, path)
}

/// Every layer's attention weights `[1, heads, t, t]` on `ids`.
fn attention_weights(model: &Gpt, ids: &[i64]) -> Result<Vec<Tensor>> {
    let context = model.config.block_size;
    if ids.is_empty() || ids.len() > context {
        return Err(Error::InvalidData(format!(
            "drawing attention over {} tokens: give 1 to {context} (the model's context)",
            ids.len()
        )));
    }
    if let Some(&bad) = ids
        .iter()
        .find(|&&id| id < 0 || id as usize >= model.config.vocab_size)
    {
        return Err(Error::InvalidData(format!(
            "token id {bad} is outside the model's vocabulary of {}",
            model.config.vocab_size
        )));
    }
    let input = model.wte.weight.new_ids(ids.to_vec(), &[1, ids.len()]);
    let options = || ForwardOptions::default().output_attentions();
    let weights = eval_mode(|| no_grad(|| model.forward(&input, options()).attentions));
    Ok(weights)
}

/// Parses `LAYER.HEAD` (`5.1`), the way the examples name a head.
///
/// ```
/// assert_eq!(zeroformer::plot::parse_head("5.1"), Some((5, 1)));
/// assert_eq!(zeroformer::plot::parse_head("5"), None);
/// ```
pub fn parse_head(text: &str) -> Option<(usize, usize)> {
    let (layer, head) = text.split_once('.')?;
    Some((layer.parse().ok()?, head.parse().ok()?))
}
