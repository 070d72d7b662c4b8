//! Embedding lookup: gather rows of a table by integer id; the backward rule
//! scatter-adds the gradient rows back into the table's shape.

use crate::autograd::{self, Backward};
use crate::ops::with_contiguous_f32;
use crate::{DType, Tensor};

struct EmbeddingBackward {
    ids: Vec<i64>,
}

impl Backward for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let table = &inputs[0];
        let d = table.shape()[1];
        let mut dw = crate::backend::cpu::pool::take_zeroed(table.numel());
        with_contiguous_f32(g, "embedding backward", |g| {
            for (&id, row) in self.ids.iter().zip(g.chunks_exact(d)) {
                let dst = &mut dw[id as usize * d..(id as usize + 1) * d];
                dst.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
            }
        });
        vec![Some(Tensor::from_f32(dw, table.shape(), None))]
    }
}

impl Tensor {
    /// Rows of `table` (`[vocab, dim]`) picked by `ids` (i64, any shape); the
    /// result has shape `[ids..., dim]`.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let table = Tensor::from_vec(vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0], &[3, 2]);
    /// let ids = Tensor::from_ids(vec![2, 0], &[2]);
    /// assert_eq!(Tensor::embedding(&ids, &table).to_vec(), vec![2.0, 2.0, 0.0, 0.0]);
    /// ```
    pub fn embedding(ids: &Tensor, table: &Tensor) -> Tensor {
        super::same_device("embedding", &[ids, table]);
        assert_eq!(
            ids.dtype(),
            DType::I64,
            "embedding: ids must be i64, got {:?}",
            ids.dtype()
        );
        assert_eq!(
            table.rank(),
            2,
            "embedding: the table must be [vocab, dim], got shape {:?}",
            table.shape()
        );
        let (vocab, d) = (table.shape()[0], table.shape()[1]);
        let ids_vec = ids.to_vec_i64();
        let mut out = crate::backend::cpu::pool::take(ids_vec.len() * d);
        with_contiguous_f32(table, "embedding", |w| {
            for (&id, dst) in ids_vec.iter().zip(out.chunks_exact_mut(d)) {
                assert!(
                    (0..vocab as i64).contains(&id),
                    "embedding: id {id} is out of range for a table of {vocab} rows"
                );
                dst.copy_from_slice(&w[id as usize * d..(id as usize + 1) * d]);
            }
        });
        let mut shape = ids.shape().to_vec();
        shape.push(d);
        let node = autograd::node(&[table], || EmbeddingBackward { ids: ids_vec });
        Tensor::from_f32(out, &shape, node)
    }
}
