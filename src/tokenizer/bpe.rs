//! Byte-level BPE, as GPT-2 does it: the text cut into pieces by GPT-2's
//! pattern, each piece's UTF-8 bytes merged pair by pair in the order the
//! merges were learned. Encoding looks a whole piece up in the vocabulary
//! first (most words are one token), remembers the pieces it has merged
//! during one call, and merges long pieces in O(n log n).

use rustc_hash::FxHashMap;

use super::merge::{Merge, MergeTable, merge, pair_key};
use super::pretokenize::gpt2_pieces;
use super::{Tokenizer, invalid_id};
use crate::Result;

/// A byte-level BPE tokenizer: GPT-2's, one loaded from Hugging Face's
/// `tokenizer.json`, or one trained here.
///
/// ```no_run
/// use zeroformer::tokenizer::{BpeTokenizer, Tokenizer};
/// let gpt2 = BpeTokenizer::from_gpt2_files("gpt2/vocab.json", "gpt2/merges.txt")?;
/// assert_eq!(gpt2.encode("Hello world")?, [15496, 995]);
/// assert_eq!(gpt2.decode(&[15496, 995])?, "Hello world");
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BpeTokenizer {
    /// Every token's bytes, by id (special tokens' too).
    tokens: Vec<Vec<u8>>,
    /// Bytes -> id for the ordinary tokens a whole piece may be looked up
    /// as (those the merges also make from their bytes).
    whole: FxHashMap<Vec<u8>, u32>,
    /// The token of each single byte.
    byte_ids: [u32; 256],
    /// Pair -> (rank, merged token).
    merges: MergeTable,
    /// The merges in rank order, as pairs of ids.
    merge_list: Vec<(u32, u32)>,
    /// Special tokens (`<|endoftext|>`), matched only by
    /// [`encode_with_special_tokens`](Tokenizer::encode_with_special_tokens).
    special: Vec<(String, u32)>,
}

impl BpeTokenizer {
    /// A tokenizer from its parts: every token's bytes by id, the merges in
    /// rank order (pairs of ids, each making the token of their joined
    /// bytes), and the special tokens (ids whose text is only matched as a
    /// whole). Checked: each of the 256 bytes has a token, no two ordinary
    /// tokens share their bytes, every merge's parts and result exist, and
    /// every ordinary token longer than a byte is made by a merge.
    pub fn from_parts(
        tokens: Vec<Vec<u8>>,
        merge_list: Vec<(u32, u32)>,
        special: Vec<(String, u32)>,
    ) -> std::result::Result<BpeTokenizer, String> {
        let n = tokens.len();
        if n > u32::MAX as usize {
            return Err(format!("{n} tokens do not fit 32-bit ids"));
        }
        let mut is_special = vec![false; n];
        for (text, id) in &special {
            let slot = is_special.get_mut(*id as usize).ok_or_else(|| {
                format!("special token {text:?} has id {id}, outside the {n} tokens")
            })?;
            *slot = true;
        }
        let mut by_bytes: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        for (id, bytes) in tokens.iter().enumerate() {
            if is_special[id] {
                continue;
            }
            if bytes.is_empty() {
                return Err(format!("token {id} is empty"));
            }
            if let Some(other) = by_bytes.insert(bytes.clone(), id as u32) {
                return Err(format!(
                    "tokens {other} and {id} are the same bytes {:?}",
                    String::from_utf8_lossy(bytes)
                ));
            }
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *by_bytes
                .get(&[b as u8][..])
                .ok_or_else(|| format!("byte 0x{b:02X} has no token"))?;
        }
        let mut merges = MergeTable::default();
        let mut made = vec![false; n];
        for (rank, &(left, right)) in merge_list.iter().enumerate() {
            let part = |id: u32| {
                tokens
                    .get(id as usize)
                    .filter(|_| !is_special[id as usize])
                    .ok_or_else(|| {
                        format!("merge {rank} uses id {id}, which is not an ordinary token")
                    })
            };
            let joined = [part(left)?.as_slice(), part(right)?.as_slice()].concat();
            let id = *by_bytes.get(&joined).ok_or_else(|| {
                format!(
                    "merge {rank} makes {:?}, which is not in the vocabulary",
                    String::from_utf8_lossy(&joined)
                )
            })?;
            let merge = Merge {
                rank: rank as u32,
                id,
            };
            if merges.insert(pair_key(left, right), merge).is_some() {
                return Err(format!("merge {rank} repeats the pair ({left}, {right})"));
            }
            made[id as usize] = true;
        }
        if let Some(id) = (0..n).find(|&i| !is_special[i] && tokens[i].len() > 1 && !made[i]) {
            return Err(format!(
                "token {id} ({:?}) is made by no merge",
                String::from_utf8_lossy(&tokens[id])
            ));
        }
        let mut tokenizer = BpeTokenizer {
            tokens,
            whole: FxHashMap::default(),
            byte_ids,
            merges,
            merge_list,
            special,
        };
        // A whole piece may be looked up only as a token its own bytes merge
        // into: in a vocabulary where merge order makes some other split,
        // the lookup would disagree with the merges.
        let mut symbols = Vec::new();
        tokenizer.whole = by_bytes
            .into_iter()
            .filter(|(bytes, id)| {
                tokenizer.merge_bytes(bytes, &mut symbols);
                symbols[..] == [*id]
            })
            .collect();
        Ok(tokenizer)
    }

