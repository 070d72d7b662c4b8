//! The seam between ops and devices: the primitives a device implements
//! ([`BackendStorage`]) and the plain descriptions of work they take.
//!
//! Ops in `crate::ops` check shapes and dtypes, build the autograd node, and
//! call one of these on their inputs' storage; the device's kernels do the
//! rest. Storage is always paired with a [`Layout`] (shape, strides,
//! offset), so views (transposes, slices, broadcasts) reach the kernels
//! without a copy. Results are new contiguous storage unless a primitive
//! says otherwise.
//!
//! A device error inside a primitive (out of memory, a failed launch)
//! panics naming the op, as a shape mismatch does: ops follow ndarray's
//! convention. Errors a user can act on are raised at the device boundary
//! instead (`Device::cuda`, `Tensor::to_device`), where they are `Result`s.

use std::fmt::Debug;

use crate::DType;
use crate::layout::Layout;

/// Turns an op table (src/backend/op_tables.rs) into its enum: a variant
/// per row (scalar parameters as `f32` fields), `name`, `code` (the row's
/// position, which the CUDA kernels switch on), `params` and `EXAMPLES`.
macro_rules! op_enum {
    ($(#[$meta:meta])* $enum:ident: $($(#[$doc:meta])* $op:ident $(($($param:ident = $example:expr),+))?
        = $name:literal $(=> $method:ident)?;)*) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum $enum {
            $($(#[$doc])* $op $(($(f32_field!($param)),+))?,)*
        }

        impl $enum {
            /// Every op, its parameters set to the values the table-wide
            /// tests use.
            pub const EXAMPLES: &[$enum] = &[$($enum::$op $(($($example),+))?),*];

            /// The op's name, for messages and graph nodes.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$op { .. } => $name,)*
                }
            }

            /// The op's code: its row in the table, as the CUDA kernels'
            /// switch (the generated `op_tables.cuh`) numbers it.
            pub fn code(self) -> i32 {
                #[allow(dead_code)]
                enum Code { $($op),* }
                match self {
                    $($enum::$op { .. } => Code::$op as i32,)*
                }
            }

            /// The op's scalar parameters, in order, zeros after them.
            pub fn params(self) -> [f32; 2] {
                let given: &[f32] = match self {
                    $($enum::$op $(($($param),+))? => &[$($($param),+)?],)*
                };
                std::array::from_fn(|i| given.get(i).copied().unwrap_or(0.0))
            }
        }
    };
}

/// `f32`, for each of an op's parameters.
macro_rules! f32_field {
    ($param:ident) => {
        f32
    };
}

super::op_tables::unary_ops!(op_enum [
    /// An elementwise function of one f32 tensor (the table in
    /// src/backend/op_tables.rs).
    UnaryOp:
]);
super::op_tables::binary_ops!(op_enum [
    /// Arithmetic between two f32 tensors (the table in
    /// src/backend/op_tables.rs).
    BinaryOp:
]);
super::op_tables::compare_ops!(op_enum [
    /// A comparison of two f32 tensors, giving a bool tensor (the table in
    /// src/backend/op_tables.rs).
    CmpOp:
]);

/// The sizes of a reduction over one dimension of a row-major view:
/// `outer` blocks of `n` reduced elements, each `inner` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// The product of the sizes before the axis.
    pub outer: usize,
    /// The axis's size.
    pub n: usize,
    /// The product of the sizes after the axis.
    pub inner: usize,
}

/// The shape and masking of one fused attention call over contiguous `q`
/// `[batch, heads, tq, d]` and `k`, `v` `[batch, heads, tk, d]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    /// Sequences.
    pub batch: usize,
    /// Heads per sequence.
    pub heads: usize,
    /// Queries per head.
    pub tq: usize,
    /// Keys (and values) per head.
    pub tk: usize,
    /// The head width.
    pub d: usize,
    /// The factor on the scores, `1 / √d`.
    pub scale: f32,
    /// `Some(past)`: query `i` sees keys `0..=past + i` only.
    pub causal: Option<usize>,
    /// `Some(w)` (with `causal`): query `i` sees the `w` keys up to its
    /// own position only, `past + i + 1 - w ..= past + i` (sliding-window
    /// attention).
    pub window: Option<usize>,
}

