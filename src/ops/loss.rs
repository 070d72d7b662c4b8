//! Cross-entropy of logits against integer class targets, fused: one pass
//! computes log-softmax and the loss, and the backward rule is
//! `(softmax - one_hot) / count` without building either tensor.

use crate::autograd::{self, Backward};
use crate::backend::cpu::reduce as kernels;
use crate::ops::with_contiguous_f32;
use crate::{DType, Tensor};

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

struct CrossEntropyBackward {
    log_probs: Vec<f32>,
    targets: Vec<i64>,
    classes: usize,
    ignore_index: Option<i64>,
    count: usize,
}

impl Drop for CrossEntropyBackward {
    /// The log-probabilities go back to the pool, as tensors' storage does.
    fn drop(&mut self) {
        crate::backend::cpu::pool::give(std::mem::take(&mut self.log_probs));
    }
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let scale = g.item() / self.count as f32;
        let mut dx = crate::backend::cpu::pool::take_zeroed(self.log_probs.len());
        for ((row, lp), &t) in dx
            .chunks_exact_mut(self.classes)
            .zip(self.log_probs.chunks_exact(self.classes))
            .zip(&self.targets)
        {
            if Some(t) == self.ignore_index {
                continue;
            }
            for (d, &l) in row.iter_mut().zip(lp) {
                *d = l.exp() * scale;
            }
            row[t as usize] -= scale;
        }
        vec![Some(Tensor::from_f32(dx, inputs[0].shape(), None))]
    }
}

impl Tensor {
    /// Mean cross-entropy of `self` (logits, `[..., C]`) against `targets`
    /// (i64 class indices of shape `[...]`), skipping targets equal to -100
    /// as PyTorch's default `ignore_index` does.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// // Uniform logits over 4 classes: the loss is ln 4.
    /// let logits = Tensor::zeros(&[2, 4]);
    /// let targets = Tensor::from_ids(vec![0, 3], &[2]);
    /// assert!((logits.cross_entropy(&targets).item() - 4f32.ln()).abs() < 1e-6);
    /// ```
    pub fn cross_entropy(&self, targets: &Tensor) -> Tensor {
        self.cross_entropy_with_ignore(targets, Some(DEFAULT_IGNORE_INDEX))
    }

    /// Cross-entropy with a chosen `ignore_index` (`None`: every target
    /// counts). The mean is over the targets that are not ignored; when all
    /// are ignored the result is NaN, as in PyTorch.
    pub fn cross_entropy_with_ignore(&self, targets: &Tensor, ignore_index: Option<i64>) -> Tensor {
        super::same_device("cross_entropy", &[self, targets]);
        assert!(
            self.rank() >= 1,
            "cross_entropy: logits need a class dimension, got shape {:?}",
            self.shape()
        );
        assert_eq!(
            targets.dtype(),
            DType::I64,
            "cross_entropy: targets must be i64 class indices, got {:?}",
            targets.dtype()
        );
        let classes = self.shape()[self.rank() - 1];
        assert_eq!(
            targets.shape(),
            &self.shape()[..self.rank() - 1],
            "cross_entropy: logits of shape {:?} need targets of shape {:?}, got {:?}",
            self.shape(),
            &self.shape()[..self.rank() - 1],
            targets.shape()
        );
        let targets = targets.to_vec_i64();
        let log_probs = with_contiguous_f32(self, "cross_entropy", |x| {
            kernels::softmax_rows(x, classes, true)
        });
        let mut total = 0.0f64;
        let mut count = 0usize;
        for (lp, &t) in log_probs.chunks_exact(classes).zip(&targets) {
            if Some(t) == ignore_index {
                continue;
            }
            assert!(
                (0..classes as i64).contains(&t),
                "cross_entropy: target {t} is out of range for {classes} classes"
            );
            total -= lp[t as usize] as f64;
            count += 1;
        }
        let loss = (total / count as f64) as f32;
        let node = autograd::node(&[self], || CrossEntropyBackward {
            log_probs,
            targets,
            classes,
            ignore_index,
            count,
        });
        Tensor::from_f32(vec![loss], &[], node)
    }
}
