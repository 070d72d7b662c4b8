//! Whole models built from `nn` layers.

mod gpt;

pub use gpt::{Gpt, GptConfig};
