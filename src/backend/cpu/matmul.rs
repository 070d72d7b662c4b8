//! Matrix products of strided views: the batch offsets of each operand
//! (batch dimensions broadcast) handed to [`gemm::batched_matmul`], or for
//! bf16 operands to [`gemm_bf16::batched_matmul`].

use half::bf16;
use rayon::prelude::*;

use super::PARALLEL_THRESHOLD;
use super::gemm::{self, MatRef};
use super::{cast, gemm_bf16, gemv};
use super::{pool, reduce, strided};
use crate::layout::Layout;

/// The matrix over a layout's last two dimensions, at storage offset 0
/// (callers add each batch's offset).
fn matrix<'a, T>(data: &'a [T], layout: &Layout) -> MatRef<'a, T> {
    let r = layout.rank();
    MatRef {
        data,
        offset: 0,
        row_stride: layout.strides()[r - 2],
        col_stride: layout.strides()[r - 1],
    }
}

/// Storage offsets of each matrix of a batch, the batch broadcast to
/// `batch_shape`, the layout's own offset included.
fn batch_offsets(layout: &Layout, batch_shape: &[usize]) -> Vec<usize> {
    let r = layout.rank();
    let batch = Layout::new(
        layout.shape()[..r - 2].to_vec(),
        layout.strides()[..r - 2].to_vec(),
        layout.offset(),
    )
    .broadcast_to(batch_shape)
    .expect("batch shapes checked");
    let mut offsets = vec![0; batch.numel()];
    strided::for_each_offsets(batch.shape(), [&batch], 0, batch.numel(), |k, [o]| {
        offsets[k] = o
    });
    offsets
}

/// `a @ b` over the last two dimensions of each view, their leading
/// dimensions broadcast to `batch_shape`: `[batch.., m, n]`, row-major.
pub fn matmul(a: &[f32], la: &Layout, b: &[f32], lb: &Layout, batch_shape: &[usize]) -> Vec<f32> {
    let (ra, rb) = (la.rank(), lb.rank());
    let (m, k, n) = (la.shape()[ra - 2], la.shape()[ra - 1], lb.shape()[rb - 1]);
    let a_offsets = batch_offsets(la, batch_shape);
    let b_offsets = batch_offsets(lb, batch_shape);
    if let [ao] = a_offsets[..]
        && let Some(out) = few_rows(a, la, ao, b, lb, b_offsets[0], None)
    {
        return out;
    }
    // sgemm with beta = 0 writes every element without reading it.
    let mut out = pool::take(a_offsets.len() * m * n);
    gemm::batched_matmul(
        m,
        k,
        n,
        matrix(a, la),
        &a_offsets,
        matrix(b, lb),
        &b_offsets,
        &mut out,
        false,
    );
    out
}

/// `bias + a @ b` for a row-major bias `[n]` and matrices `a` `[m, k]`,
/// `b` `[k, n]`: the bias written into every row first and the product
/// accumulated onto it.
pub fn addmm(bias: &[f32], a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    let (m, k, n) = (la.shape()[0], la.shape()[1], lb.shape()[1]);
    if let Some(out) = few_rows(a, la, la.offset(), b, lb, lb.offset(), Some(bias)) {
        return out;
    }
    let mut out = pool::take(m * n);
    let fill = |row: &mut [f32]| row.copy_from_slice(bias);
    if out.len() < PARALLEL_THRESHOLD {
        out.chunks_exact_mut(n.max(1)).for_each(fill);
    } else {
        out.par_chunks_exact_mut(n.max(1)).for_each(fill);
    }
    gemm::batched_matmul(
        m,
        k,
        n,
        matrix(a, la),
        &[la.offset()],
        matrix(b, lb),
        &[lb.offset()],
        &mut out,
        true,
    );
    out
}

/// [`matmul`] of bf16 operands: f32 sums, rounded to bf16 once at the end.
pub fn matmul_bf16(
    a: &[bf16],
    la: &Layout,
    b: &[bf16],
    lb: &Layout,
    batch_shape: &[usize],
) -> Vec<bf16> {
    let (ra, rb) = (la.rank(), lb.rank());
    let (m, k, n) = (la.shape()[ra - 2], la.shape()[ra - 1], lb.shape()[rb - 1]);
    let a_offsets = batch_offsets(la, batch_shape);
    let b_offsets = batch_offsets(lb, batch_shape);
    if let [ao] = a_offsets[..]
        && let Some(out) = few_rows_bf16(a, la, ao, b, lb, b_offsets[0], None)
    {
        return out;
    }
    let mut sums = pool::take(a_offsets.len() * m * n);
    gemm_bf16::batched_matmul(
        m,
        k,
        n,
        matrix(a, la),
        &a_offsets,
        matrix(b, lb),
        &b_offsets,
        &mut sums,
        false,
    );
    rounded(sums)
}

