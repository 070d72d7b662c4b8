//! Files from the network, fetched as nanoGPT and Hugging Face users
//! expect (the default `hub` feature): one download helper (HTTPS, a
//! progress callback, a SHA-256 check where the source publishes a fixed
//! file, written atomically, resumed after a cut connection), a cache
//! folder, and Hugging Face model repositories by name.
//!
//! ```no_run
//! use zeroformer::{Device, Gpt};
//! let gpt2 = Gpt::from_hub("gpt2", &Device::Cpu)?; // downloaded once into the cache
//! # Ok::<(), zeroformer::Error>(())
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Where tiny Shakespeare is published (Karpathy's char-rnn), and the
/// SHA-256 of that file.
pub const SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
/// The SHA-256 of [`SHAKESPEARE_URL`]'s 1,115,394 bytes.
pub const SHAKESPEARE_SHA256: &str =
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";

/// Hugging Face's hub, unless `HF_ENDPOINT` names a mirror (as for
/// Hugging Face's own tools).
pub const HUB_ENDPOINT: &str = "https://huggingface.co";

/// How a download is going: bytes so far and, when the server says, the
/// total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

fn download_error(url: &str, message: impl Into<String>) -> Error {
    Error::Download {
        url: url.to_string(),
        message: message.into(),
    }
}

/// The agent every download uses: redirects followed (the hub's files live
/// on a CDN), HTTP errors as statuses to report, and timeouts that tell a
/// dead connection from a slow one.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The SHA-256 the Hugging Face hub publishes for a file kept in Git LFS
/// (model weights): the `X-Linked-Etag` of the `resolve` URL's redirect,
/// asked by a HEAD request that does not follow it, as `huggingface_hub`
/// does. `None` for a file without one (a small file's ETag is a git
/// hash, not a SHA-256) or when the request fails: the download that
/// follows then says why.
fn published_sha256(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.head(url).call().ok()?;
    let tag = response.headers().get("x-linked-etag")?.to_str().ok()?;
    let tag = tag.trim().trim_start_matches("W/").trim_matches('"');
    (tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| tag.to_ascii_lowercase())
}

/// What a failed request means to the user, in one line.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::HostNotFound => "the host was not found: is this machine offline?".to_string(),
        ureq::Error::Io(e) => format!("{e}: is this machine offline, or the server down?"),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    }
}

/// The file beside `dest` that a download writes until it is complete.
fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// Downloads `url` to `dest`. Bytes go to `dest` + `.partial` first; only
/// a complete file (and, with `sha256`, one whose SHA-256 is that hex
/// digest) is renamed to `dest`, so `dest` is never half-written. A cut
/// connection leaves the partial file, and the next call asks the server
/// for the rest (an HTTP range; a server that ignores it sends the whole
/// file again). A wrong checksum removes the partial file. `progress` is
/// called as bytes arrive.
pub fn download(url: &str, dest: &Path, sha256: Option<&str>, progress: Progress) -> Result<()> {
    let partial = partial_path(dest);
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the folder", dir, e))?;
    }
    let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    let mut request = agent().get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request
        .call()
        .map_err(|e| download_error(url, describe(&e)))?;
    let status = response.status().as_u16();
    let (mut file, mut done) = match status {
        206 => {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&partial)
                .map_err(|e| Error::io("reopening the partial download", &partial, e))?;
            (file, have)
        }
        200 => {
            let file = std::fs::File::create(&partial)
                .map_err(|e| Error::io("writing the download", &partial, e))?;
            (file, 0)
        }
        404 => return Err(download_error(url, "not found (404)")),
        other => {
            return Err(download_error(
                url,
                format!("the server answered {other}; try again later"),
            ));
        }
    };
    let total = response.body().content_length().map(|n| n + done);
    let mut reader = response.body_mut().as_reader();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.sync_all();
                return Err(download_error(
                    url,
                    format!(
                        "the connection failed after {done} bytes ({e}); run again to resume from {}",
                        partial.display()
                    ),
                ));
            }
        };
        file.write_all(&buffer[..n])
            .map_err(|e| Error::io("writing the download", &partial, e))?;
        done += n as u64;
        progress(done, total);
    }
    if total.is_some_and(|t| t != done) {
        return Err(download_error(
            url,
            format!(
                "the connection closed after {done} of {} bytes; run again to resume",
                total.unwrap_or(0)
            ),
        ));
    }
    file.sync_all()
        .map_err(|e| Error::io("writing the download", &partial, e))?;
    drop(file);
    if let Some(expected) = sha256 {
        let got = sha256_of(&partial)?;
        if !got.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(&partial);
            return Err(download_error(
                url,
                format!(
                    "the file's SHA-256 is {got}, not the published {expected}; it was removed, run again to download it anew"
                ),
            ));
        }
    }
    std::fs::rename(&partial, dest)
        .map_err(|e| Error::io("moving the download into place", dest, e))
}

