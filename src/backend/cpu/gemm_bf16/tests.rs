//! The bf16 product against f64 sums of the same bf16 inputs, on every
//! path the CPU has.

use half::bf16;

use super::{Path, batched_matmul_on};
use crate::backend::cpu::gemm::MatRef;

/// Deterministic values uniform in [-2, 2), rounded to bf16.
fn values(len: usize, seed: u64) -> Vec<bf16> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            bf16::from_f32((unit - 0.5) * 4.0)
        })
        .collect()
}

/// `a[m x k] @ b[k x n]` in f64 from strided views, and the sum of the
/// products' magnitudes (the scale of the f32 rounding bound).
fn reference(
    (m, k, n): (usize, usize, usize),
    a: &MatRef<bf16>,
    b: &MatRef<bf16>,
) -> (Vec<f64>, Vec<f64>) {
    let at = |x: &MatRef<bf16>, i: usize, j: usize| {
        x.data[x.offset + i * x.row_stride + j * x.col_stride].to_f64()
    };
    let mut exact = vec![0.0; m * n];
    let mut magnitude = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let prod = at(a, i, p) * at(b, p, j);
                exact[i * n + j] += prod;
                magnitude[i * n + j] += prod.abs();
            }
        }
    }
    (exact, magnitude)
}

/// A row-major `rows x cols` view, or with `transposed` the transpose of a
/// row-major `cols x rows` matrix.
fn view(data: &[bf16], rows: usize, cols: usize, transposed: bool) -> MatRef<'_, bf16> {
    let (row_stride, col_stride) = if transposed { (1, rows) } else { (cols, 1) };
    MatRef {
        data,
        offset: 0,
        row_stride,
        col_stride,
    }
}

#[test]
fn every_path_is_within_the_f32_accumulation_bound_of_the_exact_product() {
    // Products of bf16 are exact in f32; each of the k additions rounds by
    // at most half an ulp of the running sum, so |error| <= k·2^-24·Σ|a·b|
    // (the standard bound for recursive summation, to first order).
    let shapes = [
        (1, 1, 1),
        (5, 3, 7),
        (12, 2, 32),
        (13, 33, 31),
        (50, 97, 70),
        (200, 400, 65),
        (37, 1000, 17),
    ];
    for path in Path::available_paths() {
        for (m, k, n) in shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (a, b) = (values(m * k, 1 + m as u64), values(k * n, 2 + n as u64));
                let (a, b) = (view(&a, m, k, ta), view(&b, k, n, tb));
                let (exact, magnitude) = reference((m, k, n), &a, &b);
                let mut out = vec![f32::NAN; m * n];
                batched_matmul_on(path, m, k, n, a, &[0], b, &[0], &mut out, false);
                let bound = k as f64 * 2f64.powi(-24);
                for (idx, ((&got, &want), &mag)) in
                    out.iter().zip(&exact).zip(&magnitude).enumerate()
                {
                    assert!(
                        (got as f64 - want).abs() <= bound * mag + 1e-30,
                        "{path:?} {m}x{k}x{n} (transposed {ta}, {tb}) output {idx}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// Values spread over several octaves (none subnormal), rounded to bf16.
fn spread(len: usize, seed: u64) -> Vec<bf16> {
    values(len, seed)
        .into_iter()
        .enumerate()
        .map(|(i, x)| bf16::from_f32(x.to_f32() * 2f32.powi((i % 9) as i32 - 4)))
        .collect()
}

#[test]
fn every_path_gives_the_same_bits() {
    // All paths round once per product, odd depth first; with no
    // subnormals about, they agree to the bit (the fastest path is the
    // reference, the others the fallbacks CI's CPUs may take).
    let paths = Path::available_paths();
    for (m, k, n) in [(7, 9, 70), (64, 128, 64), (33, 301, 129)] {
        let (a, b) = (spread(m * k, 3), spread(k * n, 4));
        let (a, b) = (view(&a, m, k, false), view(&b, k, n, true));
        let results: Vec<Vec<f32>> = paths
            .iter()
            .map(|&path| {
                let mut out = vec![0.5; m * n];
                batched_matmul_on(path, m, k, n, a, &[0], b, &[0], &mut out, true);
                out
            })
            .collect();
        for (path, out) in paths.iter().zip(&results) {
            let same = out
                .iter()
                .zip(&results[0])
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{path:?} differs from {:?} at {m}x{k}x{n}", paths[0]);
        }
    }
}

#[test]
fn accumulate_starts_each_sum_from_the_output_and_batches_use_their_offsets() {
    // Two products in one call, the second operand shared (offset 0 for
    // both), added onto a bias already in the output: each output is the
    // bias plus its own dot product, within the summation bound.
    let (m, k, n) = (19, 45, 37);
    let a = values(2 * m * k, 5);
    let b = values(k * n, 6);
    let (va, vb) = (view(&a, m, k, false), view(&b, k, n, false));
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 3.0).collect();
    for path in Path::available_paths() {
        let mut out: Vec<f32> = (0..2 * m).flat_map(|_| bias.iter().copied()).collect();
        batched_matmul_on(path, m, k, n, va, &[0, m * k], vb, &[0, 0], &mut out, true);
        for batch in 0..2 {
            let a_b = MatRef {
                offset: batch * m * k,
                ..va
            };
            let (exact, magnitude) = reference((m, k, n), &a_b, &vb);
            for i in 0..m * n {
                let want = exact[i] + bias[i % n] as f64;
                let got = out[batch * m * n + i] as f64;
                let bound =
                    (k + 1) as f64 * 2f64.powi(-24) * (magnitude[i] + bias[i % n].abs() as f64);
                assert!(
                    (got - want).abs() <= bound,
                    "{path:?} batch {batch} output {i}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn the_bits_do_not_depend_on_how_the_work_is_split() {
    // The same product on one thread and on the pool, with more rows and
    // columns than one block: the threads change nothing.
    let (m, k, n) = (300, 700, 200);
    let (a, b) = (values(m * k, 7), values(k * n, 8));
    let (a, b) = (view(&a, m, k, false), view(&b, k, n, false));
    let path = Path::chosen();
    let mut alone = vec![0.0; m * n];
    crate::backend::cpu::on_one_thread(|| {
        batched_matmul_on(path, m, k, n, a, &[0], b, &[0], &mut alone, false)
    });
    let mut pooled = vec![0.0; m * n];
    crate::backend::cpu::in_pool(|| {
        batched_matmul_on(path, m, k, n, a, &[0], b, &[0], &mut pooled, false)
    });
    assert!(
        alone
            .iter()
            .zip(&pooled)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
}

#[test]
fn empty_products_leave_or_zero_the_output() {
    let none: Vec<bf16> = Vec::new();
    let v = view(&none, 3, 0, false);
    let w = view(&none, 0, 2, false);
    let mut out = vec![7.0; 6];
    batched_matmul_on(Path::chosen(), 3, 0, 2, v, &[0], w, &[0], &mut out, true);
    assert_eq!(out, [7.0; 6]);
    batched_matmul_on(Path::chosen(), 3, 0, 2, v, &[0], w, &[0], &mut out, false);
    assert_eq!(out, [0.0; 6]);
}
