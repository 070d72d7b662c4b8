//! A lookup table of learned vectors.

use rand::Rng;

use super::{Module, normal_parameter};
use crate::{Device, Tensor};

/// Maps integer ids to rows of a `[num, dim]` weight.
#[derive(Clone, Module)]
pub struct Embedding {
    /// The table, `[num, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    /// Rows drawn from N(0, std²).
    pub(crate) fn new(
        num: usize,
        dim: usize,
        std: f32,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Embedding {
        Embedding {
            weight: normal_parameter(&[num, dim], std, rng, device),
        }
    }

    /// `ids` (i64, any shape) to vectors of shape `[ids..., dim]`.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(ids, &self.weight)
    }
}
