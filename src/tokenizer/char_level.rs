//! A character-level tokenizer: one id per distinct character of a corpus.

use std::collections::HashMap;

use super::{Tokenizer, invalid_id};
use crate::{Error, Result};

/// Maps each character of a vocabulary (sorted, as nanoGPT's `sorted(set(text))`)
/// to its index.
///
/// ```
/// use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
/// let tok = CharTokenizer::from_text("hello");
/// assert_eq!(tok.vocab_size(), 4); // e h l o
/// let ids = tok.encode("hole").unwrap();
/// assert_eq!(tok.decode(&ids).unwrap(), "hole");
/// assert!(tok.encode("hi!").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharTokenizer {
    chars: Vec<char>,
    index: HashMap<char, i64>,
}

impl CharTokenizer {
    /// The vocabulary of every distinct character in `text`.
    pub fn from_text(text: &str) -> CharTokenizer {
        let chars: std::collections::BTreeSet<char> = text.chars().collect();
        CharTokenizer::from_chars(chars.into_iter().collect())
    }

    /// A tokenizer over exactly these characters, in this order.
    pub fn from_chars(chars: Vec<char>) -> CharTokenizer {
        let index = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as i64))
            .collect();
        CharTokenizer { chars, index }
    }

    /// The vocabulary, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// A tokenizer from [`to_json`](Tokenizer::to_json)'s output. A character
    /// listed twice is an error: it would decode and encode differently.
    pub fn from_json(json: &str) -> Result<CharTokenizer> {
        let chars: String = serde_json::from_str(json)
            .map_err(|e| Error::InvalidData(format!("tokenizer JSON: {e}")))?;
        let tokenizer = CharTokenizer::from_chars(chars.chars().collect());
        if tokenizer.index.len() != tokenizer.chars.len() {
            let mut seen = std::collections::HashSet::new();
            let repeated = chars.chars().find(|c| !seen.insert(*c)).expect("a repeat");
            return Err(Error::InvalidData(format!(
                "tokenizer JSON: character {repeated:?} is listed twice"
            )));
        }
        Ok(tokenizer)
    }
}

impl Tokenizer for CharTokenizer {
    /// How many distinct characters (ids run from 0 to this minus 1).
    fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    /// Ids of `text`; an error names the first character outside the vocabulary.
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        text.chars()
            .map(|c| {
                self.index.get(&c).copied().ok_or_else(|| {
                    Error::InvalidData(format!(
                        "character {c:?} is not in the tokenizer's vocabulary of {} characters",
                        self.chars.len()
                    ))
                })
            })
            .collect()
    }

    /// The text of `ids`; an error names the first id outside the vocabulary.
    fn decode(&self, ids: &[i64]) -> Result<String> {
        ids.iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.chars.get(i).copied())
                    .ok_or_else(|| invalid_id(i, self.chars.len()))
            })
            .collect()
    }

    /// The vocabulary as JSON (for checkpoint metadata).
    fn to_json(&self) -> String {
        serde_json::to_string(&self.chars.iter().collect::<String>()).expect("a string serialises")
    }
}
