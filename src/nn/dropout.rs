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
#[derive(Clone)]
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
        // The mask is drawn from a copy of the stream's state, which an
        // activation checkpoint records and replays (so a recomputed
        // segment draws the masks its forward drew); the stream then moves
        // on as if drawn from directly, unless this draw is a replay.
        let (state, replayed) = replay::next_state(|| self.rng.state());
        let mut rng = ChaCha8Rng::from_seed(state.0);
        rng.set_word_pos(state.1);
        let y = x.dropout(self.p, true, &mut rng);
        if !replayed {
            self.rng.set_state(rng.get_seed(), rng.get_word_pos());
        }
        y
    }
}

/// What activation checkpointing needs of dropout: the stream state each
/// draw starts from, recorded while a checkpointed segment runs forward
/// and replayed, in the same order, when it runs again for the backward.
pub(crate) mod replay {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// A stream's state: seed and word position.
    pub(crate) type State = ([u8; 32], u128);

    enum Frame {
        Recording(Vec<State>),
        Replaying(VecDeque<State>),
    }

    thread_local! {
        static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    }

    /// The state a draw starts from, and whether it is a replay: the
    /// innermost replay's next state if a segment is being recomputed, else
    /// `current()`. Either way every recording segment it runs inside
    /// (those opened after the innermost replay) logs it: a checkpoint
    /// nested in another re-records its draws when the outer one replays.
    pub(crate) fn next_state(current: impl FnOnce() -> State) -> (State, bool) {
        FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            let replay = frames
                .iter()
                .rposition(|f| matches!(f, Frame::Replaying(_)));
            let (state, replayed) = match replay {
                Some(at) => {
                    let Frame::Replaying(queue) = &mut frames[at] else {
                        unreachable!("found as a replay")
                    };
                    let state = queue.pop_front().expect(
                        "checkpoint: the recomputed segment drew more dropout masks than its forward did",
                    );
                    (state, true)
                }
                None => (current(), false),
            };
            for frame in &mut frames[replay.map_or(0, |at| at + 1)..] {
                if let Frame::Recording(log) = frame {
                    log.push(state);
                }
            }
            (state, replayed)
        })
    }

    /// Runs `f` logging the dropout states it draws from; returns them.
    pub(crate) fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<State>) {
        FRAMES.with(|frames| frames.borrow_mut().push(Frame::Recording(Vec::new())));
        let _pop = Pop;
        let out = f();
        let log = FRAMES.with(|frames| match frames.borrow_mut().last_mut() {
            Some(Frame::Recording(log)) => std::mem::take(log),
            _ => unreachable!("the recording frame is the innermost"),
        });
        (out, log)
    }

    /// Runs `f` with its dropout draws taken from `log`, in order.
    pub(crate) fn replay<R>(log: &[State], f: impl FnOnce() -> R) -> R {
        FRAMES.with(|frames| {
            frames
                .borrow_mut()
                .push(Frame::Replaying(log.iter().copied().collect()))
        });
        let _pop = Pop;
        f()
    }

    /// Pops the innermost frame when dropped (also when `f` panics).
    struct Pop;

    impl Drop for Pop {
        fn drop(&mut self) {
            FRAMES.with(|frames| frames.borrow_mut().pop());
        }
    }
}

impl Module for Dropout {
    fn visit_parameters(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
