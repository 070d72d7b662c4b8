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
    // An f32 and a bf16 operand compute in f32, as PyTorch promotes them:
    // the backend widens the bf16 one as it reads it, so no f32 copy joins
    // the graph (where it would stay until the backward).
    super::same_device(name, &[a, b]);
    let shape = broadcast_or_panic(name, a.shape(), b.shape());
    let la = a.layout().broadcast_to(&shape).expect("broadcast checked");
    let lb = b.layout().broadcast_to(&shape).expect("broadcast checked");
    let data = a.storage().binary(&la, (&b.storage(), &lb), op);
    // A sum's or difference's backward reads no values: its node keeps
    // storage-less edges, so an operand no other op saved is freed now.
    let node = match op {
        BinaryOp::Add | BinaryOp::Sub => {
            autograd::node_reading_no_values(&[a, b], || BinaryBackward { op })
        }
        _ => autograd::node(&[a, b], || BinaryBackward { op }),
    };
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
        if let BinaryOp::Maximum | BinaryOp::Minimum = self.op {
            return extremum_backward(self.op, g, a, b);
        }
        let ga = a.is_tracked().then(|| {
            let g = match self.op {
                BinaryOp::Mul => g.mul(b),
                BinaryOp::Div => g.div(b),
                _ => g.clone(),
            };
            // In the input's dtype: an f32 gradient of a bf16 operand of a
            // promoted op is rounded, as a cast's backward rounds it.
            sum_to_shape(&g, a.shape()).to_dtype(a.dtype())
        });
        let gb = b.is_tracked().then(|| {
            let g = match self.op {
                BinaryOp::Sub => g.neg(),
                BinaryOp::Mul => g.mul(a),
                // d(a/b)/db = -a / b²
                BinaryOp::Div => g.mul(a).div(&b.mul(b)).neg(),
                _ => g.clone(),
            };
            sum_to_shape(&g, b.shape()).to_dtype(b.dtype())
        });
        vec![ga, gb]
    }
}

/// The gradients of `maximum`/`minimum`: all of `g` to the operand that
/// was chosen, half to each where they tie (as PyTorch).
fn extremum_backward(op: BinaryOp, g: &Tensor, a: &Tensor, b: &Tensor) -> Vec<Option<Tensor>> {
    let a_wins = if op == BinaryOp::Maximum {
        a.gt(b)
    } else {
        a.lt(b)
    };
    let tie = a.eq(b);
    let (zero, half) = (g.scalar_like(0.0), g.mul_scalar(0.5));
    let share = |winner: &Tensor, loser: &Tensor| {
        Tensor::where_cond(&a_wins, winner, &Tensor::where_cond(&tie, &half, loser))
    };
    vec![
        a.is_tracked()
            .then(|| sum_to_shape(&share(g, &zero), a.shape())),
        b.is_tracked()
            .then(|| sum_to_shape(&share(&zero, g), b.shape())),
    ]
}

crate::backend::binary_ops!(pairwise_methods [binary BinaryOp:]);

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
