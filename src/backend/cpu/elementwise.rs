//! The elementwise ops on the CPU: each unary function's value and
//! derivative (written from the input `x` and, where cheaper, the output
//! `y`), each binary op and each comparison, and their dispatch, made from
//! the op tables (src/backend/op_tables.rs): an op a table lists and this
//! file lacks does not compile.

use std::f32::consts::{FRAC_1_SQRT_2, PI};

use super::cast::Float;
use super::math::{fast_tanh, fast_tanh_sech2};
use super::strided;
use crate::backend::{BinaryOp, CmpOp, UnaryOp};
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
    Neg: |x| -x, |x, y| -1.0;
    // PyTorch's: the gradient of |x| is sign(x), 0 at 0.
    Abs: |x| x.abs(), |x, y| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 };
    Sin: |x| x.sin(), |x, y| x.cos();
    Cos: |x| x.cos(), |x, y| -x.sin();
    Exp: |x| x.exp(), |x, y| y;
    Log: |x| x.ln(), |x, y| 1.0 / x;
    Sqrt: |x| x.sqrt(), |x, y| 0.5 / y;
    Tanh: |x| x.tanh(), |x, y| 1.0 - y * y;
    Sigmoid: |x| sigmoid(x), |x, y| y * (1.0 - y);
    Relu: |x| x.max(0.0), |x, y| if x > 0.0 { 1.0 } else { 0.0 };
    // Φ(x) + x φ(x)
    Gelu: |x| 0.5 * x * (1.0 + libm::erff(x * FRAC_1_SQRT_2)),
        |x, y| 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
    GeluTanh: |x| 0.5 * x * (1.0 + fast_tanh(sqrt_2_over_pi() * (x + GELU_TANH_COEF * x * x * x))),
        |x, y| {
            let k = sqrt_2_over_pi();
            // sech² from its own formula, not 1 - t²: far out, both terms
            // then saturate exactly (to 0 or 1), as PyTorch's do.
            let (t, sech2) = fast_tanh_sech2(k * (x + GELU_TANH_COEF * x * x * x));
            0.5 * (1.0 + t) + 0.5 * x * sech2 * k * (1.0 + 3.0 * GELU_TANH_COEF * x * x)
        };
    // σ(x) + x σ(x)(1 - σ(x)) = σ(x)(1 + x(1 - σ(x)))
    Silu: |x| x * sigmoid(x), |x, y| {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        };
    AddScalar(c): |x| x + c, |x, y| 1.0;
    MulScalar(c): |x| x * c, |x, y| c;
    Powf(p): |x| x.powf(p), |x, y| p * x.powf(p - 1.0);
}

/// `x` limited to `[lo, hi]`; NaN stays NaN. The gradient passes where
/// `lo <= x <= hi` (bounds included, as PyTorch's).
#[derive(Clone, Copy)]
struct Clamp(f32, f32);

impl Elementwise for Clamp {
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

/// Work to run with an op's own type, so that it compiles per op.
trait Kernel {
    type Out;
    fn run<E: Elementwise>(self, op: E) -> Self::Out;
}

/// A binary op on two f32 elements.
trait Binary: Copy + Send + Sync {
    fn apply(self, a: f32, b: f32) -> f32;
}

/// A comparison of two f32 elements.
trait Compare: Copy + Send + Sync {
    fn apply(self, a: f32, b: f32) -> bool;
}

/// Defines a type per op of a table with its formula (`|a, b| ...`).
macro_rules! pairwise {
    ($trait:ident -> $out:ty: $($name:ident: |$a:ident, $b:ident| $f:expr;)*) => {$(
        #[derive(Clone, Copy)]
        struct $name;
        impl $trait for $name {
            #[inline(always)]
            fn apply(self, $a: f32, $b: f32) -> $out {
                $f
            }
        }
    )*};
}

pairwise! { Binary -> f32:
    Add: |a, b| a + b;
    Sub: |a, b| a - b;
    Mul: |a, b| a * b;
    Div: |a, b| a / b;
    // NaN wins either way, as in PyTorch.
    Maximum: |a, b| if a > b || a.is_nan() { a } else { b };
    Minimum: |a, b| if a < b || a.is_nan() { a } else { b };
}

pairwise! { Compare -> bool:
    Lt: |a, b| a < b;
    Le: |a, b| a <= b;
    Gt: |a, b| a > b;
    Ge: |a, b| a >= b;
    Eq: |a, b| a == b;
    Ne: |a, b| a != b;
}

/// Each table's dispatch: a `match` from the op's value to its type.
macro_rules! dispatch {
    (@unary $($(#[$doc:meta])* $op:ident $(($($param:ident = $example:expr),+))? = $name:literal
        $(=> $method:ident)?;)*) => {
        fn specialise<K: Kernel>(op: UnaryOp, kernel: K) -> K::Out {
            match op {
                $(UnaryOp::$op $(($($param),+))? => kernel.run($op $(($($param),+))?),)*
            }
        }
    };
    // `$result` takes the f32 op's result to the output element: back to
    // the operands' type for arithmetic, as it is (a bool) for comparisons.
    (@pairwise $enum:ident $fn:ident $out:ty, $result:path: $($(#[$doc:meta])* $op:ident = $name:literal
        $(=> $method:ident)?;)*) => {
        /// `f(a, b)` for the op over two layouts of one shape, computed in
        /// f32 (bf16 operands widened in registers).
        pub fn $fn<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout, op: $enum) -> Vec<$out> {
            match op {
                $($enum::$op => strided::zip_map(a, la, b, lb, |x, y| {
                    $result($op.apply(x.widen(), y.widen()))
                }),)*
            }
        }
    };
}

crate::backend::unary_ops!(dispatch [@unary]);
crate::backend::binary_ops!(dispatch [@pairwise BinaryOp binary T, T::narrow:]);
crate::backend::compare_ops!(dispatch [@pairwise CmpOp compare bool, std::convert::identity:]);

/// `op(x)` for every element of `layout` over `data`, row-major, computed
/// in f32 (bf16 widened and rounded in registers).
pub fn forward<T: Float>(data: &[T], layout: &Layout, op: UnaryOp) -> Vec<T> {
    struct Forward<'a, T>(&'a [T], &'a Layout);
    impl<T: Float> Kernel for Forward<'_, T> {
        type Out = Vec<T>;
        fn run<E: Elementwise>(self, op: E) -> Vec<T> {
            strided::map(self.0, self.1, |v: T| T::narrow(op.forward(v.widen())))
        }
    }
    specialise(op, Forward(data, layout))
}

/// `g · op'(x)` from the gradient, input and output (`data` and `layouts`
/// in that order, all of one shape), computed in f32.
pub fn backward<T: Float>(data: [&[T]; 3], layouts: [&Layout; 3], op: UnaryOp) -> Vec<T> {
    struct Backward<'a, T>([&'a [T]; 3], [&'a Layout; 3]);
    impl<T: Float> Kernel for Backward<'_, T> {
        type Out = Vec<T>;
        fn run<E: Elementwise>(self, op: E) -> Vec<T> {
            strided::map3(self.0, self.1, |g: T, x: T, y: T| {
                T::narrow(g.widen() * op.derivative(x.widen(), y.widen()))
            })
        }
    }
    specialise(op, Backward(data, layouts))
}
