//! Joining and splitting along a dimension: `cat`, `stack`, `split`, `chunk`.

use std::sync::Arc;

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::ops::Dim;
use crate::tensor::Layout;

struct CatBackward {
    dim: usize,
    sizes: Vec<usize>,
}

impl Backward for CatBackward {
    fn name(&self) -> &'static str {
        "cat"
    }

    fn backward(&self, g: &Tensor, _inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let mut start = 0;
        self.sizes
            .iter()
            .map(|&len| {
                let piece = g.narrow(self.dim, start, len);
                start += len;
                Some(piece)
            })
            .collect()
    }
}

impl Tensor {
    /// Concatenates tensors along `dim`; all other dimensions must match.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let a = Tensor::ones(&[2, 1]);
    /// let b = Tensor::zeros(&[2, 2]);
    /// assert_eq!(Tensor::cat(&[&a, &b], 1).to_vec(), vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    /// ```
    pub fn cat(tensors: &[&Tensor], dim: impl Dim) -> Tensor {
        assert!(!tensors.is_empty(), "cat: needs at least one tensor");
        let first = tensors[0];
        super::same_device("cat", tensors);
        let d = dim.index(first.rank(), "cat");
        for t in tensors {
            let same = t.rank() == first.rank()
                && t.dtype() == first.dtype()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            assert!(
                same,
                "cat: shapes {:?} and {:?} ({:?}, {:?}) differ outside dimension {d}",
                first.shape(),
                t.shape(),
                first.dtype(),
                t.dtype()
            );
        }
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
        let mut shape = first.shape().to_vec();
        shape[d] = sizes.iter().sum();
        let out_layout = Layout::contiguous(&shape);
        let mut storage = first.storage().zeros_like(out_layout.numel());
        let mut start = 0;
        for (t, &len) in tensors.iter().zip(&sizes) {
            storage.copy_from(
                &out_layout.narrow(d, start, len),
                (&t.storage(), t.layout()),
                "cat",
            );
            start += len;
        }
        let node = autograd::node(tensors, || CatBackward { dim: d, sizes });
        Tensor::from_storage(Arc::new(storage), out_layout, node)
    }

    /// Stacks same-shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: impl Dim) -> Tensor {
        assert!(!tensors.is_empty(), "stack: needs at least one tensor");
        let d = dim.index(tensors[0].rank() + 1, "stack");
        let expanded: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(d)).collect();
        Tensor::cat(&expanded.iter().collect::<Vec<_>>(), d)
    }

    /// Views of consecutive pieces of `size` along `dim` (the last may be
    /// shorter), as `torch.split` with an integer.
    pub fn split(&self, size: usize, dim: impl Dim) -> Vec<Tensor> {
        assert!(size > 0, "split: size must be positive");
        let d = dim.index(self.rank(), "split");
        let n = self.shape()[d];
        (0..n)
            .step_by(size)
            .map(|start| self.narrow(d, start, size.min(n - start)))
            .collect()
    }

    /// `chunks` views of (nearly) equal size along `dim`, as `torch.chunk`.
    pub fn chunk(&self, chunks: usize, dim: impl Dim) -> Vec<Tensor> {
        assert!(chunks > 0, "chunk: the number of chunks must be positive");
        let d = dim.index(self.rank(), "chunk");
        self.split(self.shape()[d].div_ceil(chunks).max(1), d)
    }
}
