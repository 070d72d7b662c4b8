//! Dropout as a layer, drawing from a seeded generator shared by the model.

use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Module;
use crate::Tensor;

/// One seeded random stream shared by every dropout layer of a model, so a
/// run is reproducible and its state can be checkpointed (ChaCha's position
/// in the stream is exact state).
#[derive(Clone)]
pub struct SharedRng(Arc<Mutex<ChaCha8Rng>>);

impl SharedRng {
    /// A stream seeded by `seed`.
    pub fn seed_from_u64(seed: u64) -> SharedRng {
        SharedRng(Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))))
    }

    /// Runs `f` with the generator.
    pub fn with<R>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `(seed, word position)`: enough to restore the stream exactly.
    pub fn state(&self) -> ([u8; 32], u128) {
        self.with(|r| (r.get_seed(), r.get_word_pos()))
    }

    /// Restores a state returned by [`state`](Self::state).
    pub fn set_state(&self, seed: [u8; 32], word_pos: u128) {
        self.with(|r| {
            *r = ChaCha8Rng::from_seed(seed);
            r.set_word_pos(word_pos);
        })
    }
}

/// Zeroes elements with probability `p` in training mode; identity in eval.
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f32,
    training: bool,
    rng: SharedRng,
}

impl Dropout {
    /// Starts in training mode.
    pub fn new(p: f32, rng: SharedRng) -> Dropout {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: p must be in [0, 1), got {p}"
        );
        Dropout {
            p,
            training: true,
            rng,
        }
    }

    /// Whether `forward` changes anything: training mode with `p > 0`,
    /// outside [`eval_mode`](crate::eval_mode).
    pub fn is_active(&self) -> bool {
        self.training && self.p > 0.0 && !crate::is_eval_mode()
    }

    /// `x` with elements zeroed with probability `p` and the rest scaled by `1 / (1 - p)` (training mode); `x` itself otherwise.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if !self.is_active() {
            return x.clone();
        }
        self.rng.with(|r| x.dropout(self.p, true, r))
    }
}

impl Module for Dropout {
    fn visit_parameters(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
