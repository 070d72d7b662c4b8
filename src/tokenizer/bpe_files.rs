//! Byte-level BPE files: OpenAI's GPT-2 pair (`vocab.json`, token -> id,
//! and `merges.txt`, one merge per line in rank order) and Hugging Face's
//! `tokenizer.json`, which this crate also writes. Tokens are written in
//! the byte-level alphabet ([`byte_to_char`]).

use std::path::Path;

use serde_json::{Map, Value, json};

use super::BpeTokenizer;
use super::byte_level::{byte_to_char, decode_chars, encode_bytes};
use crate::checkpoint::write_atomically;
use crate::{Error, Result};

fn read(path: &Path, what: &'static str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(what, path, e))
}

/// Token strings by id, from a `token -> id` map with ids `0..n` each
/// used once.
fn tokens_by_id(vocab: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let mut tokens = vec![None; vocab.len()];
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format!("the id of {token:?} is not a non-negative integer: {id}"))?;
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get_mut(i))
            .ok_or_else(|| {
                format!(
                    "token {token:?} has id {id}, but ids of {} tokens run from 0 to {}",
                    vocab.len(),
                    vocab.len().saturating_sub(1)
                )
            })?;
        if let Some(other) = slot.replace(token.clone()) {
            return Err(format!("tokens {other:?} and {token:?} share id {id}"));
        }
    }
    Ok(tokens
        .into_iter()
        .map(|t| t.expect("every id is used once"))
        .collect())
}

/// Builds the tokenizer from token strings by id, merges as pairs of token
/// strings, and the ids of the special tokens: `None` says that a token no
/// merge makes (longer than one byte) is special, as `<|endoftext|>` in
/// GPT-2's `vocab.json`.
fn build(
    tokens: Vec<String>,
    merges: &[(String, String)],
    special: Option<Vec<u32>>,
) -> std::result::Result<BpeTokenizer, String> {
    let table = byte_to_char();
    let ids: std::collections::HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let merge_ids = merges
        .iter()
        .enumerate()
        .map(|(rank, (a, b))| {
            let id = |t: &str| {
                ids.get(t).copied().ok_or_else(|| {
                    format!(
                        "merge {} ({a} {b}): {t:?} is not in the vocabulary",
                        rank + 1
                    )
                })
            };
            Ok((id(a)?, id(b)?))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let special = special.unwrap_or_else(|| {
        let mut made = vec![false; tokens.len()];
        for (a, b) in merges {
            if let Some(&id) = ids.get(format!("{a}{b}").as_str()) {
                made[id as usize] = true;
            }
        }
        (0..tokens.len() as u32)
            .filter(|&i| !made[i as usize] && tokens[i as usize].chars().count() > 1)
            .collect()
    });
    let mut bytes = Vec::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if special.contains(&(id as u32)) {
            bytes.push(token.as_bytes().to_vec());
        } else {
            bytes.push(decode_chars(token, &table).ok_or_else(|| {
                format!(
                    "token {id} ({token:?}) has a character outside GPT-2's byte-level alphabet"
                )
            })?);
        }
    }
    let special = special
        .into_iter()
        .map(|id| (tokens[id as usize].clone(), id))
        .collect();
    BpeTokenizer::from_parts(bytes, merge_ids, special)
}

/// `"a b"` -> `("a", "b")`.
fn split_merge(line: &str) -> Option<(String, String)> {
    let (a, b) = line.split_once(' ')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(' ')).then(|| (a.to_string(), b.to_string()))
}

