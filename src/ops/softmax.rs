//! Softmax and log-softmax over one dimension, numerically stable (the row
//! maximum is subtracted before exponentiating).

use std::sync::Arc;

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::ops::Dim;
use crate::tensor::Layout;

struct SoftmaxBackward {
    dim: usize,
    log: bool,
    /// The output, detached.
    out: Tensor,
}

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        if self.log { "log_softmax" } else { "softmax" }
    }

    fn backward(&self, g: &Tensor, _inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let y = &self.out;
        let gx = if self.log {
            // d/dx of log_softmax: g - softmax(x) · Σ g
            g.sub(&y.exp().mul(&g.sum_dim(self.dim, true)))
        } else {
            // y ⊙ (g - Σ g ⊙ y)
            y.mul(&g.sub(&g.mul(y).sum_dim(self.dim, true)))
        };
        vec![Some(gx)]
    }
}

fn softmax_impl(x: &Tensor, dim: usize, log: bool) -> Tensor {
    let last = x.rank() - 1;
    // Work on rows: bring `dim` last (a layout change), then put it back.
    let mut perm: Vec<usize> = (0..x.rank()).collect();
    perm.swap(dim, last);
    let moved = x.layout().permute(&perm);
    let data = x.storage().softmax(&moved, x.shape()[dim], log);
    let layout = Layout::contiguous(moved.shape()).permute(&perm);
    let out = Tensor::from_storage(Arc::new(data), layout, None);
    autograd::with_saved_output(out, &[x], |out| SoftmaxBackward { dim, log, out })
}

/// Backward of the fused causal softmax (and of a last-dim softmax with a scale).
struct CausalSoftmaxBackward {
    scale: f32,
    /// The output, detached and contiguous.
    out: Tensor,
}

impl Backward for CausalSoftmaxBackward {
    fn name(&self) -> &'static str {
        "causal_softmax"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let dx = self.out.storage().softmax_backward(
            self.out.layout(),
            (&g.storage(), g.layout()),
            self.scale,
        );
        vec![Some(Tensor::from_output(dx, inputs[0].shape(), None))]
    }
}

impl Tensor {
    /// Attention's masked softmax in one pass: `softmax(scale · self)` over
    /// the last dimension of `[.., queries, keys]` scores, where query `i`
    /// (at absolute position `offset + i`) sees only keys `0..=offset + i`;
    /// the rest get probability 0. Equal to
    /// `(self * scale).masked_fill(causal, -inf).softmax(-1)` without the
    /// mask tensor and the three extra passes.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let p = Tensor::zeros(&[2, 2]).causal_softmax(1.0, 0);
    /// assert_eq!(p.to_vec(), vec![1.0, 0.0, 0.5, 0.5]);
    /// ```
    pub fn causal_softmax(&self, scale: f32, offset: usize) -> Tensor {
        assert!(
            self.rank() >= 2,
            "causal_softmax: needs [.., queries, keys] scores, got {:?}",
            self.shape()
        );
        let queries = self.shape()[self.rank() - 2];
        let data = self
            .storage()
            .causal_softmax(self.layout(), queries, offset, scale);
        let out = Tensor::from_output(data, self.shape(), None);
        autograd::with_saved_output(out, &[self], |out| CausalSoftmaxBackward { scale, out })
    }

    /// `exp(x) / Σ exp(x)` over `dim`.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let p = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).softmax(-1);
    /// assert!((p.sum().item() - 1.0).abs() < 1e-6);
    /// ```
    pub fn softmax(&self, dim: impl Dim) -> Tensor {
        assert!(self.rank() > 0, "softmax: needs at least one dimension");
        softmax_impl(self, dim.index(self.rank(), "softmax"), false)
    }

    /// `x - log Σ exp(x)` over `dim`, computed without forming `softmax`.
    pub fn log_softmax(&self, dim: impl Dim) -> Tensor {
        assert!(self.rank() > 0, "log_softmax: needs at least one dimension");
        softmax_impl(self, dim.index(self.rank(), "log_softmax"), true)
    }
}
