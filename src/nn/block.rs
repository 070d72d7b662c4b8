//! The pre-norm decoder block of GPT-2.

use super::{AttentionMask, FeedForward, LayerKvCache, LayerNorm, Module, MultiHeadAttention};
use crate::Tensor;

/// `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Clone, Module)]
pub struct Block {
    /// The norm before attention.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: MultiHeadAttention,
    /// The norm before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP.
    pub mlp: FeedForward,
}

impl Block {
    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`, over `[batch, time, n_embd]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, None, false).0
    }

    /// The block with an optional KV cache, returning the attention weights
    /// when asked.
    pub fn forward_with(
        &self,
        x: &Tensor,
        cache: Option<&mut LayerKvCache>,
        return_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (a, weights) = self.attn.self_attention(
            &self.ln_1.forward(x),
            AttentionMask::CAUSAL,
            cache,
            None,
            return_weights,
        );
        let x = x.add(&a);
        let x = x.add(&self.mlp.forward(&self.ln_2.forward(&x)));
        (x, weights)
    }
}
