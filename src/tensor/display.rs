//! `Debug` and `Display`: the shape and the values, abridged like PyTorch's
//! printout when there are many.

use std::fmt;

use super::Tensor;
use crate::DType;

/// Values shown at each end of a long dimension.
const EDGE: usize = 3;
/// Dimensions longer than this are abridged.
const LONG: usize = 2 * EDGE;

fn write_values<T: fmt::Display>(
    f: &mut fmt::Formatter,
    data: &[T],
    shape: &[usize],
) -> fmt::Result {
    if shape.is_empty() {
        return write!(f, "{}", data[0]);
    }
    let n = shape[0];
    let inner: usize = shape[1..].iter().product();
    write!(f, "[")?;
    let shown: Vec<usize> = if n > LONG {
        (0..EDGE).chain(n - EDGE..n).collect()
    } else {
        (0..n).collect()
    };
    for (k, &i) in shown.iter().enumerate() {
        if k > 0 {
            write!(f, "{}", if shape.len() > 1 { ",\n " } else { ", " })?;
        }
        if n > LONG && k == EDGE {
            write!(f, "...{}", if shape.len() > 1 { ",\n " } else { ", " })?;
        }
        write_values(f, &data[i * inner..(i + 1) * inner], &shape[1..])?;
    }
    write!(f, "]")
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.dtype() {
            DType::F32 => write_values(f, &self.to_vec(), self.shape())?,
            DType::I64 => write_values(f, &self.to_vec_i64(), self.shape())?,
            DType::Bool => write_values(f, &self.to_vec_bool(), self.shape())?,
            DType::I8 => write_values(f, &self.to_dtype(DType::I64).to_vec_i64(), self.shape())?,
            DType::BF16 => write_values(f, &self.to_dtype(DType::F32).to_vec(), self.shape())?,
        }
        write!(f, "\nTensor[{:?}, {:?}]", self.shape(), self.dtype())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, dtype={:?}",
            self.shape(),
            self.dtype()
        )?;
        if self.is_leaf_requiring_grad() {
            write!(f, ", requires_grad")?;
        } else if self.is_tracked() {
            write!(f, ", tracked")?;
        }
        write!(f, ", values=")?;
        // Abridge by hand: at most 2·EDGE of the flattened values.
        let n = self.numel();
        let show = |f: &mut fmt::Formatter, items: Vec<String>| -> fmt::Result {
            if n > LONG {
                write!(
                    f,
                    "[{}, ..., {}])",
                    items[..EDGE].join(", "),
                    items[items.len() - EDGE..].join(", ")
                )
            } else {
                write!(f, "[{}])", items.join(", "))
            }
        };
        let floats = |t: &Tensor| t.to_vec().iter().map(|v| format!("{v:.4}")).collect();
        match self.dtype() {
            DType::F32 => show(f, floats(self)),
            DType::BF16 => show(f, floats(&self.to_dtype(DType::F32))),
            DType::I64 => show(f, self.to_vec_i64().iter().map(|v| v.to_string()).collect()),
            DType::Bool => show(
                f,
                self.to_vec_bool().iter().map(|v| v.to_string()).collect(),
            ),
            DType::I8 => show(
                f,
                self.to_dtype(DType::I64)
                    .to_vec_i64()
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
            ),
        }
    }
}
