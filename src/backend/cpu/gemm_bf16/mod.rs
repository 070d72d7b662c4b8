//! Matrix products of bf16 operands, accumulated in f32.
//!
//! The `gemm` crate has no bf16 kernel, so this is a packed GEMM of its own
//! (BLIS's loops): B packed once into panels of a register tile's width,
//! A packed block by block, and a register tile of outputs accumulated over
//! a block of depth at a time. Depth goes in pairs, the unit of the
//! AVX512_BF16 instruction `vdpbf16ps` (two bf16 products added to an f32
//! per lane). A [`Path`] is chosen at run time:
//!
//! - [`Path::DotBf16`]: `vdpbf16ps` on pairs of bf16 (Zen 4 and later,
//!   Intel Cooper Lake and later): twice the products of an f32 FMA per
//!   instruction.
//! - [`Path::WidenedAvx512`], [`Path::WidenedAvx2`], [`Path::Widened`]:
//!   bf16 widened to f32 while packing, then f32 FMAs. The operands cross
//!   memory at half the bytes of f32 ones, but the arithmetic is f32's:
//!   no faster than an f32 product.
//!
//! Every path rounds once per product, in the same order, so all give the
//! same bits (except that `vdpbf16ps` flushes subnormals to zero). And the
//! bits of each output depend on nothing but its row of A, its column of B
//! and the value it starts from, however the work is split into blocks and
//! threads.

mod kernels;
mod pack;

use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

use super::gemm::MatRef;
use super::pool;
use super::simd::LANES;
use kernels::{ARows, Tile};
use pack::{Format, Pairs, Widened};

/// How a bf16 product is computed; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `vdpbf16ps` (AVX512_BF16) on pairs of bf16.
    DotBf16,
    /// Widened to f32, AVX-512F FMAs.
    WidenedAvx512,
    /// Widened to f32, AVX2 FMAs.
    WidenedAvx2,
    /// Widened to f32, in code for the build's baseline.
    Widened,
}

impl Path {
    /// Every path, fastest first.
    pub const ALL: [Path; 4] = [
        Path::DotBf16,
        Path::WidenedAvx512,
        Path::WidenedAvx2,
        Path::Widened,
    ];

    /// The name `ZEROFORMER_BF16_GEMM` takes.
    pub fn name(self) -> &'static str {
        match self {
            Path::DotBf16 => "avx512bf16",
            Path::WidenedAvx512 => "avx512",
            Path::WidenedAvx2 => "avx2",
            Path::Widened => "baseline",
        }
    }

    /// Whether the running CPU has the instructions of this path.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx512 = has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma");
            match self {
                Path::DotBf16 => has!("avx512f") && has!("avx512bf16"),
                Path::WidenedAvx512 => avx512,
                Path::WidenedAvx2 => has!("avx2") && has!("fma"),
                Path::Widened => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Path::Widened
        }
    }

    /// The path products take: the fastest the CPU has, or the one
    /// `ZEROFORMER_BF16_GEMM` names (`avx512bf16`, `avx512`, `avx2`,
    /// `baseline`) if the CPU has it, to time or test a slower one.
    pub fn chosen() -> Path {
        static CHOSEN: OnceLock<Path> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let named = std::env::var("ZEROFORMER_BF16_GEMM").ok();
            let forced = Path::ALL
                .into_iter()
                .find(|p| Some(p.name()) == named.as_deref() && p.available());
            forced.unwrap_or_else(|| {
                Path::ALL
                    .into_iter()
                    .find(|p| p.available())
                    .expect("the baseline path runs everywhere")
            })
        })
    }

    /// The paths the running CPU has.
    pub fn available_paths() -> Vec<Path> {
        Path::ALL.into_iter().filter(|p| p.available()).collect()
    }
}

/// Below this many multiply-adds (m·k·n, summed over the batch) a product
/// runs on one thread.
const MIN_PARALLEL_MACS: usize = 1 << 18;

/// Register-tile panels of A packed at a time: an A block of about
/// `16·R` rows by a depth block stays in L2 while B's panels pass it.
const A_BLOCK_PANELS: usize = 16;

/// Bytes of one B panel's depth block, sized to stay in L1 while the A
/// block's panels pass it.
const B_PANEL_BYTES: usize = 24 << 10;

