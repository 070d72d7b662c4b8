//! Small matrix products for the tiles of fused kernels, on the calling
//! thread and without allocating.
//!
//! The fused attention multiplies 64 x 64 tiles by 64 x d ones several times
//! per tile pair. The `gemm` crate allocates on every call (a bookkeeping
//! vector always, packing buffers often), which put about a hundred thousand
//! allocations into each gpt-mini training step. This kernel reads its
//! operands in place where their layout allows, packs the rest into
//! per-thread buffers, and accumulates a register tile of outputs sized for
//! the CPU's vector registers (8 x 32 or 6 x 64 with AVX-512, 6 x 16 with
//! AVX2) at the widest vectors it has.

use std::cell::RefCell;

use super::gemm::MatRef;
use super::simd::{self, LANES, Level, multiversion};

/// Output rows of the register tile (the most; wide outputs take 6).
const MR: usize = 8;
/// Depth packed at a time.
const KC: usize = 64;
/// Output columns packed at a time (a multiple of every tile's width).
const NC: usize = 64;

/// `c = alpha · a @ b + beta · c` for one `m x k` by `k x n` product, `c`
/// contiguous `m x n`. Any sizes and strides work; it is fastest when `m`
/// and `n` are near 64 and `k` is at most `KC`·a few.
#[allow(clippy::too_many_arguments)]
pub fn tile_gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
) {
    let tile = RegisterTile::for_cpu(n);
    tile_gemm_with(tile, m, k, n, alpha, a, b, beta, c);
}

/// The shape of the block of outputs kept in vector registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegisterTile {
    /// 8 x 32: AVX-512, outputs at most 32 wide.
    Rows8Cols32,
    /// 6 x 64: AVX-512, wider outputs. It loads 10 operands per 24 FMAs
    /// where 8 x 32 loads 10 per 16 (d = 64 attention 9% faster on an
    /// Intel Xeon), but on a 32-wide output it would compute half its
    /// columns for nothing.
    Rows6Cols64,
    /// 6 x 16: below AVX-512. The two tiles above need 32 vector
    /// registers; AVX2 has 16, and there they spilled accumulators on every
    /// step (20-40 GFLOP/s a core on a Zen 2 EPYC, against the gemm crate's
    /// 56-76). 12 accumulators, two operand vectors and a broadcast: the
    /// classic AVX2 sgemm kernel.
    Rows6Cols16,
}

impl RegisterTile {
    /// The tile for an output `n` wide on the running CPU.
    fn for_cpu(n: usize) -> Self {
        match simd::level() {
            Level::Avx512 if n > 2 * LANES => Self::Rows6Cols64,
            Level::Avx512 => Self::Rows8Cols32,
            Level::Avx2 | Level::Baseline => Self::Rows6Cols16,
        }
    }
}

