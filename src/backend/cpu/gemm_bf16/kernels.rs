//! Register tiles: `R x V·LANES` outputs kept in vector registers while a
//! panel of A and a panel of B ([`super::pack`]) are multiplied into them.
//!
//! Every kernel adds, output by output, the products of each pair of
//! depths odd first, one rounding per product (a product of two bf16 is
//! exact in f32): what `vdpbf16ps` computes, so every path gives the same
//! bits but where `vdpbf16ps` flushes subnormals to zero.
//!
//! A kernel's contract (the `# Safety` of each): every word of A that
//! [`ARows`] names for `R` rows and the kernel's steps is readable; the B
//! panel holds those steps of `V·LANES` columns (asserted); `c` points at
//! `R` rows of `V·LANES` readable and writable f32s, `ldc` apart; the CPU
//! has the kernel's instructions.

use crate::backend::cpu::simd::LANES;

/// Where a kernel reads A: the word (4 bytes, any alignment) of row `r`
/// and step `s` is at `ptr + r·row + s·step` bytes. A packed panel has
/// `row` 4 and `step` 4·R; a row-major bf16 A read in place, whose pairs
/// of depths are already words, has `row` twice its row stride and
/// `step` 4.
#[derive(Clone, Copy, Debug)]
pub struct ARows {
    pub ptr: *const u8,
    pub row: usize,
    pub step: usize,
}

impl ARows {
    /// A packed panel of `rows` rows.
    pub fn packed(panel: &[f32], rows: usize) -> ARows {
        ARows {
            ptr: panel.as_ptr().cast(),
            row: 4,
            step: 4 * rows,
        }
    }

    /// The bits of word `(r, s)`.
    ///
    /// # Safety
    /// The word is readable.
    #[inline(always)]
    unsafe fn word(self, r: usize, s: usize) -> u32 {
        // SAFETY: the caller's.
        unsafe {
            self.ptr
                .add(r * self.row + s * self.step)
                .cast::<u32>()
                .read_unaligned()
        }
    }
}

/// `R` rows of `V` lane groups: a register tile's outputs.
pub type Tile<const R: usize, const V: usize> = [[[f32; LANES]; V]; R];

/// `c = (start_from_c ? c : 0) + A·B` over `pairs` pairs of depths, on
/// `vdpbf16ps` (panels of [`Pairs`](super::pack::Pairs)).
///
/// # Safety
/// See the [module docs](self); the CPU has AVX512F and AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn dot_bf16<const R: usize, const V: usize>(
    pairs: usize,
    a: ARows,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    start_from_c: bool,
) {
    use std::arch::x86_64::*;
    assert!(b.len() >= pairs * V * LANES);
    let b = b.as_ptr();
    // SAFETY: the assert above keeps every B word read in bounds, the
    // contract A's words and `c`'s rows; `__m512i` and `__m512bh` are the
    // same 64 bytes.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if start_from_c {
            for (r, acc_row) in acc.iter_mut().enumerate() {
                for (v, x) in acc_row.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(c.add(r * ldc + v * LANES));
                }
            }
        }
        for p in 0..pairs {
            let mut b_p = [_mm512_setzero_si512(); V];
            for (v, b_v) in b_p.iter_mut().enumerate() {
                *b_v = _mm512_loadu_si512(b.add((p * V + v) * LANES).cast());
            }
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let word = a.word(r, p) as i32;
                let a_rp: __m512bh = std::mem::transmute(_mm512_set1_epi32(word));
                for (x, &b_v) in acc_row.iter_mut().zip(&b_p) {
                    *x = _mm512_dpbf16_ps(*x, a_rp, std::mem::transmute::<__m512i, __m512bh>(b_v));
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            for (v, &x) in acc_row.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc + v * LANES), x);
            }
        }
    }
}

/// `c = (start_from_c ? c : 0) + A·B` over `pairs` pairs of depths of
/// [`Widened`](super::pack::Widened) panels: one multiply-add per depth,
/// odd depth first, at the width of the caller. The product of two bf16
/// is exact in f32, so a multiply then an add rounds once, as an FMA does:
/// `FUSED` only picks the faster instruction (`mul_add` is a slow library
/// call without FMA hardware).
///
/// # Safety
/// See the [module docs](self).
#[inline(always)]
pub unsafe fn widened<const R: usize, const V: usize, const FUSED: bool>(
    pairs: usize,
    a: ARows,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    start_from_c: bool,
) {
    let b = &b[..2 * pairs * V * LANES];
    let mut acc: Tile<R, V> = [[[0.0; LANES]; V]; R];
    if start_from_c {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: row r of the tile at `c` is readable (the contract).
            *acc_row = unsafe { c.add(r * ldc).cast::<[[f32; LANES]; V]>().read_unaligned() };
        }
    }
    for (s, b_s) in b.chunks_exact(V * LANES).enumerate() {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: word (r, s) of A is readable (the contract).
            let a_rs = f32::from_bits(unsafe { a.word(r, s) });
            for (acc_v, b_v) in acc_row.iter_mut().zip(b_s.chunks_exact(LANES)) {
                for (x, &b) in acc_v.iter_mut().zip(b_v) {
                    *x = if FUSED {
                        a_rs.mul_add(b, *x)
                    } else {
                        *x + a_rs * b
                    };
                }
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        // SAFETY: row r of the tile at `c` is writable (the contract).
        unsafe {
            c.add(r * ldc)
                .cast::<[[f32; LANES]; V]>()
                .write_unaligned(*acc_row)
        };
    }
}

/// [`widened`] on AVX-512F intrinsics. (The portable loop, compiled for
/// AVX-512, came out as gathers and scatters of a tile kept in memory.)
///
/// # Safety
/// See the [module docs](self); the CPU has AVX512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn widened_avx512<const R: usize, const V: usize>(
    pairs: usize,
    a: ARows,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    start_from_c: bool,
) {
    use std::arch::x86_64::*;
    assert!(b.len() >= 2 * pairs * V * LANES);
    let b = b.as_ptr();
    // SAFETY: the assert keeps every B word read in bounds, the contract
    // A's words and `c`'s rows.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if start_from_c {
            for (r, acc_row) in acc.iter_mut().enumerate() {
                for (v, x) in acc_row.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(c.add(r * ldc + v * LANES));
                }
            }
        }
        for s in 0..2 * pairs {
            let mut b_s = [_mm512_setzero_ps(); V];
            for (v, b_v) in b_s.iter_mut().enumerate() {
                *b_v = _mm512_loadu_ps(b.add((s * V + v) * LANES));
            }
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let a_rs = _mm512_set1_ps(f32::from_bits(a.word(r, s)));
                for (x, &b_v) in acc_row.iter_mut().zip(&b_s) {
                    *x = _mm512_fmadd_ps(a_rs, b_v, *x);
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            for (v, &x) in acc_row.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc + v * LANES), x);
            }
        }
    }
}

/// [`widened`] compiled for AVX2 with FMA.
///
/// # Safety
/// See the [module docs](self); the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn widened_avx2<const R: usize, const V: usize>(
    pairs: usize,
    a: ARows,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    start_from_c: bool,
) {
    // SAFETY: the same contract.
    unsafe { widened::<R, V, true>(pairs, a, b, c, ldc, start_from_c) }
}

/// [`widened`] in the build's baseline code.
///
/// # Safety
/// See the [module docs](self).
pub unsafe fn widened_baseline<const R: usize, const V: usize>(
    pairs: usize,
    a: ARows,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    start_from_c: bool,
) {
    // SAFETY: the same contract.
    unsafe { widened::<R, V, false>(pairs, a, b, c, ldc, start_from_c) }
}
