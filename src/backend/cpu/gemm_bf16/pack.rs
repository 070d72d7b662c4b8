//! Packing bf16 operands into the panels the register tiles read.
//!
//! Depth is taken in pairs `(2p, 2p + 1)`, the unit of `vdpbf16ps`. A
//! panel is a sequence of pair steps; a step holds [`Format::PER_PAIR`]
//! words (4 bytes, kept in `f32` slots) for each row (an A panel, `R`
//! rows) or column (a B panel, a tile's width):
//!
//! - [`Pairs`]: the two bf16 of a pair in one word, the even depth in the
//!   low half, as `vdpbf16ps` reads them.
//! - [`Widened`]: each bf16 widened to f32, the odd depth's row of words
//!   before the even one's: in that order, f32 FMAs round as `vdpbf16ps`
//!   does.
//!
//! Rows, columns and depth past the operand's end are zero.

use half::bf16;

use super::super::gemm::MatRef;

/// How a panel stores a pair of depths.
pub trait Format: Copy + Send + Sync + 'static {
    /// Words each row (A) or column (B) takes per pair of depths.
    const PER_PAIR: usize;

    /// Whether a pair of adjacent bf16 in memory is this format's word, so
    /// that a row-major A can be read in place.
    const ROW_PAIRS_ARE_WORDS: bool;

    /// Writes slot `slot` of a pair step `width` slots wide.
    fn put(step: &mut [f32], slot: usize, width: usize, even: u16, odd: u16);
}

/// One word per pair: the even depth's bits low, the odd depth's high.
#[derive(Clone, Copy, Debug)]
pub struct Pairs;

/// Two f32 words per pair, the odd depth first.
#[derive(Clone, Copy, Debug)]
pub struct Widened;

impl Format for Pairs {
    const PER_PAIR: usize = 1;
    const ROW_PAIRS_ARE_WORDS: bool = true;

    #[inline(always)]
    fn put(step: &mut [f32], slot: usize, _width: usize, even: u16, odd: u16) {
        step[slot] = f32::from_bits(even as u32 | (odd as u32) << 16);
    }
}

impl Format for Widened {
    const PER_PAIR: usize = 2;
    const ROW_PAIRS_ARE_WORDS: bool = false;

    #[inline(always)]
    fn put(step: &mut [f32], slot: usize, width: usize, even: u16, odd: u16) {
        step[slot] = f32::from_bits((odd as u32) << 16);
        step[width + slot] = f32::from_bits((even as u32) << 16);
    }
}

/// Element `(i, j)` of `m`, or zero past `rows x cols`.
#[inline(always)]
fn element(m: &MatRef<bf16>, i: usize, j: usize, (rows, cols): (usize, usize)) -> u16 {
    if i < rows && j < cols {
        m.data[m.offset + i * m.row_stride + j * m.col_stride].to_bits()
    } else {
        0
    }
}

/// Packs `panels` A panels of `R` rows from row `i0`, depths `p0..p0 +
/// 2·pairs`, of `a` (`rows x depth` in all), one after another.
#[allow(clippy::too_many_arguments)]
pub fn pack_a<F: Format, const R: usize>(
    a: &MatRef<bf16>,
    (rows, depth): (usize, usize),
    i0: usize,
    panels: usize,
    p0: usize,
    pairs: usize,
    out: &mut [f32],
) {
    let step = F::PER_PAIR * R;
    let panel_len = pairs * step;
    assert!(out.len() >= panels * panel_len, "pack_a: buffer too short");
    for (panel, out) in out.chunks_exact_mut(panel_len).take(panels).enumerate() {
        let first = i0 + panel * R;
        let whole = first + R <= rows;
        for (p, step) in out.chunks_exact_mut(step).enumerate() {
            let k = p0 + 2 * p;
            if whole && k + 1 < depth {
                // Both depths of the pair, for every row of the panel.
                let even = a.offset + first * a.row_stride + k * a.col_stride;
                let odd = even + a.col_stride;
                for r in 0..R {
                    let at = r * a.row_stride;
                    let (e, o) = (a.data[even + at], a.data[odd + at]);
                    F::put(step, r, R, e.to_bits(), o.to_bits());
                }
            } else {
                for r in 0..R {
                    let shape = (rows, depth);
                    let (e, o) = (
                        element(a, first + r, k, shape),
                        element(a, first + r, k + 1, shape),
                    );
                    F::put(step, r, R, e, o);
                }
            }
        }
    }
}

/// Packs the B panel of columns `j0..j0 + width` of `b` (`depth x
/// cols`), every pair of depths.
pub fn pack_b_panel<F: Format>(
    b: &MatRef<bf16>,
    (depth, cols): (usize, usize),
    j0: usize,
    width: usize,
    out: &mut [f32],
) {
    let pairs = depth.div_ceil(2);
    assert!(
        out.len() >= pairs * F::PER_PAIR * width,
        "pack_b_panel: buffer too short"
    );
    let whole = j0 + width <= cols;
    for (p, step) in out
        .chunks_exact_mut(F::PER_PAIR * width)
        .take(pairs)
        .enumerate()
    {
        let k = 2 * p;
        if whole && k + 1 < depth {
            let even = b.offset + k * b.row_stride + j0 * b.col_stride;
            let odd = even + b.row_stride;
            if b.col_stride == 1 {
                // Rows contiguous (a row-major b).
                let (e, o) = (&b.data[even..][..width], &b.data[odd..][..width]);
                for (c, (e, o)) in e.iter().zip(o).enumerate() {
                    F::put(step, c, width, e.to_bits(), o.to_bits());
                }
            } else {
                for c in 0..width {
                    let at = c * b.col_stride;
                    let (e, o) = (b.data[even + at], b.data[odd + at]);
                    F::put(step, c, width, e.to_bits(), o.to_bits());
                }
            }
        } else {
            for c in 0..width {
                let shape = (depth, cols);
                let (e, o) = (
                    element(b, k, j0 + c, shape),
                    element(b, k + 1, j0 + c, shape),
                );
                F::put(step, c, width, e, o);
            }
        }
    }
}