/// [`tile_gemm`] on a given register tile (every tile gives the same bits:
/// each output is one sum over the depth, in order).
#[allow(clippy::too_many_arguments)]
fn tile_gemm_with(
    tile: RegisterTile,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
) {
    assert!(
        a.extent(m, k) <= a.data.len() && b.extent(k, n) <= b.data.len(),
        "tile_gemm: operands of {m}x{k} and {k}x{n} run past their storage"
    );
    assert!(
        c.len() >= m * n,
        "tile_gemm: output holds {} < {m}x{n}",
        c.len()
    );
    let c = &mut c[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 && beta == 0.0 {
        c.fill(0.0);
    }
    if beta != 0.0 && beta != 1.0 {
        c.iter_mut().for_each(|x| *x *= beta);
    }
    if k > 0 {
        // With beta = 0 the first depth panel writes c instead of adding to
        // it (c may hold anything, NaN included).
        PACKS
            .with_borrow_mut(|packs| accumulate(tile, m, k, n, alpha, a, b, beta == 0.0, c, packs));
    }
}

/// Packing buffers, one pair per thread: 18 KB that a local array would
/// zero on every call (that memset cost more than the products of a tile
/// of the 10-token attention in examples/seq2seq).
struct Packs {
    a: [f32; KC * MR],
    b: [f32; KC * NC],
}

thread_local! {
    static PACKS: RefCell<Packs> = const {
        RefCell::new(Packs {
            a: [0.0; KC * MR],
            b: [0.0; KC * NC],
        })
    };
}

multiversion! {
/// `c += alpha · a @ b` (with `overwrite`, `c = alpha · a @ b`), at the
/// widest vectors the CPU has.
#[allow(clippy::too_many_arguments)]
fn accumulate(
    tile: RegisterTile,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    overwrite: bool,
    c: &mut [f32],
    packs: &mut Packs,
) {
    match tile {
        RegisterTile::Rows8Cols32 => products::<MR, 2>(m, k, n, alpha, a, b, overwrite, c, packs),
        RegisterTile::Rows6Cols64 => products::<6, 4>(m, k, n, alpha, a, b, overwrite, c, packs),
        RegisterTile::Rows6Cols16 => products::<6, 1>(m, k, n, alpha, a, b, overwrite, c, packs),
    }
}
}

/// [`accumulate`] with a register tile of `R` rows and `V` lane groups
/// (`V·LANES` columns; blocks narrower than that use fewer lane groups).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn products<const R: usize, const V: usize>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    overwrite: bool,
    c: &mut [f32],
    packs: &mut Packs,
) {
    let w = V * LANES;
    // Operands are read where they lie: a at any strides (its elements are
    // broadcast one by one), b where its rows are contiguous. Packing costs
    // a copy per element, as much as the products of a 64-wide tile.
    // (Rows closer than a block's width apart would overlap: those are
    // copied.)
    let b_in_place = b.col_stride == 1 && (b.row_stride >= w || k == 1);
    let Packs {
        a: packed_a,
        b: packed_b,
    } = packs;
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            pack_b(b, p0, kc, j0, nc, w, b_in_place, packed_b);
            for i0 in (0..m).step_by(R) {
                let mr = R.min(m - i0);
                // Element (r, p) of the tile's a rows is
                // a_src[a_at + r * a_row + p * a_col].
                // The rows the register tile reads: a partial tile of 4
                // rows reads them in place, other partial tiles are packed
                // into R rows.
                let (a_src, a_at, a_row, a_col, rows_read) = if mr == R || (mr == 4 && R > 4) {
                    let at = a.offset + i0 * a.row_stride + p0 * a.col_stride;
                    (a.data, at, a.row_stride, a.col_stride, mr)
                } else {
                    pack_a::<R>(a, i0, mr, p0, kc, packed_a);
                    (&packed_a[..], 0, 1, R, R)
                };
                assert!(a_at + (rows_read - 1) * a_row + (kc - 1) * a_col < a_src.len());
                for jr in (0..nc).step_by(w) {
                    let nr = w.min(nc - jr);
                    // Row p of the tile's b columns is b_src[b_at + p * b_row..][..w].
                    let (b_src, b_at, b_row) = if b_in_place && nr == w {
                        let at = b.offset + p0 * b.row_stride + j0 + jr;
                        (b.data, at, b.row_stride)
                    } else {
                        (&packed_b[..], jr * KC, w)
                    };
                    assert!(b_at + (kc - 1) * b_row + w <= b_src.len());
                    let a_ptr = a_src.as_ptr().wrapping_add(a_at);
                    let b_ptr = b_src.as_ptr().wrapping_add(b_at);
                    let c = &mut c[i0 * n + j0 + jr..];
                    let write = overwrite && p0 == 0;
                    // SAFETY (each call): the two asserts above bound the
                    // last element the kernel reads of each operand (a
                    // narrower tile reads less of b); every other index is
                    // smaller.
                    if rows_read == 4 && R > 4 {
                        // The last rows of 64 = 10 x 6 + 4, in place: packing
                        // them into a full tile cost more than a full tile.
                        let t = unsafe {
                            if nr <= LANES {
                                register_tile::<4, 1>(kc, a_ptr, a_row, a_col, b_ptr, b_row)
                                    .map(|row| [row[0]; V])
                            } else {
                                register_tile::<4, V>(kc, a_ptr, a_row, a_col, b_ptr, b_row)
                            }
                        };
                        store(&t, mr, nr, alpha, write, c, n);
                    } else if nr <= LANES {
                        // Heads of 16, tiles of 10 tokens: one lane group.
                        let t =
                            unsafe { register_tile::<R, 1>(kc, a_ptr, a_row, a_col, b_ptr, b_row) };
                        store(&t, mr, nr, alpha, write, c, n);
                    } else if nr <= 2 * LANES {
                        let t =
                            unsafe { register_tile::<R, 2>(kc, a_ptr, a_row, a_col, b_ptr, b_row) };
                        store(&t, mr, nr, alpha, write, c, n);
                    } else {
                        let t =
                            unsafe { register_tile::<R, V>(kc, a_ptr, a_row, a_col, b_ptr, b_row) };
                        store(&t, mr, nr, alpha, write, c, n);
                    }
                }
            }
        }
    }
}

