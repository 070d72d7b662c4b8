//! Checkpoints in the safetensors format: named f32 tensors (model weights,
//! optimizer moments) plus string metadata (step, RNG states, config,
//! tokenizer), so Python's `safetensors` opens them too. Files are written
//! atomically: a temporary file beside the target, fsync, rename.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::Dtype;

use crate::nn::{Module, SharedRng};
use crate::optim::OptimizerState;
use crate::{Error, Result, Tensor};

/// Metadata key naming the format, checked on load.
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "zeroformer-checkpoint-v1";

/// Tensors and metadata, in memory.
///
/// ```
/// use zeroformer::checkpoint::Checkpoint;
/// use zeroformer::nn::LinearConfig;
/// use zeroformer::prelude::*;
/// let (device, mut rng) = (Device::Cpu, StdRng::seed_from_u64(0));
/// let layer = LinearConfig::new(3, 2).init(&device, &mut rng)?;
/// let mut ckpt = Checkpoint::default();
/// ckpt.add_module("model.", &layer);
/// ckpt.set_meta("step", "10");
/// let path = std::env::temp_dir().join("zeroformer-doc-example.safetensors");
/// ckpt.save(&path)?;
/// let loaded = Checkpoint::load(&path)?;
/// let fresh = LinearConfig::new(3, 2).init(&device, &mut rng)?;
/// loaded.load_module("model.", &fresh)?;
/// assert_eq!(fresh.weight.to_vec(), layer.weight.to_vec());
/// assert_eq!(loaded.meta("step"), Some("10"));
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Default, Clone, Debug)]
pub struct Checkpoint {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: BTreeMap<String, String>,
    /// Where it was loaded from, for error messages.
    source: Option<PathBuf>,
}

