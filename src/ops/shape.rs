//! View ops: new layouts over the same storage, no copying (except
//! `contiguous`, and `reshape` of non-contiguous data). Their backward rules
//! move the gradient back into the input's shape.

use std::sync::Arc;

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::ops::{Dim, sum_to_shape};
use crate::tensor::Layout;

enum ViewOp {
    Reshape,
    Permute(Vec<usize>),
    Narrow { dim: usize, start: usize },
    Unsqueeze(usize),
    Squeeze(usize),
    Broadcast,
    Contiguous,
}

struct ViewBackward {
    op: ViewOp,
    input_shape: Vec<usize>,
}

impl Backward for ViewBackward {
    fn name(&self) -> &'static str {
        match self.op {
            ViewOp::Reshape => "reshape",
            ViewOp::Permute(_) => "permute",
            ViewOp::Narrow { .. } => "narrow",
            ViewOp::Unsqueeze(_) => "unsqueeze",
            ViewOp::Squeeze(_) => "squeeze",
            ViewOp::Broadcast => "broadcast_to",
            ViewOp::Contiguous => "contiguous",
        }
    }

    fn backward(&self, g: &Tensor, _inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let gx = match &self.op {
            ViewOp::Reshape => g.reshape(&self.input_shape),
            ViewOp::Permute(dims) => {
                let mut inverse = vec![0; dims.len()];
                for (i, &d) in dims.iter().enumerate() {
                    inverse[d] = i;
                }
                g.permute(&inverse)
            }
            ViewOp::Narrow { dim, start } => {
                // Zeros everywhere but the narrowed window, which gets `g`.
                let full = Layout::contiguous(&self.input_shape);
                let window = full.narrow(*dim, *start, g.shape()[*dim]);
                let mut storage = g.storage().zeros_like(full.numel());
                storage.copy_from(&window, (&g.storage(), g.layout()), "narrow backward");
                Tensor::from_storage(Arc::new(storage), full, None)
            }
            ViewOp::Unsqueeze(d) => g.squeeze(*d),
            ViewOp::Squeeze(d) => g.unsqueeze(*d),
            ViewOp::Broadcast => sum_to_shape(g, &self.input_shape),
            ViewOp::Contiguous => g.clone(),
        };
        vec![Some(gx)]
    }

    fn add_into(&self, g: &Tensor, acc: &mut Tensor) -> bool {
        let ViewOp::Narrow { dim, start } = self.op else {
            return false;
        };
        let window = Layout::contiguous(&self.input_shape).narrow(dim, start, g.shape()[dim]);
        acc.add_in_place_if_unique(&window, g)
    }
}

fn view_op(x: &Tensor, layout: Layout, op: ViewOp) -> Tensor {
    // A view's backward reads only shapes: its node keeps a storage-less
    // edge, so the view does not keep its source's elements alive once
    // the view itself is gone.
    let node = autograd::node_reading_no_values(&[x], || ViewBackward {
        op,
        input_shape: x.shape().to_vec(),
    });
    x.view(layout, node)
}

impl Tensor {
    /// The same elements in `shape` (same count). A view when the strides
    /// allow one (always when the tensor is contiguous; see
    /// [`Layout::reshape`](crate::tensor::Layout::reshape)), a copy otherwise.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let t = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]);
    /// assert_eq!(t.shape(), &[2, 3]);
    /// ```
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let numel: usize = shape.iter().product();
        assert_eq!(
            numel,
            self.numel(),
            "reshape: cannot reshape {:?} ({} elements) to {:?} ({} elements)",
            self.shape(),
            self.numel(),
            shape,
            numel
        );
        // A view when the strides allow one, as in PyTorch; a copy otherwise.
        if let Some(layout) = self.layout().reshape(shape) {
            return view_op(self, layout, ViewOp::Reshape);
        }
        let source = self.contiguous();
        let layout = source.layout().reshape(shape).expect("contiguous");
        view_op(&source, layout, ViewOp::Reshape)
    }

    /// Reorders dimensions: dimension `i` of the result is `dims[i]` of `self`.
    pub fn permute(&self, dims: &[usize]) -> Tensor {
        let mut seen = vec![false; self.rank()];
        assert!(
            dims.len() == self.rank()
                && dims
                    .iter()
                    .all(|&d| d < self.rank() && !std::mem::replace(&mut seen[d], true)),
            "permute: {dims:?} is not a permutation of the {} dimensions of {:?}",
            self.rank(),
            self.shape()
        );
        view_op(
            self,
            self.layout().permute(dims),
            ViewOp::Permute(dims.to_vec()),
        )
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, dim0: impl Dim, dim1: impl Dim) -> Tensor {
        let (a, b) = (
            dim0.index(self.rank(), "transpose"),
            dim1.index(self.rank(), "transpose"),
        );
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// The transpose of a 2-D tensor.
    pub fn t(&self) -> Tensor {
        assert_eq!(
            self.rank(),
            2,
            "t: needs a 2-D tensor, got shape {:?}",
            self.shape()
        );
        self.transpose(0, 1)
    }

    /// Elements `start..start + len` of dimension `dim`, as a view.
    pub fn narrow(&self, dim: impl Dim, start: usize, len: usize) -> Tensor {
        let d = dim.index(self.rank(), "narrow");
        assert!(
            start + len <= self.shape()[d],
            "narrow: range {start}..{} is out of bounds for dimension {d} of shape {:?}",
            start + len,
            self.shape()
        );
        view_op(
            self,
            self.layout().narrow(d, start, len),
            ViewOp::Narrow { dim: d, start },
        )
    }

    /// Inserts a dimension of size 1 at `dim` (`-1` appends one).
    pub fn unsqueeze(&self, dim: impl Dim) -> Tensor {
        let d = dim.index(self.rank() + 1, "unsqueeze");
        view_op(self, self.layout().unsqueeze(d), ViewOp::Unsqueeze(d))
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: impl Dim) -> Tensor {
        let d = dim.index(self.rank(), "squeeze");
        assert_eq!(
            self.shape()[d],
            1,
            "squeeze: dimension {d} of shape {:?} does not have size 1",
            self.shape()
        );
        view_op(self, self.layout().squeeze(d), ViewOp::Squeeze(d))
    }

    /// A view stretched to `shape` by NumPy's broadcasting rules.
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        let layout = self.layout().broadcast_to(shape).unwrap_or_else(|| {
            panic!(
                "broadcast_to: shape {:?} cannot be broadcast to {shape:?}",
                self.shape()
            )
        });
        view_op(self, layout, ViewOp::Broadcast)
    }

    /// Flattens dimensions `start..=end` into one.
    pub fn flatten(&self, start: impl Dim, end: impl Dim) -> Tensor {
        let (s, e) = (
            start.index(self.rank(), "flatten"),
            end.index(self.rank(), "flatten"),
        );
        assert!(
            s <= e,
            "flatten: start dimension {s} is after end dimension {e}"
        );
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&shape)
    }

    /// A row-major copy, or `self` when already contiguous.
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let storage = self.storage().contiguous_copy(self.layout());
        let node = autograd::node_reading_no_values(&[self], || ViewBackward {
            op: ViewOp::Contiguous,
            input_shape: self.shape().to_vec(),
        });
        Tensor::from_storage(Arc::new(storage), Layout::contiguous(self.shape()), node)
    }
}
