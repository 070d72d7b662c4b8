//! Moving tensors between devices.

use std::sync::Arc;

use super::{Layout, Tensor};
use crate::{DType, Device, Result};

impl Tensor {
    /// This tensor on `device`: itself (graph included) when it is there
    /// already, else a contiguous copy there, with no graph. A CUDA device
    /// that cannot be used (no `cuda` feature, no GPU of that ordinal) is an
    /// [`Error::CudaUnavailable`](crate::Error::CudaUnavailable).
    ///
    /// ```
    /// use zeroformer::{Device, Tensor};
    /// let x = Tensor::ones(&[2, 3]);
    /// assert_eq!(x.to_device(&Device::Cpu).unwrap().to_vec(), x.to_vec());
    /// assert!(x.to_device(&Device::Cuda(1000)).is_err());
    /// if let Ok(gpu) = Device::cuda(0) {
    ///     let there = x.to_device(&gpu).unwrap();
    ///     assert_eq!(there.device(), gpu);
    ///     assert_eq!(there.to_device(&Device::Cpu).unwrap().to_vec(), x.to_vec());
    /// }
    /// ```
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device() == *device {
            return Ok(self.clone());
        }
        let whole = self.contiguous();
        let moved = whole.storage().to_device(device)?;
        Ok(Tensor::from_storage(
            Arc::new(moved),
            Layout::contiguous(self.shape()),
            None,
        ))
    }

    /// Moving a tensor's storage (and its gradient) to `device` in place,
    /// keeping its identity (a parameter stays the one the optimizer and
    /// the model hold), in two halves so that a module can copy all its
    /// parameters before it changes any. This half: the copies, nothing
    /// changed yet (`None` when the tensor is on `device` already).
    pub(crate) fn copy_to(&self, device: &Device) -> Result<Option<Moved>> {
        if self.device() == *device {
            return Ok(None);
        }
        let grad = self.grad().map(|g| g.to_device(device)).transpose()?;
        let storage = Arc::new(self.storage().to_device(device)?);
        Ok(Some(Moved { storage, grad }))
    }

    /// The second half of [`copy_to`](Self::copy_to): the swap.
    pub(crate) fn install(&self, moved: Option<Moved>) {
        if let Some(Moved { storage, grad }) = moved {
            *self.0.storage.write().unwrap_or_else(|e| e.into_inner()) = storage;
            self.set_grad(grad);
        }
    }

    /// Casts this tensor's storage (and its gradient) to `dtype` in place,
    /// keeping its identity, as `Module::to_dtype` does to a parameter
    /// (PyTorch's `module.to(dtype)` replaces each `param.data`). The
    /// whole storage is cast element by element, so the layout still
    /// describes it. Graphs recorded before see the new dtype: a model is
    /// cast between uses, not inside one.
    pub(crate) fn cast_in_place(&self, dtype: DType) {
        let storage = self.storage();
        if storage.dtype() == dtype {
            return;
        }
        let whole = Layout::contiguous(&[storage.elements()]);
        let cast = Arc::new(storage.to_dtype(&whole, dtype));
        let grad = self.grad().map(|g| g.to_dtype(dtype).detach());
        *self.0.storage.write().unwrap_or_else(|e| e.into_inner()) = cast;
        self.set_grad(grad);
    }
}

/// A tensor's storage and gradient copied to another device, not yet installed.
pub(crate) struct Moved {
    storage: Arc<super::Storage>,
    grad: Option<Tensor>,
}

#[cfg(test)]
mod tests {
    use crate::{Device, Error, Tensor};

    #[test]
    fn moving_within_a_device_keeps_the_tensor_and_its_graph() {
        let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad();
        let y = x.mul(&x);
        let same = y.to_device(&Device::Cpu).unwrap();
        assert_eq!(same.id(), y.id());
        same.sum().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 4.0]);
        let moved = x.copy_to(&Device::Cpu).unwrap();
        assert!(moved.is_none());
        x.install(moved);
        assert_eq!(x.to_vec(), vec![1.0, 2.0]);
    }

    #[test]
    fn a_missing_cuda_device_is_an_error_at_the_boundary_and_changes_nothing() {
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).t();
        for t in [
            x.clone(),
            Tensor::from_ids(vec![1, 2], &[2]),
            Tensor::from_bools(vec![true], &[1]),
        ] {
            match t.to_device(&Device::Cuda(1000)) {
                Err(Error::CudaUnavailable(why)) => {
                    assert!(why.contains("CUDA device 1000"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        let p = Tensor::ones(&[3]).requires_grad();
        assert!(p.copy_to(&Device::Cuda(1001)).is_err());
        assert_eq!(p.device(), Device::Cpu);
        assert_eq!(p.to_vec(), vec![1.0; 3]);
    }
}
