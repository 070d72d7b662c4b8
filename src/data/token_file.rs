//! Token files: a corpus encoded once into little-endian token ids (u16,
//! or u32 when the vocabulary needs it; nanoGPT's `train.bin`), with a
//! header naming the id width, the count, the vocabulary size and the
//! tokenizer (as its JSON), and read back memory-mapped: training on a
//! corpus larger than memory samples windows straight from the page cache.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..8 | `ZFTOKENS` |
//! | 8..12 | format version, 1 |
//! | 12..16 | bytes per id: 2 or 4 |
//! | 16..24 | number of ids |
//! | 24..32 | vocabulary size |
//! | 32..40 | tokenizer JSON length `n` |
//! | 40..40+n | the tokenizer's JSON ([`Tokenizer::to_json`](crate::tokenizer::Tokenizer::to_json)) |
//! | to a multiple of 8 | zero padding |
//! | then | the ids |

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rand::Rng;
use rayon::prelude::*;

use crate::checkpoint::write_atomically_with;
use crate::{Device, Error, Result, Tensor};

const MAGIC: &[u8; 8] = b"ZFTOKENS";
const VERSION: u32 = 1;
const FIXED_HEADER: usize = 40;

/// A token file, memory-mapped.
///
/// ```
/// use zeroformer::data::TokenFile;
/// use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("train.bin");
/// let tok = CharTokenizer::from_text("ab");
/// TokenFile::write(&path, tok.vocab_size(), &tok.to_json(), |sink| sink.push(&[0, 1, 1, 0]))?;
/// let file = TokenFile::open(&path)?;
/// assert_eq!((file.len(), file.get(1)), (4, 1));
/// assert_eq!(file.tokenizer()?.decode(&file.to_vec(0..4))?, "abba");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TokenFile {
    map: Mmap,
    path: PathBuf,
    width: usize,
    len: usize,
    vocab_size: usize,
    data: usize,
    tokenizer: String,
}

/// Where [`TokenFile::write`] sends the ids.
pub struct TokenSink<'a> {
    out: &'a mut std::io::BufWriter<std::fs::File>,
    tmp: &'a Path,
    width: usize,
    vocab_size: usize,
    count: u64,
}

impl TokenSink<'_> {
    /// Appends `ids`; an id outside the vocabulary is an error.
    pub fn push(&mut self, ids: &[i64]) -> Result<()> {
        let mut bytes = Vec::with_capacity(ids.len() * self.width);
        for &id in ids {
            if id < 0 || id as u64 >= self.vocab_size as u64 {
                return Err(Error::InvalidData(format!(
                    "token id {id} is outside the vocabulary of {} tokens",
                    self.vocab_size
                )));
            }
            match self.width {
                2 => bytes.extend_from_slice(&(id as u16).to_le_bytes()),
                _ => bytes.extend_from_slice(&(id as u32).to_le_bytes()),
            }
        }
        self.out
            .write_all(&bytes)
            .map_err(|e| Error::io("writing", self.tmp, e))?;
        self.count += ids.len() as u64;
        Ok(())
    }

    /// How many ids were pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