impl BpeTokenizer {
    /// GPT-2's tokenizer (or any in its format) from OpenAI's `vocab.json`
    /// (called `encoder.json` there) and `merges.txt` (`vocab.bpe`). A token
    /// that no merge makes and is longer than one byte is special
    /// (`<|endoftext|>`, id 50256). Errors name the file and the entry.
    pub fn from_gpt2_files(
        vocab: impl AsRef<Path>,
        merges: impl AsRef<Path>,
    ) -> Result<BpeTokenizer> {
        let (vocab, merges_path) = (vocab.as_ref(), merges.as_ref());
        let map: Map<String, Value> = serde_json::from_str(&read(vocab, "reading the vocabulary")?)
            .map_err(|e| {
                Error::invalid_file(vocab, format!("not a JSON object of token -> id: {e}"))
            })?;
        let tokens = tokens_by_id(&map).map_err(|m| Error::invalid_file(vocab, m))?;
        let text = read(merges_path, "reading the merges")?;
        let mut merges = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if (i == 0 && line.starts_with("#version")) || line.is_empty() {
                continue;
            }
            merges.push(split_merge(line).ok_or_else(|| {
                Error::invalid_file(
                    merges_path,
                    format!(
                        "line {}: {line:?} is not two tokens separated by one space",
                        i + 1
                    ),
                )
            })?);
        }
        build(tokens, &merges, None).map_err(|m| {
            Error::invalid_file(
                vocab,
                format!("{m} (with the merges of {})", merges_path.display()),
            )
        })
    }

    /// A byte-level BPE tokenizer from a Hugging Face `tokenizer.json`
    /// (GPT-2's, or one [`save`](Self::save) wrote).
    pub fn load(path: impl AsRef<Path>) -> Result<BpeTokenizer> {
        let path = path.as_ref();
        let text = read(path, "reading the tokenizer")?;
        parse_tokenizer_json(&text).map_err(|m| Error::invalid_file(path, m))
    }

    /// The tokenizer of a Hugging Face model directory: its `vocab.json`
    /// and `merges.txt` (GPT-2's layout), else its `tokenizer.json`.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<BpeTokenizer> {
        let dir = dir.as_ref();
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.is_file() && merges.is_file() {
            return BpeTokenizer::from_gpt2_files(vocab, merges);
        }
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return BpeTokenizer::load(json);
        }
        Err(Error::invalid_file(
            dir,
            "holds no tokenizer: neither vocab.json with merges.txt nor tokenizer.json",
        ))
    }

    /// [`load`](Self::load) from the JSON text itself.
    pub fn from_tokenizer_json_str(json: &str) -> Result<BpeTokenizer> {
        parse_tokenizer_json(json).map_err(|m| Error::InvalidData(format!("tokenizer.json: {m}")))
    }

    /// Writes Hugging Face's `tokenizer.json` (`tokenizers.Tokenizer.from_file`
    /// and `PreTrainedTokenizerFast(tokenizer_file=...)` read it), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomically(path.as_ref(), to_tokenizer_json(self).as_bytes())
    }

    /// Writes the tokenizer files of a Hugging Face GPT-2 folder, each
    /// atomically: `vocab.json` and `merges.txt` (GPT-2's layout),
    /// `tokenizer.json`, and `tokenizer_config.json` naming the first
    /// special token (`<|endoftext|>`) as beginning, end and unknown token,
    /// as GPT-2's does. transformers' `AutoTokenizer.from_pretrained(dir)`
    /// and [`from_pretrained`](Self::from_pretrained) read the folder.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the folder", dir, e))?;
        let name = token_names(self);
        let vocab: Map<String, Value> = name
            .iter()
            .enumerate()
            .map(|(id, n)| (n.clone(), json!(id)))
            .collect();
        let mut merges = String::from("#version: 0.2\n");
        for &(a, b) in self.merges() {
            merges.push_str(&format!("{} {}\n", name[a as usize], name[b as usize]));
        }
        let mut config = json!({"add_prefix_space": false});
        if let Some((special, _)) = self.special_ids().next() {
            for key in ["bos_token", "eos_token", "unk_token"] {
                config[key] = json!(special);
            }
        }
        let files = [
            (
                "vocab.json",
                serde_json::to_string(&vocab).expect("JSON values serialise"),
            ),
            ("merges.txt", merges),
            ("tokenizer.json", to_tokenizer_json(self)),
            (
                "tokenizer_config.json",
                serde_json::to_string_pretty(&config).expect("JSON values serialise"),
            ),
        ];
        for (file, text) in files {
            write_atomically(&dir.join(file), text.as_bytes())?;
        }
        Ok(())
    }
}

