//! Matrix products of 2-D tensors and batches of them, with broadcast batch
//! dimensions (`torch.matmul` for inputs of rank >= 2).

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::cpu::gemm::{self, MatRef};
use crate::backend::cpu::strided;
use crate::ops::sum_to_shape;
use crate::tensor::Layout;
use crate::tensor::layout::broadcast_shape;

struct MatmulBackward;

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        // Transposes are views: gemm reads them through their strides.
        let ga = a
            .is_tracked()
            .then(|| sum_to_shape(&g.matmul(&b.transpose(-1, -2)), a.shape()));
        let gb = b
            .is_tracked()
            .then(|| sum_to_shape(&a.transpose(-1, -2).matmul(g), b.shape()));
        vec![ga, gb]
    }
}

/// Storage offsets of each matrix of a batch, the batch broadcast to `batch_shape`.
fn batch_offsets(layout: &Layout, batch_shape: &[usize]) -> Vec<usize> {
    let r = layout.rank();
    let batch = Layout::new(
        layout.shape()[..r - 2].to_vec(),
        layout.strides()[..r - 2].to_vec(),
        0,
    )
    .broadcast_to(batch_shape)
    .expect("batch shapes checked");
    let mut offsets = vec![0; batch.numel()];
    strided::for_each_offsets(batch.shape(), [&batch], 0, batch.numel(), |k, [o]| {
        offsets[k] = o
    });
    offsets
}

impl Tensor {
    /// The matrix product over the last two dimensions; leading (batch)
    /// dimensions broadcast. `[.., m, k] @ [.., k, n] -> [.., m, n]`.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    /// let i = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]);
    /// assert_eq!(a.matmul(&i).to_vec(), a.to_vec());
    /// // A batch of 3 matrices times one shared matrix.
    /// let x = Tensor::ones(&[3, 4, 2]);
    /// assert_eq!(x.matmul(&a).shape(), &[3, 4, 2]);
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        let (a, b) = (self, other);
        assert!(
            a.rank() >= 2 && b.rank() >= 2,
            "matmul: needs inputs of rank >= 2, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k, k2, n) = (
            a.shape()[ra - 2],
            a.shape()[ra - 1],
            b.shape()[rb - 2],
            b.shape()[rb - 1],
        );
        assert_eq!(
            k,
            k2,
            "matmul: inner dimensions differ, shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
        let batch_shape = broadcast_shape(&a.shape()[..ra - 2], &b.shape()[..rb - 2])
            .unwrap_or_else(|| {
                panic!(
                    "matmul: batch dimensions of {:?} and {:?} cannot be broadcast",
                    a.shape(),
                    b.shape()
                )
            });
        let (sa, sb) = (a.storage(), b.storage());
        let (la, lb) = (a.layout(), b.layout());
        let a_ref = MatRef {
            data: sa.f32("matmul"),
            offset: 0,
            row_stride: la.strides()[ra - 2],
            col_stride: la.strides()[ra - 1],
        };
        let b_ref = MatRef {
            data: sb.f32("matmul"),
            offset: 0,
            row_stride: lb.strides()[rb - 2],
            col_stride: lb.strides()[rb - 1],
        };
        let a_offsets = batch_offsets(la, &batch_shape);
        let b_offsets = batch_offsets(lb, &batch_shape);
        // sgemm with beta = 0 writes every element without reading it.
        let mut out = crate::backend::cpu::pool::take(a_offsets.len() * m * n);
        let a_offsets: Vec<usize> = a_offsets.iter().map(|o| o + la.offset()).collect();
        let b_offsets: Vec<usize> = b_offsets.iter().map(|o| o + lb.offset()).collect();
        gemm::batched_matmul(m, k, n, a_ref, &a_offsets, b_ref, &b_offsets, &mut out);
        let mut shape = batch_shape;
        shape.extend([m, n]);
        let node = autograd::node(&[a, b], || MatmulBackward);
        Tensor::from_f32(out, &shape, node)
    }
}
