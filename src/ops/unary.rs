//! Elementwise functions of one tensor: activations, exp/log, and scalar
//! arithmetic. Each has a forward formula and a derivative written from the
//! input `x` and, where cheaper, the output `y`.

use std::f32::consts::{FRAC_1_SQRT_2, PI};

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::cpu::math::fast_tanh;
use crate::backend::cpu::strided;

/// Which GELU: PyTorch's `approximate='none'` or `'tanh'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GeluApproximation {
    /// `x · Φ(x)` with the exact normal CDF (erf): PyTorch's default.
    #[default]
    None,
    /// GPT-2's `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    Tanh,
}

#[derive(Clone, Copy, Debug)]
enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Sigmoid,
    Relu,
    Gelu,
    GeluTanh,
    AddScalar(f32),
    MulScalar(f32),
    Powf(f32),
}

const GELU_TANH_COEF: f32 = 0.044_715;

fn sqrt_2_over_pi() -> f32 {
    (2.0 / PI).sqrt()
}

impl Unary {
    fn name(self) -> &'static str {
        match self {
            Unary::Neg => "neg",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Sqrt => "sqrt",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Relu => "relu",
            Unary::Gelu => "gelu",
            Unary::GeluTanh => "gelu(tanh)",
            Unary::AddScalar(_) => "add_scalar",
            Unary::MulScalar(_) => "mul_scalar",
            Unary::Powf(_) => "powf",
        }
    }

    #[inline(always)]
    fn forward(self, x: f32) -> f32 {
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => sigmoid(x),
            Unary::Relu => x.max(0.0),
            Unary::Gelu => 0.5 * x * (1.0 + libm::erff(x * FRAC_1_SQRT_2)),
            Unary::GeluTanh => {
                let u = sqrt_2_over_pi() * (x + GELU_TANH_COEF * x * x * x);
                0.5 * x * (1.0 + fast_tanh(u))
            }
            Unary::AddScalar(c) => x + c,
            Unary::MulScalar(c) => x * c,
            Unary::Powf(p) => x.powf(p),
        }
    }

    /// dy/dx at input `x` with output `y`.
    #[inline(always)]
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Unary::Neg => -1.0,
            Unary::Exp => y,
            Unary::Log => 1.0 / x,
            Unary::Sqrt => 0.5 / y,
            Unary::Tanh => 1.0 - y * y,
            Unary::Sigmoid => y * (1.0 - y),
            Unary::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            // Φ(x) + x φ(x)
            Unary::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
                cdf + x * pdf
            }
            Unary::GeluTanh => {
                let k = sqrt_2_over_pi();
                let t = fast_tanh(k * (x + GELU_TANH_COEF * x * x * x));
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * GELU_TANH_COEF * x * x)
            }
            Unary::AddScalar(_) => 1.0,
            Unary::MulScalar(c) => c,
            Unary::Powf(p) => p * x.powf(p - 1.0),
        }
    }
}

/// The logistic function, without overflow for large |x|.
#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Calls `$body` with `$op` bound to a constant of each variant, so that the
/// kernel is compiled once per op with the `match` folded away (and the
/// loop vectorised where the formula allows).
macro_rules! specialise {
    ($value:expr, |$op:ident| $body:expr) => {
        match $value {
            Unary::Neg => {
                let $op = Unary::Neg;
                $body
            }
            Unary::Exp => {
                let $op = Unary::Exp;
                $body
            }
            Unary::Log => {
                let $op = Unary::Log;
                $body
            }
            Unary::Sqrt => {
                let $op = Unary::Sqrt;
                $body
            }
            Unary::Tanh => {
                let $op = Unary::Tanh;
                $body
            }
            Unary::Sigmoid => {
                let $op = Unary::Sigmoid;
                $body
            }
            Unary::Relu => {
                let $op = Unary::Relu;
                $body
            }
            Unary::Gelu => {
                let $op = Unary::Gelu;
                $body
            }
            Unary::GeluTanh => {
                let $op = Unary::GeluTanh;
                $body
            }
            Unary::AddScalar(c) => {
                let $op = Unary::AddScalar(c);
                $body
            }
            Unary::MulScalar(c) => {
                let $op = Unary::MulScalar(c);
                $body
            }
            Unary::Powf(p) => {
                let $op = Unary::Powf(p);
                $body
            }
        }
    };
}

fn unary(x: &Tensor, op: Unary) -> Tensor {
    let storage = x.storage();
    let src = storage.f32(op.name());
    let data = specialise!(op, |op| strided::map(src, x.layout(), |v| op.forward(v)));
    let out = Tensor::from_f32(data, x.shape(), None);
    match autograd::node(&[x], || UnaryBackward {
        op,
        out: out.clone(),
    }) {
        Some(node) => out.view(out.layout().clone(), Some(node)),
        None => out,
    }
}

struct UnaryBackward {
    op: Unary,
    /// The output, detached (no graph).
    out: Tensor,
}

impl Backward for UnaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn backward(&self, g: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let (sg, sx, sy) = (g.storage(), x.storage(), self.out.storage());
        let data = [sg.f32("backward"), sx.f32("backward"), sy.f32("backward")];
        let layouts = [g.layout(), x.layout(), self.out.layout()];
        let data = specialise!(self.op, |op| strided::map_n(data, layouts, |[g, x, y]| g
            * op.derivative(x, y)));
        vec![Some(Tensor::from_f32(data, x.shape(), None))]
    }
}

impl Tensor {
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        unary(self, Unary::Neg)
    }

    /// `e^x` elementwise.
    pub fn exp(&self) -> Tensor {
        unary(self, Unary::Exp)
    }

    /// Natural logarithm elementwise.
    pub fn log(&self) -> Tensor {
        unary(self, Unary::Log)
    }

    /// Square root elementwise.
    pub fn sqrt(&self) -> Tensor {
        unary(self, Unary::Sqrt)
    }

    /// Hyperbolic tangent elementwise.
    pub fn tanh(&self) -> Tensor {
        unary(self, Unary::Tanh)
    }

    /// The logistic sigmoid `1 / (1 + e^-x)` elementwise.
    pub fn sigmoid(&self) -> Tensor {
        unary(self, Unary::Sigmoid)
    }

    /// `max(x, 0)` elementwise (gradient 0 at 0, as PyTorch).
    pub fn relu(&self) -> Tensor {
        unary(self, Unary::Relu)
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
            GeluApproximation::None => unary(self, Unary::Gelu),
            GeluApproximation::Tanh => unary(self, Unary::GeluTanh),
        }
    }

    /// `self + c` elementwise.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        unary(self, Unary::AddScalar(c))
    }

    /// `self * c` elementwise.
    pub fn mul_scalar(&self, c: f32) -> Tensor {
        unary(self, Unary::MulScalar(c))
    }

    /// `self ^ p` elementwise.
    pub fn powf(&self, p: f32) -> Tensor {
        unary(self, Unary::Powf(p))
    }

    /// `self * self` elementwise.
    pub fn square(&self) -> Tensor {
        self.mul(self)
    }
}
