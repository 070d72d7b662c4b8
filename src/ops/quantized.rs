//! Weight-only int8 for inference: a weight matrix's rows as 8-bit
//! integers with one scale each, and the product of activations with them.
//! Neither op has a gradient: quantized weights are for decoding, and a
//! model trains on its f32 weights.

use super::same_device;
use crate::{DType, Tensor};

/// A weight matrix `[out, in]` stored as int8 rows and f32 scales:
/// `w ≈ q · s` row by row. What [`Tensor::quantize_rows_int8`] makes and
/// [`Tensor::matmul_int8`] reads.
#[derive(Clone, Debug)]
pub struct Int8Rows {
    /// `[out, in]` int8.
    pub q: Tensor,
    /// `[out]` f32: each row's `max |w| / 127`.
    pub scales: Tensor,
}

impl Tensor {
    /// This f32 matrix `[rows, cols]`, row by row as int8 and one scale
    /// (`max |w| / 127`, so every weight is within half a step of `q · s`).
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let w = Tensor::from_vec(vec![1.0, -0.5, 0.25, 0.0, 0.0, 0.0], &[2, 3]);
    /// let q = w.quantize_rows_int8();
    /// assert_eq!(q.q.to_dtype(zeroformer::DType::I64).to_vec_i64(), vec![127, -64, 32, 0, 0, 0]);
    /// assert_eq!(q.scales.to_vec(), vec![1.0 / 127.0, 0.0]);
    /// let x = Tensor::from_vec(vec![1.0, 1.0, 1.0], &[1, 3]);
    /// let y = x.matmul_int8(&q).to_vec();
    /// assert!((y[0] - 0.75).abs() < 0.01 && y[1] == 0.0);
    /// ```
    pub fn quantize_rows_int8(&self) -> Int8Rows {
        assert!(
            self.rank() == 2 && self.dtype() == DType::F32,
            "quantize_rows_int8: needs an f32 matrix, got {:?} {:?}",
            self.dtype(),
            self.shape()
        );
        let (q, s) = self.storage().quantize_rows_int8(self.layout());
        Int8Rows {
            q: Tensor::from_output(q, self.shape(), None),
            scales: Tensor::from_output(s, &self.shape()[..1], None),
        }
    }

    /// `self @ (q · s)ᵀ` for f32 `self` `[..., in]` and int8 rows `[out,
    /// in]`: what `self.matmul(&w.t())` gives for the dequantized `w`,
    /// reading a quarter of its bytes. No gradient flows through it.
    pub fn matmul_int8(&self, w: &Int8Rows) -> Tensor {
        let k = self.shape().last().copied().unwrap_or(0);
        assert!(
            self.dtype() == DType::F32
                && self.rank() >= 1
                && w.q.dtype() == DType::I8
                && w.q.rank() == 2
                && w.q.shape()[1] == k
                && w.scales.shape() == &w.q.shape()[..1],
            "matmul_int8: f32 [..., {k}] times int8 rows {:?} with scales {:?} (input {:?} {:?})",
            w.q.shape(),
            w.scales.shape(),
            self.dtype(),
            self.shape()
        );
        same_device("matmul_int8", &[self, &w.q, &w.scales]);
        let rows = self.numel() / k.max(1);
        let x = self.reshape(&[rows, k]);
        let out = x.storage().matmul_int8(
            x.layout(),
            (&w.q.storage(), w.q.layout()),
            (&w.scales.storage(), w.scales.layout()),
        );
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = w.q.shape()[0];
        Tensor::from_output(out, &shape, None)
    }
}
