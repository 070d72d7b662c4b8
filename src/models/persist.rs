//! One-call persistence: a model's weights and the config that rebuilds it,
//! in one safetensors file (`Persist::save` / `Persist::load`).

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::Checkpoint;
use crate::nn::Module;
use crate::nn::shape_only::count_within;
use crate::{Device, Result};

/// Metadata key holding the model's config as JSON (the trainer's
/// checkpoints use it too).
pub const MODEL_CONFIG_KEY: &str = "model_config";

/// Metadata key a trainer's checkpoint has and a weights-only file does
/// not: its model's tensors are under `model.`.
const TRAIN_CONFIG_KEY: &str = "train_config";

/// A model rebuilt from a serde config: [`save`](Self::save) writes its
/// weights and that config to one file, [`load`](Self::load) reads them
/// back, from such a file or from a trainer's checkpoint.
///
/// ```
/// use zeroformer::models::Persist;
/// use zeroformer::prelude::*;
/// let config = GptConfig { vocab_size: 10, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: true, ..GptConfig::default() };
/// let model = config.init(&Device::Cpu, 0)?;
/// let path = std::env::temp_dir().join("zeroformer-persist-doc.safetensors");
/// model.save(&path)?;
/// let loaded = Gpt::load(&path)?;
/// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
/// assert_eq!(loaded.forward(&ids).to_vec(), model.forward(&ids).to_vec());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub trait Persist: Module + Sized {
    /// The config that rebuilds the model, stored as JSON.
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug;

    /// The model's config.
    fn config(&self) -> &Self::Config;

    /// A model of `config`, its weights about to be replaced.
    fn build(config: Self::Config) -> Result<Self>;

    /// Checks `config` against the tensors under `prefix` in `ckpt` before
    /// the model is built. By default the model of `config` is counted
    /// without being made ([`count_parameters`](crate::nn::count_parameters):
    /// its layers get placeholders), stopping as soon as it passes the
    /// numbers the file holds there, and the two counts must be equal
    /// (every name and shape is checked when the weights load). So a
    /// config that claims more than its file holds is refused, not
    /// allocated. A model that can list its parameters from the config
    /// alone may name the first that differs instead (GPT does).
    fn check_against(ckpt: &Checkpoint, prefix: &str, config: &Self::Config) -> Result<()> {
        let in_file: u64 = ckpt
            .tensor_names()
            .filter(|n| n.starts_with(prefix))
            .filter_map(|n| ckpt.tensor(n))
            .map(|(shape, _)| shape.iter().product::<usize>() as u64)
            .sum();
        let counted = count_within(in_file, || Self::build(config.clone()))
            .map_err(|e| ckpt.error(format!("{MODEL_CONFIG_KEY}: {e}")))?;
        match counted {
            Some(count) if count == in_file => Ok(()),
            count => Err(ckpt.error(format!(
                "{MODEL_CONFIG_KEY} {config:?} describes {} parameters, but the file holds {in_file}",
                count.map_or(format!("more than {in_file}"), |c| c.to_string())
            ))),
        }
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
    /// trainer's checkpoint), on the default device
    /// ([`default_device`](crate::default_device)). Refused with a message naming
    /// the file: a missing or unreadable config, a config whose parameter
    /// count differs from the file's, and any tensor whose name or shape
    /// does not fit.
    fn load(path: impl AsRef<Path>) -> Result<Self> {
        let ckpt = Checkpoint::load(path)?;
        let prefix = if ckpt.meta(TRAIN_CONFIG_KEY).is_some() {
            "model."
        } else {
            ""
        };
        Self::from_checkpoint(&ckpt, prefix)
    }

    /// The model stored under `prefix` in `ckpt`: its config read from the
    /// metadata and checked against the file's tensors
    /// ([`check_against`](Self::check_against)), and only then the model
    /// built and every weight loaded (names and shapes checked).
    fn from_checkpoint(ckpt: &Checkpoint, prefix: &str) -> Result<Self> {
        let config: Self::Config = serde_json::from_str(ckpt.require_meta(MODEL_CONFIG_KEY)?)
            .map_err(|e| ckpt.error(format!("{MODEL_CONFIG_KEY}: {e}")))?;
        Self::check_against(ckpt, prefix, &config)?;
        let model =
            Self::build(config).map_err(|e| ckpt.error(format!("{MODEL_CONFIG_KEY}: {e}")))?;
        ckpt.load_module(prefix, &model)?;
        Ok(model)
    }

    /// [`load`](Self::load) on `device`: built there, each weight copied
    /// to it once from the file.
    fn load_on(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        device.ensure_usable()?;
        device.as_default(|| Self::load(path))
    }
}

macro_rules! persist {
    ($model:ty, $config:ty $(, $check:item)?) => {
        impl Persist for $model {
            type Config = $config;

            fn config(&self) -> &$config {
                &self.config
            }

            fn build(config: $config) -> Result<Self> {
                <$model>::new(config, 0)
            }

            $($check)?
        }
    };
}

persist!(
    crate::Gpt,
    crate::GptConfig,
    fn check_against(ckpt: &Checkpoint, prefix: &str, config: &crate::GptConfig) -> Result<()> {
        config.check_against(ckpt, prefix)
    }
);
persist!(super::Encoder, super::EncoderConfig);
persist!(super::EncoderDecoder, super::EncoderDecoderConfig);
