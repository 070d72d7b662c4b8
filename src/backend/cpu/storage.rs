//! Host memory as a device: [`CpuStorage`] and its implementation of the
//! primitives, each a call into this backend's kernels.

use super::strided::with_elements;
use super::{
    attention, attention_decode, cast, elementwise, index, loss, matmul, norm, optim, pool,
    quantized, random, reduce, strided,
};
use crate::DType;
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View,
};
use crate::layout::Layout;

use half::bf16;

/// Elements in main memory.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    /// 32-bit floats: values, weights, gradients.
    F32(Vec<f32>),
    /// 64-bit integers: token ids, class targets, indices.
    I64(Vec<i64>),
    /// Booleans: masks.
    Bool(Vec<bool>),
    /// 8-bit integers: quantized weights.
    I8(Vec<i8>),
    /// bfloat16 values.
    BF16(Vec<bf16>),
}

impl Drop for CpuStorage {
    /// Large f32 and bf16 buffers go back to the pool for the next op to
    /// reuse.
    fn drop(&mut self) {
        match self {
            CpuStorage::F32(v) => pool::give(std::mem::take(v)),
            CpuStorage::BF16(v) => pool::give(std::mem::take(v)),
            _ => {}
        }
    }
}

impl CpuStorage {
    /// `len` f32 elements equal to `value` (from the buffer pool).
    pub fn filled(len: usize, value: f32) -> CpuStorage {
        CpuStorage::F32(pool::take_filled(len, value))
    }

    /// The f32 elements; panics naming `op` for any other dtype.
    pub fn f32(&self, op: &str) -> &[f32] {
        match self {
            CpuStorage::F32(v) => v,
            other => panic!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
        }
    }

    /// The bf16 elements; panics naming `op` for any other dtype.
    pub fn bf16(&self, op: &str) -> &[bf16] {
        match self {
            CpuStorage::BF16(v) => v,
            other => panic!("{op}: expected a bf16 tensor, got {:?}", other.dtype()),
        }
    }

    /// The i64 elements; panics naming `op` for any other dtype.
    pub fn i64(&self, op: &str) -> &[i64] {
        match self {
            CpuStorage::I64(v) => v,
            other => panic!("{op}: expected an i64 tensor, got {:?}", other.dtype()),
        }
    }

    /// The boolean elements; panics naming `op` for any other dtype.
    pub fn bool(&self, op: &str) -> &[bool] {
        match self {
            CpuStorage::Bool(v) => v,
            other => panic!("{op}: expected a bool tensor, got {:?}", other.dtype()),
        }
    }

    fn f32_mut(&mut self, op: &str) -> &mut [f32] {
        match self {
            CpuStorage::F32(v) => v,
            other => panic!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
        }
    }

    /// The f32 elements, moved out; panics naming `op` for any other dtype.
    pub fn into_f32(mut self, op: &str) -> Vec<f32> {
        std::mem::take(match &mut self {
            CpuStorage::F32(v) => v,
            other => panic!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
        })
    }

    /// The i64 elements, moved out; panics naming `op` for any other dtype.
    pub fn into_i64(mut self, op: &str) -> Vec<i64> {
        std::mem::take(match &mut self {
            CpuStorage::I64(v) => v,
            other => panic!("{op}: expected an i64 tensor, got {:?}", other.dtype()),
        })
    }

    /// The bf16 elements, moved out; panics naming `op` for any other dtype.
    pub fn into_bf16(mut self, op: &str) -> Vec<bf16> {
        std::mem::take(match &mut self {
            CpuStorage::BF16(v) => v,
            other => panic!("{op}: expected a bf16 tensor, got {:?}", other.dtype()),
        })
    }

    /// The boolean elements, moved out; panics naming `op` for any other dtype.
    pub fn into_bool(mut self, op: &str) -> Vec<bool> {
        std::mem::take(match &mut self {
            CpuStorage::Bool(v) => v,
            other => panic!("{op}: expected a bool tensor, got {:?}", other.dtype()),
        })
    }
}