/// `out[b] = A[b] @ B[b]` for every batch `b`, bf16 operands as in
/// [`super::gemm::batched_matmul`] and f32 products, on [`Path::chosen`].
/// With `accumulate`, the products are added to what `out` holds.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<bf16>,
    a_batch_offsets: &[usize],
    b: MatRef<bf16>,
    b_batch_offsets: &[usize],
    out: &mut [f32],
    accumulate: bool,
) {
    batched_matmul_on(
        Path::chosen(),
        m,
        k,
        n,
        a,
        a_batch_offsets,
        b,
        b_batch_offsets,
        out,
        accumulate,
    )
}

/// [`batched_matmul`] on a given path.
///
/// # Panics
/// If the CPU lacks the path's instructions ([`Path::available`]), or an
/// operand runs past its storage.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul_on(
    path: Path,
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<bf16>,
    a_batch_offsets: &[usize],
    b: MatRef<bf16>,
    b_batch_offsets: &[usize],
    out: &mut [f32],
    accumulate: bool,
) {
    assert!(
        path.available(),
        "matmul: this CPU lacks the instructions of the bf16 path {}",
        path.name()
    );
    let batch = a_batch_offsets.len();
    assert_eq!(batch, b_batch_offsets.len(), "matmul: batch offsets differ");
    assert_eq!(out.len(), batch * m * n, "matmul: output length");
    if m == 0 || n == 0 {
        return;
    }
    let threads = if batch * m * k * n < MIN_PARALLEL_MACS {
        1
    } else {
        // Splitting changes no bits (see the module docs), so threads lent
        // by timing may help.
        super::kernel_threads_with_lent()
    };
    let one = |c: &mut [f32], ao: usize, bo: usize, threads: usize| {
        let (a, b) = (a.at(ao), b.at(bo));
        assert!(
            a.extent(m, k) <= a.data.len() && b.extent(k, n) <= b.data.len(),
            "matmul: bf16 operands of {m}x{k} and {k}x{n} run past their storage"
        );
        product(path, m, k, n, a, b, c, accumulate, threads)
    };
    let items = out
        .chunks_mut(m * n)
        .zip(a_batch_offsets)
        .zip(b_batch_offsets);
    if batch > 1 && batch >= threads {
        let items: Vec<_> = items.collect();
        items
            .into_par_iter()
            .for_each(|((c, &ao), &bo)| one(c, ao, bo, 1));
    } else {
        for ((c, &ao), &bo) in items {
            one(c, ao, bo, threads);
        }
    }
}

/// One product `c (+)= a @ b` on `path`, split over `threads`.
#[allow(clippy::too_many_arguments)]
fn product(
    path: Path,
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<bf16>,
    b: MatRef<bf16>,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let shape = Shape { m, k, n };
    #[cfg(target_arch = "x86_64")]
    match path {
        Path::DotBf16 => {
            return Blocked::<Pairs, 6, 4>::new(kernels::dot_bf16::<6, 4>)
                .run(shape, a, b, c, accumulate, threads);
        }
        Path::WidenedAvx512 => {
            return Blocked::<Widened, 6, 4>::new(kernels::widened_avx512::<6, 4>)
                .run(shape, a, b, c, accumulate, threads);
        }
        Path::WidenedAvx2 => {
            return Blocked::<Widened, 6, 1>::new(kernels::widened_avx2::<6, 1>)
                .run(shape, a, b, c, accumulate, threads);
        }
        Path::Widened => {}
    }
    Blocked::<Widened, 6, 1>::new(kernels::widened_baseline::<6, 1>)
        .run(shape, a, b, c, accumulate, threads);
}

/// A product's sizes: `m x k` times `k x n`.
#[derive(Clone, Copy)]
struct Shape {
    m: usize,
    k: usize,
    n: usize,
}

/// A register tile's kernel (see [`kernels`]): `c = (start_from_c ? c :
/// 0) + A panel · B panel` over some pairs of depths, `c`'s rows `ldc`
/// apart.
type Kernel = unsafe fn(usize, ARows, &[f32], *mut f32, usize, bool);

/// The blocked product on panels of format `F` and an `R x V·LANES`
/// register tile.
struct Blocked<F, const R: usize, const V: usize> {
    kernel: Kernel,
    format: std::marker::PhantomData<F>,
}

