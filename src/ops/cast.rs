//! Converting between element types.

use crate::{DType, Tensor};

impl Tensor {
    /// The elements as `dtype`: f32 to i64 truncates toward zero (NaN gives
    /// 0, out-of-range values saturate), anything to bool is `!= 0`, bool
    /// to numbers is 0 or 1. The same tensor (graph included) when it
    /// already has that dtype; otherwise a new tensor with no graph, as
    /// integers and booleans have no gradient.
    ///
    /// ```
    /// use zeroformer::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![-1.7, 0.0, 2.5], &[3]);
    /// assert_eq!(x.to_dtype(DType::I64).to_vec_i64(), vec![-1, 0, 2]);
    /// assert_eq!(x.to_dtype(DType::Bool).to_vec_bool(), vec![true, false, true]);
    /// let mask = Tensor::from_bools(vec![true, false], &[2]);
    /// assert_eq!(mask.to_dtype(DType::F32).to_vec(), vec![1.0, 0.0]);
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        let data = self.storage().to_dtype(self.layout(), dtype);
        Tensor::from_output(data, self.shape(), None)
    }
}