/// Writes (`write`) or adds `alpha` times the first `mr x nr` products of a
/// register tile into `c`, whose rows are `n` apart.
#[inline(always)]
fn store<const R: usize, const V: usize>(
    tile: &[[[f32; LANES]; V]; R],
    mr: usize,
    nr: usize,
    alpha: f32,
    write: bool,
    c: &mut [f32],
    n: usize,
) {
    if mr == R && nr == V * LANES && c.len() >= (R - 1) * n + nr {
        // A whole tile: loops of constant length, unrolled, so the
        // accumulators go from registers to c (a loop over `nr` spilled
        // them to the stack and back, which cost a tenth of a 64 x 32 x 64
        // product).
        for (r, acc) in tile.iter().enumerate() {
            let row: &mut [f32] = &mut c[r * n..r * n + V * LANES];
            for (x, &t) in row.iter_mut().zip(acc.as_flattened()) {
                *x = if write { alpha * t } else { *x + alpha * t };
            }
        }
        return;
    }
    for (acc, row) in tile.iter().take(mr).zip(c.chunks_mut(n)) {
        let (acc, row) = (&acc.as_flattened()[..nr], &mut row[..nr]);
        if write {
            for (x, &t) in row.iter_mut().zip(acc) {
                *x = alpha * t;
            }
        } else {
            for (x, &t) in row.iter_mut().zip(acc) {
                *x += alpha * t;
            }
        }
    }
}

/// The `R x V·LANES` products summed over depth `0..kc` of a tile whose
/// `a` element (r, p) is at `a + r * a_row + p * a_col` and whose `b` row p
/// is the `V·LANES` elements from `b + p * b_row`.
///
/// # Safety
/// Every element named above, for `r < R` and `p < kc`, must be readable.
#[inline(always)]
unsafe fn register_tile<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    a_row: usize,
    a_col: usize,
    b: *const f32,
    b_row: usize,
) -> [[[f32; LANES]; V]; R] {
    let mut acc = [[[0.0f32; LANES]; V]; R];
    for p in 0..kc {
        // SAFETY: row p of b is readable (the caller's contract).
        let b_p = unsafe {
            b.add(p * b_row)
                .cast::<[[f32; LANES]; V]>()
                .read_unaligned()
        };
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: element (r, p) of a is readable (the caller's contract).
            let a_rp = unsafe { *a.add(r * a_row + p * a_col) };
            for (acc_v, b_v) in acc_row.iter_mut().zip(&b_p) {
                for (x, &b) in acc_v.iter_mut().zip(b_v) {
                    // An explicit FMA: one instruction at AVX2 and wider,
                    // and the same bits at every width.
                    *x = a_rp.mul_add(b, *x);
                }
            }
        }
    }
    acc
}

/// Copies `b[p0..p0 + kc, j0..j0 + nc]` into column blocks of `w`
/// (`packed[block][p][j]`), zero beyond column `nc` so that the register
/// tile may read whole blocks. With `in_place_full_blocks`, full blocks are
/// read from `b` itself and only a partial last block is copied.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pack_b(
    b: MatRef,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    w: usize,
    in_place_full_blocks: bool,
    packed: &mut [f32; KC * NC],
) {
    for (jb, block) in packed.chunks_exact_mut(KC * w).enumerate() {
        let jr = jb * w;
        if jr >= nc {
            break;
        }
        let nr = w.min(nc - jr);
        if in_place_full_blocks && nr == w {
            continue;
        }
        for (p, dst) in block.chunks_exact_mut(w).take(kc).enumerate() {
            let start = b.offset + (p0 + p) * b.row_stride + (j0 + jr) * b.col_stride;
            if b.col_stride == 1 {
                dst[..nr].copy_from_slice(&b.data[start..start + nr]);
            } else {
                for (j, x) in dst[..nr].iter_mut().enumerate() {
                    *x = b.data[start + j * b.col_stride];
                }
            }
            dst[nr..].fill(0.0);
        }
    }
}

