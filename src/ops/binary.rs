//! Elementwise arithmetic between two tensors, with NumPy broadcasting, and
//! the `+ - * /` operators.

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::BinaryOp;
use crate::layout::broadcast_shape;
use crate::ops::sum_to_shape;

/// The shape `a` and `b` broadcast to, panicking with the op and both shapes otherwise.
pub(crate) fn broadcast_or_panic(op: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
    broadcast_shape(a, b)
        .unwrap_or_else(|| panic!("{op}: shapes {a:?} and {b:?} cannot be broadcast together"))
}

fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Tensor {
    let name = op.name();
    super::same_device(name, &[a, b]);
    let shape = broadcast_or_panic(name, a.shape(), b.shape());
    let la = a.layout().broadcast_to(&shape).expect("broadcast checked");
    let lb = b.layout().broadcast_to(&shape).expect("broadcast checked");
    let data = a.storage().binary(&la, (&b.storage(), &lb), op);
    let node = autograd::node(&[a, b], || BinaryBackward { op });
    Tensor::from_output(data, &shape, node)
}

struct BinaryBackward {
    op: BinaryOp,
}

impl Backward for BinaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let ga = a.is_tracked().then(|| {
            let g = match self.op {
                BinaryOp::Add | BinaryOp::Sub => g.clone(),
                BinaryOp::Mul => g.mul(b),
                BinaryOp::Div => g.div(b),
            };
            sum_to_shape(&g, a.shape())
        });
        let gb = b.is_tracked().then(|| {
            let g = match self.op {
                BinaryOp::Add => g.clone(),
                BinaryOp::Sub => g.neg(),
                BinaryOp::Mul => g.mul(a),
                // d(a/b)/db = -a / b²
                BinaryOp::Div => g.mul(a).div(&b.mul(b)).neg(),
            };
            sum_to_shape(&g, b.shape())
        });
        vec![ga, gb]
    }
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Tensor {
        binary(self, other, BinaryOp::Add)
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        binary(self, other, BinaryOp::Sub)
    }

    /// `self * other` elementwise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        binary(self, other, BinaryOp::Mul)
    }

    /// `self / other` elementwise, broadcasting.
    pub fn div(&self, other: &Tensor) -> Tensor {
        binary(self, other, BinaryOp::Div)
    }
}

macro_rules! tensor_operator {
    ($trait:ident, $method:ident, $scalar:expr) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$method(self, rhs)
            }
        }
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$method(&self, &rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$method(&self, rhs)
            }
        }
        impl std::ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$method(self, &rhs)
            }
        }
        impl std::ops::$trait<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                let f: fn(&Tensor, f32) -> Tensor = $scalar;
                f(self, rhs)
            }
        }
        impl std::ops::$trait<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                let f: fn(&Tensor, f32) -> Tensor = $scalar;
                f(&self, rhs)
            }
        }
    };
}

tensor_operator!(Add, add, |t, c| t.add_scalar(c));
tensor_operator!(Sub, sub, |t, c| t.add_scalar(-c));
tensor_operator!(Mul, mul, |t, c| t.mul_scalar(c));
tensor_operator!(Div, div, |t, c| t.mul_scalar(1.0 / c));

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
