//! Reductions: sum, mean, max and var, over one dimension or all of them.

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::cpu::reduce as kernels;
use crate::ops::{Dim, reduced_shape, split_at_dim, with_contiguous_f32};

/// Sum over `dim` (or everything when `None`): the gradient is broadcast back.
struct SumBackward {
    dim: Option<(usize, bool)>,
}

impl Backward for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let shape = inputs[0].shape();
        let g = match self.dim {
            Some((d, false)) => g.unsqueeze(d),
            Some((_, true)) => g.clone(),
            None => g.reshape(&vec![1; shape.len()]),
        };
        vec![Some(g.broadcast_to(shape))]
    }
}

/// Max over `dim`: the gradient goes to the first maximum only.
struct MaxBackward {
    dim: usize,
    argmax: Vec<usize>,
}

impl Backward for MaxBackward {
    fn name(&self) -> &'static str {
        "max"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let shape = inputs[0].shape();
        let (outer, n, inner) = split_at_dim(shape, self.dim);
        let g = g.contiguous().to_vec();
        let mut dx = crate::backend::cpu::pool::take_zeroed(outer * n * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = o * inner + i;
                dx[(o * n + self.argmax[at]) * inner + i] = g[at];
            }
        }
        vec![Some(Tensor::from_f32(dx, shape, None))]
    }
}

impl Tensor {
    /// Σ x² over every element of an f32 tensor, accumulated in f64 and
    /// returned as a number (no graph): gradient norms and clipping.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![3.0, 4.0], &[2]);
    /// assert_eq!(x.squared_norm(), 25.0);
    /// ```
    pub fn squared_norm(&self) -> f64 {
        self.storage().sum_of_squares(self.layout(), "squared_norm")
    }

    /// The sum of all elements, as a zero-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        let total = with_contiguous_f32(self, "sum", |x| kernels::sum_axis(x, 1, x.len(), 1));
        let node = autograd::node(&[self], || SumBackward { dim: None });
        Tensor::from_f32(total, &[], node)
    }

    /// Sums over `dim`, keeping it with size 1 when `keepdim`.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(t.sum_dim(0, false).to_vec(), vec![4.0, 6.0]);
    /// assert_eq!(t.sum_dim(-1, true).shape(), &[2, 1]);
    /// ```
    pub fn sum_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let d = dim.index(self.rank(), "sum_dim");
        let (outer, n, inner) = split_at_dim(self.shape(), d);
        let data = with_contiguous_f32(self, "sum_dim", |x| kernels::sum_axis(x, outer, n, inner));
        let node = autograd::node(&[self], || SumBackward {
            dim: Some((d, keepdim)),
        });
        Tensor::from_f32(data, &reduced_shape(self.shape(), d, keepdim), node)
    }

    /// The mean of all elements.
    pub fn mean(&self) -> Tensor {
        self.sum().mul_scalar(1.0 / self.numel() as f32)
    }

    /// The mean over `dim`.
    pub fn mean_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let d = dim.index(self.rank(), "mean_dim");
        self.sum_dim(d, keepdim)
            .mul_scalar(1.0 / self.shape()[d] as f32)
    }

    /// The variance over `dim`; `unbiased` divides by `n - 1` (PyTorch's
    /// default, `correction=1`), otherwise by `n`.
    pub fn var_dim(&self, dim: impl Dim, keepdim: bool, unbiased: bool) -> Tensor {
        let d = dim.index(self.rank(), "var_dim");
        let n = self.shape()[d];
        let centered = self.sub(&self.mean_dim(d, true));
        let denom = if unbiased { n.saturating_sub(1) } else { n };
        centered
            .square()
            .sum_dim(d, keepdim)
            .mul_scalar(1.0 / denom as f32)
    }

    /// The largest element.
    pub fn max(&self) -> Tensor {
        self.reshape(&[self.numel()]).max_dim(0, false)
    }

    /// The maxima over `dim`; the gradient flows to the first maximum.
    pub fn max_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let (d, values, argmax) = self.max_along(dim, "max_dim");
        let node = autograd::node(&[self], || MaxBackward { dim: d, argmax });
        Tensor::from_f32(values, &reduced_shape(self.shape(), d, keepdim), node)
    }

    /// The index of the first maximum over `dim`, as an i64 tensor.
    pub fn argmax_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let (d, _, argmax) = self.max_along(dim, "argmax_dim");
        let ids = argmax.into_iter().map(|i| i as i64).collect();
        Tensor::from_ids(ids, &reduced_shape(self.shape(), d, keepdim))
    }

    /// `(dim index, maxima, first argmax)` over `dim`, for `op`.
    fn max_along(&self, dim: impl Dim, op: &str) -> (usize, Vec<f32>, Vec<usize>) {
        let d = dim.index(self.rank(), op);
        let (outer, n, inner) = split_at_dim(self.shape(), d);
        assert!(
            n > 0,
            "{op}: dimension {d} of shape {:?} is empty",
            self.shape()
        );
        let (values, argmax) =
            with_contiguous_f32(self, op, |x| kernels::max_axis(x, outer, n, inner));
        (d, values, argmax)
    }
}
