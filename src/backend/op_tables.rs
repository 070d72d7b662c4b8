// The elementwise op tables: one row per op, in code order. Each macro
// hands its rows to the macro named by its argument, so that one table
// makes the op enum with its names and codes (primitives.rs), the Tensor
// methods (ops/unary.rs, binary.rs, select.rs), the CPU kernel dispatch
// (backend/cpu) and, through build.rs, which includes this file too, the
// C header of codes the CUDA kernels switch on (`ZF_UNARY_OPS` and its
// siblings, included before every `.cu` file): a row whose formula a
// device lacks is a compile error there.
//
// `unary_ops!(then)` calls `then! { rows }`; `unary_ops!(then [args])`
// calls `then! { args rows }`. A row: its doc, the variant with its scalar
// parameters (each with the value the table-wide tests use), `= "name"`
// for messages and graph nodes, and `=> method` for the Tensor method
// (binary ops and comparisons: taking the other operand; unary: taking
// none, where the row names one).

/// The unary op table (see src/backend/op_tables.rs): each f32 function
/// of one tensor, with its derivative on every device.
macro_rules! unary_ops {
    ($then:ident $([$($args:tt)*])?) => {
        $then! {
            $($($args)*)?
            /// `-x` elementwise.
            Neg = "neg" => neg;
            /// `|x|` elementwise; the gradient is `sign(x)`, 0 at 0 (as PyTorch).
            Abs = "abs" => abs;
            /// The sine, elementwise.
            Sin = "sin" => sin;
            /// The cosine, elementwise.
            Cos = "cos" => cos;
            /// `x` limited to `[lo, hi]`; NaN stays NaN, and the gradient passes
            /// where `lo <= x <= hi`.
            Clamp(lo = 0.6, hi = 1.2) = "clamp";
            /// `eˣ` elementwise.
            Exp = "exp" => exp;
            /// The natural logarithm, elementwise.
            Log = "log" => log;
            /// The square root, elementwise.
            Sqrt = "sqrt" => sqrt;
            /// The hyperbolic tangent, elementwise.
            Tanh = "tanh" => tanh;
            /// The logistic sigmoid `1 / (1 + e⁻ˣ)`, elementwise.
            Sigmoid = "sigmoid" => sigmoid;
            /// `max(x, 0)` elementwise (the gradient is 0 at 0, as PyTorch's).
            Relu = "relu" => relu;
            /// `x · Φ(x)` with the exact normal CDF.
            Gelu = "gelu";
            /// GPT-2's tanh approximation of GELU.
            GeluTanh = "gelu(tanh)";
            /// SiLU (swish), `x · σ(x)`: the gate of SwiGLU.
            ///
            /// ```
            /// use zeroformer::Tensor;
            /// let y = Tensor::from_vec(vec![0.0, 1.0], &[2]).silu().to_vec();
            /// assert!((y[1] - 0.731_058_6).abs() < 1e-6);
            /// ```
            Silu = "silu" => silu;
            /// `x + c`.
            AddScalar(c = 1.5) = "add_scalar";
            /// `x · c`.
            MulScalar(c = -2.5) = "mul_scalar";
            /// `xᵖ`.
            Powf(p = 1.7) = "powf";
        }
    };
}
#[allow(unused_imports)] // build.rs includes the tables too
pub(crate) use unary_ops;

/// The binary op table (see src/backend/op_tables.rs): arithmetic between
/// two f32 tensors, broadcasting.
macro_rules! binary_ops {
    ($then:ident $([$($args:tt)*])?) => {
        $then! {
            $($($args)*)?
            /// `self + other`, broadcasting.
            Add = "add" => add;
            /// `self - other`, broadcasting.
            Sub = "sub" => sub;
            /// `self * other` elementwise, broadcasting.
            Mul = "mul" => mul;
            /// `self / other` elementwise, broadcasting.
            Div = "div" => div;
            /// The larger of `self` and `other` elementwise, broadcasting
            /// (`torch.maximum`): NaN where either is NaN; where they tie, each
            /// gets half the gradient.
            ///
            /// ```
            /// use zeroformer::Tensor;
            /// let a = Tensor::from_vec(vec![1.0, 5.0], &[2]);
            /// assert_eq!(a.maximum(&Tensor::scalar(2.0)).to_vec(), vec![2.0, 5.0]);
            /// ```
            Maximum = "maximum" => maximum;
            /// The smaller of `self` and `other` elementwise, broadcasting
            /// (`torch.minimum`).
            Minimum = "minimum" => minimum;
        }
    };
}
#[allow(unused_imports)] // build.rs includes the tables too
pub(crate) use binary_ops;

/// The comparison table (see src/backend/op_tables.rs): two f32 tensors
/// compared elementwise into a bool tensor, broadcasting.
macro_rules! compare_ops {
    ($then:ident $([$($args:tt)*])?) => {
        $then! {
            $($($args)*)?
            /// Elementwise `self < other` as a bool tensor, broadcasting.
            Lt = "lt" => lt;
            /// Elementwise `self <= other` as a bool tensor, broadcasting.
            Le = "le" => le;
            /// Elementwise `self > other` as a bool tensor, broadcasting.
            Gt = "gt" => gt;
            /// Elementwise `self >= other` as a bool tensor, broadcasting.
            Ge = "ge" => ge;
            /// Elementwise `self == other` as a bool tensor, broadcasting.
            Eq = "eq" => eq;
            /// Elementwise `self != other` as a bool tensor, broadcasting.
            Ne = "ne" => ne;
        }
    };
}
#[allow(unused_imports)] // build.rs includes the tables too
pub(crate) use compare_ops;
