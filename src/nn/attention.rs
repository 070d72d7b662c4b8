//! Multi-head attention: causal or bidirectional self-attention, and
//! cross-attention (queries from one sequence, keys and values from another),
//! with key padding masks, rotary positions and a KV cache.
//!
//! Attention itself runs in the fused flash-style op
//! ([`Tensor::scaled_dot_product_attention`]) unless the caller asks for the
//! attention weights, attention dropout is active, or `kernel` is set to
//! [`AttentionKernel::Composed`]: then it is composed from matmul, mask and
//! softmax ([`MultiHeadAttention::attend`]), the reference the fused op is
//! tested against.

use rand::Rng;

use super::{Dropout, Linear, Module, MultiHeadAttentionConfig, Rope, SharedRng};
pub use crate::ops::attention::AttentionMask;
use crate::{DType, Device, Tensor};

/// Cached keys and values of one attention layer, `[batch, heads, time, head_dim]`.
///
/// Self-attention appends each new step's keys and values; cross-attention
/// fills it once from the encoder output and then only reads it. With a
/// capacity (`KvCache::with_capacity`), the keys and values live in buffers
/// of that many positions, allocated at the first step and written in
/// place; without one, each step concatenates.
#[derive(Default, Clone)]
pub struct LayerKvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    len: usize,
    capacity: usize,
}

impl LayerKvCache {
    /// The number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first cached step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many positions the cache's buffers hold: its capacity, all the
    /// positions cached when it concatenates, and a sliding-window layer's
    /// window however many positions it has seen.
    pub fn positions_held(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.shape()[2])
    }

    /// Forgets the cached positions, keeping any buffers for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
        if self.capacity == 0 {
            (self.keys, self.values) = (None, None);
        }
    }

    /// Appends new keys and values `[batch, heads, time, head_dim]`;
    /// returns all of them.
    fn extend(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let t = k.shape()[2];
        if self.capacity == 0 {
            let join = |past: &Option<Tensor>, new: &Tensor| match past {
                Some(past) => Tensor::cat(&[past, &new.detach()], 2),
                None => new.detach(),
            };
            let (k, v) = (join(&self.keys, &k), join(&self.values, &v));
            (self.keys, self.values, self.len) = (Some(k.clone()), Some(v.clone()), self.len + t);
            return (k, v);
        }
        assert!(
            self.len + t <= self.capacity,
            "KV cache: {} positions exceed its capacity {}",
            self.len + t,
            self.capacity
        );
        let buffer = |slot: &mut Option<Tensor>, new: &Tensor| {
            let mut shape = new.shape().to_vec();
            shape[2] = self.capacity;
            let fits = slot.as_ref().is_some_and(|b| b.shape() == shape.as_slice());
            if !fits {
                *slot = Some(new.zeros_like_shape(&shape));
            }
            let b = slot.as_ref().expect("allocated");
            b.write_window(2, self.len, &new.detach());
            b.narrow(2, 0, self.len + t)
        };
        let (k, v) = (buffer(&mut self.keys, &k), buffer(&mut self.values, &v));
        self.len += t;
        (k, v)
    }
}

impl LayerKvCache {
    /// Appends new keys and values `[batch, heads, time, head_dim]` of a
    /// layer that attends over a sliding `window`, keeping only the last
    /// `window` positions, in a ring buffer of that many slots (position
    /// `p` in slot `p % window`): memory that stops growing past the
    /// window. Returns the keys and values the new queries attend over and
    /// how many cached positions precede the new ones in them (the causal
    /// mask's `past`). A single new position attends over the ring as it
    /// lies (every key in it is in the window, and attention does not
    /// depend on the keys' order); several get the cached positions in
    /// order, followed by the new ones.
    fn extend_rolling(&mut self, k: Tensor, v: Tensor, window: usize) -> (Tensor, Tensor, usize) {
        let t = k.shape()[2];
        let ring = |slot: &mut Option<Tensor>, new: &Tensor| {
            let mut shape = new.shape().to_vec();
            shape[2] = window;
            if slot.as_ref().is_none_or(|b| b.shape() != shape.as_slice()) {
                *slot = Some(new.zeros_like_shape(&shape));
            }
            slot.clone().expect("allocated")
        };
        let (k_ring, v_ring) = (ring(&mut self.keys, &k), ring(&mut self.values, &v));
        // Writes positions from..from + new.shape()[2] (at most `window`)
        // into their slots, wrapping around the ring's end.
        let write = |ring: &Tensor, new: &Tensor, from: usize| {
            let (n, slot) = (new.shape()[2], from % window);
            let head = n.min(window - slot);
            ring.write_window(2, slot, &new.narrow(2, 0, head));
            if head < n {
                ring.write_window(2, 0, &new.narrow(2, head, n - head));
            }
        };
        if t == 1 {
            write(&k_ring, &k.detach(), self.len);
            write(&v_ring, &v.detach(), self.len);
            self.len += 1;
            let held = self.len.min(window);
            return (
                k_ring.narrow(2, 0, held),
                v_ring.narrow(2, 0, held),
                held - 1,
            );
        }
        // The cached positions the new queries can still see, oldest first.
        let kept = self.len.min(window - 1);
        let first = self.len - kept;
        let in_order = |ring: &Tensor, new: &Tensor| {
            let slot = first % window;
            let head = kept.min(window - slot);
            let mut parts = vec![ring.narrow(2, slot, head)];
            if head < kept {
                parts.push(ring.narrow(2, 0, kept - head));
            }
            parts.push(new.detach());
            Tensor::cat(&parts.iter().collect::<Vec<_>>(), 2)
        };
        let (k_all, v_all) = (in_order(&k_ring, &k), in_order(&v_ring, &v));
        let newest = t.min(window);
        let (k_new, v_new) = (
            k.detach().narrow(2, t - newest, newest),
            v.detach().narrow(2, t - newest, newest),
        );
        write(&k_ring, &k_new, self.len + t - newest);
        write(&v_ring, &v_new, self.len + t - newest);
        self.len += t;
        (k_all, v_all, kept)
    }
}

