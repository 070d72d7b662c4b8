//! The simulated GPU's cuBLAS: `cublasSgemmStridedBatched` read exactly as
//! cuBLAS reads its arguments (column-major operands, transpose flags,
//! leading dimensions, batch strides, alpha and beta, `beta = 0` not
//! reading `C`), so that the backend's row-major-to-column-major mapping
//! is tested for real. The arithmetic is the gemm crate's, given the
//! strides the column-major reading implies.

use rayon::prelude::*;

use crate::backend::cuda::driver::Gemm;

/// An operand as a strided `rows x cols` matrix: element `(r, c)` at
/// `r · row_stride + c · col_stride` from the start of its batch.
#[derive(Clone, Copy)]
struct Operand {
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl Operand {
    /// `op(X)` of a column-major `X` with leading dimension `ld`: `X`
    /// itself is `rows x cols`, or `cols x rows` when transposed.
    fn column_major(rows: usize, cols: usize, ld: usize, transposed: bool) -> Operand {
        if transposed {
            Operand {
                rows,
                cols,
                row_stride: ld,
                col_stride: 1,
            }
        } else {
            Operand {
                rows,
                cols,
                row_stride: 1,
                col_stride: ld,
            }
        }
    }

    /// Elements from a batch's start to one past its last element.
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// Checks the arguments as cuBLAS does (`CUBLAS_STATUS_INVALID_VALUE`).
pub fn validate(g: &Gemm) -> Result<(), String> {
    let invalid = |what: String| {
        Err(format!(
            "cublasSgemmStridedBatched: CUBLAS_STATUS_INVALID_VALUE ({what})"
        ))
    };
    if g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0 {
        return invalid(format!(
            "m {}, n {}, k {}, batch {}",
            g.m, g.n, g.k, g.batch
        ));
    }
    let a_rows = if g.transa { g.k } else { g.m };
    let b_rows = if g.transb { g.n } else { g.k };
    if g.lda < a_rows.max(1) {
        return invalid(format!("lda {} < {}", g.lda, a_rows.max(1)));
    }
    if g.ldb < b_rows.max(1) {
        return invalid(format!("ldb {} < {}", g.ldb, b_rows.max(1)));
    }
    if g.ldc < g.m.max(1) {
        return invalid(format!("ldc {} < {}", g.ldc, g.m.max(1)));
    }
    Ok(())
}

/// The elements each operand spans over the whole batch: `(A, B, C)`.
pub fn extents(g: &Gemm) -> (usize, usize, usize) {
    let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
    let a = Operand::column_major(m, k, g.lda as usize, g.transa);
    let b = Operand::column_major(k, n, g.ldb as usize, g.transb);
    let c = Operand::column_major(m, n, g.ldc as usize, false);
    let last = g.batch.max(1) as usize - 1;
    let span = |o: Operand, stride: i64| {
        if o.extent() == 0 {
            0
        } else {
            last * stride.max(0) as usize + o.extent()
        }
    };
    (
        span(a, g.stride_a),
        span(b, g.stride_b),
        span(c, g.stride_c),
    )
}

/// Computes the call on memory the simulator owns.
///
/// # Safety
/// The operands' addresses must be valid for [`extents`] elements.
pub unsafe fn sgemm_strided_batched(g: &Gemm) -> Result<(), String> {
    validate(g)?;
    let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
    if m == 0 || n == 0 || g.batch == 0 {
        return Ok(());
    }
    let a = Operand::column_major(m, k, g.lda as usize, g.transa);
    let b = Operand::column_major(k, n, g.ldb as usize, g.transb);
    let c = Operand::column_major(m, n, g.ldc as usize, false);
    let (pa, pb, pc) = (g.a.0 as usize, g.b.0 as usize, g.c.0 as usize);
    let one = |i: usize, parallelism| {
        let at = |base: usize, stride: i64| base + i * stride as usize * 4;
        let (a_ptr, b_ptr, c_ptr) = (
            at(pa, g.stride_a) as *const f32,
            at(pb, g.stride_b) as *const f32,
            at(pc, g.stride_c) as *mut f32,
        );
        // SAFETY: within the extents the caller vouches for. The gemm
        // crate computes dst = alpha·dst + beta·lhs·rhs: cuBLAS's beta is
        // its alpha, and cuBLAS's alpha its beta.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c_ptr,
                c.col_stride as isize,
                c.row_stride as isize,
                g.beta != 0.0,
                a_ptr,
                a.col_stride as isize,
                a.row_stride as isize,
                b_ptr,
                b.col_stride as isize,
                b.row_stride as isize,
                g.beta,
                g.alpha,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    let batch = g.batch as usize;
    if batch == 1 {
        one(0, gemm::Parallelism::Rayon(0));
    } else {
        (0..batch)
            .into_par_iter()
            .for_each(|i| one(i, gemm::Parallelism::None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::driver::DevicePtr;

    /// A textbook column-major GEMM, element by element.
    #[allow(clippy::too_many_arguments)]
    fn naive(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
        for i in 0..g.batch as usize {
            for col in 0..g.n as usize {
                for row in 0..g.m as usize {
                    let mut acc = 0.0f64;
                    for l in 0..g.k as usize {
                        let av = if g.transa {
                            a[i * g.stride_a as usize + l + row * g.lda as usize]
                        } else {
                            a[i * g.stride_a as usize + row + l * g.lda as usize]
                        };
                        let bv = if g.transb {
                            b[i * g.stride_b as usize + col + l * g.ldb as usize]
                        } else {
                            b[i * g.stride_b as usize + l + col * g.ldb as usize]
                        };
                        acc += av as f64 * bv as f64;
                    }
                    let at = i * g.stride_c as usize + row + col * g.ldc as usize;
                    let old = if g.beta == 0.0 { 0.0 } else { g.beta * c[at] };
                    c[at] = g.alpha * acc as f32 + old;
                }
            }
        }
    }

    #[test]
    fn every_transpose_and_leading_dimension_matches_the_textbook_product() {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7 + seed * 13) % 23) as f32 - 11.0) / 8.0)
                .collect()
        };
        for (transa, transb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, n, k, batch) = (5, 3, 4, 2);
            let (lda, ldb, ldc) = (
                if transa { k } else { m } + 2,
                if transb { n } else { k } + 1,
                m + 3,
            );
            let a_len = lda as usize * if transa { m } else { k } as usize;
            let b_len = ldb as usize * if transb { k } else { n } as usize;
            let c_len = ldc as usize * n as usize;
            let (stride_a, stride_b, stride_c) = (a_len as i64 + 1, b_len as i64, c_len as i64 + 2);
            let a = values(stride_a as usize * batch, 1);
            let b = values(stride_b as usize * batch, 2);
            // C holds NaN where beta = 0 must not read it.
            for beta in [0.0f32, 0.5] {
                let fill = if beta == 0.0 { f32::NAN } else { 1.5 };
                let mut expected = vec![fill; stride_c as usize * batch];
                let mut got = expected.clone();
                let g = Gemm {
                    transa,
                    transb,
                    m,
                    n,
                    k,
                    alpha: 0.75,
                    a: DevicePtr(a.as_ptr() as u64),
                    lda,
                    stride_a,
                    b: DevicePtr(b.as_ptr() as u64),
                    ldb,
                    stride_b,
                    beta,
                    c: DevicePtr(got.as_mut_ptr() as u64),
                    ldc,
                    stride_c,
                    batch: batch as i32,
                };
                naive(&g, &a, &b, &mut expected);
                unsafe { sgemm_strided_batched(&g).unwrap() };
                for (i, (e, x)) in expected.iter().zip(&got).enumerate() {
                    let ok = (e.is_nan() && x.is_nan()) || (e - x).abs() <= 1e-5 * e.abs().max(1.0);
                    assert!(
                        ok,
                        "transa {transa} transb {transb} beta {beta}: [{i}] {x} != {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_leading_dimension_shorter_than_a_column_is_refused_as_cublas_refuses_it() {
        let g = Gemm {
            transa: false,
            transb: false,
            m: 4,
            n: 2,
            k: 3,
            alpha: 1.0,
            a: DevicePtr(0),
            lda: 3,
            stride_a: 0,
            b: DevicePtr(0),
            ldb: 3,
            stride_b: 0,
            beta: 0.0,
            c: DevicePtr(0),
            ldc: 4,
            stride_c: 0,
            batch: 1,
        };
        let message = unsafe { sgemm_strided_batched(&g) }.unwrap_err();
        assert!(
            message.contains("CUBLAS_STATUS_INVALID_VALUE (lda 3 < 4)"),
            "{message}"
        );
    }
}