fn header(width: usize, count: u64, vocab_size: usize, tokenizer: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER + tokenizer.len() + 8);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(width as u32).to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&(vocab_size as u64).to_le_bytes());
    h.extend_from_slice(&(tokenizer.len() as u64).to_le_bytes());
    h.extend_from_slice(tokenizer.as_bytes());
    h.resize(h.len().next_multiple_of(8), 0);
    h
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl TokenFile {
    /// Writes a token file atomically (a temporary file renamed into place
    /// once complete): `fill` pushes the ids, in order, into the sink. Ids
    /// are stored as u16 when `vocab_size` allows, else u32.
    pub fn write(
        path: impl AsRef<Path>,
        vocab_size: usize,
        tokenizer_json: &str,
        fill: impl FnOnce(&mut TokenSink) -> Result<()>,
    ) -> Result<()> {
        if vocab_size == 0 || vocab_size > u32::MAX as usize + 1 {
            return Err(Error::InvalidConfig(format!(
                "a token file holds 1 to 2^32 token ids, not a vocabulary of {vocab_size}"
            )));
        }
        let width = if vocab_size <= 1 << 16 { 2 } else { 4 };
        write_atomically_with(path.as_ref(), |out, tmp| {
            let io = |e| Error::io("writing", tmp, e);
            out.write_all(&header(width, 0, vocab_size, tokenizer_json))
                .map_err(io)?;
            let mut sink = TokenSink {
                out,
                tmp,
                width,
                vocab_size,
                count: 0,
            };
            fill(&mut sink)?;
            let count = sink.count;
            out.seek(SeekFrom::Start(16)).map_err(io)?;
            out.write_all(&count.to_le_bytes()).map_err(io)?;
            out.flush().map_err(io)
        })
    }

    /// Maps a token file and checks it: the header against the file's
    /// size, the tokenizer JSON as UTF-8, and every id against the
    /// vocabulary (in parallel; errors name the file and what is wrong).
    pub fn open(path: impl AsRef<Path>) -> Result<TokenFile> {
        let path = path.as_ref();
        let bad = |message: String| Error::invalid_file(path, message);
        let file =
            std::fs::File::open(path).map_err(|e| Error::io("opening the token file", path, e))?;
        // SAFETY: the map is read-only and private to this value; like every
        // memory-mapped reader, it assumes no other process truncates or
        // rewrites the file while it is open (this crate replaces files by
        // renaming new ones into place, which leaves an open map intact).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::io("mapping the token file", path, e))?;
        let bytes: &[u8] = &map;
        if bytes.len() < FIXED_HEADER || &bytes[..8] != MAGIC {
            return Err(bad("not a token file (no ZFTOKENS header)".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}; this build reads version {VERSION}"
            )));
        }
        let width = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if width != 2 && width != 4 {
            return Err(bad(format!("{width} bytes per id; token files use 2 or 4")));
        }
        let (count, vocab, text_len) = (
            read_u64(bytes, 16),
            read_u64(bytes, 24),
            read_u64(bytes, 32),
        );
        if vocab == 0 || vocab > 1u64 << (8 * width) {
            return Err(bad(format!(
                "a vocabulary of {vocab} does not fit {width}-byte ids"
            )));
        }
        let available = (bytes.len() - FIXED_HEADER) as u64;
        if text_len > available {
            return Err(bad(format!(
                "the header says the tokenizer takes {text_len} bytes, but only {available} follow it"
            )));
        }
        let text_end = FIXED_HEADER + text_len as usize;
        let data = text_end.next_multiple_of(8);
        let stored = bytes.len().saturating_sub(data) as u64;
        if count.checked_mul(width as u64) != Some(stored) || data > bytes.len() {
            return Err(bad(format!(
                "the header says {count} ids of {width} bytes, but {stored} bytes of ids follow (truncated or not a token file)"
            )));
        }
        let tokenizer = std::str::from_utf8(&bytes[FIXED_HEADER..text_end])
            .map_err(|_| bad("the tokenizer JSON is not UTF-8".into()))?
            .to_string();
        let token_file = TokenFile {
            path: path.to_path_buf(),
            width,
            len: count as usize,
            vocab_size: vocab as usize,
            data,
            tokenizer,
            map,
        };
        token_file.check_ids()?;
        Ok(token_file)
    }

    fn check_ids(&self) -> Result<()> {
        const CHUNK: usize = 1 << 20;
        let bad = (0..self.len.div_ceil(CHUNK))
            .into_par_iter()
            .find_first(|&c| {
                (c * CHUNK..((c + 1) * CHUNK).min(self.len))
                    .any(|i| self.raw(i) as u64 >= self.vocab_size as u64)
            });
        match bad {
            None => Ok(()),
            Some(c) => {
                let i = (c * CHUNK..self.len)
                    .find(|&i| self.raw(i) as u64 >= self.vocab_size as u64)
                    .expect("the chunk holds one");
                Err(Error::invalid_file(
                    &self.path,
                    format!(
                        "id {} at position {i} is outside the vocabulary of {} tokens",
                        self.raw(i),
                        self.vocab_size
                    ),
                ))
            }
        }
    }

    #[inline]
    fn raw(&self, i: usize) -> u32 {
        let at = self.data + i * self.width;
        let b = &self.map[at..at + self.width];
        match self.width {
            2 => u32::from(u16::from_le_bytes([b[0], b[1]])),
            _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }

    /// How many ids the file holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a file without ids.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vocabulary size the ids are below.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Bytes per id on disk (2 or 4).
    pub fn id_width(&self) -> usize {
        self.width
    }

    /// The JSON of the tokenizer the ids came from.
    pub fn tokenizer_json(&self) -> &str {
        &self.tokenizer
    }

    /// The tokenizer the ids came from.
    pub fn tokenizer(&self) -> Result<Box<dyn crate::tokenizer::Tokenizer>> {
        crate::tokenizer::from_json(&self.tokenizer)
            .map_err(|e| Error::invalid_file(&self.path, format!("its tokenizer: {e}")))
    }

    /// Id `i` (panics beyond the end, as slice indexing does).
    pub fn get(&self, i: usize) -> i64 {
        assert!(
            i < self.len,
            "TokenFile::get: index {i} is beyond {} ids",
            self.len
        );
        i64::from(self.raw(i))
    }

    /// The ids in `range`.
    pub fn to_vec(&self, range: std::ops::Range<usize>) -> Vec<i64> {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "TokenFile::to_vec: range {range:?} is beyond {} ids",
            self.len
        );
        range.map(|i| i64::from(self.raw(i))).collect()
    }

    /// `batch` windows at random starts, as
    /// [`random_batch`](super::random_batch) draws them from a slice (the
    /// same `rng` gives the same windows): `[batch, context]` inputs and
    /// the next token of each as targets, made on `device`.
    pub fn random_batch(
        &self,
        batch: usize,
        context: usize,
        rng: &mut impl Rng,
        device: &Device,
    ) -> (Tensor, Tensor) {
        assert!(
            self.len > context,
            "TokenFile::random_batch: {} tokens cannot fill a context of {context}",
            self.len
        );
        let starts: Vec<usize> = (0..batch)
            .map(|_| rng.gen_range(0..self.len - context))
            .collect();
        let mut x = Vec::with_capacity(batch * context);
        let mut y = Vec::with_capacity(batch * context);
        for &s in &starts {
            x.extend((s..s + context).map(|i| i64::from(self.raw(i))));
            y.extend((s + 1..s + context + 1).map(|i| i64::from(self.raw(i))));
        }
        super::ids_pair(x, y, &[batch, context], device)
    }
}
