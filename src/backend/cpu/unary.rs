//! Elementwise functions of one f32 tensor on the CPU: each op's value and
//! its derivative, written from the input `x` and, where cheaper, the
//! output `y`.

use std::f32::consts::{FRAC_1_SQRT_2, PI};

use super::math::{fast_tanh, fast_tanh_sech2};
use super::strided;
use crate::backend::UnaryOp;
use crate::layout::Layout;

const GELU_TANH_COEF: f32 = 0.044_715;

fn sqrt_2_over_pi() -> f32 {
    (2.0 / PI).sqrt()
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
    // PyTorch's: the gradient of |x| is sign(x), 0 at 0.
    AbsOp: |x| x.abs(), |x, y| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 };
    SinOp: |x| x.sin(), |x, y| x.cos();
    CosOp: |x| x.cos(), |x, y| -x.sin();
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

/// `x` limited to `[lo, hi]`; NaN stays NaN. The gradient passes where
/// `lo <= x <= hi` (bounds included, as PyTorch's).
#[derive(Clone, Copy)]
struct ClampOp(f32, f32);

impl Elementwise for ClampOp {
    #[inline(always)]
    fn forward(self, x: f32) -> f32 {
        if x < self.0 {
            self.0
        } else if x > self.1 {
            self.1
        } else {
            x
        }
    }

    #[inline(always)]
    fn derivative(self, x: f32, _y: f32) -> f32 {
        if x >= self.0 && x <= self.1 { 1.0 } else { 0.0 }
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

/// Calls `$body` with `$op` bound to the op type of the variant, so that
/// the kernel is compiled once per op.
macro_rules! specialise {
    ($value:expr, |$op:ident| $body:expr) => {
        match $value {
            UnaryOp::Neg => {
                let $op = NegOp;
                $body
            }
            UnaryOp::Abs => {
                let $op = AbsOp;
                $body
            }
            UnaryOp::Sin => {
                let $op = SinOp;
                $body
            }
            UnaryOp::Cos => {
                let $op = CosOp;
                $body
            }
            UnaryOp::Clamp(lo, hi) => {
                let $op = ClampOp(lo, hi);
                $body
            }
            UnaryOp::Exp => {
                let $op = ExpOp;
                $body
            }
            UnaryOp::Log => {
                let $op = LogOp;
                $body
            }
            UnaryOp::Sqrt => {
                let $op = SqrtOp;
                $body
            }
            UnaryOp::Tanh => {
                let $op = TanhOp;
                $body
            }
            UnaryOp::Sigmoid => {
                let $op = SigmoidOp;
                $body
            }
            UnaryOp::Relu => {
                let $op = ReluOp;
                $body
            }
            UnaryOp::Gelu => {
                let $op = GeluOp;
                $body
            }
            UnaryOp::GeluTanh => {
                let $op = GeluTanhOp;
                $body
            }
            UnaryOp::Silu => {
                let $op = SiluOp;
                $body
            }
            UnaryOp::AddScalar(c) => {
                let $op = AddScalarOp(c);
                $body
            }
            UnaryOp::MulScalar(c) => {
                let $op = MulScalarOp(c);
                $body
            }
            UnaryOp::Powf(p) => {
                let $op = PowfOp(p);
                $body
            }
        }
    };
}

/// `op(x)` for every element of `layout` over `data`, row-major.
pub fn forward(data: &[f32], layout: &Layout, op: UnaryOp) -> Vec<f32> {
    specialise!(op, |op| strided::map(data, layout, |v| op.forward(v)))
}

/// `g · op'(x)` from the gradient, input and output (`data` and `layouts`
/// in that order, all of one shape).
pub fn backward(data: [&[f32]; 3], layouts: [&Layout; 3], op: UnaryOp) -> Vec<f32> {
    specialise!(op, |op| strided::map3(data, layouts, |g, x, y| g * op
        .derivative(x, y)))
}
