//! Reductions: sum, mean, max and var, over one dimension or all of them.

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::Axis;
use crate::ops::{Dim, reduced_shape, split_at_dim};
use crate::tensor::Storage;

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
    axis: Axis,
    /// i64 `[outer, inner]`, on the op's device.
    argmax: Tensor,
}

impl Backward for MaxBackward {
    fn name(&self) -> &'static str {
        "max"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let dx = g
            .storage()
            .max_axis_backward(g.layout(), &self.argmax.storage(), self.axis);
        vec![Some(Tensor::from_output(dx, inputs[0].shape(), None))]
    }
}

/// Cumulative sum along an axis: the gradient of element `j` is the sum of
/// the upstream gradient from `j` to the end.
struct CumsumBackward {
    axis: Axis,
}

impl Backward for CumsumBackward {
    fn name(&self) -> &'static str {
        "cumsum"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let dx = g.storage().cumsum(g.layout(), self.axis, true);
        vec![Some(Tensor::from_output(dx, inputs[0].shape(), None))]
    }
}

impl Tensor {
    /// Σ x² over every element of an f32 tensor, accumulated in f64, as a
    /// zero-dimensional f32 tensor on the tensor's device (no graph, nothing
    /// read back): gradient norms and clipping.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![3.0, 4.0], &[2]);
    /// assert_eq!(x.squared_norm().item(), 25.0);
    /// ```
    pub fn squared_norm(&self) -> Tensor {
        Tensor::from_output(self.storage().sum_of_squares(self.layout()), &[], None)
    }

    /// The sum of all elements, as a zero-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        let axis = Axis {
            outer: 1,
            n: self.numel(),
            inner: 1,
        };
        let total = self.storage().sum_axis(self.layout(), axis);
        let node = autograd::node_reading_no_values(&[self], || SumBackward { dim: None });
        Tensor::from_output(total, &[], node)
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
        let data = self
            .storage()
            .sum_axis(self.layout(), axis_of(self.shape(), d));
        let node = autograd::node_reading_no_values(&[self], || SumBackward {
            dim: Some((d, keepdim)),
        });
        Tensor::from_output(data, &reduced_shape(self.shape(), d, keepdim), node)
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
        let axis = axis_of(self.shape(), d);
        let node = autograd::node(&[self], || MaxBackward {
            axis,
            argmax: Tensor::from_output(argmax, &[axis.outer, axis.inner], None),
        });
        Tensor::from_output(values, &reduced_shape(self.shape(), d, keepdim), node)
    }

    /// The smallest element.
    pub fn min(&self) -> Tensor {
        self.neg().max().neg()
    }

    /// The minima over `dim`; the gradient flows to the first minimum.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let t = Tensor::from_vec(vec![3.0, 1.0, 2.0, 5.0], &[2, 2]);
    /// assert_eq!(t.min_dim(1, false).to_vec(), vec![1.0, 2.0]);
    /// assert_eq!(t.argmin_dim(1, false).to_vec_i64(), vec![1, 0]);
    /// ```
    pub fn min_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        self.neg().max_dim(dim, keepdim).neg()
    }

    /// The index of the first minimum over `dim`, as an i64 tensor.
    pub fn argmin_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        self.neg().argmax_dim(dim, keepdim)
    }

    /// Running sums along `dim` (`torch.cumsum`), accumulated in f64 as
    /// PyTorch's CPU kernel does. The gradient is the running sum of the
    /// upstream gradient taken from the end.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(t.cumsum(1).to_vec(), vec![1.0, 3.0, 3.0, 7.0]);
    /// assert_eq!(t.cumsum(0).to_vec(), vec![1.0, 2.0, 4.0, 6.0]);
    /// ```
    pub fn cumsum(&self, dim: impl Dim) -> Tensor {
        assert!(self.rank() > 0, "cumsum: needs at least one dimension");
        let d = dim.index(self.rank(), "cumsum");
        let axis = axis_of(self.shape(), d);
        let data = self.storage().cumsum(self.layout(), axis, false);
        let node = autograd::node(&[self], || CumsumBackward { axis });
        Tensor::from_output(data, self.shape(), node)
    }

    /// The index of the first maximum over `dim`, as an i64 tensor.
    pub fn argmax_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let (d, _, argmax) = self.max_along(dim, "argmax_dim");
        Tensor::from_output(argmax, &reduced_shape(self.shape(), d, keepdim), None)
    }

    /// `(dim index, maxima, first argmax)` over `dim`, for `op`.
    fn max_along(&self, dim: impl Dim, op: &str) -> (usize, Storage, Storage) {
        let d = dim.index(self.rank(), op);
        let axis = axis_of(self.shape(), d);
        assert!(
            axis.n > 0,
            "{op}: dimension {d} of shape {:?} is empty",
            self.shape()
        );
        let (values, argmax) = self.storage().max_axis(self.layout(), axis);
        (d, values, argmax)
    }
}

/// The reduction over dimension `d` of `shape`.
fn axis_of(shape: &[usize], d: usize) -> Axis {
    let (outer, n, inner) = split_at_dim(shape, d);
    Axis { outer, n, inner }
}