impl AttentionParams {
    /// The first key query `i` sees (0 without a window).
    pub fn first_key(&self, i: usize) -> usize {
        match (self.causal, self.window) {
            (Some(past), Some(w)) => (past + i + 1).saturating_sub(w),
            _ => 0,
        }
    }

    /// The keys before which query `i` sees nothing: `tk`, or `past + i +
    /// 1` under the causal mask (capped at `tk`).
    pub fn key_end(&self, i: usize) -> usize {
        match self.causal {
            Some(past) => (past + i + 1).min(self.tk),
            None => self.tk,
        }
    }
}

/// One Adam/AdamW step's constants, shared by every element.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// The learning rate.
    pub lr: f32,
    /// The first moment's decay.
    pub beta1: f32,
    /// The second moment's decay.
    pub beta2: f32,
    /// Added to the second moment's root.
    pub eps: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias2_sqrt: f32,
    /// Adam's L2 term, added to the gradient (0 for none).
    pub l2: f32,
    /// AdamW's decoupled decay, `w *= 1 - lr·decay` (0 for none).
    pub decay: f32,
}

/// A cross-entropy forward's results, on the device (nothing is read back
/// to the host).
#[derive(Debug)]
pub struct CrossEntropyForward<S> {
    /// One f32 element: the mean loss over the counted targets.
    pub loss: S,
    /// `[rows, classes]` log-probabilities, kept for the backward.
    pub log_probs: S,
    /// One i64 element: how many targets were not ignored.
    pub count: S,
}

impl<S> CrossEntropyForward<S> {
    /// The same results with each storage passed through `f`.
    pub fn map<T>(self, f: impl Fn(S) -> T) -> CrossEntropyForward<T> {
        CrossEntropyForward {
            loss: f(self.loss),
            log_probs: f(self.log_probs),
            count: f(self.count),
        }
    }
}

/// Storage paired with the layout that reads it.
pub type View<'a, S> = (&'a S, &'a Layout);