/// The f32 elements of `view`, row-major, for `f` (see [`with_elements`]);
/// a bf16 view's widened into a buffer first (kernels without a bf16
/// version of their own compute in f32).
fn with_f32<R>((s, l): View<CpuStorage>, op: &str, f: impl FnOnce(&[f32]) -> R) -> R {
    if let CpuStorage::BF16(v) = s {
        let widened = strided::map(v, l, cast::to_f32);
        let result = f(&widened);
        pool::give(widened);
        return result;
    }
    with_elements(s.f32(op), l, f)
}

impl CpuStorage {
    /// No elements, this storage's dtype.
    pub(crate) fn empty_like(&self) -> CpuStorage {
        match self {
            CpuStorage::F32(_) => CpuStorage::F32(Vec::new()),
            CpuStorage::I64(_) => CpuStorage::I64(Vec::new()),
            CpuStorage::Bool(_) => CpuStorage::Bool(Vec::new()),
            CpuStorage::I8(_) => CpuStorage::I8(Vec::new()),
            CpuStorage::BF16(_) => CpuStorage::BF16(Vec::new()),
        }
    }
}

/// A float kernel's f32 result as storage of `like`'s dtype: rounded to
/// bf16 for a bf16 operand (the buffer goes back to the pool), as it is
/// otherwise.
fn float_like(like: &CpuStorage, values: Vec<f32>) -> CpuStorage {
    match like {
        CpuStorage::BF16(_) => {
            let rounded =
                strided::map(&values, &Layout::contiguous(&[values.len()]), cast::to_bf16);
            pool::give(values);
            CpuStorage::BF16(rounded)
        }
        _ => CpuStorage::F32(values),
    }
}

fn with_i64<R>((s, l): View<CpuStorage>, op: &str, f: impl FnOnce(&[i64]) -> R) -> R {
    with_elements(s.i64(op), l, f)
}

fn with_bool<R>((s, l): View<CpuStorage>, op: &str, f: impl FnOnce(&[bool]) -> R) -> R {
    with_elements(s.bool(op), l, f)
}

/// Decoding attention over keys and values read where they lie in the
/// cache, when their rows are contiguous; `None` otherwise.
fn decode_in_place<T: attention_decode::CacheElement>(
    shape: &attention::AttentionShape,
    q: &[f32],
    (k, kl): (&[T], &Layout),
    (v, vl): (&[T], &Layout),
) -> Option<(Vec<f32>, Vec<f32>)> {
    let k = attention_decode::HeadRows::new(k, kl)?;
    let v = attention_decode::HeadRows::new(v, vl)?;
    Some(attention_decode::forward(shape, q, &k, &v))
}

/// Key padding flags, row-major, for `f`.
fn with_padding<R>(padding: Option<View<CpuStorage>>, f: impl FnOnce(Option<&[bool]>) -> R) -> R {
    match padding {
        Some(view) => with_bool(view, "scaled_dot_product_attention", |p| f(Some(p))),
        None => f(None),
    }
}

fn attention_shape<'a>(
    params: &AttentionParams,
    key_padding: Option<&'a [bool]>,
) -> attention::AttentionShape<'a> {
    attention::AttentionShape {
        params: *params,
        key_padding,
    }
}

/// `a` where `c` is true, `b` elsewhere, over three layouts of `shape`.
fn choose<T: strided::Element>(
    shape: &[usize],
    c: &[bool],
    [lc, la, lb]: [&Layout; 3],
    a: &[T],
    b: &[T],
) -> Vec<T> {
    let mut out = T::output(lc.numel());
    strided::fill_chunks(&mut out, |start, chunk| {
        strided::for_each_offsets(
            shape,
            [lc, la, lb],
            start,
            chunk.len(),
            |k, [oc, oa, ob]| {
                chunk[k] = if c[oc] { a[oa] } else { b[ob] };
            },
        )
    });
    out
}

fn last_dim(layout: &Layout) -> usize {
    layout.shape().last().copied().unwrap_or(1)
}

