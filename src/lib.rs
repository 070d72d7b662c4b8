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
//! ## Errors
//! Tensor math follows ndarray's convention: a shape, dtype or device
//! mismatch is a programmer error and panics with a message naming the op
//! and the shapes. Anything that touches the outside world (files, devices)
//! returns [`Result`] with an [`Error`] a user can act on.

pub mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod data;
mod device;
mod error;
pub mod generation;
pub mod gradcheck;
pub mod layout;
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
pub use models::{Gpt, GptConfig};
pub use ops::unary::GeluApproximation;
pub use tensor::Tensor;

/// Everything a typical program needs, plus the seeded RNG types.
pub mod prelude {
    pub use crate::autograd::{NoGradGuard, no_grad};
    pub use crate::models::{Gpt, GptConfig};
    pub use crate::nn::Module;
    pub use crate::ops::unary::GeluApproximation;
    pub use crate::{DType, Device, Error, Result, Tensor};
    pub use rand::SeedableRng;
    pub use rand::rngs::StdRng;
}
