//! A word-level tokenizer: lower-cased words (letters and apostrophes), a
//! vocabulary of the words seen often enough, and ids for padding and
//! unknown words. Enough for classifiers trained from scratch on a small
//! corpus, where characters carry too little meaning per position.

use std::collections::HashMap;

/// Words to ids: `0` is padding, `1` an unknown word, then the vocabulary
/// by descending frequency (ties alphabetical).
///
/// ```
/// use zeroformer::tokenizer::WordTokenizer;
/// let t = WordTokenizer::fit(["The cat, the hat.", "THE end"], 2);
/// assert_eq!(t.vocab_size(), 3); // padding, unknown, "the"
/// assert_eq!(t.encode("the dog"), vec![2, WordTokenizer::UNK]);
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
        let ids = words
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, w)| (w.clone(), i as i64))
            .collect();
        WordTokenizer { ids, words }
    }

    /// Padding, unknown and the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    /// The ids of `text`'s words; words outside the vocabulary become [`UNK`](Self::UNK).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        Self::words(text)
            .map(|w| self.ids.get(&w).copied().unwrap_or(Self::UNK))
            .collect()
    }

    /// The word of `id` (`<pad>`, `<unk>` for the special ids); `None` when out of range.
    pub fn word(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.words.get(i))
            .map(String::as_str)
    }
}
