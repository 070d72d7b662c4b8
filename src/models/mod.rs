//! Whole models built from `nn` layers: the decoder-only GPT, a BERT-style
//! encoder, and the 2017 encoder-decoder Transformer.

mod encoder;
mod encoder_decoder;
mod gpt;
mod persist;
mod pretrained;

pub use encoder::{Encoder, EncoderConfig, Pooling};
pub use encoder_decoder::{ConditionedDecoder, DecoderCache, EncoderDecoder, EncoderDecoderConfig};
pub use gpt::{Gpt, GptConfig};
pub use persist::{MODEL_CONFIG_KEY, Persist};

/// The error for a preset name a model's config does not know, listing
/// the ones it does.
fn unknown_preset(model: &str, name: &str, presets: &[&str]) -> crate::Error {
    crate::Error::InvalidConfig(format!(
        "unknown {model} preset '{name}'; choose one of {}",
        presets.join(", ")
    ))
}