/// Downloads tiny Shakespeare to `dest`, checked against its SHA-256.
pub fn fetch_shakespeare(dest: &Path, progress: Progress) -> Result<()> {
    download(SHAKESPEARE_URL, dest, Some(SHAKESPEARE_SHA256), progress)
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Where downloads are kept: `$ZEROFORMER_CACHE`, else
/// `$XDG_CACHE_HOME/zeroformer`, else `~/.cache/zeroformer`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZEROFORMER_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("zeroformer");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("zeroformer")
}

/// A Hugging Face hub: where model files come from and where they are kept.
#[derive(Clone, Debug)]
pub struct Hub {
    /// The hub's address (`https://huggingface.co`).
    pub endpoint: String,
    /// The folder the models are kept in, one subfolder a repository.
    pub cache: PathBuf,
}

impl Default for Hub {
    /// Hugging Face's hub (or `$HF_ENDPOINT`), kept in [`cache_dir`]`/models`.
    fn default() -> Hub {
        Hub {
            endpoint: std::env::var("HF_ENDPOINT").unwrap_or_else(|_| HUB_ENDPOINT.to_string()),
            cache: cache_dir().join("models"),
        }
    }
}

/// The files a GPT-2 folder needs, and those it may have.
const MODEL_FILES: [&str; 2] = ["config.json", "model.safetensors"];
const OPTIONAL_FILES: [&str; 4] = [
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "generation_config.json",
];

impl Hub {
    /// A hub at `endpoint` whose models are kept in `cache`.
    pub fn new(endpoint: impl Into<String>, cache: impl Into<PathBuf>) -> Hub {
        Hub {
            endpoint: endpoint.into(),
            cache: cache.into(),
        }
    }

    /// The folder of model repository `repo` (`gpt2`, `openai-community/gpt2`),
    /// its files downloaded the first time: `config.json`,
    /// `model.safetensors`, and those of `vocab.json`, `merges.txt`,
    /// `tokenizer.json` and `generation_config.json` the repository has.
    /// A folder that holds the model is used as it is, with nothing asked
    /// of the network. `progress` gets each file's name and its bytes so far.
    pub fn model(
        &self,
        repo: &str,
        progress: &mut dyn FnMut(&str, u64, Option<u64>),
    ) -> Result<PathBuf> {
        let dir = self.folder(repo)?;
        // The optional files were looked for when the folder was made.
        if MODEL_FILES.iter().all(|f| dir.join(f).is_file()) {
            return Ok(dir);
        }
        for file in MODEL_FILES {
            self.file(repo, file, progress)?;
        }
        for file in OPTIONAL_FILES {
            match self.file(repo, file, progress) {
                Err(Error::Download { message, .. }) if message.starts_with("not found") => {}
                other => {
                    other?;
                }
            }
        }
        Ok(dir)
    }

    /// File `name` of repository `repo`, downloaded into its folder the
    /// first time (a tokenizer's files, without the model's weights), and
    /// checked against the SHA-256 the hub publishes for files kept in Git
    /// LFS (the weights).
    pub fn file(
        &self,
        repo: &str,
        name: &str,
        progress: &mut dyn FnMut(&str, u64, Option<u64>),
    ) -> Result<PathBuf> {
        let dest = self.folder(repo)?.join(name);
        if !dest.is_file() {
            let url = format!(
                "{}/{repo}/resolve/main/{name}",
                self.endpoint.trim_end_matches('/')
            );
            let sha256 = published_sha256(&url);
            download(&url, &dest, sha256.as_deref(), &mut |done, total| {
                progress(name, done, total)
            })?;
        }
        Ok(dest)
    }

    /// Where repository `repo`'s files are kept; an error for a name that
    /// is not a repository's (so none escapes the cache).
    fn folder(&self, repo: &str) -> Result<PathBuf> {
        let valid = !repo.is_empty()
            && repo.split('/').count() <= 2
            && repo.split('/').all(|part| {
                !part.is_empty()
                    && !part.starts_with('.')
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !valid {
            return Err(Error::InvalidConfig(format!(
                "'{repo}' is not a Hugging Face model name (such as gpt2 or openai-community/gpt2)"
            )));
        }
        Ok(self.cache.join(repo.replace('/', "--")))
    }
}
