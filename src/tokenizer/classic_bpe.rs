//! The classic word-level BPE of Sennrich et al. (2016), as the seed
//! notebook builds it: text split into words at white space, each word
//! spelled as its characters plus an end-of-word marker `</w>`, and the
//! most frequent adjacent pair merged, again and again. Encoding applies
//! the merges in the order they were learned; decoding joins the words
//! with single spaces (the original spacing is not kept).

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::merge::{Merge, MergeTable, merge, pair_key};
use super::train::{Word, count_words, learn_merges};
use super::{Tokenizer, invalid_id};
use crate::{Error, Result};

/// Word-level BPE with an end-of-word marker.
///
/// ```
/// use zeroformer::tokenizer::{ClassicBpe, Tokenizer};
/// let tok = ClassicBpe::train(&"low lower lowest newer newest ".repeat(10), 12);
/// let ids = tok.encode("lowest  newer")?;
/// assert!(ids.len() < "lowest newer".len());
/// assert_eq!(tok.decode(&ids)?, "lowest newer");
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClassicBpe {
    /// Every symbol's text by id: characters, `</w>`, then merged symbols.
    symbols: Vec<String>,
    chars: FxHashMap<char, u32>,
    end_of_word: u32,
    merges: MergeTable,
    merge_list: Vec<(u32, u32)>,
}

/// The JSON form.
#[derive(Serialize, Deserialize)]
struct ClassicFile {
    #[serde(rename = "type")]
    kind: String,
    symbols: Vec<String>,
    merges: Vec<(u32, u32)>,
}

impl ClassicBpe {
    /// The end-of-word marker.
    pub const END_OF_WORD: &'static str = "</w>";

    /// Learns up to `merges` merges from `text` (fewer when no pair occurs
    /// twice any more). The initial symbols are the text's distinct
    /// characters in order, then `</w>`.
    pub fn train(text: &str, merges: usize) -> ClassicBpe {
        let counts = count_words(text, str::split_whitespace);
        let mut chars: Vec<char> = counts.keys().flat_map(|w| w.chars()).collect();
        chars.sort_unstable();
        chars.dedup();
        let mut symbols: Vec<String> = chars.iter().map(char::to_string).collect();
        symbols.push(Self::END_OF_WORD.to_string());
        let char_ids: FxHashMap<char, u32> = chars.iter().copied().zip(0..).collect();
        let end_of_word = chars.len() as u32;
        let words = counts
            .into_iter()
            .map(|(word, count)| Word {
                symbols: word
                    .chars()
                    .map(|c| char_ids[&c])
                    .chain([end_of_word])
                    .collect(),
                count,
            })
            .collect();
        let mut ids: FxHashMap<String, u32> = symbols.iter().cloned().zip(0..).collect();
        let learned = learn_merges(words, merges, 2, |a, b| {
            let joined = format!("{}{}", symbols[a as usize], symbols[b as usize]);
            if let Some(&id) = ids.get(&joined) {
                return (id, false);
            }
            ids.insert(joined.clone(), symbols.len() as u32);
            symbols.push(joined);
            (symbols.len() as u32 - 1, true)
        });
        let merges = learned.into_iter().map(|(a, b, _)| (a, b)).collect();
        ClassicBpe::from_parts(symbols, merges).expect("a trained vocabulary is consistent")
    }

    /// Checks and indexes symbols and merges (as read from JSON).
    fn from_parts(
        symbols: Vec<String>,
        merge_list: Vec<(u32, u32)>,
    ) -> std::result::Result<ClassicBpe, String> {
        let end_of_word = symbols
            .iter()
            .position(|s| s == Self::END_OF_WORD)
            .ok_or("no </w> symbol")? as u32;
        let mut chars = FxHashMap::default();
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        for (id, s) in symbols.iter().enumerate() {
            if ids.insert(s.as_str(), id as u32).is_some() {
                return Err(format!("symbol {s:?} is listed twice"));
            }
            let mut it = s.chars();
            if let (Some(c), None) = (it.next(), it.next()) {
                chars.insert(c, id as u32);
            }
        }
        let mut merges = MergeTable::default();
        for (rank, &(a, b)) in merge_list.iter().enumerate() {
            let text = |id: u32| {
                symbols.get(id as usize).ok_or_else(|| {
                    format!(
                        "merge {rank} uses symbol {id}, beyond the {} symbols",
                        symbols.len()
                    )
                })
            };
            let joined = format!("{}{}", text(a)?, text(b)?);
            let id = *ids
                .get(joined.as_str())
                .ok_or_else(|| format!("merge {rank} makes {joined:?}, which is not a symbol"))?;
            let merge = Merge {
                rank: rank as u32,
                id,
            };
            if merges.insert(pair_key(a, b), merge).is_some() {
                return Err(format!("merge {rank} repeats the pair ({a}, {b})"));
            }
        }
        Ok(ClassicBpe {
            symbols,
            chars,
            end_of_word,
            merges,
            merge_list,
        })
    }

    /// A tokenizer from [`to_json`](Tokenizer::to_json)'s output.
    pub fn from_json(json: &str) -> Result<ClassicBpe> {
        let file: ClassicFile = serde_json::from_str(json)
            .map_err(|e| Error::InvalidData(format!("classic BPE JSON: {e}")))?;
        if file.kind != "classic-bpe" {
            return Err(Error::InvalidData(format!(
                "classic BPE JSON: type {:?}",
                file.kind
            )));
        }
        ClassicBpe::from_parts(file.symbols, file.merges)
            .map_err(|m| Error::InvalidData(format!("classic BPE JSON: {m}")))
    }

    /// Every symbol's text, by id.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The merges in the order learned, as pairs of symbol ids.
    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merge_list
    }
}

impl Tokenizer for ClassicBpe {
    /// The ids of `text`'s words; an error names a character the training
    /// text did not have.
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        let mut symbols = Vec::new();
        for word in text.split_whitespace() {
            symbols.clear();
            for c in word.chars() {
                symbols.push(*self.chars.get(&c).ok_or_else(|| {
                    Error::InvalidData(format!("character {c:?} is not in the BPE's alphabet"))
                })?);
            }
            symbols.push(self.end_of_word);
            merge(&mut symbols, &self.merges);
            out.extend(symbols.iter().map(|&s| i64::from(s)));
        }
        Ok(out)
    }

    /// The words of `ids` joined by single spaces.
    fn decode(&self, ids: &[i64]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            let s = usize::try_from(id)
                .ok()
                .and_then(|i| self.symbols.get(i))
                .ok_or_else(|| invalid_id(id, self.symbols.len()))?;
            match s.strip_suffix(Self::END_OF_WORD) {
                Some(stem) => {
                    out.push_str(stem);
                    out.push(' ');
                }
                None => out.push_str(s),
            }
        }
        if out.ends_with(' ') {
            out.pop();
        }
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.symbols.len()
    }

    fn to_json(&self) -> String {
        let file = ClassicFile {
            kind: "classic-bpe".into(),
            symbols: self.symbols.clone(),
            merges: self.merge_list.clone(),
        };
        serde_json::to_string(&file).expect("strings serialise")
    }
}
