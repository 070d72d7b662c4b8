//! # zeroformer
//!
//! Transformers from zero: an n-dimensional [`Tensor`] with reverse-mode
//! autograd, the ops a Transformer needs (each with a hand-written backward
//! rule and a finite-difference gradient check), and rayon-parallel CPU
//! kernels. Layers, models, training and tokenizers build on this core.
//!
//! ```
//! use zeroformer::prelude::*;
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let x = Tensor::randn(&[4, 8], &mut rng);
//! let w = Tensor::randn(&[8, 3], &mut rng).requires_grad();
//! let loss = x.matmul(&w).relu().sum();
//! loss.backward();
//! println!("{:?}", w.grad().unwrap().shape());
//! ```
//!
//! ## Your own model, your own op
//! Derive [`nn::Module`] (parameters found and named from the fields,
//! whether it draws randomly derived), write an op the crate lacks with
//! [`autograd::custom_op`] (its forward from tensor ops, its
//! [`autograd::Backward`] rule by hand) and check that rule against finite
//! differences with [`gradcheck::GradCheck`], say what a batch's loss is
//! ([`train::Trainable`]), and the [`train::Trainer`] brings AdamW, the
//! warmup-cosine schedule, accumulation, clipping and data-parallel steps:
//!
//! ```
//! use zeroformer::autograd::{Backward, custom_op};
//! use zeroformer::gradcheck::GradCheck;
//! use zeroformer::nn::{Linear, LinearConfig, Module};
//! use zeroformer::prelude::*;
//! use zeroformer::train::{TrainConfig, Trainable, Trainer};
//!
//! /// softplus(x) = ln(1 + eˣ), whose derivative is the sigmoid.
//! fn softplus(x: &Tensor) -> Tensor {
//!     struct SoftplusBackward;
//!     impl Backward for SoftplusBackward {
//!         fn name(&self) -> &'static str {
//!             "softplus"
//!         }
//!         fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
//!             vec![Some(grad.mul(&inputs[0].sigmoid()))]
//!         }
//!     }
//!     custom_op(&[x], |xs| xs[0].exp().add_scalar(1.0).log(), |_| SoftplusBackward)
//! }
//!
//! #[derive(Module)]
//! struct Mlp {
//!     hidden: Linear,
//!     out: Linear,
//! }
//!
//! impl Trainable for Mlp {
//!     type Batch = (Tensor, Tensor);
//!     fn loss(&self, (x, y): &(Tensor, Tensor)) -> Tensor {
//!         let h = softplus(&self.hidden.forward(x));
//!         self.out.forward(&h).sub(y).square().mean()
//!     }
//! }
//!
//! let (device, mut rng) = (Device::Cpu, StdRng::seed_from_u64(0));
//! let probe = Tensor::uniform(&[3, 4], -2.0, 2.0, &mut rng);
//! GradCheck::default().check(|xs| softplus(&xs[0]), &[probe]).expect("softplus's rule");
//!
//! let model = Mlp {
//!     hidden: LinearConfig::new(1, 32).std(0.5).init(&device, &mut rng)?,
//!     out: LinearConfig::new(32, 1).std(0.1).init(&device, &mut rng)?,
//! };
//! let config = TrainConfig { batch_size: 16, max_lr: 1e-2, warmup: 0, ..TrainConfig::nanogpt_cpu(200) };
//! let mut trainer = Trainer::new(model, config)?;
//! let sine = |rng: &mut zeroformer::rand_chacha::ChaCha8Rng| {
//!     let x = Tensor::uniform(&[16, 1], -3.0, 3.0, rng);
//!     let y = x.sin();
//!     (x, y)
//! };
//! let before = trainer.estimate_loss_with(4, sine)?;
//! for _ in 0..200 {
//!     trainer.train_step_with(sine)?;
//! }
//! assert!(trainer.estimate_loss_with(4, sine)? < before / 4.0);
//! # Ok::<(), zeroformer::Error>(())
//! ```
//!
//! ## Built-in models, saving and generation
//! - [`Gpt`] (GPT-2's architecture), [`models::Encoder`] (BERT-style, with a
//!   classification head) and [`models::EncoderDecoder`] (the 2017
//!   Transformer), each built from a serde config and trainable by the same
//!   [`train::Trainer`] (`Trainer::new(gpt_config.init(&device, seed)?,
//!   train_config)`, and `train_step(tokens)` for a GPT on a token
//!   stream);
//!   [`train::mean_loss`] evaluates any of them on a whole split.
//! - [`models::Persist`]: `model.save(path)` writes the weights and the
//!   config in one safetensors file; `Gpt::load_on(path, &device)` (also
//!   from a trainer's checkpoint) rebuilds the model. `Trainer::save` and
//!   `Trainer::<Gpt>::resume(path, &device)` keep everything for a
//!   bit-exact resume.
//! - [`generation::generate_with`] and [`generation::generate_batch`]:
//!   greedy, temperature, top-k, top-p, repetition penalty, stop tokens and
//!   streaming, with a KV cache, for any [`generation::CausalLm`] (a GPT,
//!   or an encoder-decoder's decoder given its source,
//!   [`generation::Seq2SeqLm`]); [`Gpt::from_pretrained`] and
//!   [`Gpt::save_pretrained`] read and write Hugging Face GPT-2
//!   directories; [`tokenizer`] has GPT-2's tokenizer and BPE training.
//! - The examples: `examples/shakespeare.rs` (train a character-level GPT
//!   and sample), `seq2seq.rs` (the encoder-decoder on copy and reverse),
//!   `classify.rs` (an encoder names a speech's speaker),
//!   `autograd_basics.rs` (tensors and `backward()` alone).
//!
//! ## As a dependency
//! Add `zeroformer` alone: the crates its public API exposes are
//! re-exported at the versions it was built with ([`rand`] for the RNGs
//! that initialise layers and sample, [`rand_chacha`] for the
//! checkpointable dropout stream, [`ndarray`] for array conversion), so use
//! `zeroformer::rand` rather than adding `rand` yourself (a different
//! version's `StdRng` does not fit these signatures).
//!
//! Debug builds of the kernels are about 25x slower than release builds.
//! To keep `cargo run` and `cargo test` of your own crate fast, optimise
//! this one dependency even in debug builds:
//!
//! ```toml
//! [profile.dev.package.zeroformer]
//! opt-level = 3
//! ```
//!
//! ## Errors
//! Tensor math follows ndarray's convention: a shape, dtype or device
//! mismatch is a programmer error and panics with a message naming the op
//! and the shapes. Anything that touches the outside world (files, devices)
//! returns [`Result`] with an [`Error`] a user can act on.

