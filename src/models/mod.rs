//! Whole models built from `nn` layers: the decoder-only GPT, a BERT-style
//! encoder, and the 2017 encoder-decoder Transformer; what training needs
//! of a model ([`Trainable`]) and how a model is saved and loaded
//! ([`Persist`]).

mod encoder;
mod encoder_decoder;
mod gpt;
pub(crate) mod objective;
mod persist;
mod pretrained;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use encoder::{Encoder, EncoderConfig, Pooling};
pub use encoder_decoder::{ConditionedDecoder, DecoderCache, EncoderDecoder, EncoderDecoderConfig};
pub use gpt::{ForwardOptions, Gpt, GptConfig, GptOutput};
pub use objective::{Batch, Trainable, batch_losses, mean_loss};
pub use persist::{MODEL_CONFIG_KEY, Persist};

use crate::nn::{Module, SharedRng};
use crate::{Device, Result};

/// What a model's layers are built with: its device, the generator their
/// initial weights draw from, and the one dropout stream they share, all
/// from one seed. A model is the root of its randomness, as
/// `torch.manual_seed` before `GPT(config)` is; a layer's `init` draws from
/// its model's generator.
pub(crate) struct ModelInit<'a> {
    pub device: &'a Device,
    pub rng: ChaCha8Rng,
    pub dropout: SharedRng,
}

/// A built-in model's config: how its layers are built from a
/// [`ModelInit`]. Its `init`, `parameter_count` and `Persist::build` all
/// go through [`build`].
pub(crate) trait ModelConfig {
    type Model: Module;

    /// Checks that the numbers make a model.
    fn validate(&self) -> Result<()>;

    /// The model's layers, built from `init`'s device and streams.
    fn layers(&self, init: &mut ModelInit<'_>) -> Result<Self::Model>;
}

/// The model of `config` on `device`, from `seed`'s streams: the config
/// validated, then its layers built.
pub(crate) fn build<C: ModelConfig>(config: &C, device: &Device, seed: u64) -> Result<C::Model> {
    config.validate()?;
    device.ensure_usable()?;
    let mut init = ModelInit {
        device,
        rng: ChaCha8Rng::seed_from_u64(seed),
        dropout: SharedRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
    };
    config.layers(&mut init)
}

/// How many numbers the model of `config` holds, counted by building it
/// with placeholders ([`count_parameters`](crate::nn::count_parameters));
/// `None` for a config that makes no model or whose count overflows.
pub(crate) fn parameter_count<C: ModelConfig>(config: &C) -> Option<u64> {
    crate::nn::count_parameters(|| build(config, &Device::Cpu, 0)).ok()
}

/// The error for a preset name a model's config does not know, listing
/// the ones it does.
fn unknown_preset(model: &str, name: &str, presets: &[&str]) -> crate::Error {
    crate::Error::InvalidConfig(format!(
        "unknown {model} preset '{name}'; choose one of {}",
        presets.join(", ")
    ))
}