/// Declares every primitive once, handing the declarations to `$then`:
/// a macro that turns them into the [`BackendStorage`] trait's methods,
/// the CUDA stub's uninhabited bodies, the CUDA storage's launcher calls,
/// or `Storage`'s forwarding to the device that holds the data. A new
/// primitive is one declaration here, the devices' kernels, and the op
/// that calls it.
///
/// Each declaration is a trait method's signature in which `Self` is the
/// storage: a device's storage in the trait, the `Storage` enum in the
/// forwarding (so `View<Self>` there is a `Storage` with its layout).
///
/// `primitives!(declare)` hands `declare!` the whole list as written;
/// `primitives!(each body)` calls `body!` once a declaration, with the
/// receiver split from the other parameters (see [`each_primitive!`]).
macro_rules! primitives {
    (each $body:ident) => {
        $crate::backend::primitives! { @list [$crate::backend::each_primitive] [$body;] }
    };
    ($then:ident) => {
        $crate::backend::primitives! { @list [$then] [] }
    };
    (@list [$($then:tt)*] [$($prefix:tt)*]) => {
        $($then)*! {
            $($prefix)*
            /// The element type.
            fn dtype(&self) -> DType;
            /// How many elements the storage holds (every view over it included).
            fn elements(&self) -> usize;

            // Moving data.

            /// The elements under `layout` (any dtype), row-major in new storage.
            fn contiguous_copy(&self, layout: &Layout) -> Self;
            /// Copies `src` (under `src_layout`) into `dst_layout` of this storage,
            /// in place; the dtypes must match (panics naming `op` otherwise).
            fn copy_from(&mut self, dst_layout: &Layout, src: View<Self>, op: &str);
            /// Adds f32 `src` into `dst_layout` of this f32 storage, in place;
            /// false, changing nothing, for other dtypes.
            fn add_from(&mut self, dst_layout: &Layout, src: View<Self>) -> bool;
            /// `len` zeros (or `false`s) of this storage's dtype, on its device.
            fn zeros_like(&self, len: usize) -> Self;
            /// `len` f32 elements equal to `value`, on this storage's device.
            fn full_like(&self, len: usize, value: f32) -> Self;
            /// `len` f32 inverted-dropout factors on this storage's device: 0 with
            /// probability `p`, else `1 / (1 - p)`. Element `i` is drawn by
            /// Philox4x32-10 under `key` (block `i / 4`, word `i % 4`), so every
            /// device gives the same mask for the same key.
            fn dropout_mask(&self, len: usize, p: f32, key: u64) -> Self;
            /// The elements under `layout` converted to `dtype`, row-major: f32 to
            /// i64 truncates toward zero, any to bool is `!= 0`, bool to numbers
            /// is 0 or 1.
            fn to_dtype(&self, layout: &Layout, dtype: DType) -> Self;

            // Elementwise, with strides and broadcasting (every layout has the
            // output's shape; broadcast dimensions have stride 0).

            /// `op(x)`.
            fn unary(&self, layout: &Layout, op: UnaryOp) -> Self;
            /// `g · op'(x)` from the upstream gradient `g` (self), the input `x`
            /// and the forward's output `y`.
            fn unary_backward(&self, layout: &Layout, x: View<Self>, y: View<Self>, op: UnaryOp
            ) -> Self;
            /// `self op rhs`.
            fn binary(&self, layout: &Layout, rhs: View<Self>, op: BinaryOp) -> Self;
            /// `self op rhs` as bool.
            fn compare(&self, layout: &Layout, rhs: View<Self>, op: CmpOp) -> Self;
            /// `if self { on_true } else { on_false }` for a bool condition (self).
            fn where_cond(&self, layout: &Layout, on_true: View<Self>, on_false: View<Self>
            ) -> Self;

            // Reductions over the row-major view `layout` gives.

            /// Sums over `axis`: `[outer, inner]` results.
            fn sum_axis(&self, layout: &Layout, axis: Axis) -> Self;
            /// Maxima over `axis` and the index of each one's first occurrence
            /// (i64), both `[outer, inner]`.
            fn max_axis(&self, layout: &Layout, axis: Axis) -> (Self, Self);
            /// The gradient of [`max_axis`](Self::max_axis): `g` (self, `[outer,
            /// inner]`) placed at each `argmax` in `outer · n · inner` zeros.
            fn max_axis_backward(&self, layout: &Layout, argmax: &Self, axis: Axis) -> Self;
            /// Σ x² over the elements, accumulated in f64: one f32 element, left
            /// on the device.
            fn sum_of_squares(&self, layout: &Layout) -> Self;
            /// Running sums along `axis` (from its end when `reverse`), accumulated
            /// in f64: `[outer, n, inner]`.
            fn cumsum(&self, layout: &Layout, axis: Axis, reverse: bool) -> Self;
            /// The indices (i64, `[outer, k, inner]`) of the `k` largest elements
            /// along `axis`, largest first; NaN counts as largest and ties keep
            /// the lower index first.
            fn topk_indices(&self, layout: &Layout, axis: Axis, k: usize) -> Self;

            // Softmax over the last dimension of the view, of size `n`.

            /// `softmax` (or `log_softmax` when `log`) of each row.
            fn softmax(&self, layout: &Layout, n: usize, log: bool) -> Self;
            /// `softmax(scale · x)` of `[.., queries, keys]` scores where query `i`
            /// sees keys `0..=offset + i` only.
            fn causal_softmax(&self, layout: &Layout, queries: usize, offset: usize, scale: f32
            ) -> Self;
            /// The gradient of a (causal) softmax of `scale · x` from its output
            /// `y` (self) and the upstream gradient `g`.
            fn softmax_backward(&self, layout: &Layout, g: View<Self>, scale: f32) -> Self;

            // Layer norm over the last dimension, of size `d`.

            /// `(y, stats)`: the normalised rows, scaled and shifted, and per-row
            /// statistics (mean and reciprocal standard deviation) for the backward.
            fn layer_norm(&self, layout: &Layout, d: usize, weight: Option<View<Self>>,
                bias: Option<View<Self>>, eps: f32) -> (Self, Self);
            /// `(dx, dweight, dbias)` from the input `x` (self), the upstream
            /// gradient `g` and the forward's `stats`.
            fn layer_norm_backward(&self, layout: &Layout, g: View<Self>, d: usize,
                weight: Option<View<Self>>, stats: &Self) -> (Self, Self, Self);

            // Cross-entropy of `[rows, classes]` logits against i64 targets.

            /// The mean loss over targets other than `ignore_index`, and what the
            /// backward needs. Panics for a target out of range.
            fn cross_entropy(&self, layout: &Layout, targets: View<Self>, classes: usize,
                ignore_index: Option<i64>) -> CrossEntropyForward<Self>;
            /// `(softmax - one_hot) · g / count` from the forward's log-probabilities
            /// (self), the one-element upstream gradient `g` and the forward's
            /// one-element `count`.
            fn cross_entropy_backward(&self, targets: View<Self>, g: View<Self>, classes: usize,
                ignore_index: Option<i64>, count: &Self) -> Self;

            // Embeddings: rows of a `[vocab, d]` table by i64 id.

            /// The rows of the table (self) that `ids` name, `[ids.., d]`. Panics
            /// for an id out of range.
            fn embedding(&self, layout: &Layout, ids: View<Self>) -> Self;
            /// The gradient of [`embedding`](Self::embedding): the rows of `g`
            /// (self, `[ids.., d]`) scatter-added into `vocab x d` zeros.
            fn embedding_backward(&self, layout: &Layout, ids: View<Self>, vocab: usize) -> Self;

            // Gathering along one dimension by i64 index (`torch.gather`).

            /// `out[p] = self[p with p[dim] replaced by index[p]]` for every
            /// position `p` of the index's shape, row-major. Panics for an index
            /// out of range.
            fn gather_dim(&self, layout: &Layout, dim: usize, index: View<Self>) -> Self;
            /// The gradient of [`gather_dim`](Self::gather_dim): each element of
            /// `g` (self, the index's shape) added at its index into zeros of
            /// `shape`.
            fn scatter_add_dim(&self, layout: &Layout, dim: usize, index: View<Self>,
                shape: &[usize]) -> Self;

            // Matrix products over the last two dimensions of each view; either
            // operand may be transposed (strides swapped).

            /// `self @ rhs` with the leading (batch) dimensions of both broadcast
            /// to `batch_shape`.
            fn matmul(&self, layout: &Layout, rhs: View<Self>, batch_shape: &[usize]) -> Self;
            /// `bias (self, [n]) + a @ b` for `[m, k]` `a` and `[k, n]` `b`.
            fn addmm(&self, layout: &Layout, a: View<Self>, b: View<Self>) -> Self;
            /// Each group of consecutive rows through its own matrix (a mixture
            /// of experts in one product): rows `offsets[e]..offsets[e + 1]` of
            /// `self` (`[rows, in]`) times `weights[e]ᵀ` (`weights` `[groups,
            /// out, in]`), plus `bias[e]` (`[groups, out]`) when given: `[rows,
            /// out]`. `offsets` (i64, `[groups + 1]`, left on the device) runs
            /// from 0 to `rows` without decreasing; the CPU panics for offsets
            /// that do not.
            fn grouped_matmul(&self, layout: &Layout, weights: View<Self>, offsets: View<Self>,
                bias: Option<View<Self>>) -> Self;
            /// `(d_rows, d_weights, d_bias)` of [`grouped_matmul`](Self::grouped_matmul)
            /// from the upstream gradient `g` (self, `[rows, out]`), its rows,
            /// weights and offsets; an empty group's weight and bias gradients
            /// are zeros.
            fn grouped_matmul_backward(&self, layout: &Layout, rows: View<Self>, weights: View<Self>,
                offsets: View<Self>) -> (Self, Self, Self);

            // Fused attention (self is q; the views are usually contiguous, which
            // saves the kernels a copy).

            /// `(out, logsumexp)`: the attention output `[batch, heads, tq, d]`
            /// and each query row's logsumexp of its scaled, masked scores.
            /// `key_padding` is bool `[batch, tk]`, true where a key is hidden.
            fn attention(&self, layout: &Layout, k: View<Self>, v: View<Self>,
                key_padding: Option<View<Self>>, params: &AttentionParams) -> (Self, Self);
            /// `(dq, dk, dv)` from the inputs, the forward's output and logsumexp,
            /// and the upstream gradient `g`.
            #[allow(clippy::too_many_arguments)]
            fn attention_backward(&self, layout: &Layout, k: View<Self>, v: View<Self>,
                out: View<Self>, lse: &Self, g: View<Self>, key_padding: Option<View<Self>>,
                params: &AttentionParams) -> (Self, Self, Self);

            // Optimizers.

            /// One Adam/AdamW update of these weights (self) and the moments `m`
            /// and `v` (whole storages of one length) from `grad`, in place. With
            /// `grad_scale` (one f32 element on the device: a clipping factor),
            /// the gradient is multiplied by it first; a NaN scale skips the update,
            /// leaving weights and moments as they are (a step found non-finite on
            /// the device, with nothing read back).
            fn adam_update(&mut self, grad: View<Self>, m: &mut Self, v: &mut Self, step: AdamStep,
                grad_scale: Option<&Self>);

            // Weight-only int8 (inference).

            /// Each row of the f32 matrix `[rows, cols]` (self) as int8 and one f32
            /// scale per row: `q = round(w / s)`, `s = max|w| / 127` (0 for a row
            /// of zeros).
            fn quantize_rows_int8(&self, layout: &Layout) -> (Self, Self);
            /// `x @ (q · s)ᵀ` for f32 `x` `[m, k]` (self), int8 `q` `[n, k]` and f32
            /// scales `[n]`: the f32 `[m, n]` product.
            fn matmul_int8(&self, layout: &Layout, q: View<Self>, scales: View<Self>) -> Self;
        }
    };
}
pub(crate) use primitives;

