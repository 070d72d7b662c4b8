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
pub mod layout;
mod mode;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod tensor;
pub mod tokenizer;
pub mod train;

pub use autograd::{NoGradGuard, no_grad};
pub use device::{DType, Device};
pub use error::{Error, Result};
pub use mode::{EvalModeGuard, eval_mode, is_eval_mode};
pub use models::{Gpt, GptConfig};
pub use ops::unary::GeluApproximation;
pub use tensor::Tensor;

/// The `ndarray` of [`Tensor::from_ndarray`] and [`Tensor::to_ndarray`].
pub use ndarray;
/// The `rand` this crate is built with: its RNGs fit every signature here.
pub use rand;
/// The `rand_chacha` behind [`nn::SharedRng`] and checkpointed RNG streams.
pub use rand_chacha;

/// Everything a typical program needs, plus the seeded RNG types.
pub mod prelude {
    pub use crate::autograd::{NoGradGuard, no_grad};
    pub use crate::mode::{EvalModeGuard, eval_mode};
    pub use crate::models::{Gpt, GptConfig, Persist};
    pub use crate::nn::Module;
    pub use crate::ops::unary::GeluApproximation;
    pub use crate::{DType, Device, Error, Result, Tensor};
    pub use rand::rngs::StdRng;
    pub use rand::{Rng, SeedableRng};
}
