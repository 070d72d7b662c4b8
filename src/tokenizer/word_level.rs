//! A word-level tokenizer: lower-cased words (letters and apostrophes), a
//! vocabulary of the words seen often enough, and ids for padding and
//! unknown words. Enough for classifiers trained from scratch on a small
//! corpus, where characters carry too little meaning per position.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Tokenizer, invalid_id};
use crate::{Error, Result};

/// Words to ids: `0` is padding, `1` an unknown word, then the vocabulary
/// by descending frequency (ties alphabetical).
///
/// ```
/// use zeroformer::tokenizer::{Tokenizer, WordTokenizer};
/// let t = WordTokenizer::fit(["The cat, the hat.", "THE end"], 2);
/// assert_eq!(t.vocab_size(), 3); // padding, unknown, "the"
/// assert_eq!(t.encode("the dog")?, [2, WordTokenizer::UNK]);
/// assert_eq!(t.decode(&[2, 1])?, "the <unk>");
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct WordTokenizer {
    ids: HashMap<String, i64>,
    words: Vec<String>,
}

impl WordTokenizer {
    /// The id of padding.
    pub const PAD: i64 = 0;
    /// The id of any word outside the vocabulary.
    pub const UNK: i64 = 1;

    /// The words of `text`: maximal runs of letters and apostrophes, lower-cased.
    pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
        text.split(|c: char| !(c.is_alphabetic() || c == '\''))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
    }

    /// A vocabulary of every word that occurs at least `min_count` times in `texts`.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, min_count: usize) -> WordTokenizer {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for w in Self::words(text) {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|&(_, n)| n >= min_count.max(1))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut words = vec!["<pad>".to_string(), "<unk>".to_string()];
        words.extend(kept.into_iter().map(|(w, _)| w));
        WordTokenizer::from_words(words)
    }

    fn from_words(words: Vec<String>) -> WordTokenizer {
        let ids = words
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, w)| (w.clone(), i as i64))
            .collect();
        WordTokenizer { ids, words }
    }

    /// A tokenizer from [`to_json`](Tokenizer::to_json)'s output.
    pub fn from_json(json: &str) -> Result<WordTokenizer> {
        let file: WordFile = serde_json::from_str(json)
            .map_err(|e| Error::InvalidData(format!("word tokenizer JSON: {e}")))?;
        if file.kind != "word" || file.words.get(..2) != Some(&["<pad>".into(), "<unk>".into()][..])
        {
            return Err(Error::InvalidData(
                "word tokenizer JSON: needs \"type\": \"word\" and words starting with <pad>, <unk>".into(),
            ));
        }
        let tokenizer = WordTokenizer::from_words(file.words);
        if tokenizer.ids.len() + 2 != tokenizer.words.len() {
            return Err(Error::InvalidData(
                "word tokenizer JSON: a word is listed twice".into(),
            ));
        }
        Ok(tokenizer)
    }

    /// The word of `id` (`<pad>`, `<unk>` for the special ids); `None` when out of range.
    pub fn word(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.words.get(i))
            .map(String::as_str)
    }
}

/// The JSON form: `{"type": "word", "words": ["<pad>", "<unk>", ...]}`.
#[derive(Serialize, Deserialize)]
struct WordFile {
    #[serde(rename = "type")]
    kind: String,
    words: Vec<String>,
}

impl Tokenizer for WordTokenizer {
    /// Padding, unknown and the vocabulary.
    fn vocab_size(&self) -> usize {
        self.words.len()
    }

    /// The ids of `text`'s words; words outside the vocabulary become
    /// [`UNK`](Self::UNK). Never an error.
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        Ok(Self::words(text)
            .map(|w| self.ids.get(&w).copied().unwrap_or(Self::UNK))
            .collect())
    }

    /// The words of `ids` joined by single spaces (the original spacing,
    /// case and punctuation are gone).
    fn decode(&self, ids: &[i64]) -> Result<String> {
        let words = ids
            .iter()
            .map(|&id| {
                self.word(id)
                    .ok_or_else(|| invalid_id(id, self.words.len()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(words.join(" "))
    }

    fn to_json(&self) -> String {
        let file = WordFile {
            kind: "word".into(),
            words: self.words.clone(),
        };
        serde_json::to_string(&file).expect("strings serialise")
    }
}
