//! Converting between element types. A cast between the float types (f32
//! and bf16) is differentiable: its gradient is the upstream gradient cast
//! back, so gradients reach f32 weights in f32.

use crate::autograd::{self, Backward};
use crate::{DType, Tensor};

/// Whether `dtype` carries gradients.
fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16)
}

struct CastBackward {
    /// The input's dtype, which its gradient takes.
    from: DType,
}

impl Backward for CastBackward {
    fn name(&self) -> &'static str {
        "to_dtype"
    }

    fn backward(&self, g: &Tensor, _inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        vec![Some(g.to_dtype(self.from))]
    }
}

impl Tensor {
    /// The elements as `dtype`: f32 to bf16 rounds to nearest, ties to
    /// even (NaN and ±Inf kept; bf16 to f32 is exact); f32 to i64 truncates
    /// toward zero (NaN gives 0, out-of-range values saturate); anything to
    /// bool is `!= 0`, bool to numbers is 0 or 1. The same tensor (graph
    /// included) when it already has that dtype. A cast between f32 and
    /// bf16 is differentiable (the gradient cast back); any other has no
    /// graph, as integers and booleans have no gradient.
    ///
    /// ```
    /// use zeroformer::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![-1.7, 0.0, 2.5], &[3]);
    /// assert_eq!(x.to_dtype(DType::I64).to_vec_i64(), vec![-1, 0, 2]);
    /// assert_eq!(x.to_dtype(DType::Bool).to_vec_bool(), vec![true, false, true]);
    /// let mask = Tensor::from_bools(vec![true, false], &[2]);
    /// assert_eq!(mask.to_dtype(DType::F32).to_vec(), vec![1.0, 0.0]);
    /// // bf16 keeps 8 bits of mantissa: 1 + 2⁻⁸ is a tie, rounded to even.
    /// let y = Tensor::from_vec(vec![1.0 + 1.0 / 256.0, 3.3], &[2]);
    /// let rounded = y.to_dtype(DType::BF16).to_dtype(DType::F32).to_vec();
    /// assert_eq!(rounded, vec![1.0, 3.296875]);
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        let data = self.storage().to_dtype(self.layout(), dtype);
        let from = self.dtype();
        let node = (is_float(from) && is_float(dtype))
            .then(|| autograd::node_reading_no_values(&[self], || CastBackward { from }))
            .flatten();
        Tensor::from_output(data, self.shape(), node)
    }
}
