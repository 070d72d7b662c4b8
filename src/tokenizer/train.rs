//! Learning BPE merges from a corpus. The corpus is cut into words (GPT-2's
//! pieces, or whitespace-separated words for the classic variant) and
//! deduplicated with their counts; pair counts are kept up to date as each
//! merge rewrites the words that hold the pair (found through a pair ->
//! words index), and the next merge comes from a max-heap of pairs whose
//! stale entries are refreshed when they surface. Counting the words uses
//! every thread of the pool.
//!
//! The merge chosen is the most frequent pair; among equally frequent
//! pairs, the one with the smallest left id, then the smallest right id
//! (ids: the initial symbols in order, then the merged tokens in the order
//! they were made). scripts/bpe_reference.py learns the same merges the
//! slow, obvious way (recounting every pair after each merge), and a test
//! compares the two.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use super::BpeTokenizer;
use super::merge::pair_key;
use super::pretokenize::gpt2_pieces;
use crate::{Error, Result};

/// A distinct word of the corpus: its current symbols and how often it occurs.
pub(crate) struct Word {
    pub symbols: Vec<u32>,
    pub count: u64,
}

/// Counts the distinct pieces `cut` makes of `text`, on the thread pool.
pub(crate) fn count_words<'a, F, I>(text: &'a str, cut: F) -> FxHashMap<&'a str, u64>
where
    F: Fn(&'a str) -> I + Sync,
    I: Iterator<Item = &'a str>,
{
    let target = (text.len() / (rayon::current_num_threads() * 4)).max(1 << 16);
    let parts = super::chunks(text, target);
    parts
        .par_iter()
        .map(|part| {
            let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
            for piece in cut(part) {
                *counts.entry(piece).or_default() += 1;
            }
            counts
        })
        .reduce(FxHashMap::default, |mut a, b| {
            let (big, small) = if a.len() >= b.len() {
                (&mut a, b)
            } else {
                (&mut b.clone(), a)
            };
            for (k, v) in small {
                *big.entry(k).or_default() += v;
            }
            std::mem::take(big)
        })
}

/// Learns merges over `words` until `new_ids` new symbols are made or no
/// pair occurs `min_frequency` times, and returns them in order as `(left,
/// right, made)`. `join(left, right)` names the symbol a merge makes: a new
/// id, or an existing one when two merges spell the same token (`a`+`bc`
/// after `ab`+`c`), which then makes no new id. A pair is merged once.
pub(crate) fn learn_merges(
    mut words: Vec<Word>,
    new_ids: usize,
    min_frequency: u64,
    mut join: impl FnMut(u32, u32) -> (u32, bool),
) -> Vec<(u32, u32, u32)> {
    let mut counts: FxHashMap<u64, i64> = FxHashMap::default();
    let mut holders: FxHashMap<u64, FxHashSet<u32>> = FxHashMap::default();
    for (w, word) in words.iter().enumerate() {
        for pair in word.symbols.windows(2) {
            let key = pair_key(pair[0], pair[1]);
            *counts.entry(key).or_default() += word.count as i64;
            holders.entry(key).or_default().insert(w as u32);
        }
    }
    // Max count first, then the smallest key (left id, then right id).
    let mut heap: BinaryHeap<(i64, Reverse<u64>)> =
        counts.iter().map(|(&k, &c)| (c, Reverse(k))).collect();
    let mut learned = Vec::with_capacity(new_ids);
    let mut made = 0;
    let mut merged: FxHashSet<u64> = FxHashSet::default();
    let mut changes: Vec<(u64, i64)> = Vec::new();
    let mut touched: FxHashSet<u64> = FxHashSet::default();
    while made < new_ids {
        let Some((count, Reverse(key))) = heap.pop() else {
            break;
        };
        let current = counts.get(&key).copied().unwrap_or(0);
        if current <= 0 {
            continue;
        }
        if current != count {
            heap.push((current, Reverse(key)));
            continue;
        }
        if (current as u64) < min_frequency.max(1) {
            break;
        }
        counts.remove(&key);
        if !merged.insert(key) {
            continue;
        }
        let (left, right) = ((key >> 32) as u32, key as u32);
        let (new, is_new) = join(left, right);
        made += usize::from(is_new);
        learned.push((left, right, new));
        let mut holding: Vec<u32> = holders
            .remove(&key)
            .unwrap_or_default()
            .into_iter()
            .collect();
        holding.sort_unstable();
        touched.clear();
        for &w in &holding {
            let word = &mut words[w as usize];
            changes.clear();
            merge_in_word(&mut word.symbols, left, right, new, &mut changes);
            for &(pair, delta) in &changes {
                if pair == key {
                    continue;
                }
                *counts.entry(pair).or_default() += delta * word.count as i64;
                if delta > 0 {
                    holders.entry(pair).or_default().insert(w);
                    touched.insert(pair);
                }
            }
        }
        // Pairs that grew get a fresh entry; shrunk ones are refreshed when
        // their stale entry surfaces.
        for &pair in &touched {
            if let Some(&c) = counts.get(&pair)
                && c > 0
            {
                heap.push((c, Reverse(pair)));
            }
        }
    }
    learned
}

/// Replaces each `(left, right)` in `symbols` (left to right, not
/// overlapping) by `new`, recording the neighbouring pairs' count changes.
fn merge_in_word(
    symbols: &mut Vec<u32>,
    left: u32,
    right: u32,
    new: u32,
    changes: &mut Vec<(u64, i64)>,
) {
    let mut i = 0;
    while i + 1 < symbols.len() {
        if symbols[i] == left && symbols[i + 1] == right {
            if i > 0 {
                changes.push((pair_key(symbols[i - 1], left), -1));
                changes.push((pair_key(symbols[i - 1], new), 1));
            }
            symbols[i] = new;
            symbols.remove(i + 1);
            if i + 1 < symbols.len() {
                changes.push((pair_key(right, symbols[i + 1]), -1));
                changes.push((pair_key(new, symbols[i + 1]), 1));
            }
        }
        i += 1;
    }
}

/// Trains a byte-level BPE (GPT-2's kind) on a corpus.
///
/// ```
/// use zeroformer::tokenizer::{BpeTrainer, Tokenizer};
/// let text = "low lower lowest newer newest wider ".repeat(20);
/// let tok = BpeTrainer::new(256 + 10).train(&text)?;
/// assert_eq!(tok.vocab_size(), 266);
/// let ids = tok.encode("lowest newer")?;
/// assert!(ids.len() < "lowest newer".len());
/// assert_eq!(tok.decode(&ids)?, "lowest newer");
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BpeTrainer {
    vocab_size: usize,
    min_frequency: u64,
    special_tokens: Vec<String>,
}

impl BpeTrainer {
    /// A trainer for a vocabulary of `vocab_size` tokens: the 256 bytes,
    /// the merges, and the special tokens (none unless given).
    pub fn new(vocab_size: usize) -> BpeTrainer {
        BpeTrainer {
            vocab_size,
            min_frequency: 2,
            special_tokens: Vec::new(),
        }
    }

    /// Stop merging when the most frequent pair occurs fewer times than
    /// this (default 2: a pair seen once teaches nothing).
    pub fn min_frequency(mut self, count: u64) -> BpeTrainer {
        self.min_frequency = count;
        self
    }

    /// Special tokens, given the last ids (as `<|endoftext|>` in GPT-2).
    pub fn special_tokens(mut self, tokens: &[&str]) -> BpeTrainer {
        self.special_tokens = tokens.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Learns the merges from `text`, cut into GPT-2's pieces. The
    /// vocabulary can come out smaller than asked when the text runs out of
    /// pairs seen `min_frequency` times.
    pub fn train(&self, text: &str) -> Result<BpeTokenizer> {
        let fixed = 256 + self.special_tokens.len();
        if self.vocab_size < fixed {
            return Err(Error::InvalidConfig(format!(
                "a byte-level vocabulary of {} tokens cannot hold the 256 bytes and {} special tokens",
                self.vocab_size,
                self.special_tokens.len()
            )));
        }
        let counts = count_words(text, gpt2_pieces);
        let words: Vec<Word> = counts
            .into_iter()
            .map(|(piece, count)| Word {
                symbols: piece.bytes().map(u32::from).collect(),
                count,
            })
            .collect();
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut ids: FxHashMap<Vec<u8>, u32> = tokens.iter().cloned().zip(0..).collect();
        let merges = learn_merges(
            words,
            self.vocab_size - fixed,
            self.min_frequency,
            |a, b| {
                let joined =
                    [tokens[a as usize].as_slice(), tokens[b as usize].as_slice()].concat();
                if let Some(&id) = ids.get(&joined) {
                    return (id, false);
                }
                ids.insert(joined.clone(), tokens.len() as u32);
                tokens.push(joined);
                (tokens.len() as u32 - 1, true)
            },
        );
        let merges = merges.into_iter().map(|(a, b, _)| (a, b)).collect();
        let special = self
            .special_tokens
            .iter()
            .map(|t| {
                tokens.push(t.as_bytes().to_vec());
                (t.clone(), tokens.len() as u32 - 1)
            })
            .collect();
        BpeTokenizer::from_parts(tokens, merges, special)
            .map_err(|m| Error::InvalidData(format!("the trained vocabulary is inconsistent: {m}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The textbook trainer: recount every pair after each merge (as
    /// scripts/bpe_reference.py).
    fn reference(
        mut words: Vec<(Vec<u32>, u64)>,
        symbols: &mut Vec<String>,
        new_ids: usize,
    ) -> Vec<(u32, u32)> {
        let mut merged = std::collections::HashSet::new();
        let (mut merges, mut made) = (Vec::new(), 0);
        while made < new_ids {
            let mut counts = std::collections::BTreeMap::new();
            for (w, n) in &words {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_insert(0u64) += n;
                }
            }
            let best = counts
                .iter()
                .filter(|(p, _)| !merged.contains(*p))
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
            let Some((&pair, &count)) = best else { break };
            if count < 2 {
                break;
            }
            merged.insert(pair);
            let joined = format!("{}{}", symbols[pair.0 as usize], symbols[pair.1 as usize]);
            let new = match symbols.iter().position(|s| *s == joined) {
                Some(i) => i as u32,
                None => {
                    symbols.push(joined);
                    made += 1;
                    symbols.len() as u32 - 1
                }
            };
            merges.push(pair);
            for (w, _) in &mut words {
                let mut i = 0;
                while i + 1 < w.len() {
                    if (w[i], w[i + 1]) == pair {
                        w[i] = new;
                        w.remove(i + 1);
                    }
                    i += 1;
                }
            }
        }
        merges
    }

    #[test]
    fn incremental_training_equals_the_textbook_trainer() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for trial in 0..500 {
            // Few letters: long runs of one letter, where the leftmost
            // rule decides, and many pairs of equal count.
            let letters = rng.gen_range(2..4u8);
            let words: Vec<(Vec<u32>, u64)> = (0..rng.gen_range(1..30))
                .map(|_| {
                    let len = rng.gen_range(1..16);
                    let word = (0..len)
                        .map(|_| u32::from(rng.gen_range(0..letters)))
                        .collect();
                    (word, rng.gen_range(1..5))
                })
                .collect();
            let start: Vec<String> = (0..letters)
                .map(|c| ((b'a' + c) as char).to_string())
                .collect();
            let budget = rng.gen_range(1..60);
            let mut symbols = start.clone();
            let expected = reference(words.clone(), &mut symbols, budget);
            let mut ours_symbols = start.clone();
            let words = words
                .into_iter()
                .map(|(symbols, count)| Word { symbols, count })
                .collect();
            let learned = learn_merges(words, budget, 2, |a, b| {
                let joined = format!("{}{}", ours_symbols[a as usize], ours_symbols[b as usize]);
                match ours_symbols.iter().position(|s| *s == joined) {
                    Some(i) => (i as u32, false),
                    None => {
                        ours_symbols.push(joined);
                        (ours_symbols.len() as u32 - 1, true)
                    }
                }
            });
            let ours: Vec<(u32, u32)> = learned.iter().map(|&(a, b, _)| (a, b)).collect();
            assert_eq!(ours, expected, "trial {trial}");
            assert_eq!(ours_symbols, symbols, "trial {trial}");
        }
    }
}
