//! Fused scaled dot-product attention: one op for `softmax(q kᵀ · scale +
//! mask) v` whose forward keeps only the output and each row's logsumexp,
//! and whose backward recomputes the probabilities tile by tile
//! (flash-attention style). Memory grows linearly with sequence length.

use crate::autograd::{self, Backward};
use crate::backend::AttentionParams;
use crate::tensor::Storage;
use crate::{DType, Tensor};

/// Which keys each query may attend to.
#[derive(Clone, Copy, Default, Debug)]
pub struct AttentionMask<'a> {
    /// Query `i` (at absolute position `past + i`, where `past` is the
    /// number of cached positions) sees keys `0..=past + i` only.
    pub causal: bool,
    /// With `causal`, `Some(w)` narrows what query `i` sees to the `w` keys
    /// ending at its own position, `past + i + 1 - w ..= past + i`:
    /// sliding-window attention (Longformer's and Mistral's local
    /// attention), O(T·w) work in the fused op instead of O(T²).
    pub window: Option<usize>,
    /// `[batch, keys]` bool, `true` where the key is padding and must be
    /// ignored: PyTorch's `key_padding_mask`. A query that can see no key
    /// at all gets a zero output.
    pub key_padding: Option<&'a Tensor>,
}

impl AttentionMask<'_> {
    /// Causal, no padding: a decoder's self-attention.
    pub const CAUSAL: AttentionMask<'static> = AttentionMask {
        causal: true,
        window: None,
        key_padding: None,
    };

    /// Every query sees every key: unpadded bidirectional attention.
    pub const NONE: AttentionMask<'static> = AttentionMask {
        causal: false,
        window: None,
        key_padding: None,
    };

    /// Causal attention over the last `window` positions (`None`: all of
    /// them, [`CAUSAL`](Self::CAUSAL)).
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// use zeroformer::ops::attention::AttentionMask;
    /// let q = Tensor::zeros(&[1, 1, 3, 2]);
    /// let v = Tensor::from_vec(vec![0.0, 0.0, 2.0, 2.0, 4.0, 4.0], &[1, 1, 3, 2]);
    /// let y = Tensor::scaled_dot_product_attention(&q, &q, &v, AttentionMask::sliding(Some(2)), 0);
    /// // Equal scores: each query averages the values it sees (the last
    /// // query sees positions 1 and 2, not 0).
    /// assert_eq!(y.to_vec(), vec![0.0, 0.0, 1.0, 1.0, 3.0, 3.0]);
    /// ```
    pub const fn sliding(window: Option<usize>) -> AttentionMask<'static> {
        AttentionMask {
            causal: true,
            window,
            key_padding: None,
        }
    }
}

struct AttentionBackward {
    params: AttentionParams,
    /// `[batch, keys]` bool, detached.
    key_padding: Option<Tensor>,
    /// The inputs made contiguous (detached; no copy when they already
    /// were), the output, and the per-row logsumexp on the op's device.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Storage,
}

impl Backward for AttentionBackward {
    fn name(&self) -> &'static str {
        "scaled_dot_product_attention"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let [q, k, v, o, gs] = [&self.q, &self.k, &self.v, &self.out, g].map(Tensor::storage);
        let padding = self.key_padding.as_ref().map(|p| (p.storage(), p.layout()));
        let (dq, dk, dv) = q.attention_backward(
            self.q.layout(),
            (&k, self.k.layout()),
            (&v, self.v.layout()),
            (&o, self.out.layout()),
            &self.lse,
            (&gs, g.layout()),
            padding.as_ref().map(|(s, l)| (&**s, *l)),
            &self.params,
        );
        vec![
            Some(Tensor::from_output(dq, inputs[0].shape(), None)),
            Some(Tensor::from_output(dk, inputs[1].shape(), None)),
            Some(Tensor::from_output(dv, inputs[2].shape(), None)),
        ]
    }
}

impl Tensor {
    /// `softmax(q kᵀ / √d, hiding what `mask` hides) v` for queries `q`
    /// `[batch, heads, tq, d]` and keys and values `[batch, heads, tk, d]`
    /// (cross-attention when `tq != tk`), fused: the forward keeps the
    /// output and one logsumexp per query, the backward recomputes the
    /// probabilities in tiles. `past` is the absolute position of the first
    /// query, for the causal mask. Equal to the composed matmul, masked
    /// softmax and matmul (tests/attention.rs), without their `tq x tk`
    /// intermediate.
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// use zeroformer::ops::attention::AttentionMask;
    /// let q = Tensor::ones(&[1, 1, 2, 4]);
    /// let v = Tensor::from_vec((0..8).map(|x| x as f32).collect(), &[1, 1, 2, 4]);
    /// let y = Tensor::scaled_dot_product_attention(&q, &q, &v, AttentionMask::CAUSAL, 0);
    /// // The first query sees only the first value; the second averages both.
    /// assert_eq!(y.to_vec(), vec![0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 5.0]);
    /// ```
    pub fn scaled_dot_product_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: AttentionMask,
        past: usize,
    ) -> Tensor {
        let op = "scaled_dot_product_attention";
        let [q, k, v] = &[q, k, v].map(super::autocast_operand);
        super::same_device(op, &[q, k, v]);
        super::same_dtype(op, &[q, k, v]);
        assert!(
            q.rank() == 4 && k.rank() == 4 && v.rank() == 4,
            "{op}: q, k and v must be [batch, heads, time, head_dim], got {:?}, {:?} and {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        );
        let (batch, heads, tq, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let tk = k.shape()[2];
        assert!(
            k.shape() == [batch, heads, tk, d] && v.shape() == k.shape(),
            "{op}: k and v must be [{batch}, {heads}, keys, {d}] and equal, got {:?} and {:?}",
            k.shape(),
            v.shape()
        );
        let key_padding = mask.key_padding.map(|p| {
            super::same_device(op, &[q, p]);
            assert!(
                p.dtype() == DType::Bool && p.shape() == [batch, tk],
                "{op}: key padding mask must be bool [{batch}, {tk}], got {:?} {:?}",
                p.dtype(),
                p.shape()
            );
            p.detach()
        });
        if let Some(w) = mask.window {
            assert!(
                mask.causal && w > 0,
                "{op}: a sliding window must be positive and causal, got window {w} with causal {}",
                mask.causal
            );
        }
        let params = AttentionParams {
            batch,
            heads,
            tq,
            tk,
            d,
            scale: 1.0 / (d as f32).sqrt(),
            causal: mask.causal.then_some(past),
            window: mask.window,
        };
        // Backward reads the inputs contiguous, so a recorded call saves
        // contiguous copies; without a graph (decoding) the primitive reads
        // the views as they are, the KV cache's narrowed buffers included.
        let recorded = autograd::is_grad_enabled() && [q, k, v].iter().any(|t| t.is_tracked());
        let [qc, kc, vc] = [q, k, v].map(|t| {
            let t = t.detach();
            if recorded { t.contiguous() } else { t }
        });
        let padding = key_padding.as_ref().map(|p| (p.storage(), p.layout()));
        let (out, lse) = qc.storage().attention(
            qc.layout(),
            (&kc.storage(), kc.layout()),
            (&vc.storage(), vc.layout()),
            padding.as_ref().map(|(s, l)| (&**s, *l)),
            &params,
        );
        let out = Tensor::from_output(out, &[batch, heads, tq, d], None);
        autograd::with_saved_output(out, &[q, k, v], |out| AttentionBackward {
            params,
            key_padding,
            q: qc,
            k: kc,
            v: vc,
            out,
            lse,
        })
    }
}
