//! Tokenizers: text to integer ids and back. One trait, [`Tokenizer`], for
//! every kind: characters ([`CharTokenizer`]), words ([`WordTokenizer`]),
//! byte-level BPE ([`BpeTokenizer`]: GPT-2's, Hugging Face's
//! `tokenizer.json`, or trained here by [`BpeTrainer`]) and the classic
//! word-level BPE with an end-of-word marker ([`ClassicBpe`]).

mod bpe;
mod bpe_files;
mod byte_level;
mod char_level;
mod classic_bpe;
mod merge;
mod pretokenize;
mod stream;
mod train;
mod unicode_tables;
mod word_level;

pub use bpe::BpeTokenizer;
pub use byte_level::byte_to_char;
pub use char_level::CharTokenizer;
pub use classic_bpe::ClassicBpe;
pub use pretokenize::{CharClass, Gpt2Pieces, char_class, gpt2_pieces};
pub use stream::DecodeStream;
pub use train::BpeTrainer;
pub use word_level::WordTokenizer;

use rayon::prelude::*;

use crate::{Error, Result};

/// Text to ids and back.
///
/// ```
/// use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
/// let tok = CharTokenizer::from_text("hello world");
/// let ids = tok.encode("hello")?;
/// assert_eq!(tok.decode(&ids)?, "hello");
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub trait Tokenizer: Send + Sync {
    /// The ids of `text`, where the text of a special token is plain text
    /// (tiktoken's `encode_ordinary`). An error when the text cannot be
    /// represented (a character outside a character vocabulary).
    fn encode(&self, text: &str) -> Result<Vec<i64>>;

    /// The text of `ids`; an error names the first id outside the
    /// vocabulary.
    fn decode(&self, ids: &[i64]) -> Result<String>;

    /// The bytes of `ids`: the text's UTF-8, which for a byte-level
    /// tokenizer may end inside a character ([`DecodeStream`] waits for
    /// the rest).
    fn decode_bytes(&self, ids: &[i64]) -> Result<Vec<u8>> {
        self.decode(ids).map(String::into_bytes)
    }

    /// How many ids there are (they run from 0 to this minus 1).
    fn vocab_size(&self) -> usize;

    /// The special tokens (`<|endoftext|>`) with their ids; none by default.
    fn special_tokens(&self) -> Vec<(String, i64)> {
        Vec::new()
    }

    /// The tokenizer as JSON; [`from_json`] reads it back.
    fn to_json(&self) -> String;

    /// The ids of `text`, where each occurrence of a special token's text
    /// is that token (tiktoken's `encode(text, allowed_special="all")`).
    ///
    /// ```no_run
    /// use zeroformer::tokenizer::{BpeTokenizer, Tokenizer};
    /// let gpt2 = BpeTokenizer::from_gpt2_files("gpt2/vocab.json", "gpt2/merges.txt")?;
    /// assert_eq!(gpt2.encode_with_special_tokens("a<|endoftext|>")?, [64, 50256]);
    /// assert_eq!(gpt2.encode("<|endoftext|>")?.len(), 6);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<i64>> {
        let special = self.special_tokens();
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            // The earliest special token, the longest where two start together.
            let found = special
                .iter()
                .filter(|(t, _)| !t.is_empty())
                .filter_map(|(t, id)| {
                    rest.find(t.as_str())
                        .map(|at| (at, usize::MAX - t.len(), t, *id))
                })
                .min();
            let Some((at, _, token, id)) = found else {
                out.extend(self.encode(rest)?);
                return Ok(out);
            };
            out.extend(self.encode(&rest[..at])?);
            out.push(id);
            rest = &rest[at + token.len()..];
        }
    }

    /// Encodes each text, side by side on the thread pool.
    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<i64>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// Encodes each text, cuts it to `max_len` ids (when given), and pads
    /// the batch with `pad_id` to its longest row: what an encoder model
    /// takes.
    ///
    /// ```
    /// use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
    /// let tok = CharTokenizer::from_text("abc ");
    /// let batch = tok.encode_padded(&["ab", "abc a", ""], Some(4), 9)?;
    /// assert_eq!(batch.ids.shape(), &[3, 4]);
    /// assert_eq!(batch.ids.to_vec_i64(), [1, 2, 9, 9, 1, 2, 3, 0, 9, 9, 9, 9]);
    /// assert_eq!(batch.lengths, [2, 4, 0]);
    /// assert_eq!(batch.padding.to_vec_bool()[..4], [false, false, true, true]);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    fn encode_padded(
        &self,
        texts: &[&str],
        max_len: Option<usize>,
        pad_id: i64,
    ) -> Result<PaddedBatch> {
        let mut rows = self.encode_batch(texts)?;
        if let Some(max) = max_len {
            rows.iter_mut().for_each(|r| r.truncate(max));
        }
        Ok(PaddedBatch::new(&rows, pad_id))
    }
}

