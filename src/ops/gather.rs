//! Picking elements along one dimension by index: `gather`,
//! `index_select` and `topk`, whose backward rule scatter-adds the gradient
//! back to the positions that were picked; and `scatter_add`, whose rule
//! gathers.

use crate::autograd::{self, Backward};
use crate::backend::Axis;
use crate::ops::{Dim, split_at_dim};
use crate::{DType, Tensor};

struct GatherBackward {
    dim: usize,
    /// The index, detached.
    index: Tensor,
}

impl Backward for GatherBackward {
    fn name(&self) -> &'static str {
        "gather"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let dx = g.storage().scatter_add_dim(
            g.layout(),
            self.dim,
            (&self.index.storage(), self.index.layout()),
            x.shape(),
        );
        vec![Some(Tensor::from_output(dx, x.shape(), None))]
    }
}

struct ScatterAddBackward {
    dim: usize,
    /// The index, detached.
    index: Tensor,
}

impl Backward for ScatterAddBackward {
    fn name(&self) -> &'static str {
        "scatter_add"
    }

    fn backward(&self, g: &Tensor, _inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        vec![Some(g.clone()), Some(g.gather(self.dim, &self.index))]
    }
}

impl Tensor {
    /// `self` with each element of `src` added at its position, `dim`
    /// replaced by `index` there (`torch.scatter_add`): `out[p with p[dim]
    /// = index[p]] += src[p]` for every position `p` of `index`, which
    /// is i64 of `src`'s shape, no larger than `self` in any dimension but
    /// `dim`. Repeated indices add up; the gradient of `src` gathers.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let src = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]);
    /// let index = Tensor::from_ids(vec![2, 0, 2], &[3]);
    /// assert_eq!(Tensor::zeros(&[3]).scatter_add(0, &index, &src).to_vec(), vec![2.0, 0.0, 4.0]);
    /// ```
    pub fn scatter_add(&self, dim: impl Dim, index: &Tensor, src: &Tensor) -> Tensor {
        let op = "scatter_add";
        super::same_device(op, &[self, index, src]);
        let d = dim.index(self.rank(), op);
        assert_eq!(
            index.dtype(),
            DType::I64,
            "{op}: the index must be i64, got {:?}",
            index.dtype()
        );
        let fits = index.shape() == src.shape()
            && index.rank() == self.rank()
            && index
                .shape()
                .iter()
                .zip(self.shape())
                .enumerate()
                .all(|(i, (n, m))| i == d || n <= m);
        assert!(
            fits,
            "{op}: an index and source of shapes {:?} and {:?} do not fit a tensor of shape {:?} along dimension {d}",
            index.shape(),
            src.shape(),
            self.shape()
        );
        let scattered = src.storage().scatter_add_dim(
            src.layout(),
            d,
            (&index.storage(), index.layout()),
            self.shape(),
        );
        let scattered = Tensor::from_output(scattered, self.shape(), None);
        let sum = crate::no_grad(|| self.add(&scattered));
        let node = autograd::node(&[self, src], || ScatterAddBackward {
            dim: d,
            index: index.detach(),
        });
        sum.view(sum.layout().clone(), node)
    }

    /// `out[p] = self[p with p[dim] replaced by index[p]]` for every
    /// position `p` of `index` (`torch.gather`): `index` is i64, of this
    /// tensor's rank, no larger than it in any dimension but `dim`. The
    /// result has `index`'s shape. Panics for an index out of range.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    /// let index = Tensor::from_ids(vec![1, 1, 0, 1], &[2, 2]);
    /// assert_eq!(x.gather(1, &index).to_vec(), vec![2.0, 2.0, 3.0, 4.0]);
    /// ```
    pub fn gather(&self, dim: impl Dim, index: &Tensor) -> Tensor {
        let op = "gather";
        super::same_device(op, &[self, index]);
        let d = dim.index(self.rank(), op);
        assert_eq!(
            index.dtype(),
            DType::I64,
            "{op}: the index must be i64, got {:?}",
            index.dtype()
        );
        let fits = index.rank() == self.rank()
            && index
                .shape()
                .iter()
                .zip(self.shape())
                .enumerate()
                .all(|(i, (n, m))| i == d || n <= m);
        assert!(
            fits,
            "{op}: an index of shape {:?} does not fit a tensor of shape {:?} along dimension {d}",
            index.shape(),
            self.shape()
        );
        let out = self
            .storage()
            .gather_dim(self.layout(), d, (&index.storage(), index.layout()));
        let node = autograd::node(&[self], || GatherBackward {
            dim: d,
            index: index.detach(),
        });
        Tensor::from_output(out, index.shape(), node)
    }

    /// The slices of `self` along `dim` at the positions `ids` (i64, 1-D),
    /// in that order (`torch.index_select`).
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let ids = Tensor::from_ids(vec![2, 0], &[2]);
    /// assert_eq!(x.index_select(1, &ids).to_vec(), vec![3.0, 1.0, 6.0, 4.0]);
    /// ```
    pub fn index_select(&self, dim: impl Dim, ids: &Tensor) -> Tensor {
        let d = dim.index(self.rank(), "index_select");
        assert_eq!(
            ids.rank(),
            1,
            "index_select: ids must be 1-D, got shape {:?}",
            ids.shape()
        );
        // The ids along `dim`, repeated (a broadcast view, no copy) over
        // every other dimension.
        let mut shape = self.shape().to_vec();
        shape[d] = ids.numel();
        let mut along = vec![1; self.rank()];
        along[d] = ids.numel();
        let index = ids.reshape(&along).broadcast_to(&shape);
        self.gather(d, &index)
    }

    /// The `k` largest elements along `dim`, largest first, and their
    /// indices (i64), as `torch.topk(k, dim)` with `sorted=True`. NaN
    /// counts as the largest; equal values keep the lower index first.
    /// Gradients flow to the chosen elements.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 4.0, 2.0, 3.0], &[4]);
    /// let (values, indices) = x.topk(2, 0);
    /// assert_eq!(values.to_vec(), vec![4.0, 3.0]);
    /// assert_eq!(indices.to_vec_i64(), vec![1, 3]);
    /// ```
    pub fn topk(&self, k: usize, dim: impl Dim) -> (Tensor, Tensor) {
        assert!(self.rank() > 0, "topk: needs at least one dimension");
        let d = dim.index(self.rank(), "topk");
        let (outer, n, inner) = split_at_dim(self.shape(), d);
        assert!(
            k <= n,
            "topk: k = {k} exceeds the size {n} of dimension {d} of shape {:?}",
            self.shape()
        );
        let axis = Axis { outer, n, inner };
        let indices = self.storage().topk_indices(self.layout(), axis, k);
        let mut shape = self.shape().to_vec();
        shape[d] = k;
        let indices = Tensor::from_output(indices, &shape, None);
        (self.gather(d, &indices), indices)
    }
}