/// The output matrix, written by several threads at once, each inside its
/// own rectangle of it.
#[derive(Clone, Copy)]
struct Output {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tasks that share an `Output` write disjoint rectangles.
unsafe impl Send for Output {}
// SAFETY: as above.
unsafe impl Sync for Output {}

impl<F: Format, const R: usize, const V: usize> Blocked<F, R, V> {
    /// The tile's columns.
    const W: usize = V * LANES;
    /// Pairs of depth per block: one B panel's block fills [`B_PANEL_BYTES`].
    const BLOCK_PAIRS: usize = B_PANEL_BYTES / (4 * F::PER_PAIR * Self::W);

    fn new(kernel: Kernel) -> Self {
        Self {
            kernel,
            format: std::marker::PhantomData,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        s: Shape,
        a: MatRef<bf16>,
        b: MatRef<bf16>,
        c: &mut [f32],
        accumulate: bool,
        threads: usize,
    ) {
        let pairs = s.k.div_ceil(2);
        let b_panel_len = pairs * F::PER_PAIR * Self::W;
        let b_panels = s.n.div_ceil(Self::W);
        let mut packed_b = pool::take(b_panels * b_panel_len);
        if threads > 1 {
            packed_b
                .par_chunks_exact_mut(b_panel_len)
                .enumerate()
                .for_each(|(j, panel)| self.pack_b_panel(&b, s, j, panel));
        } else {
            for (j, panel) in packed_b.chunks_exact_mut(b_panel_len).enumerate() {
                self.pack_b_panel(&b, s, j, panel);
            }
        }
        // Tasks: blocks of at most A_BLOCK_PANELS·R rows, as many as a
        // multiple of the threads so that each gets the same share; when
        // those are too few to occupy the threads, groups of B panels too.
        let most_rows = A_BLOCK_PANELS * R;
        let blocks = s.m.div_ceil(most_rows).next_multiple_of(threads);
        let block_rows = s.m.div_ceil(blocks).next_multiple_of(R);
        let row_blocks = s.m.div_ceil(block_rows);
        let column_groups = if row_blocks >= 2 * threads || threads == 1 {
            1
        } else {
            (2 * threads).div_ceil(row_blocks).min(b_panels)
        };
        let panels_per_group = b_panels.div_ceil(column_groups);
        let column_groups = b_panels.div_ceil(panels_per_group);
        let out = Output {
            ptr: c.as_mut_ptr(),
            len: s.m * s.n,
        };
        assert!(c.len() >= out.len, "matmul: output too short");
        let task = |t: usize| {
            let (rb, cg) = (t / column_groups, t % column_groups);
            let rows = rb * block_rows..(s.m.min((rb + 1) * block_rows));
            let panels = cg * panels_per_group..b_panels.min((cg + 1) * panels_per_group);
            self.block(s, &a, &packed_b, rows, panels, out, accumulate);
        };
        let tasks = row_blocks * column_groups;
        if threads > 1 && tasks > 1 {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
        pool::give(packed_b);
    }

    fn pack_b_panel(&self, b: &MatRef<bf16>, s: Shape, j: usize, out: &mut [f32]) {
        pack::pack_b_panel::<F>(b, (s.k, s.n), j * Self::W, Self::W, out);
    }

    /// Rows `rows` of the output, in the columns of B panels `panels`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        s: Shape,
        a: &MatRef<bf16>,
        packed_b: &[f32],
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        out: Output,
        accumulate: bool,
    ) {
        let step = F::PER_PAIR;
        let pairs = s.k.div_ceil(2);
        let a_panels = rows.len().div_ceil(R);
        let whole_panels = rows.len() / R;
        let mut packed_a = pool::take(a_panels * Self::BLOCK_PAIRS * step * R);
        for p0 in (0..pairs).step_by(Self::BLOCK_PAIRS) {
            let np = Self::BLOCK_PAIRS.min(pairs - p0);
            let a_panel_len = np * step * R;
            // A row-major A whose pairs are words (and whole: no odd last
            // depth in this block) is read in place, but for a partial last
            // panel; otherwise every panel is packed.
            let in_place = F::ROW_PAIRS_ARE_WORDS && a.col_stride == 1 && 2 * (p0 + np) <= s.k;
            let shape = (s.m, s.k);
            let first_packed = if in_place { whole_panels } else { 0 };
            let i0 = rows.start + first_packed * R;
            let packed_panels = a_panels - first_packed;
            pack::pack_a::<F, R>(a, shape, i0, packed_panels, 2 * p0, np, &mut packed_a);
            let a_rows = |i: usize| {
                if i < first_packed {
                    let first = a.offset + (rows.start + i * R) * a.row_stride + 2 * p0;
                    let last = first + (R - 1) * a.row_stride + 2 * np;
                    assert!(last <= a.data.len());
                    ARows {
                        ptr: a.data[first..].as_ptr().cast(),
                        row: 2 * a.row_stride,
                        step: 4,
                    }
                } else {
                    let at = (i - first_packed) * a_panel_len;
                    ARows::packed(&packed_a[at..at + a_panel_len], R)
                }
            };
            // With `accumulate`, or past the first block of depth, the sums
            // go on from what the output holds.
            let start_from_c = accumulate || p0 > 0;
            for j in panels.clone() {
                let b_panel = &packed_b[(j * pairs + p0) * step * Self::W..][..np * step * Self::W];
                let (j0, cols) = (j * Self::W, Self::W.min(s.n - j * Self::W));
                for i in 0..a_panels {
                    let a_rows = a_rows(i);
                    let i0 = rows.start + i * R;
                    let tile_rows = R.min(rows.end - i0);
                    if tile_rows == R && cols == Self::W {
                        assert!((i0 + R - 1) * s.n + j0 + Self::W <= out.len);
                        // SAFETY: A's rows are a packed panel or rows of A
                        // inside its storage (asserted above); the tile's R
                        // x W outputs lie inside the output (the assert)
                        // and inside this task's rectangle, which no other
                        // task touches; the path's instructions were
                        // checked by `batched_matmul_on`.
                        unsafe {
                            let c = out.ptr.add(i0 * s.n + j0);
                            (self.kernel)(np, a_rows, b_panel, c, s.n, start_from_c);
                        }
                        continue;
                    }
                    // A partial tile goes through a whole one on the stack.
                    let mut tile: Tile<R, V> = [[[0.0; LANES]; V]; R];
                    let edge = (i0, j0, tile_rows, cols);
                    if start_from_c {
                        read_tile(out, s.n, edge, &mut tile);
                    }
                    let c = tile.as_mut_ptr().cast::<f32>();
                    // SAFETY: `c` is the whole tile, rows W apart; as above.
                    unsafe { (self.kernel)(np, a_rows, b_panel, c, Self::W, true) };
                    write_tile(out, s.n, edge, &tile);
                }
            }
        }
        pool::give(packed_a);
    }
}

/// Copies rows `i0..i0 + rows`, columns `j0..j0 + cols` of the output
/// (rows `n` apart) into the tile.
fn read_tile<const R: usize, const V: usize>(
    out: Output,
    n: usize,
    (i0, j0, rows, cols): (usize, usize, usize, usize),
    tile: &mut Tile<R, V>,
) {
    assert!(rows <= R && cols <= V * LANES && (i0 + rows - 1) * n + j0 + cols <= out.len);
    for (r, t) in tile.iter_mut().take(rows).enumerate() {
        // SAFETY: inside the output (the assert), in this task's rectangle.
        let row = unsafe { std::slice::from_raw_parts(out.ptr.add((i0 + r) * n + j0), cols) };
        t.as_flattened_mut()[..cols].copy_from_slice(row);
    }
}

/// Writes the tile back where [`read_tile`] read it.
fn write_tile<const R: usize, const V: usize>(
    out: Output,
    n: usize,
    (i0, j0, rows, cols): (usize, usize, usize, usize),
    tile: &Tile<R, V>,
) {
    assert!(rows <= R && cols <= V * LANES && (i0 + rows - 1) * n + j0 + cols <= out.len);
    for (r, t) in tile.iter().take(rows).enumerate() {
        // SAFETY: as in `read_tile`.
        let row = unsafe { std::slice::from_raw_parts_mut(out.ptr.add((i0 + r) * n + j0), cols) };
        row.copy_from_slice(&t.as_flattened()[..cols]);
    }
}

#[cfg(test)]
mod tests;
