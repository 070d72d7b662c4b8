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

impl Tensor {
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        unary(self, UnaryOp::Neg)
    }

    /// `|x|` elementwise; the gradient is `sign(x)`, 0 at 0 (as PyTorch).
    pub fn abs(&self) -> Tensor {
        unary(self, UnaryOp::Abs)
    }

    /// Sine elementwise.
    pub fn sin(&self) -> Tensor {
        unary(self, UnaryOp::Sin)
    }

    /// Cosine elementwise.
    pub fn cos(&self) -> Tensor {
        unary(self, UnaryOp::Cos)
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

    /// `e^x` elementwise.
    pub fn exp(&self) -> Tensor {
        unary(self, UnaryOp::Exp)
    }

    /// Natural logarithm elementwise.
    pub fn log(&self) -> Tensor {
        unary(self, UnaryOp::Log)
    }

    /// Square root elementwise.
    pub fn sqrt(&self) -> Tensor {
        unary(self, UnaryOp::Sqrt)
    }

    /// Hyperbolic tangent elementwise.
    pub fn tanh(&self) -> Tensor {
        unary(self, UnaryOp::Tanh)
    }

    /// The logistic sigmoid `1 / (1 + e^-x)` elementwise.
    pub fn sigmoid(&self) -> Tensor {
        unary(self, UnaryOp::Sigmoid)
    }

    /// `max(x, 0)` elementwise (gradient 0 at 0, as PyTorch).
    pub fn relu(&self) -> Tensor {
        unary(self, UnaryOp::Relu)
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

    /// SiLU (swish), `x · σ(x)`: the gate of SwiGLU.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let y = Tensor::from_vec(vec![0.0, 1.0], &[2]).silu().to_vec();
    /// assert!((y[1] - 0.731_058_6).abs() < 1e-6);
    /// ```
    pub fn silu(&self) -> Tensor {
        unary(self, UnaryOp::Silu)
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
