//! Elementwise functions of one tensor: activations, exp/log, and scalar
//! arithmetic. Each has a forward formula and a derivative written from the
//! input `x` and, where cheaper, the output `y`.

use std::f32::consts::{FRAC_1_SQRT_2, PI};

use crate::Tensor;
use crate::autograd::{self, Backward};
use crate::backend::cpu::math::{fast_tanh, fast_tanh_sech2};
use crate::backend::cpu::strided;

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
    Silu,
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
            Unary::Silu => "silu",
            Unary::AddScalar(_) => "add_scalar",
            Unary::MulScalar(_) => "mul_scalar",
            Unary::Powf(_) => "powf",
        }
    }
}

/// One elementwise function: its value and its derivative, written from the
/// input `x` and, where cheaper, the output `y`. Each op is its own small
/// type so that kernels are compiled per op and their loops vectorise (a
/// `match` on the op inside the loop stopped both).
trait Elementwise: Copy + Send + Sync {
    fn forward(self, x: f32) -> f32;
    fn derivative(self, x: f32, y: f32) -> f32;
}

macro_rules! elementwise {
    // An op of `x` alone.
    (@impl $name:ident, |$x:ident| $fwd:expr, |$dx:ident, $dy:ident| $der:expr, $($param:ident)?) => {
        impl Elementwise for $name {
            #[inline(always)]
            #[allow(unused_variables)]
            fn forward(self, $x: f32) -> f32 {
                $(let $param = self.0;)?
                $fwd
            }
            #[inline(always)]
            #[allow(unused_variables)]
            fn derivative(self, $dx: f32, $dy: f32) -> f32 {
                $(let $param = self.0;)?
                $der
            }
        }
    };
    ($($name:ident $(($param:ident))? : |$x:ident| $fwd:expr, |$dx:ident, $dy:ident| $der:expr;)*) => {$(
        elementwise!(@struct $name $($param)?);
        elementwise!(@impl $name, |$x| $fwd, |$dx, $dy| $der, $($param)?);
    )*};
    (@struct $name:ident) => {
        #[derive(Clone, Copy)]
        struct $name;
    };
    // An op with a scalar parameter, bound to `$param` in its formulas.
    (@struct $name:ident $param:ident) => {
        #[derive(Clone, Copy)]
        struct $name(f32);
    };
}

elementwise! {
    NegOp: |x| -x, |x, y| -1.0;
    ExpOp: |x| x.exp(), |x, y| y;
    LogOp: |x| x.ln(), |x, y| 1.0 / x;
    SqrtOp: |x| x.sqrt(), |x, y| 0.5 / y;
    TanhOp: |x| x.tanh(), |x, y| 1.0 - y * y;
    SigmoidOp: |x| sigmoid(x), |x, y| y * (1.0 - y);
    ReluOp: |x| x.max(0.0), |x, y| if x > 0.0 { 1.0 } else { 0.0 };
    // Φ(x) + x φ(x)
    GeluOp: |x| 0.5 * x * (1.0 + libm::erff(x * FRAC_1_SQRT_2)),
        |x, y| 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
    GeluTanhOp: |x| 0.5 * x * (1.0 + fast_tanh(sqrt_2_over_pi() * (x + GELU_TANH_COEF * x * x * x))),
        |x, y| {
            let k = sqrt_2_over_pi();
            // sech² from its own formula, not 1 - t²: far out, both terms
            // then saturate exactly (to 0 or 1), as PyTorch's do.
            let (t, sech2) = fast_tanh_sech2(k * (x + GELU_TANH_COEF * x * x * x));
            0.5 * (1.0 + t) + 0.5 * x * sech2 * k * (1.0 + 3.0 * GELU_TANH_COEF * x * x)
        };
    // σ(x) + x σ(x)(1 - σ(x)) = σ(x)(1 + x(1 - σ(x)))
    SiluOp: |x| x * sigmoid(x), |x, y| {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        };
    AddScalarOp(c): |x| x + c, |x, y| 1.0;
    MulScalarOp(c): |x| x * c, |x, y| c;
    PowfOp(p): |x| x.powf(p), |x, y| p * x.powf(p - 1.0);
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

/// Calls `$body` with `$op` bound to the op type of the variant, so that
/// the kernel is compiled once per op.
macro_rules! specialise {
    ($value:expr, |$op:ident| $body:expr) => {
        match $value {
            Unary::Neg => {
                let $op = NegOp;
                $body
            }
            Unary::Exp => {
                let $op = ExpOp;
                $body
            }
            Unary::Log => {
                let $op = LogOp;
                $body
            }
            Unary::Sqrt => {
                let $op = SqrtOp;
                $body
            }
            Unary::Tanh => {
                let $op = TanhOp;
                $body
            }
            Unary::Sigmoid => {
                let $op = SigmoidOp;
                $body
            }
            Unary::Relu => {
                let $op = ReluOp;
                $body
            }
            Unary::Gelu => {
                let $op = GeluOp;
                $body
            }
            Unary::GeluTanh => {
                let $op = GeluTanhOp;
                $body
            }
            Unary::Silu => {
                let $op = SiluOp;
                $body
            }
            Unary::AddScalar(c) => {
                let $op = AddScalarOp(c);
                $body
            }
            Unary::MulScalar(c) => {
                let $op = MulScalarOp(c);
                $body
            }
            Unary::Powf(p) => {
                let $op = PowfOp(p);
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
    autograd::with_saved_output(out, &[x], |out| UnaryBackward { op, out })
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
        let data = specialise!(self.op, |op| strided::map3(data, layouts, |g, x, y| g * op
            .derivative(x, y)));
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

    /// SiLU (swish), `x · σ(x)`: the gate of SwiGLU.
    ///
    /// ```
    /// use zeroformer::Tensor;
    /// let y = Tensor::from_vec(vec![0.0, 1.0], &[2]).silu().to_vec();
    /// assert!((y[1] - 0.731_058_6).abs() < 1e-6);
    /// ```
    pub fn silu(&self) -> Tensor {
        unary(self, Unary::Silu)
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
