//! Cross-entropy of logits against integer class targets, fused: one pass
//! computes log-softmax and the loss, and the backward rule is
//! `(softmax - one_hot) / count` without building either tensor.

use crate::autograd::{self, Backward};
use crate::tensor::Storage;
use crate::{DType, Tensor};

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

struct CrossEntropyBackward {
    /// `[rows, classes]`, on the op's device.
    log_probs: Storage,
    /// The targets, detached.
    targets: Tensor,
    classes: usize,
    ignore_index: Option<i64>,
    /// One i64 element on the op's device: the targets counted.
    count: Storage,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let dx = self.log_probs.cross_entropy_backward(
            (&self.targets.storage(), self.targets.layout()),
            (&g.storage(), g.layout()),
            self.classes,
            self.ignore_index,
            &self.count,
        );
        vec![Some(Tensor::from_output(dx, inputs[0].shape(), None))]
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
    /// are ignored the result is NaN, as in PyTorch. bf16 logits are
    /// widened to f32 first: the loss is f32 (autocast's policy for
    /// losses).
    pub fn cross_entropy_with_ignore(&self, targets: &Tensor, ignore_index: Option<i64>) -> Tensor {
        // bf16 logits are widened: the loss is computed, and returned, in f32.
        let logits = &super::widened(self);
        logits.cross_entropy_f32(targets, ignore_index)
    }

    fn cross_entropy_f32(&self, targets: &Tensor, ignore_index: Option<i64>) -> Tensor {
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
        let forward = self.storage().cross_entropy(
            self.layout(),
            (&targets.storage(), targets.layout()),
            classes,
            ignore_index,
        );
        let node = autograd::node(&[self], || CrossEntropyBackward {
            log_probs: forward.log_probs,
            targets: targets.detach(),
            classes,
            ignore_index,
            count: forward.count,
        });
        Tensor::from_output(forward.loss, &[], node)
    }
}
