//! Dropout: zero each element with probability `p` in training, scaling the
//! survivors by `1 / (1 - p)`; identity in evaluation.

use rand::Rng;

use crate::Tensor;

impl Tensor {
    /// Inverted dropout with a mask drawn from `rng` when `train`; `self`
    /// unchanged otherwise (or when `p == 0`). The gradient is the same mask.
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let x = Tensor::ones(&[1000]);
    /// let y = x.dropout(0.5, true, &mut rng);
    /// assert!(y.to_vec().iter().all(|&v| v == 0.0 || v == 2.0));
    /// assert_eq!(x.dropout(0.5, false, &mut rng).to_vec(), x.to_vec());
    /// ```
    pub fn dropout(&self, p: f32, train: bool, rng: &mut impl Rng) -> Tensor {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout: p must be in [0, 1), got {p}"
        );
        if !train || p == 0.0 {
            return self.clone();
        }
        let scale = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..self.numel())
            .map(|_| if rng.r#gen::<f32>() < p { 0.0 } else { scale })
            .collect();
        // The mask is a constant, so `mul`'s backward rule gives `g * mask`.
        self.mul(&self.new_tensor(mask, self.shape()))
    }
}
