//! Embedding lookup: gather rows of a table by integer id; the backward rule
//! scatter-adds the gradient rows back into the table's shape.

use crate::autograd::{self, Backward};
use crate::{DType, Tensor};

struct EmbeddingBackward {
    /// The ids, detached.
    ids: Tensor,
}

impl Backward for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let table = &inputs[0];
        let dw = g.storage().embedding_backward(
            g.layout(),
            (&self.ids.storage(), self.ids.layout()),
            table.shape()[0],
        );
        vec![Some(Tensor::from_output(dw, table.shape(), None))]
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
        let out = table
            .storage()
            .embedding(table.layout(), (&ids.storage(), ids.layout()));
        let mut shape = ids.shape().to_vec();
        shape.push(table.shape()[1]);
        let node = autograd::node(&[table], || EmbeddingBackward { ids: ids.detach() });
        Tensor::from_output(out, &shape, node)
    }
}