/// A KV cache for every layer of a decoder, for incremental decoding.
#[derive(Default, Clone)]
pub struct KvCache {
    /// One cache per layer.
    pub layers: Vec<LayerKvCache>,
}

impl KvCache {
    /// An empty cache for `n_layer` layers that concatenates at each step.
    pub fn new(n_layer: usize) -> KvCache {
        KvCache {
            layers: vec![LayerKvCache::default(); n_layer],
        }
    }

    /// An empty cache for `n_layer` layers whose keys and values go into
    /// buffers of `capacity` positions, allocated at the first step and
    /// written in place (generation's cache: no copy of the past per token).
    pub fn with_capacity(n_layer: usize, capacity: usize) -> KvCache {
        let layer = LayerKvCache {
            capacity,
            ..LayerKvCache::default()
        };
        KvCache {
            layers: vec![layer; n_layer],
        }
    }

    /// Forgets every cached position, keeping the buffers.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(LayerKvCache::clear);
    }

    /// The number of positions cached (the same in every layer).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerKvCache::len)
    }

    /// True before the first cached step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key padding mask of a batch of token ids `[batch, time]` (i64):
/// `true` where the id is `pad_id`, computed on the ids' device (ids and
/// `pad_id` below 2^24, as every vocabulary's, compare exactly).
///
/// ```
/// use zeroformer::{Tensor, nn::padding_mask};
/// let ids = Tensor::from_ids(vec![5, 6, 0, 7, 0, 0], &[2, 3]);
/// assert_eq!(padding_mask(&ids, 0).to_vec_bool(), vec![false, false, true, false, true, true]);
/// ```
pub fn padding_mask(ids: &Tensor, pad_id: i64) -> Tensor {
    assert_eq!(
        ids.dtype(),
        DType::I64,
        "padding_mask: ids must be i64, got {:?}",
        ids.dtype()
    );
    assert!(
        pad_id.unsigned_abs() < 1 << 24,
        "padding_mask: pad_id {pad_id} is not below 2^24"
    );
    let ids = ids.to_dtype(DType::F32);
    ids.eq(&ids.scalar_like(pad_id as f32))
}

/// The boolean mask (`true` = hidden) that `mask` describes, broadcastable
/// to the scores `[batch, heads, queries, keys]`, built by device ops on
/// the device of `like`; `None` when nothing is hidden.
fn mask_tensor(
    like: &Tensor,
    mask: AttentionMask,
    batch: usize,
    queries: usize,
    keys: usize,
    past: usize,
) -> Option<Tensor> {
    if let Some(p) = mask.key_padding {
        assert_eq!(
            p.shape(),
            &[batch, keys],
            "attention: key padding mask must be [batch, keys] = [{batch}, {keys}], got {:?}",
            p.shape()
        );
    }
    // 1 where hidden, 0 where seen.
    let causal = mask.causal.then(|| {
        // Query i sits at position past + i; key j is in its future when j
        // > past + i, and outside a window w when j <= past + i - w.
        let query_at = (past..past + queries).map(|i| i as f32).collect();
        let key_at = (0..keys).map(|j| j as f32).collect();
        let (query_at, key_at) = (
            like.new_tensor(query_at, &[1, 1, queries, 1]),
            like.new_tensor(key_at, &[1, 1, 1, keys]),
        );
        let future = key_at.gt(&query_at).to_dtype(DType::F32);
        match mask.window {
            Some(w) => {
                let oldest_seen = key_at.add_scalar(w as f32 - 1.0);
                future.maximum(&query_at.gt(&oldest_seen).to_dtype(DType::F32))
            }
            None => future,
        }
    });
    let padding = mask
        .key_padding
        .map(|p| p.to_dtype(DType::F32).reshape(&[batch, 1, 1, keys]));
    let hidden = match (causal, padding) {
        (Some(c), Some(p)) => c.maximum(&p),
        (Some(h), None) | (None, Some(h)) => h,
        (None, None) => return None,
    };
    Some(hidden.gt(&hidden.scalar_like(0.0)))
}

