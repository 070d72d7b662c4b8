//! Elementwise functions of one tensor: activations, exp/log, and scalar
//! arithmetic. The device computes each function and its derivative
//! (`backend::UnaryOp`); the backward rule multiplies the derivative, taken
//! from the input `x` and the saved output `y`, by the upstream gradient.

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::UnaryOp;

/// Which GELU: PyTorch's `approximate='none'` or `'tanh'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeluApproximation {
    /// `x · Φ(x)` with the exact normal CDF (erf): PyTorch's default.
    #[default]
    None,
    /// GPT-2's `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    Tanh,
}

fn unary(x: &Tensor, op: UnaryOp) -> Tensor {
    let data = x.storage().unary(x.layout(), op);
    let out = Tensor::from_output(data, x.shape(), None);
    autograd::with_saved_output(out, &[x], |out| UnaryBackward { op, out })
}

struct UnaryBackward {
    op: UnaryOp,
    /// The output, detached (no graph).
    out: Tensor,
}

impl Backward for UnaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let (sx, sy) = (x.storage(), self.out.storage());
        let dx = g.storage().unary_backward(
            g.layout(),
            (&sx, x.layout()),
            (&sy, self.out.layout()),
            self.op,
        );
        vec![Some(Tensor::from_output(dx, x.shape(), None))]
    }
}

/// The Tensor methods of the unary op table's rows that name one.
macro_rules! unary_methods {
    ($($(#[$doc:meta])* $op:ident $(($($param:ident = $example:expr),+))? = $name:literal
        $(=> $method:ident)?;)*) => {
        impl Tensor {
            $(unary_method!([$(#[$doc])*] $op $($method)?);)*
        }
    };
}

/// A row's method, when it names one.
macro_rules! unary_method {
    ([$($doc:tt)*] $op:ident $method:ident) => {
        $($doc)*
        pub fn $method(&self) -> Tensor {
            unary(self, UnaryOp::$op)
        }
    };
    ([$($doc:tt)*] $op:ident) => {};
}
crate::backend::unary_ops!(unary_methods);

impl Tensor {
    /// Any function of the unary op table (what the named methods call):
    /// `x.unary(UnaryOp::Tanh)` is `x.tanh()`.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// use zeroformer::backend::UnaryOp;
    /// let x = Tensor::from_vec(vec![1.0, 4.0], &[2]);
    /// assert_eq!(x.unary(UnaryOp::Powf(0.5)).to_vec(), vec![1.0, 2.0]);
    /// ```
    pub fn unary(&self, op: UnaryOp) -> Tensor {
        unary(self, op)
    }

    /// Each element limited to `[min, max]` (`torch.clamp`); pass
    /// `f32::NEG_INFINITY` or `f32::INFINITY` to leave a side open. NaN
    /// stays NaN. The gradient passes where `min <= x <= max`. Panics
    /// when `min > max` or either is NaN.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0, 0.5, 3.0], &[3]);
    /// assert_eq!(x.clamp(-1.0, 1.0).to_vec(), vec![-1.0, 0.5, 1.0]);
    /// assert_eq!(x.clamp(0.0, f32::INFINITY).to_vec(), vec![0.0, 0.5, 3.0]);
    /// ```
    pub fn clamp(&self, min: f32, max: f32) -> Tensor {
        assert!(
            min <= max,
            "clamp: needs min <= max (neither NaN), got {min} and {max}"
        );
        unary(self, UnaryOp::Clamp(min, max))
    }

    /// The Gaussian error linear unit, exact or GPT-2's tanh approximation.
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// let x = Tensor::from_vec(vec![-1.0, 0.0, 1.0], &[3]);
    /// let exact = x.gelu(GeluApproximation::None).to_vec();
    /// assert!((exact[2] - 0.841_344_7).abs() < 1e-6);
    /// ```
    pub fn gelu(&self, approximation: GeluApproximation) -> Tensor {
        match approximation {
            GeluApproximation::None => unary(self, UnaryOp::Gelu),
            GeluApproximation::Tanh => unary(self, UnaryOp::GeluTanh),
        }
    }

    /// `self + c` elementwise.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        unary(self, UnaryOp::AddScalar(c))
    }

    /// `self * c` elementwise.
    pub fn mul_scalar(&self, c: f32) -> Tensor {
        unary(self, UnaryOp::MulScalar(c))
    }

    /// `self ^ p` elementwise.
    pub fn powf(&self, p: f32) -> Tensor {
        unary(self, UnaryOp::Powf(p))
    }

    /// `self * self` elementwise.
    pub fn square(&self) -> Tensor {
        self.mul(self)
    }
}