/// Every token's name by id, as GPT-2's files spell them: a special
/// token's text, else its bytes in GPT-2's printable alphabet.
fn token_names(tokenizer: &BpeTokenizer) -> Vec<String> {
    let table = byte_to_char();
    let special: Vec<(String, u32)> = tokenizer
        .special_ids()
        .map(|(t, id)| (t.to_string(), id))
        .collect();
    (0..tokenizer.tokens().len() as u32)
        .map(|id| match special.iter().find(|(_, s)| *s == id) {
            Some((t, _)) => t.clone(),
            None => encode_bytes(tokenizer.token_bytes(id).expect("an id"), &table),
        })
        .collect()
}

fn parse_tokenizer_json(text: &str) -> std::result::Result<BpeTokenizer, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let model = root
        .get("model")
        .ok_or("not a Hugging Face tokenizer.json: no \"model\"")?;
    let kind = model.get("type").and_then(Value::as_str);
    if kind != Some("BPE") {
        return Err(format!("model type {kind:?}; only \"BPE\" is read"));
    }
    let pre = root
        .get("pre_tokenizer")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    if pre != Some("ByteLevel") {
        return Err(format!(
            "pre_tokenizer type {pre:?}; only byte-level BPE (\"ByteLevel\", as GPT-2's) is read"
        ));
    }
    if root.get("normalizer").is_some_and(|n| !n.is_null()) {
        return Err("a normalizer is set; byte-level BPE as GPT-2's has none".into());
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if model
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(format!("model.{key} is set; byte-level BPE has none"));
        }
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or("no model.vocab object")?;
    let mut merges = Vec::new();
    for (i, m) in model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or("no model.merges list")?
        .iter()
        .enumerate()
    {
        let pair = match m {
            Value::String(s) => split_merge(s),
            Value::Array(p) => match p.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        };
        merges.push(pair.ok_or_else(|| format!("model.merges[{i}] is not a pair of tokens: {m}"))?);
    }
    let mut tokens = tokens_by_id(vocab).map_err(|m| format!("model.vocab: {m}"))?;
    let mut special = Vec::new();
    for (i, added) in root
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = added.get("id").and_then(Value::as_u64);
        let content = added.get("content").and_then(Value::as_str);
        let (Some(id), Some(content)) = (id, content) else {
            return Err(format!(
                "added_tokens[{i}] needs an integer id and a content string"
            ));
        };
        if id as usize == tokens.len() {
            tokens.push(content.to_string());
        } else if tokens.get(id as usize).map(String::as_str) != Some(content) {
            return Err(format!(
                "added_tokens[{i}] ({content:?}, id {id}) neither extends the vocabulary of {} tokens nor matches its entry",
                tokens.len()
            ));
        }
        special.push(id as u32);
    }
    build(tokens, &merges, Some(special))
}

/// Hugging Face's `tokenizer.json` for a byte-level BPE.
pub(super) fn to_tokenizer_json(tokenizer: &BpeTokenizer) -> String {
    let names = token_names(tokenizer);
    let name = |id: u32| names[id as usize].clone();
    let special: Vec<(String, u32)> = tokenizer
        .special_ids()
        .map(|(t, id)| (t.to_string(), id))
        .collect();
    let vocab: Map<String, Value> = (0..tokenizer.tokens().len() as u32)
        .map(|id| (name(id), json!(id)))
        .collect();
    let merges: Vec<Value> = tokenizer
        .merges()
        .iter()
        .map(|&(a, b)| json!([name(a), name(b)]))
        .collect();
    let added: Vec<Value> = special
        .iter()
        .map(|(t, id)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": true, "special": true})
        })
        .collect();
    let byte_level = |prefix: bool, trim: bool| json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim, "use_regex": true});
    let root = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level(false, true),
        "post_processor": byte_level(true, false),
        "decoder": byte_level(true, true),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "",
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    serde_json::to_string(&root).expect("JSON values serialise")
}