    /// The token ids of `bytes` by the merges alone, into `symbols`.
    fn merge_bytes(&self, bytes: &[u8], symbols: &mut Vec<u32>) {
        symbols.clear();
        symbols.extend(bytes.iter().map(|&b| self.byte_ids[b as usize]));
        merge(symbols, &self.merges);
    }

    /// Appends the ids of `text` (no special tokens) to `out`.
    fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>) {
        // Pieces merged during this call: their ids in `cached`.
        let mut cache: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
        let mut cached: Vec<u32> = Vec::new();
        let mut symbols = Vec::new();
        for piece in gpt2_pieces(text) {
            if let Some(&id) = self.whole.get(piece.as_bytes()) {
                out.push(id);
            } else if let Some(&(start, len)) = cache.get(piece) {
                out.extend_from_slice(&cached[start..start + len]);
            } else {
                self.merge_bytes(piece.as_bytes(), &mut symbols);
                cache.insert(piece, (cached.len(), symbols.len()));
                cached.extend_from_slice(&symbols);
                out.extend_from_slice(&symbols);
            }
        }
    }

    /// The ids of `text` as `u32` (special-token text is plain text): what
    /// [`Tokenizer::encode`] returns, without widening to `i64`.
    pub fn encode_u32(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encode_ordinary_into(text, &mut out);
        out
    }

    /// [`encode`](Tokenizer::encode) on the thread pool: the text is cut
    /// where a piece must start whatever precedes it (a space after a
    /// non-space), the parts are encoded side by side, and their ids
    /// joined, which gives exactly the ids of encoding it whole.
    pub fn encode_parallel(&self, text: &str) -> Result<Vec<i64>> {
        use rayon::prelude::*;
        let target = (text.len() / (rayon::current_num_threads() * 4)).max(1 << 16);
        let parts = super::chunks(text, target);
        let encoded: Vec<Vec<u32>> = parts.par_iter().map(|part| self.encode_u32(part)).collect();
        Ok(encoded.into_iter().flatten().map(i64::from).collect())
    }

    /// The bytes of `ids` joined: the text's UTF-8 when the ids came from
    /// whole text, a partial character when a stream stops mid-character.
    pub fn decode_bytes(&self, ids: &[i64]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let bytes = usize::try_from(id)
                .ok()
                .and_then(|i| self.tokens.get(i))
                .ok_or_else(|| invalid_id(id, self.tokens.len()))?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// The bytes of token `id`.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// The merges in rank order, as pairs of token ids.
    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merge_list
    }

    /// Every token's bytes, by id.
    pub fn tokens(&self) -> &[Vec<u8>] {
        &self.tokens
    }

    /// The special tokens' text and ids.
    pub fn special_ids(&self) -> impl Iterator<Item = (&str, u32)> {
        self.special.iter().map(|(t, id)| (t.as_str(), *id))
    }
}

impl Tokenizer for BpeTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<i64>> {
        Ok(self.encode_u32(text).into_iter().map(i64::from).collect())
    }

    /// The text of `ids`; bytes that do not form UTF-8 (ids cut
    /// mid-character) become U+FFFD, as tiktoken and Hugging Face do.
    fn decode_bytes(&self, ids: &[i64]) -> Result<Vec<u8>> {
        BpeTokenizer::decode_bytes(self, ids)
    }

    fn decode(&self, ids: &[i64]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    fn special_tokens(&self) -> Vec<(String, i64)> {
        self.special
            .iter()
            .map(|(t, id)| (t.clone(), i64::from(*id)))
            .collect()
    }

    fn to_json(&self) -> String {
        super::bpe_files::to_tokenizer_json(self)
    }
}
