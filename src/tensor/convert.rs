//! Conversion to and from `ndarray`.

use ndarray::{ArrayD, IxDyn};

use super::Tensor;

impl Tensor {
    /// A tensor holding a copy of `array`'s elements.
    ///
    /// ```
    /// use ndarray::array;
    /// use zeroformer::Tensor;
    /// let t = Tensor::from_ndarray(&array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
    /// assert_eq!(t.shape(), &[2, 2]);
    /// assert_eq!(t.to_ndarray(), array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
    /// ```
    pub fn from_ndarray(array: &ArrayD<f32>) -> Tensor {
        let data: Vec<f32> = array.iter().copied().collect();
        Tensor::from_vec(data, array.shape())
    }

    /// A row-major `ndarray` copy of an f32 tensor.
    pub fn to_ndarray(&self) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(self.shape()), self.to_vec())
            .expect("to_ndarray: the shape matches the element count")
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(array: ArrayD<f32>) -> Self {
        Tensor::from_ndarray(&array)
    }
}

impl From<&Tensor> for ArrayD<f32> {
    fn from(t: &Tensor) -> Self {
        t.to_ndarray()
    }
}
