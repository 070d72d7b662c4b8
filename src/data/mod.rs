//! Text and token datasets: loading a corpus, the train/validation split,
//! random training batches, and evaluation windows; [`digits`], the
//! synthetic sequence-to-sequence tasks; [`speeches`], the speeches of a play.

pub mod digits;
pub mod speeches;
mod token_file;

pub use token_file::{TokenFile, TokenSink};

use std::path::{Path, PathBuf};

use rand::Rng;

use crate::{Device, Error, Result, Tensor};

/// The shell command that fetches tiny Shakespeare into `data/`.
pub const FETCH_SHAKESPEARE: &str = "mkdir -p data && curl -fL -o data/tinyshakespeare.txt https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

/// Where the examples find tiny Shakespeare: `explicit` (a `--data` flag)
/// when given, else `data/tinyshakespeare.txt`, else
/// `../shared/data/tinyshakespeare.txt`. When none exists the error gives
/// the command that fetches it.
pub fn locate_shakespeare(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    ["data/tinyshakespeare.txt", "../shared/data/tinyshakespeare.txt"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "no corpus at data/tinyshakespeare.txt; fetch it with\n    {FETCH_SHAKESPEARE}\nor pass --data PATH"
            ))
        })
}

/// [`locate_shakespeare`], and when no corpus is found and none was named,
/// tiny Shakespeare downloaded into `data/tinyshakespeare.txt` (the `hub`
/// feature; checked against its SHA-256), saying so on stderr first. A
/// failed download's error also gives the command that fetches it by hand.
pub fn locate_or_fetch_shakespeare(explicit: Option<&Path>) -> Result<PathBuf> {
    let found = locate_shakespeare(explicit);
    #[cfg(feature = "hub")]
    if found.is_err() && explicit.is_none() {
        let dest = PathBuf::from("data/tinyshakespeare.txt");
        eprintln!(
            "no corpus found: downloading tiny Shakespeare (1.1 MB) from {} into {}",
            crate::hub::SHAKESPEARE_URL,
            dest.display()
        );
        return crate::hub::fetch_shakespeare(&dest, &mut |_, _| {})
            .map(|()| dest)
            .map_err(|e| match e {
                Error::Download { url, message } => Error::Download {
                    url,
                    message: format!(
                        "{message}; fetch it by hand with `{FETCH_SHAKESPEARE}`, or pass --data PATH"
                    ),
                },
                other => other,
            });
    }
    found
}

/// Where the examples find GPT-2's tokenizer files (`vocab.json`,
/// `merges.txt`): in `explicit` (a `--gpt2-dir` flag) when given, else
/// `data/gpt2/`, else `../shared/data/gpt2/`.
pub fn locate_gpt2(explicit: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let dirs: Vec<PathBuf> = match explicit {
        Some(d) => vec![d.to_path_buf()],
        None => vec!["data/gpt2".into(), "../shared/data/gpt2".into()],
    };
    dirs.iter()
        .map(|d| (d.join("vocab.json"), d.join("merges.txt")))
        .find(|(v, m)| v.exists() && m.exists())
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "no GPT-2 tokenizer files (vocab.json and merges.txt) in {}; pass --gpt2-dir DIR",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })
}

/// [`locate_gpt2`], and when no files are found and no folder was named,
/// GPT-2's `vocab.json` and `merges.txt` from the Hugging Face hub's `gpt2`
/// repository, downloaded once into the cache (the `hub` feature; not the
/// model's weights), saying so on stderr.
pub fn locate_or_fetch_gpt2(explicit: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let found = locate_gpt2(explicit);
    #[cfg(feature = "hub")]
    if found.is_err() && explicit.is_none() {
        let hub = crate::hub::Hub::default();
        let mut said = false;
        let mut say = |name: &str, _: u64, _: Option<u64>| {
            if !said {
                eprintln!(
                    "downloading GPT-2's tokenizer ({name}, ...) from {} into {}",
                    hub.endpoint,
                    hub.cache.display()
                );
                said = true;
            }
        };
        let vocab = hub.file("gpt2", "vocab.json", &mut say)?;
        let merges = hub.file("gpt2", "merges.txt", &mut say)?;
        return Ok((vocab, merges));
    }
    found
}

