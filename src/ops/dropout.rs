//! Dropout: zero each element with probability `p` in training, scaling the
//! survivors by `1 / (1 - p)`; identity in evaluation. The mask is drawn
//! where the tensor lives, by a counter-based generator keyed from the
//! caller's stream: the same mask on every device, one `u64` of the
//! stream per call.

use rand::Rng;

use crate::Tensor;

impl Tensor {
    /// Inverted dropout when `train`; `self` unchanged otherwise (or when
    /// `p == 0`). The mask is Philox4x32-10 keyed by one `u64` drawn from
    /// `rng`, computed on the tensor's device (see
    /// [`BackendStorage::dropout_mask`](crate::backend::BackendStorage::dropout_mask)).
    /// The gradient is the same mask.
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
        let key = rng.next_u64();
        let mask = self.storage().dropout_mask(self.numel(), p, key);
        // In the input's dtype (a bf16 mask scales by 1/(1-p) rounded, as
        // PyTorch's does). The mask is a constant, so `mul`'s backward rule
        // gives `g * mask`.
        let mask = Tensor::from_output(mask, self.shape(), None).to_dtype(self.dtype());
        self.mul(&mask)
    }
}