#![warn(missing_docs)]

// Lets `#[derive(Module)]`'s `::zeroformer::` paths resolve inside this crate too.
extern crate self as zeroformer;

pub mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod data;
mod device;
mod error;
pub mod generation;
pub mod gradcheck;
#[cfg(feature = "hub")]
pub mod hub;
pub mod layout;
mod mode;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
#[cfg(feature = "plot")]
pub mod plot;
pub mod tensor;
pub mod tokenizer;
pub mod train;

pub use autograd::{NoGradGuard, no_grad};
pub use device::{DType, Device};
pub use error::{Error, Result};
pub use mode::{EvalModeGuard, autocast, autocast_dtype, default_device, eval_mode, is_eval_mode};
pub use models::{Gpt, GptConfig};
pub use ops::unary::GeluApproximation;
pub use tensor::Tensor;

/// The `half` of [`DType::BF16`]'s elements ([`Tensor::to_vec_bf16`]).
pub use half;
/// The `ndarray` of [`Tensor::from_ndarray`] and [`Tensor::to_ndarray`].
pub use ndarray;
/// The `rand` this crate is built with: its RNGs fit every signature here.
pub use rand;
/// The `rand_chacha` behind [`nn::SharedRng`] and checkpointed RNG streams.
pub use rand_chacha;
/// The `serde` of [`models::Persist`]'s configs: a model's own config
/// derives it through this path with no `serde` dependency of its own,
/// `#[derive(zeroformer::serde::Serialize, zeroformer::serde::Deserialize)]`
/// and `#[serde(crate = "zeroformer::serde")]` (tests/custom_model.rs).
pub use serde;

/// Everything a typical program needs, plus the seeded RNG types.
pub mod prelude {
    pub use crate::autograd::{NoGradGuard, no_grad};
    pub use crate::mode::{EvalModeGuard, autocast, eval_mode};
    pub use crate::models::{ForwardOptions, Gpt, GptConfig, Persist};
    pub use crate::nn::Module;
    pub use crate::ops::unary::GeluApproximation;
    pub use crate::tokenizer::Tokenizer;
    pub use crate::{DType, Device, Error, Result, Tensor};
    pub use rand::rngs::StdRng;
    pub use rand::{Rng, SeedableRng};
}