/// Copies `a[i0..i0 + mr, p0..p0 + kc]` as `[p][r]` (`R` rows), repeating
/// the last row when `mr < R` (those products are computed and not stored).
#[inline(always)]
fn pack_a<const R: usize>(
    a: MatRef,
    i0: usize,
    mr: usize,
    p0: usize,
    kc: usize,
    packed: &mut [f32; KC * MR],
) {
    for r in 0..R {
        let row = a.offset + (i0 + r.min(mr - 1)) * a.row_stride + p0 * a.col_stride;
        for (p, dst) in packed.chunks_exact_mut(R).take(kc).enumerate() {
            dst[r] = a.data[row + p * a.col_stride];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element `(i, j)` of a strided operand.
    fn at(x: MatRef, i: usize, j: usize) -> f32 {
        x.data[x.offset + i * x.row_stride + j * x.col_stride]
    }

    /// Deterministic values in [-1, 1) that no two positions share.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    const EVERY_TILE: [RegisterTile; 3] = [
        RegisterTile::Rows8Cols32,
        RegisterTile::Rows6Cols64,
        RegisterTile::Rows6Cols16,
    ];

    /// Every size class (under, at and over the register tile, the packed
    /// depth and the packed width), both layouts of both operands, and the
    /// three kinds of beta, against a sum in f64; on every register tile,
    /// whichever one this CPU would pick.
    #[test]
    fn matches_a_reference_sum_for_every_size_layout_and_beta() {
        for tile in EVERY_TILE {
            matches_a_reference_sum_on(tile);
        }
    }

    fn matches_a_reference_sum_on(tile: RegisterTile) {
        let sizes = [1, 3, 4, 5, 17, 32, 33, 64, 65, 130];
        for (case, (&m, &k, &n)) in sizes
            .iter()
            .flat_map(|m| {
                sizes.iter().flat_map(move |k| {
                    [1usize, 16, 17, 31, 32, 33, 48, 64, 80, 97]
                        .iter()
                        .map(move |n| (m, k, n))
                })
            })
            .step_by(3)
            .enumerate()
        {
            let a_data = values(m * k + 7, case as u32);
            let b_data = values(k * n + 5, case as u32 + 1);
            let a_t = case % 2 == 0;
            let b_t = case % 4 < 2;
            let a = MatRef {
                data: &a_data,
                offset: 7,
                row_stride: if a_t { 1 } else { k },
                col_stride: if a_t { m } else { 1 },
            };
            let b = MatRef {
                data: &b_data,
                offset: 5,
                row_stride: if b_t { 1 } else { n },
                col_stride: if b_t { k } else { 1 },
            };
            let (alpha, beta) = [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)][case % 3];
            let c0 = values(m * n, case as u32 + 2);
            // With beta = 0, c is not read: NaN there must not show.
            let mut c = if beta == 0.0 {
                vec![f32::NAN; m * n]
            } else {
                c0.clone()
            };
            tile_gemm_with(tile, m, k, n, alpha, a, b, beta, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|p| at(a, i, p) as f64 * at(b, p, j) as f64)
                        .sum();
                    let before = if beta == 0.0 {
                        0.0
                    } else {
                        c0[i * n + j] as f64
                    };
                    let want = alpha as f64 * dot + beta as f64 * before;
                    let got = c[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + k as f64),
                        "{tile:?} {m}x{k}x{n} (a_t {a_t}, b_t {b_t}) at ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Each output is one in-order sum over the depth whatever the tile, so
    /// a CPU's choice of tile never changes a result's bits.
    #[test]
    fn every_register_tile_gives_the_same_bits() {
        let (m, k, n) = (70, 130, 97);
        let a_data = values(m * k, 1);
        let b_data = values(k * n, 2);
        let rows = |data, row_stride| MatRef {
            data,
            offset: 0,
            row_stride,
            col_stride: 1,
        };
        let results: Vec<Vec<f32>> = EVERY_TILE
            .iter()
            .map(|&tile| {
                let mut c = values(m * n, 3);
                let (a, b) = (rows(&a_data, k), rows(&b_data, n));
                tile_gemm_with(tile, m, k, n, 0.5, a, b, 1.0, &mut c);
                c
            })
            .collect();
        for (tile, c) in EVERY_TILE.iter().zip(&results) {
            assert!(
                c.iter()
                    .zip(&results[0])
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{tile:?} differs from {:?}",
                EVERY_TILE[0]
            );
        }
    }

    #[test]
    fn leaves_elements_past_the_output_alone() {
        let (a, b) = (vec![1.0f32; 6], vec![2.0f32; 6]);
        let rows = |data, row_stride| MatRef {
            data,
            offset: 0,
            row_stride,
            col_stride: 1,
        };
        let mut c = vec![9.0f32; 5];
        tile_gemm(2, 3, 2, 1.0, rows(&a, 3), rows(&b, 2), 0.0, &mut c);
        assert_eq!(c, [6.0, 6.0, 6.0, 6.0, 9.0]);
    }

    #[test]
    #[should_panic(expected = "tile_gemm: operands")]
    fn rejects_operands_past_their_storage() {
        let data = vec![0.0f32; 8];
        let rows = MatRef {
            data: &data,
            offset: 0,
            row_stride: 3,
            col_stride: 1,
        };
        tile_gemm(3, 3, 3, 1.0, rows, rows, 0.0, &mut [0.0; 9]);
    }
}
