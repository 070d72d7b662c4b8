//! The Annotated Transformer's synthetic sequence-to-sequence tasks: copy or
//! reverse random digit sequences. Small enough to train in seconds, and
//! exact match shows whether an encoder-decoder works at all.

use std::str::FromStr;

use rand::Rng;

use crate::{Error, Tensor};

/// Padding (unused by these fixed-length tasks, reserved for real data).
pub const PAD: i64 = 0;
/// The first target token, which decoding starts from.
pub const START: i64 = 1;
/// Ids `FIRST_DIGIT..FIRST_DIGIT + 10` are the digits 0-9.
pub const FIRST_DIGIT: i64 = 2;
/// Padding, start and ten digits.
pub const VOCAB_SIZE: usize = 12;

/// What the target is, given the source digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitTask {
    /// The target is the source.
    Copy,
    /// The target is the source backwards.
    Reverse,
}

impl DigitTask {
    /// The task's name on the command line: `copy` or `reverse`.
    pub fn name(self) -> &'static str {
        match self {
            DigitTask::Copy => "copy",
            DigitTask::Reverse => "reverse",
        }
    }

    /// The target for `source`.
    pub fn target(self, source: &[i64]) -> Vec<i64> {
        match self {
            DigitTask::Copy => source.to_vec(),
            DigitTask::Reverse => source.iter().rev().copied().collect(),
        }
    }
}

impl FromStr for DigitTask {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "copy" => Ok(DigitTask::Copy),
            "reverse" => Ok(DigitTask::Reverse),
            other => Err(Error::InvalidConfig(format!(
                "unknown task '{other}'; choose copy or reverse"
            ))),
        }
    }
}

/// A batch of `[batch, len]` id tensors.
pub struct DigitBatch {
    /// The digits, `[batch, len]`.
    pub source: Tensor,
    /// The decoder's input: the target shifted right behind [`START`].
    pub target_in: Tensor,
    /// What the decoder must predict at each position.
    pub target_out: Tensor,
}

/// `batch` random sequences of `len` digits and their targets.
///
/// ```
/// use rand::SeedableRng;
/// use zeroformer::data::digits::{DigitTask, START, batch};
/// let b = batch(DigitTask::Reverse, 2, 4, &mut rand::rngs::StdRng::seed_from_u64(0));
/// let (src, out) = (b.source.to_vec_i64(), b.target_out.to_vec_i64());
/// assert_eq!(out[..4], [src[3], src[2], src[1], src[0]]);
/// assert_eq!(b.target_in.to_vec_i64()[..4], [START, out[0], out[1], out[2]]);
/// ```
pub fn batch(task: DigitTask, batch: usize, len: usize, rng: &mut impl Rng) -> DigitBatch {
    assert!(len > 0, "digits::batch: sequences need at least one digit");
    let (mut src, mut tgt_in, mut tgt_out) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..batch {
        let source: Vec<i64> = (0..len)
            .map(|_| FIRST_DIGIT + rng.gen_range(0..10))
            .collect();
        let target = task.target(&source);
        tgt_in.push(START);
        tgt_in.extend_from_slice(&target[..len - 1]);
        tgt_out.extend(target);
        src.extend(source);
    }
    let shape = [batch, len];
    DigitBatch {
        source: Tensor::from_ids(src, &shape),
        target_in: Tensor::from_ids(tgt_in, &shape),
        target_out: Tensor::from_ids(tgt_out, &shape),
    }
}
