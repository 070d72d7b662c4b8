//! The pre-norm decoder block of GPT-2, its MLP dense or a mixture of
//! experts.

use super::{
    AttentionMask, FeedForward, LayerKvCache, LayerNorm, Module, MoeFeedForward,
    MultiHeadAttention, Routing,
};
use crate::Tensor;

/// A block's feed-forward network: one MLP, or a mixture of experts. Its
/// parameters are named as the layer's own (`mlp.fc.weight`, or
/// `mlp.router.weight` and `mlp.experts.0.fc.weight`).
#[derive(Clone)]
pub enum BlockMlp {
    /// One MLP for every token.
    Dense(FeedForward),
    /// A router and experts ([`MoeFeedForward`]).
    Experts(MoeFeedForward),
}

impl Module for BlockMlp {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match self {
            BlockMlp::Dense(m) => m.visit_parameters(prefix, f),
            BlockMlp::Experts(m) => m.visit_parameters(prefix, f),
        }
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match self {
            BlockMlp::Dense(m) => m.visit_buffers(prefix, f),
            BlockMlp::Experts(m) => m.visit_buffers(prefix, f),
        }
    }

    fn draws_randomly(&self) -> bool {
        match self {
            BlockMlp::Dense(m) => m.draws_randomly(),
            BlockMlp::Experts(m) => m.draws_randomly(),
        }
    }
}

impl BlockMlp {
    /// The network's output, and the routing when it has experts.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Option<Routing>) {
        match self {
            BlockMlp::Dense(m) => (m.forward(x), None),
            BlockMlp::Experts(m) => {
                let (y, routing) = m.forward(x);
                (y, Some(routing))
            }
        }
    }

    /// The dense MLP, when it is one.
    pub fn dense_mut(&mut self) -> Option<&mut FeedForward> {
        match self {
            BlockMlp::Dense(m) => Some(m),
            BlockMlp::Experts(_) => None,
        }
    }
}

/// GPT's pre-norm decoder block: `x + attn(ln_1(x))`, then `x +
/// mlp(ln_2(x))` (the encoder-decoder's decoder layer, with
/// cross-attention, is [`DecoderLayer`](super::DecoderLayer)).
#[derive(Clone, Module)]
pub struct GptBlock {
    /// The norm before attention.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: MultiHeadAttention,
    /// The norm before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP, dense or a mixture of experts.
    pub mlp: BlockMlp,
}

/// What a [`GptBlock`] gives: its output, and what was asked of it or its
/// mixture of experts routed.
pub struct BlockOutput {
    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`.
    pub x: Tensor,
    /// The attention weights `[batch, heads, time, keys]`, when asked.
    pub attention: Option<Tensor>,
    /// The routing, when the MLP is a mixture of experts.
    pub routing: Option<Routing>,
}

impl GptBlock {
    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`, over `[batch, time,
    /// n_embd]`; with a KV cache (the positions after those it holds, which
    /// it is extended with), and the attention weights when `attention`.
    pub fn forward(
        &self,
        x: &Tensor,
        cache: Option<&mut LayerKvCache>,
        attention: bool,
    ) -> BlockOutput {
        let (a, attention) = self.attn.self_attention(
            &self.ln_1.forward(x),
            AttentionMask::CAUSAL,
            cache,
            None,
            attention,
        );
        let x = x.add(&a);
        let (m, routing) = self.mlp.forward(&self.ln_2.forward(&x));
        BlockOutput {
            x: x.add(&m),
            attention,
            routing,
        }
    }
}
