//! Multi-head causal self-attention with an optional KV cache.
//!
//! Written from matmul, masked_fill and softmax; the fused, flash-style
//! kernels come with the CPU performance work. Cross-attention and padding
//! masks arrive with the encoder-decoder work: `attend` already takes
//! separate query and key/value inputs and a general mask.

use rand::Rng;

use super::{Dropout, Linear, Module, SharedRng, join};
use crate::Tensor;

/// Cached keys and values of one attention layer, `[batch, heads, time, head_dim]`.
#[derive(Default, Clone)]
pub struct LayerKvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
}

impl LayerKvCache {
    /// The number of positions cached.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.shape()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends new keys and values; returns all of them.
    fn extend(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let k = match &self.keys {
            Some(past) => Tensor::cat(&[past, &k.detach()], 2),
            None => k.detach(),
        };
        let v = match &self.values {
            Some(past) => Tensor::cat(&[past, &v.detach()], 2),
            None => v.detach(),
        };
        self.keys = Some(k.clone());
        self.values = Some(v.clone());
        (k, v)
    }
}

/// A KV cache for every layer of a decoder, for incremental decoding.
#[derive(Default, Clone)]
pub struct KvCache {
    pub layers: Vec<LayerKvCache>,
}

impl KvCache {
    pub fn new(n_layer: usize) -> KvCache {
        KvCache {
            layers: vec![LayerKvCache::default(); n_layer],
        }
    }

    /// The number of positions cached (the same in every layer).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerKvCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Multi-head self-attention: a fused query/key/value projection, scaled
/// dot-product attention per head, and an output projection.
pub struct MultiHeadAttention {
    pub qkv: Linear,
    pub proj: Linear,
    pub n_head: usize,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
}

impl MultiHeadAttention {
    /// `proj_std` initialises the output projection (GPT-2 scales it down
    /// with depth); the rest use `std`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d_model: usize,
        n_head: usize,
        bias: bool,
        dropout: f32,
        std: f32,
        proj_std: f32,
        rng: &mut impl Rng,
        dropout_rng: &SharedRng,
    ) -> Self {
        assert!(
            d_model % n_head == 0,
            "MultiHeadAttention: width {d_model} is not divisible by {n_head} heads"
        );
        MultiHeadAttention {
            qkv: Linear::new(d_model, 3 * d_model, bias, std, rng),
            proj: Linear::new(d_model, d_model, bias, proj_std, rng),
            n_head,
            attn_dropout: Dropout::new(dropout, dropout_rng.clone()),
            resid_dropout: Dropout::new(dropout, dropout_rng.clone()),
        }
    }

    /// Causal self-attention over `x` of shape `[batch, time, d_model]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, None, false).0
    }

    /// Causal self-attention, appending to and attending over `cache` when
    /// given, and returning the attention weights `[batch, heads, time,
    /// keys]` when `return_weights` (for heatmaps).
    pub fn forward_with(
        &self,
        x: &Tensor,
        cache: Option<&mut LayerKvCache>,
        return_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        assert_eq!(
            x.rank(),
            3,
            "MultiHeadAttention: input must be [batch, time, d_model], got {:?}",
            x.shape()
        );
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let (h, d) = (self.n_head, c / self.n_head);
        let qkv = self.qkv.forward(x);
        let heads = |start: usize| {
            qkv.narrow(2, start, c)
                .reshape(&[b, t, h, d])
                .transpose(1, 2)
        };
        let (q, mut k, mut v) = (heads(0), heads(c), heads(2 * c));
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(cache) = cache {
            (k, v) = cache.extend(k, v);
        }
        // Scale, causal mask and softmax in one fused pass.
        let scores = q.matmul(&k.transpose(-1, -2));
        let weights = scores.causal_softmax(1.0 / (d as f32).sqrt(), past);
        let y = self.attn_dropout.forward(&weights).matmul(&v);
        let y = y.transpose(1, 2).reshape(&[b, t, c]);
        let out = self.resid_dropout.forward(&self.proj.forward(&y));
        (out, return_weights.then_some(weights))
    }

    /// Scaled dot-product attention of `q` `[.., tq, d]` over `k`, `v`
    /// `[.., tk, d]`, hiding keys where `mask` (`[tq, tk]`, broadcast) is
    /// true. Returns the output and the (pre-dropout) attention weights.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let d = q.shape()[q.rank() - 1];
        let mut scores = q
            .matmul(&k.transpose(-1, -2))
            .mul_scalar(1.0 / (d as f32).sqrt());
        if let Some(mask) = mask {
            scores = scores.masked_fill(mask, f32::NEG_INFINITY);
        }
        let weights = scores.softmax(-1);
        let y = self.attn_dropout.forward(&weights).matmul(v);
        (y, weights)
    }
}

impl Module for MultiHeadAttention {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.qkv.visit_parameters(&join(prefix, "qkv."), f);
        self.proj.visit_parameters(&join(prefix, "proj."), f);
    }

    fn set_training(&mut self, training: bool) {
        self.attn_dropout.set_training(training);
        self.resid_dropout.set_training(training);
    }
}