/// [`addmm`] of bf16 operands: the bias widened into every row, the
/// product's f32 sums continued from it, the result rounded to bf16.
pub fn addmm_bf16(bias: &[bf16], a: &[bf16], la: &Layout, b: &[bf16], lb: &Layout) -> Vec<bf16> {
    let (m, k, n) = (la.shape()[0], la.shape()[1], lb.shape()[1]);
    if let Some(out) = few_rows_bf16(a, la, la.offset(), b, lb, lb.offset(), Some(bias)) {
        return out;
    }
    let mut sums = pool::take(m * n);
    for row in sums.chunks_exact_mut(n.max(1)) {
        for (x, &b) in row.iter_mut().zip(bias) {
            *x = cast::to_f32(b);
        }
    }
    gemm_bf16::batched_matmul(
        m,
        k,
        n,
        matrix(a, la),
        &[la.offset()],
        matrix(b, lb),
        &[lb.offset()],
        &mut sums,
        true,
    );
    rounded(sums)
}

/// f32 sums rounded to bf16 (the buffer goes back to the pool).
fn rounded(sums: Vec<f32>) -> Vec<bf16> {
    let out = strided::map(&sums, &Layout::contiguous(&[sums.len()]), cast::to_bf16);
    pool::give(sums);
    out
}

/// How the matrix-vector path ([`gemv`]) reads `a @ b` when it applies:
/// at most [`gemv::MAX_ROWS`] rows of `a` with contiguous rows (their
/// stride returned), and a large `b` that is the transpose of a matrix
/// stored by rows (a weight `[n, k]` viewed as `Wᵀ`; its row stride
/// returned); `None` otherwise.
fn few_rows_strides(la: &Layout, lb: &Layout) -> Option<(usize, usize)> {
    let (ra, rb) = (la.rank(), lb.rank());
    let (m, k, n) = (la.shape()[ra - 2], la.shape()[ra - 1], lb.shape()[rb - 1]);
    let (a_rows, a_cols) = (la.strides()[ra - 2], la.strides()[ra - 1]);
    let (b_rows, b_cols) = (lb.strides()[rb - 2], lb.strides()[rb - 1]);
    let applies = m <= gemv::MAX_ROWS
        && k * n >= gemv::MIN_WEIGHTS
        && (a_cols == 1 || k == 1)
        && (m <= 1 || a_rows >= k)
        && (b_rows == 1 || k == 1)
        && b_cols >= k;
    applies.then_some((if m <= 1 { k } else { a_rows }, b_cols))
}

/// `bias + a @ b` through the matrix-vector path when it applies (see
/// [`few_rows_strides`]; `a`'s matrix at `a_offset`, `b`'s at
/// `b_offset`); `None` otherwise.
fn few_rows(
    a: &[f32],
    la: &Layout,
    a_offset: usize,
    b: &[f32],
    lb: &Layout,
    b_offset: usize,
    bias: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let (x_stride, row_stride) = few_rows_strides(la, lb)?;
    let (m, k, n) = dims(la, lb);
    let weights = gemv::Rows {
        data: b,
        offset: b_offset,
        row_stride,
    };
    Some(gemv::matmul_t(
        &a[a_offset..],
        m,
        x_stride,
        k,
        weights,
        n,
        bias,
        None,
    ))
}

/// [`few_rows`] of bf16 operands: the few rows of `a` and the bias
/// widened to f32 (a decoding step's activations: a few kilobytes), the
/// weights streamed as bf16 and widened in registers, the f32 sums
/// rounded to bf16 once.
fn few_rows_bf16(
    a: &[bf16],
    la: &Layout,
    a_offset: usize,
    b: &[bf16],
    lb: &Layout,
    b_offset: usize,
    bias: Option<&[bf16]>,
) -> Option<Vec<bf16>> {
    let (x_stride, row_stride) = few_rows_strides(la, lb)?;
    let (m, k, n) = dims(la, lb);
    let mut x = pool::take(m * k);
    for (i, row) in x.chunks_exact_mut(k.max(1)).enumerate() {
        let from = &a[a_offset + i * x_stride..][..k];
        row.iter_mut()
            .zip(from)
            .for_each(|(x, &a)| *x = cast::to_f32(a));
    }
    let bias: Option<Vec<f32>> = bias.map(|b| b.iter().map(|&b| cast::to_f32(b)).collect());
    let weights = gemv::Rows {
        data: b,
        offset: b_offset,
        row_stride,
    };
    let sums = gemv::matmul_t(&x, m, k, k, weights, n, bias.as_deref(), None);
    pool::give(x);
    Some(rounded(sums))
}