impl Checkpoint {
    /// Adds (or replaces) the f32 tensor `name` of `shape`; panics unless `data` fills the shape.
    pub fn add_tensor(&mut self, name: impl Into<String>, shape: &[usize], data: Vec<f32>) {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "add_tensor: data does not fill its shape"
        );
        self.tensors.insert(name.into(), (shape.to_vec(), data));
    }

    /// A tensor's shape and data.
    pub fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .get(name)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
    }

    /// Tensor names, sorted.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Sets the metadata entry `key`.
    pub fn set_meta(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// The metadata entry `key`, if present.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// A metadata value that must be present, as an error naming the file otherwise.
    pub fn require_meta(&self, key: &str) -> Result<&str> {
        self.meta(key)
            .ok_or_else(|| self.error(format!("metadata '{key}' is missing")))
    }

    /// An error about this checkpoint, naming the file it came from.
    pub(crate) fn error(&self, message: String) -> Error {
        Error::Checkpoint {
            path: self.source.clone().unwrap_or_default(),
            message,
        }
    }

    /// Adds every parameter of `module` under `prefix` + its dotted name.
    pub fn add_module(&mut self, prefix: &str, module: &impl Module) {
        for (name, t) in module.named_parameters() {
            self.add_tensor(format!("{prefix}{name}"), t.shape(), t.to_vec());
        }
    }

    /// Copies tensors `prefix` + name into `module`'s parameters. Checks
    /// every name and shape first and reports all mismatches in one error;
    /// on error no parameter is changed.
    pub fn load_module(&self, prefix: &str, module: &impl Module) -> Result<()> {
        let params = module.named_parameters();
        let expected = params.iter().map(|(n, t)| (n.clone(), t.shape().to_vec()));
        self.check_tensors(prefix, params.len(), expected)
            .map_err(|e| self.error(format!("does not fit the model: {e}")))?;
        for (name, t) in &params {
            let (_, data) = &self.tensors[&format!("{prefix}{name}")];
            t.assign(&Tensor::from_vec_on(data.clone(), t.shape(), &t.device())?);
        }
        Ok(())
    }

    /// Whether the tensors under `prefix` are exactly `expected` (names
    /// without the prefix, and shapes), as one message listing every
    /// problem. `count` is how many `expected` yields: a
    /// count the file cannot match is reported without walking more of
    /// `expected` than the file has tensors, however large it claims to be.
    pub fn check_tensors(
        &self,
        prefix: &str,
        count: usize,
        expected: impl Iterator<Item = (String, Vec<usize>)>,
    ) -> std::result::Result<(), String> {
        let in_file = self
            .tensors
            .keys()
            .filter(|n| n.starts_with(prefix))
            .count();
        let mut problems = Vec::new();
        if in_file != count {
            problems.push(format!(
                "the file holds {in_file} tensors under '{prefix}', {count} expected"
            ));
        }
        // Past the file's count, at least one more is missing: enough to name.
        for (name, shape) in expected.take(in_file.saturating_add(1)) {
            let full = format!("{prefix}{name}");
            match self.tensors.get(&full) {
                None => problems.push(format!("{full}: missing")),
                Some((s, _)) if *s != shape => problems.push(format!(
                    "{full}: shape {s:?} in the file, {shape:?} expected"
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} problems: {}",
                problems.len(),
                problems.join("; ")
            ))
        }
    }

    /// Adds an optimizer's state (Adam's moments, `<prefix><param>.exp_avg`
    /// and `.exp_avg_sq`; SGD's momentum buffers) and its step.
    pub fn add_optimizer(&mut self, prefix: &str, opt: &impl OptimizerState) {
        let (step, state) = opt.state();
        for (name, t) in state {
            self.add_tensor(format!("{prefix}{name}"), &[t.numel()], t.to_vec());
        }
        self.set_meta(format!("{prefix}step"), step.to_string());
    }

    /// Restores what [`add_optimizer`](Self::add_optimizer) saved; every problem in one error.
    pub fn load_optimizer(&self, prefix: &str, opt: &mut impl OptimizerState) -> Result<()> {
        let step: u64 = self
            .require_meta(&format!("{prefix}step"))?
            .parse()
            .map_err(|e| self.error(format!("{prefix}step: {e}")))?;
        let problems: Vec<String> = opt
            .load_state(step, &mut |name| {
                self.tensor(&format!("{prefix}{name}"))
                    .map(|(_, d)| d.to_vec())
            })
            .into_iter()
            .map(|problem| format!("{prefix}{problem}"))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!(
                "optimizer state does not fit ({} problems): {}",
                problems.len(),
                problems.join("; ")
            )))
        }
    }

    /// Stores a ChaCha8 generator's exact state under `key`.
    pub fn set_rng(&mut self, key: &str, rng: &ChaCha8Rng) {
        self.set_meta(key, encode_rng(rng.get_seed(), rng.get_word_pos()));
    }

    /// A ChaCha8 generator restored from `key`.
    pub fn rng(&self, key: &str) -> Result<ChaCha8Rng> {
        let (seed, pos) = decode_rng(self.require_meta(key)?)
            .ok_or_else(|| self.error(format!("metadata '{key}' is not an RNG state")))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(pos);
        Ok(rng)
    }

    /// Stores a model's dropout stream state under `key`.
    pub fn set_shared_rng(&mut self, key: &str, rng: &SharedRng) {
        let (seed, pos) = rng.state();
        self.set_meta(key, encode_rng(seed, pos));
    }

    /// Restores a model's dropout stream from `key`.
    pub fn load_shared_rng(&self, key: &str, rng: &SharedRng) -> Result<()> {
        let restored = self.rng(key)?;
        rng.set_state(restored.get_seed(), restored.get_word_pos());
        Ok(())
    }

    /// Writes the checkpoint to `path` atomically (temporary file, fsync,
    /// rename), creating the parent folder if needed. The bytes depend only
    /// on the contents (metadata and tensors in name order), so identical
    /// runs write identical files. A tensor holding NaN or infinity is
    /// refused, naming it: such a checkpoint would only fail later.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if let Some((name, i, v)) = self.first_non_finite() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("not written: tensor {name} holds {v} at element {i}"),
            });
        }
        write_atomically(path, &self.to_safetensors())
    }

    /// The first non-finite value: its tensor, index and value.
    fn first_non_finite(&self) -> Option<(&str, usize, f32)> {
        self.tensors.iter().find_map(|(name, (_, data))| {
            let i = data.iter().position(|v| !v.is_finite())?;
            Some((name.as_str(), i, data[i]))
        })
    }

    /// The safetensors encoding: an 8-byte little-endian header length, the
    /// JSON header (`__metadata__`, then each tensor's dtype, shape and
    /// byte range, in name order) padded with spaces to 8 bytes, the data.
    fn to_safetensors(&self) -> Vec<u8> {
        let mut metadata = self.metadata.clone();
        metadata.insert(FORMAT_KEY.into(), FORMAT.into());
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!(metadata));
        let mut offset = 0usize;
        for (name, (shape, data)) in &self.tensors {
            let end = offset + 4 * data.len();
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut header = serde_json::to_vec(&header).expect("a JSON map serialises");
        header.resize(header.len().div_ceil(8) * 8, b' ');
        let mut bytes = Vec::with_capacity(8 + header.len() + offset);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for (_, data) in self.tensors.values() {
            bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
        }
        bytes
    }

    /// Reads a checkpoint written by [`save`](Self::save), or any
    /// safetensors file of f32 tensors. Refused, with a message naming the
    /// file: a file that is truncated or not safetensors, a tensor of
    /// another dtype, a tensor holding NaN or infinity (named), and a
    /// `format` entry other than this crate's. Nothing is allocated beyond
    /// what the file holds: the header's byte ranges are checked against
    /// the file's length before any tensor is read.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "is a folder; give the checkpoint file in it".into(),
            });
        }
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        // The file's bytes, then its tensors: twice its size at the peak.
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io("reading the checkpoint", path, e))?
            .len();
        crate::Device::Cpu
            .check_fits(len.saturating_mul(2), "reading it")
            .map_err(|e| bad(e.to_string()))?;
        let bytes =
            std::fs::read(path).map_err(|e| Error::io("reading the checkpoint", path, e))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(describe_safetensors_error(&e, bytes.len())))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(describe_safetensors_error(&e, bytes.len())))?;
        let mut ckpt = Checkpoint {
            source: Some(path.to_path_buf()),
            ..Default::default()
        };
        if let Some(meta) = header.metadata() {
            if let Some(format) = meta.get(FORMAT_KEY).filter(|f| *f != FORMAT) {
                // PyTorch's safetensors files (a Hugging Face model's) say "pt".
                let hint = if format == "pt" {
                    "; it is a PyTorch file: a Hugging Face GPT-2 folder loads with Gpt::from_pretrained(dir, &device)"
                } else {
                    ""
                };
                return Err(bad(format!(
                    "format '{format}' is not '{FORMAT}', the one this version reads{hint}"
                )));
            }
            ckpt.metadata = meta
                .iter()
                .filter(|(k, _)| *k != FORMAT_KEY)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name} is {:?}; only F32 is supported",
                    view.dtype()
                )));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            ckpt.tensors.insert(name, (view.shape().to_vec(), data));
        }
        if let Some((name, i, v)) = ckpt.first_non_finite() {
            return Err(bad(format!("tensor {name} holds {v} at element {i}")));
        }
        Ok(ckpt)
    }
}