/// Reads a UTF-8 text corpus, with errors that say what to do.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading the corpus", path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::InvalidData(format!("{} is not UTF-8 text: {e}", path.display())))?;
    if text.is_empty() {
        return Err(Error::InvalidData(format!("{} is empty", path.display())));
    }
    Ok(text)
}

/// Splits tokens into the first `train_fraction` and the rest (nanoGPT: 0.9).
pub fn train_val_split(tokens: &[i64], train_fraction: f64) -> (&[i64], &[i64]) {
    let n = (tokens.len() as f64 * train_fraction) as usize;
    tokens.split_at(n.min(tokens.len()))
}

/// Input and target windows `[batch, context]` on `device`: targets are
/// the inputs shifted by one.
fn batch_from(
    tokens: &[i64],
    starts: &[usize],
    context: usize,
    device: &Device,
) -> (Tensor, Tensor) {
    let mut x = Vec::with_capacity(starts.len() * context);
    let mut y = Vec::with_capacity(starts.len() * context);
    for &s in starts {
        x.extend_from_slice(&tokens[s..s + context]);
        y.extend_from_slice(&tokens[s + 1..s + context + 1]);
    }
    ids_pair(x, y, &[starts.len(), context], device)
}

/// Inputs and targets as i64 tensors on `device`, copied there straight
/// from the host. Panics, as an op does, if the device cannot take them
/// (a model's device was opened when the model was built).
pub(crate) fn ids_pair(
    x: Vec<i64>,
    y: Vec<i64>,
    shape: &[usize],
    device: &Device,
) -> (Tensor, Tensor) {
    let on = |ids| Tensor::from_ids_on(ids, shape, device).unwrap_or_else(|e| panic!("batch: {e}"));
    (on(x), on(y))
}

/// Checks that `tokens` holds at least one window of `context` plus a target.
pub fn check_long_enough(tokens: &[i64], context: usize, what: &str) -> Result<()> {
    if tokens.len() <= context {
        return Err(Error::InvalidData(format!(
            "the {what} split has {} tokens, but a context of {context} needs at least {}",
            tokens.len(),
            context + 1
        )));
    }
    Ok(())
}

/// A batch of `batch` windows at uniformly random offsets (nanoGPT's
/// `get_batch`), made on `device` (the model's: `model.device()`).
/// `tokens` must be longer than `context` (see [`check_long_enough`]).
pub fn random_batch(
    tokens: &[i64],
    batch: usize,
    context: usize,
    rng: &mut impl Rng,
    device: &Device,
) -> (Tensor, Tensor) {
    assert!(
        tokens.len() > context,
        "random_batch: {} tokens cannot fill a context of {context}",
        tokens.len()
    );
    let starts: Vec<usize> = (0..batch)
        .map(|_| rng.gen_range(0..tokens.len() - context))
        .collect();
    batch_from(tokens, &starts, context, device)
}

/// Windows of `context` tokens every `stride` positions, batched by `batch`:
/// with `stride == context` every token is predicted exactly once (except
/// the first and a tail shorter than a window), so a mean over them is the
/// loss over the whole split, independent of sampling; with `stride == 1`
/// every offset is visited. The batches are made on `device`.
pub fn sliding_windows<'a>(
    tokens: &'a [i64],
    context: usize,
    stride: usize,
    batch: usize,
    device: &'a Device,
) -> impl Iterator<Item = (Tensor, Tensor)> + 'a {
    assert!(
        stride > 0 && batch > 0,
        "sliding_windows: stride and batch must be positive"
    );
    let last_start = tokens.len().saturating_sub(context + 1);
    let starts: Vec<usize> = if tokens.len() > context {
        (0..=last_start).step_by(stride).collect()
    } else {
        Vec::new()
    };
    let chunks: Vec<Vec<usize>> = starts.chunks(batch).map(<[usize]>::to_vec).collect();
    chunks
        .into_iter()
        .map(move |s| batch_from(tokens, &s, context, device))
}