/// `(m, k, n)` of `a @ b` over the last two dimensions.
fn dims(la: &Layout, lb: &Layout) -> (usize, usize, usize) {
    let (ra, rb) = (la.rank(), lb.rank());
    (la.shape()[ra - 2], la.shape()[ra - 1], lb.shape()[rb - 1])
}

/// Each group's rows, checked: `offsets` has a row per group and one more,
/// starts at 0, never decreases and ends at `rows`.
fn groups(offsets: &[i64], groups: usize, rows: usize, op: &str) -> Vec<std::ops::Range<usize>> {
    let valid = offsets.len() == groups + 1
        && offsets.first() == Some(&0)
        && offsets.last() == Some(&(rows as i64))
        && offsets.windows(2).all(|w| w[0] <= w[1]);
    assert!(
        valid,
        "{op}: offsets {offsets:?} do not split {rows} rows into {groups} groups in order"
    );
    offsets
        .windows(2)
        .map(|w| w[0] as usize..w[1] as usize)
        .collect()
}

/// Group `e`'s matrix, `weights[e]` (`[out, in]`), as a layout.
fn group_matrix(lw: &Layout, e: usize) -> Layout {
    let (s, shape) = (lw.strides(), lw.shape());
    Layout::new(
        vec![shape[1], shape[2]],
        vec![s[1], s[2]],
        lw.offset() + e * s[0],
    )
}

/// The grouped product (`grouped_matmul`): each group's rows `[count,
/// in]` times its matrix's transpose, plus its bias, `[rows, out]`
/// row-major. Each group is one [`addmm`] (or [`matmul`]), as a `Linear`
/// layer of that expert computes it, so the bits are that layer's.
pub fn grouped(
    rows: &[f32],
    lr: &Layout,
    w: &[f32],
    lw: &Layout,
    offsets: &[i64],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (n_rows, (n_groups, out_f)) = (lr.shape()[0], (lw.shape()[0], lw.shape()[1]));
    let mut out = pool::take(n_rows * out_f);
    for (e, range) in groups(offsets, n_groups, n_rows, "grouped_matmul")
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
    {
        let lx = lr.narrow(0, range.start, range.len());
        let lwt = group_matrix(lw, e).permute(&[1, 0]);
        let y = match bias {
            Some(b) => addmm(&b[e * out_f..(e + 1) * out_f], rows, &lx, w, &lwt),
            None => matmul(rows, &lx, w, &lwt, &[]),
        };
        out[range.start * out_f..range.end * out_f].copy_from_slice(&y);
        pool::give(y);
    }
    out
}

/// `(d_rows, d_weights, d_bias)` of [`grouped`] from the upstream gradient
/// `g`: for each group, `g @ W`, `gᵀ @ rows` and the column sums of `g`,
/// each the product or sum a `Linear` layer's backward makes (empty
/// groups: zeros).
pub fn grouped_backward(
    (g, lg): (&[f32], &Layout),
    (rows, lr): (&[f32], &Layout),
    (w, lw): (&[f32], &Layout),
    offsets: &[i64],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n_rows, in_f) = (lr.shape()[0], lr.shape()[1]);
    let (n_groups, out_f) = (lw.shape()[0], lw.shape()[1]);
    let mut d_rows = pool::take(n_rows * in_f);
    let mut d_w = pool::take_zeroed(n_groups * out_f * in_f);
    let mut d_b = vec![0.0; n_groups * out_f];
    let ranges = groups(offsets, n_groups, n_rows, "grouped_matmul_backward");
    for (e, range) in ranges
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
    {
        let (lge, lx) = (
            lg.narrow(0, range.start, range.len()),
            lr.narrow(0, range.start, range.len()),
        );
        let dx = matmul(g, &lge, w, &group_matrix(lw, e), &[]);
        d_rows[range.start * in_f..range.end * in_f].copy_from_slice(&dx);
        pool::give(dx);
        let dw = matmul(g, &lge.permute(&[1, 0]), rows, &lx, &[]);
        d_w[e * out_f * in_f..(e + 1) * out_f * in_f].copy_from_slice(&dw);
        pool::give(dw);
        let db = strided::with_elements(g, &lge, |ge| reduce::sum_axis(ge, 1, range.len(), out_f));
        d_b[e * out_f..(e + 1) * out_f].copy_from_slice(&db);
    }
    (d_rows, d_w, d_b)
}