impl BackendStorage for CpuStorage {
    fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::Bool(_) => DType::Bool,
            CpuStorage::I8(_) => DType::I8,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    fn elements(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::Bool(v) => v.len(),
            CpuStorage::I8(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    fn contiguous_copy(&self, layout: &Layout) -> Self {
        match self {
            CpuStorage::F32(v) => CpuStorage::F32(strided::contiguous_copy(v, layout)),
            CpuStorage::I64(v) => CpuStorage::I64(strided::contiguous_copy(v, layout)),
            CpuStorage::Bool(v) => CpuStorage::Bool(strided::contiguous_copy(v, layout)),
            CpuStorage::I8(v) => CpuStorage::I8(strided::contiguous_copy(v, layout)),
            CpuStorage::BF16(v) => CpuStorage::BF16(strided::contiguous_copy(v, layout)),
        }
    }

    fn copy_from(&mut self, dst_layout: &Layout, (src, src_layout): View<Self>, op: &str) {
        match (self, src) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (CpuStorage::I64(d), CpuStorage::I64(s)) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (CpuStorage::Bool(d), CpuStorage::Bool(s)) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (CpuStorage::I8(d), CpuStorage::I8(s)) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (CpuStorage::BF16(d), CpuStorage::BF16(s)) => {
                strided::copy_into(d, dst_layout, s, src_layout)
            }
            (d, s) => panic!("{op}: dtype mismatch, {:?} and {:?}", d.dtype(), s.dtype()),
        }
    }

    fn add_from(&mut self, dst_layout: &Layout, (src, src_layout): View<Self>) -> bool {
        match (self, src) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                strided::add_into(d, dst_layout, s, src_layout);
                true
            }
            (CpuStorage::BF16(d), CpuStorage::BF16(s)) => {
                strided::add_into(d, dst_layout, s, src_layout);
                true
            }
            _ => false,
        }
    }

    fn zeros_like(&self, len: usize) -> Self {
        match self {
            CpuStorage::F32(_) => CpuStorage::F32(pool::take_zeroed(len)),
            CpuStorage::I64(_) => CpuStorage::I64(vec![0; len]),
            CpuStorage::Bool(_) => CpuStorage::Bool(vec![false; len]),
            CpuStorage::I8(_) => CpuStorage::I8(vec![0; len]),
            CpuStorage::BF16(_) => CpuStorage::BF16(vec![bf16::ZERO; len]),
        }
    }

    fn full_like(&self, len: usize, value: f32) -> Self {
        CpuStorage::filled(len, value)
    }

    fn dropout_mask(&self, len: usize, p: f32, key: u64) -> Self {
        CpuStorage::F32(random::dropout_mask(len, p, key))
    }

    fn to_host(&self, layout: &Layout) -> CpuStorage {
        self.contiguous_copy(layout)
    }

    fn to_dtype(&self, layout: &Layout, dtype: DType) -> Self {
        use strided::map;
        match (self, dtype) {
            (CpuStorage::F32(v), DType::I64) => CpuStorage::I64(map(v, layout, |x| x as i64)),
            (CpuStorage::F32(v), DType::Bool) => CpuStorage::Bool(map(v, layout, |x| x != 0.0)),
            (CpuStorage::I64(v), DType::F32) => CpuStorage::F32(map(v, layout, |x| x as f32)),
            (CpuStorage::I64(v), DType::Bool) => CpuStorage::Bool(map(v, layout, |x| x != 0)),
            (CpuStorage::Bool(v), DType::F32) => {
                CpuStorage::F32(map(v, layout, |x| if x { 1.0 } else { 0.0 }))
            }
            (CpuStorage::Bool(v), DType::I64) => CpuStorage::I64(map(v, layout, i64::from)),
            (CpuStorage::I8(v), DType::F32) => CpuStorage::F32(map(v, layout, f32::from)),
            (CpuStorage::I8(v), DType::I64) => CpuStorage::I64(map(v, layout, i64::from)),
            (CpuStorage::I8(v), DType::Bool) => CpuStorage::Bool(map(v, layout, |x| x != 0)),
            // Rounded and saturated to -128..=127 (NaN to 0), as `as` casts.
            (CpuStorage::F32(v), DType::I8) => CpuStorage::I8(map(v, layout, |x| x.round() as i8)),
            (CpuStorage::I64(v), DType::I8) => {
                CpuStorage::I8(map(v, layout, |x| x.clamp(-128, 127) as i8))
            }
            (CpuStorage::Bool(v), DType::I8) => CpuStorage::I8(map(v, layout, i8::from)),
            // bf16: through f32, exactly as f32 casts, rounding to nearest
            // (ties to even) on the way in.
            (CpuStorage::F32(v), DType::BF16) => CpuStorage::BF16(map(v, layout, cast::to_bf16)),
            (CpuStorage::BF16(v), DType::F32) => CpuStorage::F32(map(v, layout, cast::to_f32)),
            (CpuStorage::BF16(v), to) if to != DType::BF16 => {
                CpuStorage::F32(map(v, layout, cast::to_f32))
                    .to_dtype(&Layout::contiguous(layout.shape()), to)
            }
            (from, DType::BF16) if from.dtype() != DType::BF16 => {
                let whole = Layout::contiguous(layout.shape());
                from.to_dtype(layout, DType::F32)
                    .to_dtype(&whole, DType::BF16)
            }
            (same, _) => same.contiguous_copy(layout),
        }
    }

    fn unary(&self, layout: &Layout, op: UnaryOp) -> Self {
        if let CpuStorage::BF16(x) = self {
            return CpuStorage::BF16(elementwise::forward(x, layout, op));
        }
        CpuStorage::F32(elementwise::forward(self.f32(op.name()), layout, op))
    }

    fn unary_backward(&self, layout: &Layout, x: View<Self>, y: View<Self>, op: UnaryOp) -> Self {
        let layouts = [layout, x.1, y.1];
        if let (CpuStorage::BF16(g), CpuStorage::BF16(x), CpuStorage::BF16(y)) = (self, x.0, y.0) {
            return CpuStorage::BF16(elementwise::backward([g, x, y], layouts, op));
        }
        let name = op.name();
        let data = [self.f32(name), x.0.f32(name), y.0.f32(name)];
        CpuStorage::F32(elementwise::backward(data, layouts, op))
    }

    fn binary(&self, layout: &Layout, (rhs, rl): View<Self>, op: BinaryOp) -> Self {
        if let (CpuStorage::BF16(a), CpuStorage::BF16(b)) = (self, rhs) {
            return CpuStorage::BF16(elementwise::binary(a, layout, b, rl, op));
        }
        // An f32 operand with a bf16 one: the bf16 one widened into a
        // temporary buffer, the result f32.
        let name = op.name();
        let out = match (self, rhs) {
            (CpuStorage::BF16(_), CpuStorage::F32(b)) => with_f32((self, layout), name, |a| {
                elementwise::binary(a, &Layout::contiguous(layout.shape()), b, rl, op)
            }),
            (CpuStorage::F32(a), CpuStorage::BF16(_)) => with_f32((rhs, rl), name, |b| {
                elementwise::binary(a, layout, b, &Layout::contiguous(rl.shape()), op)
            }),
            _ => elementwise::binary(self.f32(name), layout, rhs.f32(name), rl, op),
        };
        CpuStorage::F32(out)
    }

    fn compare(&self, layout: &Layout, (rhs, rl): View<Self>, op: CmpOp) -> Self {
        if let (CpuStorage::BF16(a), CpuStorage::BF16(b)) = (self, rhs) {
            return CpuStorage::Bool(elementwise::compare(a, layout, b, rl, op));
        }
        let (a, b) = (self.f32(op.name()), rhs.f32(op.name()));
        CpuStorage::Bool(elementwise::compare(a, layout, b, rl, op))
    }

    fn where_cond(&self, layout: &Layout, on_true: View<Self>, on_false: View<Self>) -> Self {
        let op = "where_cond";
        let c = self.bool(op);
        let (la, lb) = (on_true.1, on_false.1);
        match (on_true.0, on_false.0) {
            (CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
                CpuStorage::BF16(choose(layout.shape(), c, [layout, la, lb], a, b))
            }
            (a, b) => CpuStorage::F32(choose(
                layout.shape(),
                c,
                [layout, la, lb],
                a.f32(op),
                b.f32(op),
            )),
        }
    }

    fn sum_axis(&self, layout: &Layout, axis: Axis) -> Self {
        float_like(
            self,
            with_f32((self, layout), "sum", |x| {
                reduce::sum_axis(x, axis.outer, axis.n, axis.inner)
            }),
        )
    }

    fn max_axis(&self, layout: &Layout, axis: Axis) -> (Self, Self) {
        let (values, argmax) = with_f32((self, layout), "max", |x| {
            reduce::max_axis(x, axis.outer, axis.n, axis.inner)
        });
        let argmax = argmax.into_iter().map(|i| i as i64).collect();
        (float_like(self, values), CpuStorage::I64(argmax))
    }

    fn max_axis_backward(&self, layout: &Layout, argmax: &Self, axis: Axis) -> Self {
        let argmax = argmax.i64("max backward");
        let g = with_f32((self, layout), "max backward", |g| {
            index::max_backward(g, argmax, axis.outer, axis.n, axis.inner)
        });
        float_like(self, g)
    }

    fn sum_of_squares(&self, layout: &Layout) -> Self {
        let total = with_f32((self, layout), "squared_norm", reduce::sum_of_squares);
        CpuStorage::F32(vec![total as f32])
    }

    fn cumsum(&self, layout: &Layout, axis: Axis, reverse: bool) -> Self {
        let sums = with_f32((self, layout), "cumsum", |x| {
            reduce::cumsum_axis(x, axis.outer, axis.n, axis.inner, reverse)
        });
        float_like(self, sums)
    }

    fn topk_indices(&self, layout: &Layout, axis: Axis, k: usize) -> Self {
        CpuStorage::I64(with_f32((self, layout), "topk", |x| {
            index::topk_indices(x, axis.outer, axis.n, axis.inner, k)
        }))
    }

    fn gather_dim(&self, layout: &Layout, dim: usize, (index, il): View<Self>) -> Self {
        let (x, index) = (self.f32("gather"), index.i64("gather"));
        CpuStorage::F32(index::gather_dim(x, layout, dim, index, il))
    }

    fn scatter_add_dim(
        &self,
        layout: &Layout,
        dim: usize,
        (index, il): View<Self>,
        shape: &[usize],
    ) -> Self {
        let op = "gather backward";
        let (g, index) = (self.f32(op), index.i64(op));
        CpuStorage::F32(index::scatter_add_dim(g, layout, dim, index, il, shape))
    }

    fn softmax(&self, layout: &Layout, n: usize, log: bool) -> Self {
        let op = if log { "log_softmax" } else { "softmax" };
        let y = with_f32((self, layout), op, |rows| {
            reduce::softmax_rows(rows, n, log)
        });
        float_like(self, y)
    }

    fn causal_softmax(&self, layout: &Layout, queries: usize, offset: usize, scale: f32) -> Self {
        let keys = last_dim(layout);
        let y = with_f32((self, layout), "causal_softmax", |x| {
            reduce::causal_softmax_rows(x, queries, keys, offset, scale)
        });
        float_like(self, y)
    }

    fn softmax_backward(&self, layout: &Layout, g: View<Self>, scale: f32) -> Self {
        let op = "causal_softmax backward";
        let n = last_dim(layout);
        let dx = with_f32((self, layout), op, |y| {
            with_f32(g, op, |g| reduce::softmax_rows_backward(y, g, n, scale))
        });
        float_like(g.0, dx)
    }

    fn layer_norm(
        &self,
        layout: &Layout,
        d: usize,
        weight: Option<View<Self>>,
        bias: Option<View<Self>>,
        eps: f32,
    ) -> (Self, Self) {
        let op = "layer_norm";
        // The rows in their own dtype (bf16 widened in registers); the
        // weight and bias, one row each, widened; the statistics f32.
        with_optional_f32(weight, op, |w| {
            with_optional_f32(bias, op, |b| match self {
                CpuStorage::BF16(x) => {
                    let (y, stats) =
                        with_elements(x, layout, |x| norm::layer_norm_forward(x, d, w, b, eps));
                    (CpuStorage::BF16(y), CpuStorage::F32(stats))
                }
                _ => {
                    let (y, stats) = with_elements(self.f32(op), layout, |x| {
                        norm::layer_norm_forward(x, d, w, b, eps)
                    });
                    (CpuStorage::F32(y), CpuStorage::F32(stats))
                }
            })
        })
    }

    fn layer_norm_backward(
        &self,
        layout: &Layout,
        g: View<Self>,
        d: usize,
        weight: Option<View<Self>>,
        stats: &Self,
    ) -> (Self, Self, Self) {
        let op = "layer_norm backward";
        let stats = stats.f32(op);
        let ((gs, gl), param) = (g, weight.map_or(self, |(w, _)| w));
        let (dx, dw, db) = with_optional_f32(weight, op, |w| match (self, gs) {
            (CpuStorage::BF16(x), CpuStorage::BF16(g)) => {
                let (dx, dw, db) = with_elements(g, gl, |g| {
                    with_elements(x, layout, |x| norm::layer_norm_backward(x, g, d, w, stats))
                });
                (CpuStorage::BF16(dx), dw, db)
            }
            _ => {
                let (dx, dw, db) = with_f32(g, op, |g| {
                    with_f32((self, layout), op, |x| {
                        norm::layer_norm_backward(x, g, d, w, stats)
                    })
                });
                (float_like(self, dx), dw, db)
            }
        });
        // The weight and bias gradients in the weight's dtype.
        (dx, float_like(param, dw), float_like(param, db))
    }

    fn cross_entropy(
        &self,
        layout: &Layout,
        targets: View<Self>,
        classes: usize,
        ignore_index: Option<i64>,
    ) -> CrossEntropyForward<Self> {
        let op = "cross_entropy";
        let (loss, log_probs, count) = with_i64(targets, op, |t| {
            with_f32((self, layout), op, |x| {
                loss::cross_entropy(x, classes, t, ignore_index)
            })
        });
        CrossEntropyForward {
            loss: CpuStorage::F32(vec![loss]),
            log_probs: CpuStorage::F32(log_probs),
            count: CpuStorage::I64(vec![count as i64]),
        }
    }

    fn cross_entropy_backward(
        &self,
        targets: View<Self>,
        (g, gl): View<Self>,
        classes: usize,
        ignore_index: Option<i64>,
        count: &Self,
    ) -> Self {
        let op = "cross_entropy backward";
        let scale = g.f32(op)[gl.offset()] / count.i64(op)[0] as f32;
        CpuStorage::F32(with_i64(targets, op, |t| {
            loss::cross_entropy_backward(self.f32(op), classes, t, ignore_index, scale)
        }))
    }

    fn embedding(&self, layout: &Layout, ids: View<Self>) -> Self {
        let (op, d) = ("embedding", last_dim(layout));
        with_i64(ids, op, |ids| match self {
            CpuStorage::BF16(w) => {
                CpuStorage::BF16(with_elements(w, layout, |w| index::embedding(w, d, ids)))
            }
            _ => CpuStorage::F32(with_elements(self.f32(op), layout, |w| {
                index::embedding(w, d, ids)
            })),
        })
    }

    fn embedding_backward(&self, layout: &Layout, ids: View<Self>, vocab: usize) -> Self {
        let (op, d) = ("embedding backward", last_dim(layout));
        let dw = with_i64(ids, op, |ids| {
            with_f32((self, layout), op, |g| {
                index::embedding_backward(g, d, ids, vocab)
            })
        });
        float_like(self, dw)
    }

    fn matmul(&self, layout: &Layout, (rhs, rl): View<Self>, batch_shape: &[usize]) -> Self {
        if let (CpuStorage::BF16(a), CpuStorage::BF16(b)) = (self, rhs) {
            return CpuStorage::BF16(matmul::matmul_bf16(a, layout, b, rl, batch_shape));
        }
        let (a, b) = (self.f32("matmul"), rhs.f32("matmul"));
        CpuStorage::F32(matmul::matmul(a, layout, b, rl, batch_shape))
    }

    fn addmm(&self, layout: &Layout, (a, la): View<Self>, (b, lb): View<Self>) -> Self {
        let op = "addmm";
        if let (CpuStorage::BF16(a), CpuStorage::BF16(b)) = (a, b) {
            let bias = strided::contiguous_copy(self.bf16(op), layout);
            return CpuStorage::BF16(matmul::addmm_bf16(&bias, a, la, b, lb));
        }
        let (a, b) = (a.f32(op), b.f32(op));
        CpuStorage::F32(with_f32((self, layout), op, |bias| {
            matmul::addmm(bias, a, la, b, lb)
        }))
    }

    fn grouped_matmul(
        &self,
        layout: &Layout,
        (w, lw): View<Self>,
        offsets: View<Self>,
        bias: Option<View<Self>>,
    ) -> Self {
        let op = "grouped_matmul";
        let (rows, w) = (self.f32(op), w.f32(op));
        CpuStorage::F32(with_i64(offsets, op, |offsets| match bias {
            Some(bias) => with_f32(bias, op, |b| {
                matmul::grouped(rows, layout, w, lw, offsets, Some(b))
            }),
            None => matmul::grouped(rows, layout, w, lw, offsets, None),
        }))
    }

    fn grouped_matmul_backward(
        &self,
        layout: &Layout,
        (rows, lr): View<Self>,
        (w, lw): View<Self>,
        offsets: View<Self>,
    ) -> (Self, Self, Self) {
        let op = "grouped_matmul_backward";
        let (g, rows, w) = (self.f32(op), rows.f32(op), w.f32(op));
        let (d_rows, d_w, d_b) = with_i64(offsets, op, |offsets| {
            matmul::grouped_backward((g, layout), (rows, lr), (w, lw), offsets)
        });
        (
            CpuStorage::F32(d_rows),
            CpuStorage::F32(d_w),
            CpuStorage::F32(d_b),
        )
    }

    fn attention(
        &self,
        layout: &Layout,
        k: View<Self>,
        v: View<Self>,
        key_padding: Option<View<Self>>,
        params: &AttentionParams,
    ) -> (Self, Self) {
        let op = "scaled_dot_product_attention";
        let (out, lse) = with_padding(key_padding, |padding| {
            let shape = attention_shape(params, padding);
            // Decoding: a few queries read the cache's keys and values in place.
            let ((ks, kl), (vs, vl)) = (k, v);
            if params.tq <= attention_decode::MAX_QUERIES {
                let decode = |q: &[f32]| match (ks, vs) {
                    (CpuStorage::F32(ks), CpuStorage::F32(vs)) => {
                        decode_in_place(&shape, q, (ks, kl), (vs, vl))
                    }
                    (CpuStorage::BF16(ks), CpuStorage::BF16(vs)) => {
                        decode_in_place(&shape, q, (ks, kl), (vs, vl))
                    }
                    _ => None,
                };
                if let Some(out) = with_f32((self, layout), op, decode) {
                    return out;
                }
            }
            if let (CpuStorage::BF16(q), CpuStorage::BF16(k), CpuStorage::BF16(v)) = (self, ks, vs)
            {
                // Read as bf16 (a head widened at a time inside the kernel).
                return with_elements(q, layout, |q| {
                    with_elements(k, kl, |k| {
                        with_elements(v, vl, |v| attention::forward(&shape, q, k, v))
                    })
                });
            }
            with_f32((self, layout), op, |q| {
                with_f32(k, op, |k| {
                    with_f32(v, op, |v| attention::forward(&shape, q, k, v))
                })
            })
        });
        // The log-sum-exp (softmax statistics) stays f32.
        (float_like(self, out), CpuStorage::F32(lse))
    }

    fn attention_backward(
        &self,
        layout: &Layout,
        k: View<Self>,
        v: View<Self>,
        out: View<Self>,
        lse: &Self,
        g: View<Self>,
        key_padding: Option<View<Self>>,
        params: &AttentionParams,
    ) -> (Self, Self, Self) {
        let op = "scaled_dot_product_attention backward";
        let lse = lse.f32(op);
        let (dq, dk, dv) = with_padding(key_padding, |padding| {
            let shape = attention_shape(params, padding);
            let bf16s = (self, k.0, v.0, out.0, g.0);
            if let (
                CpuStorage::BF16(q),
                CpuStorage::BF16(ks),
                CpuStorage::BF16(vs),
                CpuStorage::BF16(os),
                CpuStorage::BF16(gs),
            ) = bf16s
            {
                // Read as bf16 (a head widened at a time inside the kernel).
                return with_elements(q, layout, |q| {
                    with_elements(ks, k.1, |k| {
                        with_elements(vs, v.1, |v| {
                            with_elements(os, out.1, |o| {
                                with_elements(gs, g.1, |g| {
                                    attention::backward(&shape, q, k, v, o, lse, g)
                                })
                            })
                        })
                    })
                });
            }
            with_f32((self, layout), op, |q| {
                with_f32(k, op, |k| {
                    with_f32(v, op, |v| {
                        with_f32(out, op, |o| {
                            with_f32(g, op, |g| attention::backward(&shape, q, k, v, o, lse, g))
                        })
                    })
                })
            })
        });
        (
            float_like(self, dq),
            float_like(self, dk),
            float_like(self, dv),
        )
    }

    fn adam_update(
        &mut self,
        grad: View<Self>,
        m: &mut Self,
        v: &mut Self,
        step: AdamStep,
        grad_scale: Option<&Self>,
    ) {
        let op = "adam_update";
        let scale = grad_scale.map_or(1.0, |s| s.f32(op)[0]);
        if scale.is_nan() {
            return;
        }
        let (m, v) = (m.f32_mut(op), v.f32_mut(op));
        let w = self.f32_mut(op);
        with_f32(grad, op, |g| optim::adam_update(w, g, m, v, step, scale))
    }

    fn quantize_rows_int8(&self, layout: &Layout) -> (Self, Self) {
        let (rows, cols) = (layout.shape()[0], last_dim(layout));
        let (q, s) = with_f32((self, layout), "quantize_rows_int8", |w| {
            quantized::quantize_rows(w, rows, cols)
        });
        (CpuStorage::I8(q), CpuStorage::F32(s))
    }

    fn matmul_int8(&self, layout: &Layout, (q, ql): View<Self>, scales: View<Self>) -> Self {
        let op = "matmul_int8";
        let (m, k, n) = (layout.shape()[0], last_dim(layout), ql.shape()[0]);
        let CpuStorage::I8(qv) = q else {
            panic!("{op}: expected int8 weights, got {:?}", q.dtype())
        };
        CpuStorage::F32(with_f32((self, layout), op, |x| {
            with_elements(qv, ql, |q| {
                with_f32(scales, op, |s| quantized::matmul_t(x, m, k, q, s, n))
            })
        }))
    }
}

/// `f` with the row-major f32 elements of an optional view.
fn with_optional_f32<R>(
    view: Option<View<CpuStorage>>,
    op: &str,
    f: impl FnOnce(Option<&[f32]>) -> R,
) -> R {
    match view {
        Some(view) => with_f32(view, op, |x| f(Some(x))),
        None => f(None),
    }
}