/// Token ids of several texts padded to one length.
#[derive(Clone, Debug)]
pub struct PaddedBatch {
    /// `[batch, time]` i64 ids, `pad_id` after each row's end.
    pub ids: crate::Tensor,
    /// `[batch, time]` bool, `true` at padding: the key padding mask the
    /// encoder models take (Hugging Face's `attention_mask` is its
    /// negation).
    pub padding: crate::Tensor,
    /// Each row's length before padding.
    pub lengths: Vec<usize>,
}

impl PaddedBatch {
    /// Pads `rows` with `pad_id` to the longest.
    pub fn new(rows: &[Vec<i64>], pad_id: i64) -> PaddedBatch {
        let time = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * time);
        let mut padding = Vec::with_capacity(rows.len() * time);
        for row in rows {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + time - row.len(), pad_id);
            padding.extend((0..time).map(|t| t >= row.len()));
        }
        let shape = [rows.len(), time];
        PaddedBatch {
            ids: crate::Tensor::from_ids(ids, &shape),
            padding: crate::Tensor::from_bools(padding, &shape),
            lengths: rows.iter().map(Vec::len).collect(),
        }
    }
}

/// `text` cut into parts of about `target_len` bytes (at least), each cut
/// just before a space that follows a non-space: there every tokenizer of
/// this module starts a new token whatever precedes it (no GPT-2 piece, word
/// or character runs from a non-space into a space), so encoding the parts
/// one by one gives exactly the ids of the whole.
///
/// ```
/// use zeroformer::tokenizer::chunks;
/// assert_eq!(chunks("ab  cd ef", 2), ["ab", "  cd", " ef"]);
/// ```
pub fn chunks(text: &str, target_len: usize) -> Vec<&str> {
    let target = target_len.max(1);
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while text.len() - start > target {
        let mut cut = start + target;
        let found = loop {
            if cut >= bytes.len() {
                break None;
            }
            if bytes[cut] == b' ' {
                let before = text[..cut].chars().next_back();
                if before.is_some_and(|c| char_class(c) != CharClass::Space) {
                    break Some(cut);
                }
            }
            cut += 1;
        };
        let Some(cut) = found else { break };
        out.push(&text[start..cut]);
        start = cut;
    }
    out.push(&text[start..]);
    out
}

/// The error for an id outside a vocabulary of `size`.
pub(crate) fn invalid_id(id: i64, size: usize) -> Error {
    Error::InvalidData(format!(
        "token id {id} is outside the vocabulary of {size} tokens"
    ))
}

/// A tokenizer from the JSON of [`Tokenizer::to_json`]: a character
/// tokenizer's, a word tokenizer's, or a byte-level BPE in Hugging Face's
/// `tokenizer.json` form.
pub fn from_json(json: &str) -> Result<Box<dyn Tokenizer>> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::InvalidData(format!("tokenizer JSON: {e}")))?;
    if value.is_string() {
        return Ok(Box::new(CharTokenizer::from_json(json)?));
    }
    match value.get("type").and_then(|t| t.as_str()) {
        Some("word") => return Ok(Box::new(WordTokenizer::from_json(json)?)),
        Some("classic-bpe") => return Ok(Box::new(ClassicBpe::from_json(json)?)),
        Some(other) => {
            return Err(Error::InvalidData(format!(
                "tokenizer JSON: unknown type {other:?}"
            )));
        }
        None => {}
    }
    if value.get("model").is_some() {
        return Ok(Box::new(BpeTokenizer::from_tokenizer_json_str(json)?));
    }
    Err(Error::InvalidData(
        "tokenizer JSON: neither a character list, a word tokenizer nor a tokenizer.json model"
            .into(),
    ))
}