/// Calls `$body!` for each declaration as `[attributes] name [receiver]
/// self [, parameters] [return type]`: the receiver (`&self` or `&mut
/// self`) apart, and its `self` token passed on so that a generated body
/// may name it (hygiene keeps a `self` the body's macro writes apart from
/// the signature's).
macro_rules! each_primitive {
    ($body:ident; $($(#[$meta:meta])* fn $name:ident($($params:tt)*) $(-> $ret:ty)?;)*) => {
        $($crate::backend::each_primitive!(@receiver $body [$(#[$meta])*] $name [$($params)*] [$($ret)?]);)*
    };
    (@receiver $body:ident $meta:tt $name:ident [&mut $s:ident $($args:tt)*] $ret:tt) => {
        $body!($meta $name [&mut $s] $s [$($args)*] $ret);
    };
    (@receiver $body:ident $meta:tt $name:ident [& $s:ident $($args:tt)*] $ret:tt) => {
        $body!($meta $name [& $s] $s [$($args)*] $ret);
    };
}
pub(crate) use each_primitive;

/// Turns [`primitives!`]' declarations into trait methods.
macro_rules! declare {
    ($($(#[$meta:meta])* fn $name:ident($($params:tt)*) $(-> $ret:ty)?;)*) => {
        $($(#[$meta])* fn $name($($params)*) $(-> $ret)?;)*
    };
}

/// The primitives a device implements: every op in `crate::ops` is written
/// with these alone. Arguments are storages of this device with the
/// layouts that view them; f32 unless stated. Kernels behind them know
/// nothing of `Tensor` or autograd.
pub trait BackendStorage: Sized + Clone + Debug {
    /// The elements under `layout`, copied to host memory, row-major: the
    /// one primitive whose result is not this device's storage, so it is
    /// declared and forwarded by hand.
    fn to_host(&self, layout: &Layout) -> super::cpu::CpuStorage;

    primitives!(declare);
}
