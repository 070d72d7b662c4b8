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

use crate::nn::SharedRng;
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

impl<'a> ModelInit<'a> {
    /// The streams of `seed`, for a model on `device`.
    pub fn new(device: &'a Device, seed: u64) -> Result<ModelInit<'a>> {
        device.ensure_usable()?;
        Ok(ModelInit {
            device,
            rng: ChaCha8Rng::seed_from_u64(seed),
            dropout: SharedRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
        })
    }
}

/// The error for a preset name a model's config does not know, listing
/// the ones it does.
fn unknown_preset(model: &str, name: &str, presets: &[&str]) -> crate::Error {
    crate::Error::InvalidConfig(format!(
        "unknown {model} preset '{name}'; choose one of {}",
        presets.join(", ")
    ))
}
