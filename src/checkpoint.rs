//! Checkpoints in the safetensors format: named f32 tensors (model weights,
//! optimizer moments) plus string metadata (step, RNG states, config,
//! tokenizer), so Python's `safetensors` opens them too. Files are written
//! atomically: a temporary file beside the target, fsync, rename.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};

use crate::nn::{Module, SharedRng};
use crate::optim::Adam;
use crate::{Error, Result};

/// Metadata key naming the format, checked on load.
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "zeroformer-checkpoint-v1";

/// Tensors and metadata, in memory.
///
/// ```
/// use zeroformer::checkpoint::Checkpoint;
/// use zeroformer::nn::{Linear, Module};
/// use zeroformer::prelude::*;
/// let mut rng = StdRng::seed_from_u64(0);
/// let layer = Linear::new(3, 2, true, 0.02, &mut rng);
/// let mut ckpt = Checkpoint::default();
/// ckpt.add_module("model.", &layer);
/// ckpt.set_meta("step", "10");
/// let path = std::env::temp_dir().join("zeroformer-doc-example.safetensors");
/// ckpt.save(&path)?;
/// let loaded = Checkpoint::load(&path)?;
/// let fresh = Linear::new(3, 2, true, 0.02, &mut rng);
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

    pub fn set_meta(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// A metadata value that must be present, as an error naming the file otherwise.
    pub fn require_meta(&self, key: &str) -> Result<&str> {
        self.meta(key)
            .ok_or_else(|| self.error(format!("metadata '{key}' is missing")))
    }

    fn error(&self, message: String) -> Error {
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
        let mut problems = Vec::new();
        for (name, t) in &params {
            match self.tensors.get(&format!("{prefix}{name}")) {
                None => problems.push(format!("{prefix}{name}: missing")),
                Some((shape, _)) if shape != t.shape() => problems.push(format!(
                    "{prefix}{name}: shape {shape:?} in the file, {:?} in the model",
                    t.shape()
                )),
                Some(_) => {}
            }
        }
        let expected: std::collections::HashSet<String> =
            params.iter().map(|(n, _)| format!("{prefix}{n}")).collect();
        for name in self
            .tensors
            .keys()
            .filter(|n| n.starts_with(prefix) && !expected.contains(*n))
        {
            problems.push(format!("{name}: in the file but not in the model"));
        }
        if !problems.is_empty() {
            return Err(self.error(format!(
                "does not fit the model ({} problems): {}",
                problems.len(),
                problems.join("; ")
            )));
        }
        for (name, t) in &params {
            let (_, data) = &self.tensors[&format!("{prefix}{name}")];
            t.update_data(|d| d.copy_from_slice(data));
        }
        Ok(())
    }

    /// Adds an Adam/AdamW optimizer's moments (`<prefix><param>.exp_avg`, ...) and step.
    pub fn add_optimizer(&mut self, prefix: &str, opt: &Adam) {
        let (step, state) = opt.state();
        for (name, data) in state {
            self.add_tensor(format!("{prefix}{name}"), &[data.len()], data.to_vec());
        }
        self.set_meta(format!("{prefix}step"), step.to_string());
    }

    /// Restores what [`add_optimizer`](Self::add_optimizer) saved; every problem in one error.
    pub fn load_optimizer(&self, prefix: &str, opt: &mut Adam) -> Result<()> {
        let step: u64 = self
            .require_meta(&format!("{prefix}step"))?
            .parse()
            .map_err(|e| self.error(format!("{prefix}step: {e}")))?;
        let problems = opt.load_state(step, |name| {
            self.tensor(&format!("{prefix}{name}"))
                .map(|(_, d)| d.to_vec())
        });
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
    /// rename), creating the parent folder if needed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        metadata.insert(FORMAT_KEY.into(), FORMAT.into());
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, (shape, data))| {
                (
                    name.clone(),
                    data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    shape.clone(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(name, b, shape)| {
                (
                    name.clone(),
                    TensorView::new(Dtype::F32, shape.clone(), b).expect("sizes match"),
                )
            })
            .collect();
        let encoded =
            safetensors::serialize(views, &Some(metadata)).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("encoding failed: {e}"),
            })?;
        write_atomically(path, &encoded)
    }

    /// Reads a checkpoint written by [`save`](Self::save) (or any safetensors
    /// file of f32 tensors).
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io("reading the checkpoint", path, e))?;
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let mut ckpt = Checkpoint {
            source: Some(path.to_path_buf()),
            ..Default::default()
        };
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
        if let Some(meta) = header.metadata() {
            ckpt.metadata = meta
                .clone()
                .into_iter()
                .filter(|(k, _)| k != FORMAT_KEY)
                .collect();
        }
        Ok(ckpt)
    }
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
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &tmp, e))?;
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