/// Which implementation computes scaled dot-product attention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionKernel {
    /// The flash-style op: never holds the `[tq, tk]` weights, O(T·d) memory.
    #[default]
    Fused,
    /// Matmul, mask, softmax, matmul: holds the weights; the reference.
    Composed,
}

/// Multi-head attention: a fused query/key/value projection (its rows are
/// the query, key and value weights, as PyTorch's `in_proj_weight`), scaled
/// dot-product attention per head, and an output projection.
#[derive(Clone, Module)]
pub struct MultiHeadAttention {
    /// The fused query, key and value projection, `d_model -> 3 d_model`.
    pub qkv: Linear,
    /// The output projection.
    pub proj: Linear,
    /// Heads; `d_model` divides by it.
    pub n_head: usize,
    /// Fused by default; the composed path is always taken when weights are
    /// returned or attention dropout is active.
    #[module(skip)]
    pub kernel: AttentionKernel,
    /// `Some(w)`: causal self-attention sees only the last `w` positions
    /// (sliding-window attention), and a KV cache keeps only those. `None`
    /// (the default): every earlier position.
    #[module(skip)]
    pub window: Option<usize>,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
}

impl MultiHeadAttention {
    /// The layer `config` describes (validated by it), its dropout drawing
    /// from `dropout_rng`.
    pub(crate) fn new(
        config: &MultiHeadAttentionConfig,
        rng: &mut impl Rng,
        dropout_rng: &SharedRng,
        device: &Device,
    ) -> Self {
        let (d, bias) = (config.d_model, config.bias);
        MultiHeadAttention {
            qkv: Linear::new(d, 3 * d, bias, config.std, rng, device),
            proj: Linear::new(d, d, bias, config.proj_std, rng, device),
            n_head: config.n_head,
            kernel: AttentionKernel::Fused,
            window: config.window,
            attn_dropout: Dropout::new(config.dropout, dropout_rng.clone()),
            resid_dropout: Dropout::new(config.dropout, dropout_rng.clone()),
        }
    }

    fn d_model(&self) -> usize {
        self.proj.out_features()
    }