/// What went wrong in a file the safetensors reader refused, in words.
pub(crate) fn describe_safetensors_error(e: &safetensors::SafeTensorError, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    let what = match e {
        E::HeaderTooSmall => format!("{len} bytes, shorter than the 8-byte header length"),
        E::InvalidHeaderLength | E::HeaderTooLarge => {
            "its header length runs past the end of the file".into()
        }
        E::MetadataIncompleteBuffer => {
            "the tensors its header lists do not end where the file does".into()
        }
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization => {
            "its header is not the JSON of a safetensors file".into()
        }
        E::InvalidOffset(name) => format!("tensor {name} has byte offsets out of order"),
        E::TensorInvalidInfo | E::InvalidTensorView(..) => {
            "a tensor's byte range does not match its shape".into()
        }
        E::ValidationOverflow => "a tensor's shape overflows".into(),
        other => format!("{other:?}"),
    };
    format!("truncated or not a safetensors file ({what})")
}

fn encode_rng(seed: [u8; 32], word_pos: u128) -> String {
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    format!("chacha8:{hex}:{word_pos}")
}

fn decode_rng(s: &str) -> Option<([u8; 32], u128)> {
    let rest = s.strip_prefix("chacha8:")?;
    let (hex, pos) = rest.split_once(':')?;
    if hex.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((seed, pos.parse().ok()?))
}

/// Writes `bytes` to `path` so that readers see the old file or the new one,
/// never a half-written one: a temporary file in the same folder, fsync,
/// rename over the target, fsync of the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |f, tmp| {
        f.write_all(bytes).map_err(|e| Error::io("writing", tmp, e))
    })
}

/// [`write_atomically`] for content written piece by piece: `write` gets
/// the temporary file (buffered; it may seek) and its path for errors. When
/// `write` fails, the temporary file is removed and the target untouched.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>, &Path) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the folder", dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut buffered, &tmp)?;
        let f = buffered
            .into_inner()
            .map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files that [`write_atomically`] leaves in `dir`
/// when its process is killed mid-write (`.NAME.tmp-PID` whose process is
/// gone), and returns what it removed. Where processes cannot be listed
/// (no /proc) nothing is removed.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        return Ok(removed);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        removed.push(path);
    }
    Ok(removed)
}
