//! Differentiable ops, one file per family. Each file holds the forward (a
//! method on [`Tensor`]) and, right beside it, the [`Backward`](crate::autograd::Backward)
//! rule that differentiates it. Kernels live in `crate::backend`.

/// The Tensor methods of a pairwise op table (binary ops, comparisons):
/// `a.method(b)` is `$apply(a, b, $Enum::$op)`, documented by its row.
macro_rules! pairwise_methods {
    ($apply:ident $enum:ident: $($(#[$doc:meta])* $op:ident = $name:literal => $method:ident;)*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                pub fn $method(&self, other: &Tensor) -> Tensor {
                    $apply(self, other, $enum::$op)
                }
            )*
        }
    };
}

pub mod attention;
pub mod binary;
pub mod cast;
pub mod concat;
pub mod dropout;
pub mod embedding;
pub mod gather;
pub mod grouped;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod quantized;
pub mod reduce;
pub mod select;
pub mod shape;
pub mod softmax;
pub mod unary;

use crate::{DType, Tensor};

/// A dimension argument: a `usize`, or a signed integer where negative
/// values count from the end (`-1` is the last dimension), as in PyTorch.
pub trait Dim: Copy {
    /// The dimension as an index below `rank`; panics naming `op` otherwise.
    fn index(self, rank: usize, op: &str) -> usize;
}

impl Dim for usize {
    fn index(self, rank: usize, op: &str) -> usize {
        assert!(
            self < rank,
            "{op}: dimension {self} is out of range for a tensor of rank {rank}"
        );
        self
    }
}

macro_rules! signed_dim {
    ($($t:ty),*) => {$(
        impl Dim for $t {
            fn index(self, rank: usize, op: &str) -> usize {
                let r = rank as i64;
                let d = self as i64;
                assert!(
                    (-r..r).contains(&d),
                    "{op}: dimension {self} is out of range for a tensor of rank {rank}"
                );
                if d < 0 { (d + r) as usize } else { d as usize }
            }
        }
    )*};
}
signed_dim!(i32, i64, isize);

/// Panics naming `op` and the devices unless `tensors` all live on one
/// device: an op never moves data between devices behind the caller's back.
pub(crate) fn same_device(op: &str, tensors: &[&Tensor]) {
    assert_one_device(op, tensors.iter().map(|t| t.device()));
}

/// `t` as an op on autocast's list (matrix products, the fused attention)
/// takes it: cast to the [`autocast`](crate::autocast) dtype when one is
/// set and `t` is f32, else as it is.
pub(crate) fn autocast_operand(t: &Tensor) -> Tensor {
    match crate::mode::autocast_dtype() {
        Some(dtype) if t.dtype() == DType::F32 => t.to_dtype(dtype),
        _ => t.clone(),
    }
}

/// `t` in f32 if it is bf16: for ops that compute in f32 (losses), and
/// for an op of an f32 and a bf16 tensor (PyTorch's type promotion).
pub(crate) fn widened(t: &Tensor) -> Tensor {
    if t.dtype() == DType::BF16 {
        t.to_dtype(DType::F32)
    } else {
        t.clone()
    }
}

/// Panics naming `op` unless every tensor has the first one's dtype.
pub(crate) fn same_dtype(op: &str, tensors: &[&Tensor]) {
    let Some(first) = tensors.first().map(|t| t.dtype()) else {
        return;
    };
    if let Some(other) = tensors.iter().map(|t| t.dtype()).find(|&d| d != first) {
        panic!(
            "{op}: tensors of different dtypes, {first:?} and {other:?} (cast one with to_dtype)"
        );
    }
}

fn assert_one_device(op: &str, mut devices: impl Iterator<Item = crate::Device>) {
    let Some(first) = devices.next() else { return };
    if let Some(other) = devices.find(|d| *d != first) {
        panic!(
            "{op}: tensors on different devices, {first:?} and {other:?} (move one with to_device)"
        );
    }
}

/// Sums a broadcast gradient back to the `shape` its input had: over the
/// leading dimensions broadcasting added, and over dimensions stretched from 1.
pub(crate) fn sum_to_shape(grad: &Tensor, shape: &[usize]) -> Tensor {
    if grad.shape() == shape {
        return grad.clone();
    }
    let lead = grad.rank() - shape.len();
    let mut g = grad.clone();
    for _ in 0..lead {
        g = g.sum_dim(0, false);
    }
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 && g.shape()[d] != 1 {
            g = g.sum_dim(d, true);
        }
    }
    g
}

/// `(outer, n, inner)`: the sizes before, at and after dimension `d`.
pub(crate) fn split_at_dim(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// `shape` without dimension `d`, or with it set to 1 when `keepdim`.
pub(crate) fn reduced_shape(shape: &[usize], d: usize, keepdim: bool) -> Vec<usize> {
    let mut out = shape.to_vec();
    if keepdim {
        out[d] = 1;
    } else {
        out.remove(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Device;

    #[test]
    #[should_panic(expected = "matmul: tensors on different devices, Cpu and Cuda(0)")]
    fn mixing_devices_panics_naming_the_op_and_both_devices() {
        super::assert_one_device(
            "matmul",
            [Device::Cpu, Device::Cpu, Device::Cuda(0)].into_iter(),
        );
    }

    #[test]
    fn one_device_passes() {
        super::assert_one_device("add", [Device::Cpu, Device::Cpu].into_iter());
        super::assert_one_device("add", [Device::Cuda(1), Device::Cuda(1)].into_iter());
    }
}
