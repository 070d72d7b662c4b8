//! One-call persistence: a model's weights and the config that rebuilds it,
//! in one safetensors file (`Persist::save` / `Persist::load`).

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::Checkpoint;
use crate::nn::Module;
use crate::nn::shape_only::{counting_build, shapes};
use crate::{Device, Result};

/// Metadata key holding the model's config as JSON (the trainer's
/// checkpoints use it too).
pub const MODEL_CONFIG_KEY: &str = "model_config";

/// Metadata key a trainer's checkpoint has and a weights-only file does
/// not: its model's tensors are under `model.`.
const TRAIN_CONFIG_KEY: &str = "train_config";

/// A model rebuilt from a serde config: [`save`](Self::save) writes its
/// weights and that config to one file, [`load_on`](Self::load_on) reads
/// them back onto a device, from such a file or from a trainer's
/// checkpoint.
///
/// ```
/// use zeroformer::models::Persist;
/// use zeroformer::prelude::*;
/// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: true, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0)?;
/// let path = std::env::temp_dir().join("zeroformer-persist-doc.safetensors");
/// model.save(&path)?;
/// let loaded = Gpt::load_on(&path, &Device::Cpu)?;
/// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
/// let logits = |m: &Gpt| m.forward(&ids, Default::default()).logits.to_vec();
/// assert_eq!(logits(&loaded), logits(&model));
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub trait Persist: Module + Sized {
    /// The config that rebuilds the model, stored as JSON.
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug;

    /// The model's config.
    fn config(&self) -> &Self::Config;

    /// A model of `config` on `device`, its weights about to be replaced
    /// (`config.init(device, 0)`, say). It is also built with placeholder
    /// parameters to check a file's config before anything is allocated
    /// ([`config_from_checkpoint`](Self::config_from_checkpoint)), so it
    /// should build its layers from their configs and do little else.
    fn build(config: &Self::Config, device: &Device) -> Result<Self>;

    /// The config stored in `ckpt`, checked against the tensors under
    /// `prefix` before a model is built: the model of the config is built
    /// with placeholders ([`count_parameters`](crate::nn::count_parameters)),
    /// stopping as soon as it passes the numbers the file holds there, and
    /// its parameters' names and shapes must be exactly the file's tensors
    /// (every problem named in one error). So a config that claims more
    /// than its file holds is refused, not allocated.
    fn config_from_checkpoint(ckpt: &Checkpoint, prefix: &str) -> Result<Self::Config> {
        let config: Self::Config = serde_json::from_str(ckpt.require_meta(MODEL_CONFIG_KEY)?)
            .map_err(|e| ckpt.error(format!("{MODEL_CONFIG_KEY}: {e}")))?;
        let in_file: u64 = ckpt
            .tensor_names()
            .filter(|n| n.starts_with(prefix))
            .filter_map(|n| ckpt.tensor(n))
            .map(|(shape, _)| shape.iter().product::<usize>() as u64)
            .sum();
        let counted = counting_build(in_file, || Self::build(&config, &Device::Cpu))
            .map_err(|e| ckpt.error(format!("{MODEL_CONFIG_KEY}: {e}")))?;
        let Some(model) = counted else {
            return Err(ckpt.error(format!(
                "{MODEL_CONFIG_KEY} {config:?} describes more parameters than the {in_file} the file holds under '{prefix}'"
            )));
        };
        let expected = shapes(&model);
        ckpt.check_tensors(prefix, expected.len(), expected.into_iter())
            .map_err(|e| {
                ckpt.error(format!(
                    "{MODEL_CONFIG_KEY} {config:?} does not fit the tensors: {e}"
                ))
            })?;
        Ok(config)
    }

    /// Writes the weights and the config to `path`, atomically.
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut ckpt = Checkpoint::default();
        ckpt.add_module("", self);
        ckpt.set_meta(
            MODEL_CONFIG_KEY,
            serde_json::to_string(self.config()).expect("a config serialises"),
        );
        ckpt.save(path.as_ref())
    }

    /// The model in `path` (written by [`save`](Self::save), or a
    /// trainer's checkpoint) on `device`: built there, each weight copied
    /// to it once from the file. Refused with a message naming the file: a
    /// missing or unreadable config, a config that does not describe the
    /// file's tensors, and any tensor whose name or shape does not fit.
    fn load_on(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let ckpt = Checkpoint::load(path)?;
        let prefix = if ckpt.meta(TRAIN_CONFIG_KEY).is_some() {
            "model."
        } else {
            ""
        };
        Self::from_checkpoint(&ckpt, prefix, device)
    }

    /// [`load_on`](Self::load_on) the CPU.
    fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(path, &Device::Cpu)
    }

    /// The model stored under `prefix` in `ckpt`, on `device`: its config
    /// read and checked ([`config_from_checkpoint`](Self::config_from_checkpoint)),
    /// and only then the model built and every weight loaded.
    fn from_checkpoint(ckpt: &Checkpoint, prefix: &str, device: &Device) -> Result<Self> {
        let config = Self::config_from_checkpoint(ckpt, prefix)?;
        let model = Self::build(&config, device)
            .map_err(|e| ckpt.error(format!("{MODEL_CONFIG_KEY}: {e}")))?;
        ckpt.load_module(prefix, &model)?;
        Ok(model)
    }
}

/// `Persist` for a built-in model: built from its config as every built-in
/// model is (`models::build`).
macro_rules! persist {
    ($model:ty, $config:ty) => {
        impl Persist for $model {
            type Config = $config;

            fn config(&self) -> &$config {
                &self.config
            }

            fn build(config: &$config, device: &Device) -> Result<Self> {
                super::build(config, device, 0)
            }
        }
    };
}

persist!(crate::Gpt, crate::GptConfig);
persist!(super::Encoder, super::EncoderConfig);
persist!(super::EncoderDecoder, super::EncoderDecoderConfig);
