//! Matrix products: the `gemm` crate's kernels on strided operands, split
//! across rayon threads by batch and by row blocks.
//!
//! Operands are passed with their strides, so a transposed view (the usual
//! case in backward: `dA = dC @ Bᵀ`) needs no copy.

use rayon::prelude::*;

/// One matrix operand inside a storage slice: its element at `(i, j)` is
/// `data[offset + i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T = f32> {
    pub data: &'a [T],
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// Below this many multiply-adds (m·k·n, summed over the batch) a product runs
/// on one thread: splitting smaller work costs more than it saves.
const MIN_PARALLEL_MACS: usize = 1 << 18;

/// The longest inner dimension for which a product's rows come out the
/// same bits however they are split into blocks (the gemm crate takes k up
/// to 512 in one block; above, its k blocks depend on the block's rows).
const STABLE_SPLIT_MAX_K: usize = 512;

/// Rows of a row block are rounded to this, a multiple of the kernels'
/// register tile, so that no block ends in a partial tile but the last.
const ROW_ALIGN: usize = 16;

/// Columns of a column block are rounded to this (a cache line of f32s).
const COLUMN_ALIGN: usize = 16;

/// `out[b] = A[b] @ B[b]` for every batch `b`, where `A[b]` is `m x k` at
/// `a.offset + a_batch_offsets[b]` and `B[b]` is `k x n` likewise. `out` is
/// contiguous, `batch x m x n`. With `accumulate`, the product is added to
/// what `out` holds (a bias already written there) instead of replacing it.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef,
    a_batch_offsets: &[usize],
    b: MatRef,
    b_batch_offsets: &[usize],
    out: &mut [f32],
    accumulate: bool,
) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    let gemm = |m, k, n, a, b, c: &mut [f32]| gemm_scaled(m, k, n, 1.0, a, b, beta, c);
    let batch = a_batch_offsets.len();
    debug_assert_eq!(batch, b_batch_offsets.len());
    debug_assert_eq!(out.len(), batch * m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Rows split into blocks come out the same bits as whole only while
    // the gemm crate takes k in one block (up to 512); its blocking of a
    // longer k depends on the block's size. Threads lent by timing (see
    // `side_by_side`) must not change results, so they help short-k
    // products only.
    let threads = if k <= STABLE_SPLIT_MAX_K {
        super::kernel_threads_with_lent()
    } else {
        super::kernel_threads()
    };
    let macs = batch * m * k * n;
    if threads == 1 || macs < MIN_PARALLEL_MACS {
        for ((c, &ao), &bo) in out
            .chunks_mut(m * n)
            .zip(a_batch_offsets)
            .zip(b_batch_offsets)
        {
            gemm(m, k, n, a.at(ao), b.at(bo), c);
        }
        return;
    }
    // A single product too short to give every thread a row block (a
    // prompt's few rows against a wide weight) is split by columns.
    if batch == 1 && m.div_ceil(ROW_ALIGN) < threads && n >= threads * COLUMN_ALIGN {
        let cols = n.div_ceil(threads).next_multiple_of(COLUMN_ALIGN);
        let parts: Vec<Vec<f32>> = (0..n.div_ceil(cols))
            .into_par_iter()
            .map(|j| {
                let (first, width) = (j * cols, cols.min(n - j * cols));
                let mut part = super::pool::take(m * width);
                if accumulate {
                    for (dst, src) in part.chunks_exact_mut(width).zip(out.chunks_exact(n)) {
                        dst.copy_from_slice(&src[first..first + width]);
                    }
                }
                let b_cols = b.at(b_batch_offsets[0] + first * b.col_stride);
                gemm(m, k, width, a.at(a_batch_offsets[0]), b_cols, &mut part);
                part
            })
            .collect();
        for (j, part) in parts.into_iter().enumerate() {
            let (first, width) = (j * cols, cols.min(n - j * cols));
            for (dst, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(width)) {
                dst[first..first + width].copy_from_slice(src);
            }
            super::pool::give(part);
        }
        return;
    }
    // Enough tasks to occupy every thread: whole matrices when the batch is
    // large, otherwise row blocks of each matrix too.
    let blocks = threads.div_ceil(batch).min(m.div_ceil(ROW_ALIGN)).max(1);
    let rows_per_block = m.div_ceil(blocks).next_multiple_of(ROW_ALIGN).min(m);
    out.par_chunks_mut(m * n)
        .zip(a_batch_offsets.par_iter().zip(b_batch_offsets))
        .for_each(|(c, (&ao, &bo))| {
            if rows_per_block == m {
                gemm(m, k, n, a.at(ao), b.at(bo), c);
                return;
            }
            c.par_chunks_mut(rows_per_block * n)
                .enumerate()
                .for_each(|(i, c_rows)| {
                    let rows = c_rows.len() / n;
                    let a_rows = a.at(ao + i * rows_per_block * a.row_stride);
                    gemm(rows, k, n, a_rows, b.at(bo), c_rows);
                });
        });
}

impl<'a, T> MatRef<'a, T> {
    /// The same operand `extra` elements further into its storage.
    pub(super) fn at(self, extra: usize) -> MatRef<'a, T> {
        MatRef {
            offset: self.offset + extra,
            ..self
        }
    }

    /// The largest storage index this `rows x cols` operand touches, plus one.
    pub(super) fn extent(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return self.offset;
        }
        self.offset + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride + 1
    }
}

/// `c = alpha · a @ b + beta · c` for one `m x k` by `k x n` product, `c`
/// contiguous `m x n`, on the calling thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm_scaled(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
) {
    assert!(a.extent(m, k) <= a.data.len() && b.extent(k, n) <= b.data.len());
    assert!(c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        let c = &mut c[..m * n];
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|x| *x *= beta);
        }
        return;
    }
    // SAFETY: the asserts above keep every element the kernel reads inside
    // `a.data` and `b.data`, and every element it writes inside `c`
    // (row-major m x n). The gemm crate computes dst := alpha·dst +
    // beta·lhs·rhs with (column, row) strides, and reads dst only when asked.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.data.as_ptr().add(a.offset),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr().add(b.offset),
            b.col_stride as isize,
            b.row_stride as isize,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{MatRef, gemm_scaled};

    fn matrix(data: &[f32], cols: usize) -> MatRef<'_> {
        MatRef {
            data,
            offset: 0,
            row_stride: cols,
            col_stride: 1,
        }
    }

    #[test]
    fn rows_come_out_the_same_however_the_rows_are_split() {
        // A data-parallel shard lends idle threads to its products by
        // timing; the results must not depend on it: up to
        // STABLE_SPLIT_MAX_K, each row comes out the same bits in a block
        // as in the whole product.
        let max_k = super::STABLE_SPLIT_MAX_K;
        for (m, k, n) in [(100, 100, 70), (75, max_k, 33), (130, 384, 90), (40, 7, 20)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
                .collect();
            let mut whole = vec![0.0; m * n];
            gemm_scaled(m, k, n, 1.0, matrix(&a, k), matrix(&b, n), 0.0, &mut whole);
            for rows in [16, 32, 48] {
                let mut split = vec![0.0; m * n];
                for (i, c) in split.chunks_mut(rows * n).enumerate() {
                    let block = MatRef {
                        offset: i * rows * k,
                        ..matrix(&a, k)
                    };
                    gemm_scaled(c.len() / n, k, n, 1.0, block, matrix(&b, n), 0.0, c);
                }
                assert!(
                    whole
                        .iter()
                        .zip(&split)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} in blocks of {rows} rows differs"
                );
            }
        }
    }
}
