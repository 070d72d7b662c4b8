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

/// Zeroes elements with probability `p`; the identity inside
/// [`eval_mode`](crate::eval_mode), the one switch between training and
/// evaluation (evaluation and generation turn it on themselves).
#[derive(Clone)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f32,
    rng: SharedRng,
}

impl Dropout {
    /// Drops with probability `p`, drawing its masks from `rng`.
    pub fn new(p: f32, rng: SharedRng) -> Dropout {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: p must be in [0, 1), got {p}"
        );
        Dropout { p, rng }
    }

    /// Whether `forward` changes anything: `p > 0`, outside
    /// [`eval_mode`](crate::eval_mode).
    pub fn is_active(&self) -> bool {
        self.p > 0.0 && !crate::is_eval_mode()
    }

    /// `x` with elements zeroed with probability `p` and the rest scaled by `1 / (1 - p)` (training mode); `x` itself otherwise.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if !self.is_active() {
            return x.clone();
        }
        // Inside an activation checkpoint's recomputation the mask comes
        // from the stream state its forward drew from (the shared stream
        // stays where it is); otherwise from the stream, under its lock,
        // logging the state it starts from for any checkpoint recording.
        if let Some((seed, word_pos)) = replay::next_replayed() {
            let mut rng = ChaCha8Rng::from_seed(seed);
            rng.set_word_pos(word_pos);
            return x.dropout(self.p, true, &mut rng);
        }
        self.rng.with(|r| {
            replay::log((r.get_seed(), r.get_word_pos()));
            x.dropout(self.p, true, r)
        })
    }
}

/// What activation checkpointing needs of dropout: the stream state each
/// draw starts from, recorded while a checkpointed segment runs forward
/// and replayed, in the same order, when it runs again for the backward.
pub(crate) mod replay {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// A stream's state: seed and word position.
    pub(crate) type State = ([u8; 32], u128);

    pub(crate) enum Frame {
        Recording(Vec<State>),
        Replaying(VecDeque<State>),
    }

    /// The frames of the computation running on this thread, innermost
    /// last. They travel in its carried slot (`crate::mode`) onto the
    /// pool's threads: a worker that runs another computation's job while
    /// one of its own waits must log that job's draws in that job's
    /// frames, not in those of the segment it interrupted.
    fn current() -> Arc<Mutex<Vec<Frame>>> {
        crate::mode::carried_or_insert(|| Arc::new(Mutex::new(Vec::<Frame>::new())))
            .downcast()
            .expect("the carried slot holds dropout replay frames")
    }

    fn with_frames<R>(f: impl FnOnce(&mut Vec<Frame>) -> R) -> R {
        let frames = current();
        let mut frames = frames.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut frames)
    }

    /// The innermost replay's next state, when a segment is being
    /// recomputed (logged by any checkpoint nested in it, which re-records
    /// its draws as the outer one replays); `None` otherwise.
    pub(crate) fn next_replayed() -> Option<State> {
        with_frames(|frames| {
            let at = frames
                .iter()
                .rposition(|f| matches!(f, Frame::Replaying(_)))?;
            let Frame::Replaying(queue) = &mut frames[at] else {
                unreachable!("found as a replay")
            };
            let state = queue.pop_front().expect(
                "checkpoint: the recomputed segment drew more dropout masks than its forward did",
            );
            log_above(&mut frames[at + 1..], state);
            Some(state)
        })
    }

    /// Logs a draw from the stream itself in every recording segment.
    pub(crate) fn log(state: State) {
        with_frames(|frames| log_above(frames, state));
    }

    fn log_above(frames: &mut [Frame], state: State) {
        for frame in frames {
            if let Frame::Recording(log) = frame {
                log.push(state);
            }
        }
    }

    /// Runs `f` logging the dropout states it draws from; returns them.
    pub(crate) fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<State>) {
        with_frames(|frames| frames.push(Frame::Recording(Vec::new())));
        let _pop = Pop;
        let out = f();
        let log = with_frames(|frames| match frames.last_mut() {
            Some(Frame::Recording(log)) => std::mem::take(log),
            _ => unreachable!("the recording frame is the innermost"),
        });
        (out, log)
    }

    /// Runs `f` with its dropout draws taken from `log`, in order.
    pub(crate) fn replay<R>(log: &[State], f: impl FnOnce() -> R) -> R {
        with_frames(|frames| frames.push(Frame::Replaying(log.iter().copied().collect())));
        let _pop = Pop;
        f()
    }

    /// Pops the innermost frame when dropped (also when `f` panics).
    struct Pop;

    impl Drop for Pop {
        fn drop(&mut self) {
            with_frames(|frames| frames.pop());
        }
    }
}

impl Module for Dropout {
    fn visit_parameters(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    fn draws_randomly(&self) -> bool {
        self.p > 0.0
    }
}
