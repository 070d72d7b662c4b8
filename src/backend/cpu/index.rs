//! Kernels that move elements by index: embedding rows gathered by id and
//! their gradient scattered back, gathers along any dimension and their
//! scatter-add, a maximum's gradient routed to its argmax, and the
//! indices of the largest elements.

use std::cmp::Ordering;

use super::{pool, strided};
use crate::layout::Layout;

/// The rows of the row-major `[vocab, d]` table `w` that `ids` name, one
/// after another, in the table's element type. Panics for an id outside
/// `0..vocab`.
pub fn embedding<T: pool::Pooled>(w: &[T], d: usize, ids: &[i64]) -> Vec<T> {
    let vocab = w.len().checked_div(d).unwrap_or(0);
    let mut out = pool::take(ids.len() * d);
    for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(d.max(1))) {
        assert!(
            (0..vocab as i64).contains(&id),
            "embedding: id {id} is out of range for a table of {vocab} rows"
        );
        dst.copy_from_slice(&w[id as usize * d..(id as usize + 1) * d]);
    }
    out
}

/// The gradient of [`embedding`]: each row of `g` added into row `ids[i]`
/// of `vocab x d` zeros.
pub fn embedding_backward(g: &[f32], d: usize, ids: &[i64], vocab: usize) -> Vec<f32> {
    let mut dw = pool::take_zeroed(vocab * d);
    for (&id, row) in ids.iter().zip(g.chunks_exact(d.max(1))) {
        let dst = &mut dw[id as usize * d..(id as usize + 1) * d];
        dst.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
    }
    dw
}

/// The gradient of a maximum over the middle of `[outer, n, inner]`: `g`
/// (`[outer, inner]`) placed at each `argmax`, zeros elsewhere.
pub fn max_backward(g: &[f32], argmax: &[i64], outer: usize, n: usize, inner: usize) -> Vec<f32> {
    let mut dx = pool::take_zeroed(outer * n * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = o * inner + i;
            dx[(o * n + argmax[at] as usize) * inner + i] = g[at];
        }
    }
    dx
}

/// `out[p] = x[p with p[dim] = index[p]]` for every position `p` of
/// `index_layout`'s shape, row-major; `x_layout` views `x`. Panics for an
/// index outside `x`'s dimension `dim`.
pub fn gather_dim(
    x: &[f32],
    x_layout: &Layout,
    dim: usize,
    index: &[i64],
    index_layout: &Layout,
) -> Vec<f32> {
    let shape = index_layout.shape();
    let (size, stride) = (x_layout.shape()[dim], x_layout.strides()[dim]);
    // `x` walked in the index's shape with `dim` held at 0; each index
    // then moves along it.
    let base = along_dim_at_zero(shape, x_layout.strides(), x_layout.offset(), dim);
    let mut out = pool::take(index_layout.numel());
    strided::for_each_offsets(shape, [index_layout, &base], 0, out.len(), |k, [oi, ox]| {
        let i = index[oi];
        assert!(
            (0..size as i64).contains(&i),
            "gather: index {i} is out of range for dimension {dim} of size {size}"
        );
        out[k] = x[ox + i as usize * stride];
    });
    out
}

/// The gradient of [`gather_dim`]: each element of `g` (in the index's
/// shape) added at its index into row-major zeros of `shape`.
pub fn scatter_add_dim(
    g: &[f32],
    g_layout: &Layout,
    dim: usize,
    index: &[i64],
    index_layout: &Layout,
    shape: &[usize],
) -> Vec<f32> {
    let out_layout = Layout::contiguous(shape);
    let stride = out_layout.strides()[dim];
    let base = along_dim_at_zero(index_layout.shape(), out_layout.strides(), 0, dim);
    let mut out = pool::take_zeroed(out_layout.numel());
    let n = index_layout.numel();
    strided::for_each_offsets(
        index_layout.shape(),
        [g_layout, index_layout, &base],
        0,
        n,
        |_, [og, oi, oo]| out[oo + index[oi] as usize * stride] += g[og],
    );
    out
}

/// A layout of `shape` over strides `strides` (from another shape of the
/// same rank) with dimension `dim`'s stride 0.
fn along_dim_at_zero(shape: &[usize], strides: &[usize], offset: usize, dim: usize) -> Layout {
    let mut strides = strides.to_vec();
    strides[dim] = 0;
    Layout::new(shape.to_vec(), strides, offset)
}

/// The indices of the `k` largest of each row along the middle of row-major
/// `[outer, n, inner]` data, largest first, as `[outer, k, inner]`. NaN
/// counts as the largest (as PyTorch's `topk`); equal values keep the
/// lower index first.
pub fn topk_indices(x: &[f32], outer: usize, n: usize, inner: usize, k: usize) -> Vec<i64> {
    let mut out = vec![0i64; outer * k * inner];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| x[(o * n + j) * inner + i];
            order.clear();
            order.extend(0..n);
            // A stable sort: ties stay in index order.
            order.sort_by(|&a, &b| descending(at(a), at(b)));
            for (r, &j) in order[..k].iter().enumerate() {
                out[(o * k + r) * inner + i] = j as i64;
            }
        }
    }
    out
}

/// Larger first, NaN before everything.
fn descending(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => b.partial_cmp(&a).expect("neither is NaN"),
    }
}
