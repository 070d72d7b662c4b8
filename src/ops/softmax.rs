//! Softmax and log-softmax over one dimension, numerically stable (the row
//! maximum is subtracted before exponentiating).

use std::sync::Arc;

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::cpu::{reduce as kernels, strided};
use crate::ops::Dim;
use crate::tensor::{CpuStorage, Layout, Storage};

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
    let op = if log { "log_softmax" } else { "softmax" };
    let last = x.rank() - 1;
    // Work on rows: bring `dim` last (a layout change), then put it back.
    let mut perm: Vec<usize> = (0..x.rank()).collect();
    perm.swap(dim, last);
    let moved = x.layout().permute(&perm);
    let storage = x.storage();
    let n = x.shape()[dim];
    let data = match moved.contiguous_range() {
        Some(r) => kernels::softmax_rows(&storage.f32(op)[r], n, log),
        None => kernels::softmax_rows(&strided::gather(storage.f32(op), &moved), n, log),
    };
    let layout = Layout::contiguous(moved.shape()).permute(&perm);
    let out = Tensor::from_storage(Arc::new(Storage::Cpu(CpuStorage::F32(data))), layout, None);
    match autograd::node(&[x], || SoftmaxBackward {
        dim,
        log,
        out: out.clone(),
    }) {
        Some(node) => out.view(out.layout().clone(), Some(node)),
        None => out,
    }
}

impl Tensor {
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