    /// Causal self-attention over `x` of shape `[batch, time, d_model]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.self_attention(x, AttentionMask::CAUSAL, None, None, false)
            .0
    }

    /// Self-attention over `x` `[batch, time, d_model]` under `mask`
    /// (narrowed to the layer's [`window`](Self::window) when causal),
    /// rotating queries and keys by `rope` when given, appending to and
    /// attending over `cache` when given (a padding mask then covers the
    /// cached keys too; a windowed layer's cache keeps only its window, so
    /// it takes no padding mask), and returning the attention weights
    /// `[batch, heads, time, keys]` when `return_weights` (for heatmaps).
    pub fn self_attention(
        &self,
        x: &Tensor,
        mask: AttentionMask,
        cache: Option<&mut LayerKvCache>,
        rope: Option<&Rope>,
        return_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (b, t, c) = check_input("self-attention", x, self.d_model());
        let qkv = self.qkv.forward(x);
        let heads = |start: usize| self.split_heads(&qkv.narrow(2, start, c), b, t);
        let (mut q, mut k, mut v) = (heads(0), heads(c), heads(2 * c));
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(rope) = rope {
            q = rope.apply(&q, past);
            k = rope.apply(&k, past);
        }
        let mut mask = mask;
        if mask.causal && mask.window.is_none() {
            mask.window = self.window;
        }
        let mut past_in_call = past;
        match (cache, mask.window) {
            (Some(cache), Some(w)) => {
                assert!(
                    mask.key_padding.is_none(),
                    "self-attention: a sliding-window KV cache takes no key padding mask"
                );
                (k, v, past_in_call) = cache.extend_rolling(k, v, w);
            }
            (Some(cache), None) => (k, v) = cache.extend(k, v),
            (None, _) => {}
        }
        let (y, weights) = self.scaled_dot_product(&q, &k, &v, mask, past_in_call, return_weights);
        (self.merge_heads(&y, b, t), weights)
    }

    /// Cross-attention: queries from `x` `[batch, time, d_model]`, keys and
    /// values from `memory` `[batch, source_time, d_model]` (an encoder's
    /// output), hiding source positions where `memory_padding` `[batch,
    /// source_time]` is true. With a `cache`, the keys and values are
    /// projected from `memory` once and reused on later calls.
    pub fn cross_attention(
        &self,
        x: &Tensor,
        memory: &Tensor,
        memory_padding: Option<&Tensor>,
        cache: Option<&mut LayerKvCache>,
        return_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (b, t, c) = check_input("cross-attention", x, self.d_model());
        let q = self.split_heads(&self.qkv.forward_rows(x, 0, c), b, t);
        let project = || {
            let (mb, s, _) = check_input("cross-attention memory", memory, c);
            assert_eq!(
                mb, b,
                "cross-attention: batch {b} of queries but {mb} of memory"
            );
            let kv = self.qkv.forward_rows(memory, c, 2 * c);
            (
                self.split_heads(&kv.narrow(2, 0, c), b, s),
                self.split_heads(&kv.narrow(2, c, c), b, s),
            )
        };
        let (k, v) = match cache {
            Some(cache) if !cache.is_empty() => (
                cache.keys.as_ref().expect("filled").narrow(2, 0, cache.len),
                cache
                    .values
                    .as_ref()
                    .expect("filled")
                    .narrow(2, 0, cache.len),
            ),
            Some(cache) => {
                let (k, v) = project();
                cache.extend(k, v)
            }
            None => project(),
        };
        let mask = AttentionMask {
            causal: false,
            window: None,
            key_padding: memory_padding,
        };
        let (y, weights) = self.scaled_dot_product(&q, &k, &v, mask, 0, return_weights);
        (self.merge_heads(&y, b, t), weights)
    }

    /// `[b, t, c]` to `[b, heads, t, head_dim]` (a view).
    fn split_heads(&self, x: &Tensor, b: usize, t: usize) -> Tensor {
        let (h, c) = (self.n_head, self.d_model());
        x.reshape(&[b, t, h, c / h]).transpose(1, 2)
    }

    /// Heads back to `[b, t, c]`, then the output projection and dropout.
    fn merge_heads(&self, y: &Tensor, b: usize, t: usize) -> Tensor {
        let y = y.transpose(1, 2).reshape(&[b, t, self.d_model()]);
        self.resid_dropout.forward(&self.proj.forward(&y))
    }

    /// Attention through the fused op where it can serve, else [`Self::attend`].
    fn scaled_dot_product(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: AttentionMask,
        past: usize,
        return_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let fused = self.kernel == AttentionKernel::Fused
            && !return_weights
            && !self.attn_dropout.is_active();
        if fused {
            let y = Tensor::scaled_dot_product_attention(q, k, v, mask, past);
            return (y, None);
        }
        let (y, weights) = self.attend(q, k, v, mask, past);
        (y, return_weights.then_some(weights))
    }

    /// The composed reference: scaled dot-product attention of `q` `[batch,
    /// heads, tq, d]` over `k`, `v` `[batch, heads, tk, d]` under `mask`
    /// (`past`: the absolute position of the first query, for the causal
    /// mask) from matmul, mask, softmax and matmul. Returns the output
    /// `[batch, heads, tq, d]` and the (pre-dropout) attention weights.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: AttentionMask,
        past: usize,
    ) -> (Tensor, Tensor) {
        let d = q.shape()[q.rank() - 1];
        let scale = 1.0 / (d as f32).sqrt();
        let scores = q.matmul(&k.transpose(-1, -2));
        let (batch, tq, tk) = (q.shape()[0], q.shape()[2], k.shape()[2]);
        let weights = match (mask.causal, mask.window, mask.key_padding) {
            // Scale, causal mask and softmax in one fused pass.
            (true, None, None) => scores.causal_softmax(scale, past),
            (false, _, None) => scores.mul_scalar(scale).softmax(-1),
            _ => {
                let hidden = mask_tensor(&scores, mask, batch, tq, tk, past).expect("a mask");
                scores
                    .mul_scalar(scale)
                    .masked_fill(&hidden, f32::NEG_INFINITY)
                    .softmax(-1)
            }
        };
        let y = self.attn_dropout.forward(&weights).matmul(v);
        (y, weights)
    }
}

/// The `[batch, time, width]` of an attention input, checked.
fn check_input(op: &str, x: &Tensor, width: usize) -> (usize, usize, usize) {
    assert!(
        x.rank() == 3 && x.shape()[2] == width,
        "{op}: input must be [batch, time, {width}], got {:?}",
        x.shape()
    );
    (x.shape()[0], x.shape()[1], x.shape()[2])
}
