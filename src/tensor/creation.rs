//! Making tensors: constants, ranges, data from vectors, random values.
//! Those without a device argument are made on the default device
//! ([`default_device`](crate::default_device): the CPU unless inside
//! [`Device::as_default`]), for code of your own; the `*_on` forms name
//! it, as the crate's layers and models do.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use super::{CpuStorage, Storage, Tensor};
use crate::{Device, Result};

fn check_len(op: &str, len: usize, shape: &[usize]) {
    let numel: usize = shape.iter().product();
    assert_eq!(
        len, numel,
        "{op}: {len} values cannot fill shape {shape:?} ({numel} elements)"
    );
}

impl Tensor {
    /// An f32 tensor of `shape` holding `data` in row-major order, on the
    /// default device.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(t.transpose(0, 1).to_vec(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Tensor {
        check_len("from_vec", data.len(), shape);
        Tensor::from_f32(data, shape)
    }

    /// An f32 tensor copied from a slice.
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// An integer tensor, e.g. token ids or class targets, on the default
    /// device.
    pub fn from_ids(ids: Vec<i64>, shape: &[usize]) -> Tensor {
        check_len("from_ids", ids.len(), shape);
        Tensor::from_host(CpuStorage::I64(ids), shape, "from_ids")
    }

    /// A boolean tensor, e.g. a mask, on the default device.
    pub fn from_bools(values: Vec<bool>, shape: &[usize]) -> Tensor {
        check_len("from_bools", values.len(), shape);
        Tensor::from_host(CpuStorage::Bool(values), shape, "from_bools")
    }

    /// A zero-dimensional tensor holding `value`, on the default device.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::from_f32(vec![value], &[])
    }

    /// Every element `value`, on the default device (filled there).
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::full_on(shape, value, &crate::default_device())
            .unwrap_or_else(|e| panic!("full: {e}"))
    }

    /// [`zeros`](Self::zeros) on `device` (candle's `Tensor::zeros(.., &device)`).
    /// Errors only where the device cannot be used.
    ///
    /// ```
    /// use zeroformer::{Device, Tensor};
    /// let device = Device::Cpu;
    /// let x = Tensor::zeros_on(&[2, 2], &device)?;
    /// assert_eq!(x.device(), device);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn zeros_on(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full_on(shape, 0.0, device)
    }

    /// [`ones`](Self::ones) on `device`.
    pub fn ones_on(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full_on(shape, 1.0, device)
    }

    /// [`full`](Self::full) on `device`, filled there.
    pub fn full_on(shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        let storage = Storage::full(shape.iter().product(), value, device)?;
        Ok(Tensor::from_output(storage, shape, None))
    }

    /// [`from_vec`](Self::from_vec) on `device`, copied there from the host.
    pub fn from_vec_on(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len("from_vec", data.len(), shape);
        let storage = Storage::from_host(CpuStorage::F32(data), device)?;
        Ok(Tensor::from_output(storage, shape, None))
    }

    /// [`from_ids`](Self::from_ids) on `device`, copied there from the host.
    pub fn from_ids_on(ids: Vec<i64>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len("from_ids", ids.len(), shape);
        let storage = Storage::from_host(CpuStorage::I64(ids), device)?;
        Ok(Tensor::from_output(storage, shape, None))
    }

    /// Zeros of `shape` (f32, on the default device).
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// Ones of `shape` (f32, on the default device).
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Zeros of this tensor's shape, on its device.
    pub fn zeros_like(&self) -> Tensor {
        self.full_like(0.0)
    }

    /// Ones of this tensor's shape, on its device.
    pub fn ones_like(&self) -> Tensor {
        self.full_like(1.0)
    }

    /// An f32 tensor of `shape` holding `data`, on this tensor's device
    /// (PyTorch's `x.new_tensor`): for values made on the host, such as a
    /// dropout mask, that meet this tensor in an op. Panics, as an op
    /// does, if the device cannot take them.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::ones(&[2]);
    /// let y = x.new_tensor(vec![1.0, 2.0], &[2]);
    /// assert_eq!((y.device(), x.add(&y).to_vec()), (x.device(), vec![2.0, 3.0]));
    /// ```
    pub fn new_tensor(&self, data: Vec<f32>, shape: &[usize]) -> Tensor {
        check_len("new_tensor", data.len(), shape);
        self.new_from_host(CpuStorage::F32(data), shape, "new_tensor")
    }

    /// An i64 tensor of `shape` holding `ids`, on this tensor's device.
    pub fn new_ids(&self, ids: Vec<i64>, shape: &[usize]) -> Tensor {
        check_len("new_ids", ids.len(), shape);
        self.new_from_host(CpuStorage::I64(ids), shape, "new_ids")
    }

    /// A bool tensor of `shape` holding `values`, on this tensor's device.
    pub fn new_bools(&self, values: Vec<bool>, shape: &[usize]) -> Tensor {
        check_len("new_bools", values.len(), shape);
        self.new_from_host(CpuStorage::Bool(values), shape, "new_bools")
    }

    fn new_from_host(&self, data: CpuStorage, shape: &[usize], op: &str) -> Tensor {
        let storage =
            Storage::from_host(data, &self.device()).unwrap_or_else(|e| panic!("{op}: {e}"));
        Tensor::from_output(storage, shape, None)
    }

    /// Zeros of `shape` in this tensor's dtype, on its device (a buffer
    /// to be written in place).
    pub(crate) fn zeros_like_shape(&self, shape: &[usize]) -> Tensor {
        let numel = shape.iter().product();
        Tensor::from_output(self.storage().zeros_like(numel), shape, None)
    }

    /// A zero-dimensional tensor holding `value`, on this tensor's device:
    /// f32, or bf16 for a bf16 tensor (as PyTorch's `full_like` keeps a
    /// float dtype).
    pub fn scalar_like(&self, value: f32) -> Tensor {
        self.in_float_dtype(Tensor::from_output(
            self.storage().full_like(1, value),
            &[],
            None,
        ))
    }

    /// `value` in every element of a tensor of this tensor's shape, on its
    /// device: f32, or bf16 for a bf16 tensor.
    pub fn full_like(&self, value: f32) -> Tensor {
        let storage = self.storage().full_like(self.numel(), value);
        self.in_float_dtype(Tensor::from_output(storage, self.shape(), None))
    }

    /// An f32 tensor made for this one, cast to bf16 if this one is.
    fn in_float_dtype(&self, made: Tensor) -> Tensor {
        if self.dtype() == crate::DType::BF16 {
            made.to_dtype(crate::DType::BF16)
        } else {
            made
        }
    }

    /// `start, start + step, ...` up to but excluding `end`, as a 1-D f32
    /// tensor on the default device.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 1.0, 0.25).to_vec(), vec![0.0, 0.25, 0.5, 0.75]);
    /// ```
    pub fn arange(start: f32, end: f32, step: f32) -> Tensor {
        assert!(step != 0.0, "arange: step must not be zero");
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let data: Vec<f32> = (0..n).map(|i| start + i as f32 * step).collect();
        Tensor::from_f32(data, &[n])
    }

    /// Standard normal samples drawn from `rng` (seed it for reproducible
    /// runs) on the host, then on the default device: the same values on
    /// every device.
    pub fn randn(shape: &[usize], rng: &mut impl Rng) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        Tensor::from_f32(data, shape)
    }

    /// Samples uniform in `[low, high)` drawn from `rng`, on the default
    /// device (drawn on the host, as [`randn`](Self::randn)).
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Tensor {
        assert!(
            low < high,
            "uniform: needs low < high, got {low} and {high}"
        );
        let dist = Uniform::new(low, high);
        let n = shape.iter().product();
        let data = (0..n).map(|_| dist.sample(rng)).collect();
        Tensor::from_f32(data, shape)
    }
}
