//! Walking tensors in row-major order whatever their strides, serially or in
//! parallel chunks. Elementwise ops, copies and broadcasts are all built on
//! [`for_each_offsets`].

use rayon::prelude::*;

use super::cast::Float;
use super::{PARALLEL_CHUNK, PARALLEL_THRESHOLD, pool, simd};
use crate::layout::Layout;

/// An element type of a kernel's output buffer. f32 outputs come from the
/// buffer pool (their old contents are overwritten); others are allocated.
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// A buffer of `len` elements, every one of which the caller overwrites.
    fn output(len: usize) -> Vec<Self> {
        vec![Self::default(); len]
    }

    /// Done with a temporary buffer: f32 ones go back to the pool.
    fn recycle(buffer: Vec<Self>) {
        drop(buffer);
    }
}

impl Element for f32 {
    fn output(len: usize) -> Vec<f32> {
        pool::take(len)
    }

    fn recycle(buffer: Vec<f32>) {
        pool::give(buffer);
    }
}
impl Element for f64 {}
impl Element for i64 {}
impl Element for i32 {}
impl Element for bool {}
impl Element for i8 {}
impl Element for half::bf16 {
    fn output(len: usize) -> Vec<half::bf16> {
        pool::take(len)
    }

    fn recycle(buffer: Vec<half::bf16>) {
        pool::give(buffer);
    }
}

/// Calls `f(k, offsets)` for the elements `start..start + len` of `shape` in
/// row-major order, `k` counting from 0 and `offsets[j]` being the storage
/// offset of that element under `layouts[j]`. All layouts must have `shape`
/// (broadcast them first). The innermost dimension runs as a tight loop.
pub fn for_each_offsets<const N: usize>(
    shape: &[usize],
    layouts: [&Layout; N],
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, [usize; N]),
) {
    if len == 0 {
        return;
    }
    let rank = shape.len();
    if rank == 0 {
        f(0, layouts.map(|l| l.offset()));
        return;
    }
    // Multi-index of `start`, and the offsets there: on the stack up to
    // rank 8 (this runs once per parallel chunk of every elementwise op;
    // a heap index would make a third of a training step's allocations).
    let mut on_stack = [0usize; 8];
    let mut on_heap = Vec::new();
    let index: &mut [usize] = if rank <= on_stack.len() {
        &mut on_stack[..rank]
    } else {
        on_heap.resize(rank, 0);
        &mut on_heap
    };
    let mut rem = start;
    for d in (0..rank).rev() {
        index[d] = rem % shape[d];
        rem /= shape[d];
    }
    let mut offsets = layouts.map(|l| l.offset_of(index));
    let inner = rank - 1;
    let inner_len = shape[inner];
    let inner_strides = layouts.map(|l| l.strides()[inner]);
    let mut k = 0;
    loop {
        let run = (inner_len - index[inner]).min(len - k);
        let mut o = offsets;
        for i in 0..run {
            f(k + i, o);
            for j in 0..N {
                o[j] += inner_strides[j];
            }
        }
        k += run;
        if k == len {
            return;
        }
        // Carry: reset the inner dimension and advance the outer ones.
        index[inner] += run;
        for j in 0..N {
            offsets[j] += run * inner_strides[j];
        }
        let mut d = inner;
        while index[d] == shape[d] {
            for j in 0..N {
                offsets[j] -= index[d] * layouts[j].strides()[d];
            }
            index[d] = 0;
            d -= 1;
            index[d] += 1;
            for j in 0..N {
                offsets[j] += layouts[j].strides()[d];
            }
        }
    }
}

/// Fills `out` by calling `body(start, chunk)` on consecutive chunks: one
/// call when `out` is below the parallel threshold, rayon chunks otherwise.
pub fn fill_chunks<T: Send>(out: &mut [T], body: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() < PARALLEL_THRESHOLD {
        body(0, out);
    } else {
        out.par_chunks_mut(PARALLEL_CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| body(i * PARALLEL_CHUNK, chunk));
    }
}

/// Copies the elements of `layout` (any strides) into a new row-major vector.
pub fn contiguous_copy<T: Element>(data: &[T], layout: &Layout) -> Vec<T> {
    let mut out = T::output(layout.numel());
    if let Some(range) = layout.contiguous_range() {
        out.copy_from_slice(&data[range]);
        return out;
    }
    let (shape, strides) = (layout.shape(), layout.strides());
    let rank = shape.len();
    let row = shape[rank - 1];
    if strides[rank - 1] == 1 && row >= 4 {
        // Rows contiguous in storage (heads split off or merged back by a
        // permute): one copy per row instead of an index walk per element,
        // which took 7% of a cpu-mini training step.
        let outer = Layout::new(
            shape[..rank - 1].to_vec(),
            strides[..rank - 1].to_vec(),
            layout.offset(),
        );
        let copy_rows = |first: usize, chunk: &mut [T]| {
            for_each_offsets(
                outer.shape(),
                [&outer],
                first,
                chunk.len() / row,
                |r, [o]| {
                    chunk[r * row..(r + 1) * row].copy_from_slice(&data[o..o + row]);
                },
            )
        };
        if out.len() < PARALLEL_THRESHOLD {
            copy_rows(0, &mut out);
        } else {
            let rows_per_chunk = PARALLEL_CHUNK.div_ceil(row);
            out.par_chunks_mut(rows_per_chunk * row)
                .enumerate()
                .for_each(|(i, chunk)| copy_rows(i * rows_per_chunk, chunk));
        }
        return out;
    }
    fill_chunks(&mut out, |start, chunk| {
        for_each_offsets(layout.shape(), [layout], start, chunk.len(), |k, [o]| {
            chunk[k] = data[o];
        })
    });
    out
}

/// Calls `f` with the elements `layout` picks out of `data`, in row-major
/// order: a slice of `data` when they are contiguous there, otherwise a
/// copy, which is recycled afterwards (dropped, an f32 copy would be a
/// fresh allocation, and fresh pages, every training step).
pub fn with_elements<T: Element, R>(data: &[T], layout: &Layout, f: impl FnOnce(&[T]) -> R) -> R {
    match layout.contiguous_range() {
        Some(range) => f(&data[range]),
        None => {
            let copy = contiguous_copy(data, layout);
            let result = f(&copy);
            T::recycle(copy);
            result
        }
    }
}

/// `f` applied to every element of `layout`, in row-major order.
pub fn map<T: Copy + Send + Sync, U: Element>(
    data: &[T],
    layout: &Layout,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let mut out = U::output(layout.numel());
    if let Some(range) = layout.contiguous_range() {
        let src = &data[range];
        fill_chunks(&mut out, |start, chunk| {
            simd::widest!({
                for (o, &x) in chunk.iter_mut().zip(&src[start..]) {
                    *o = f(x);
                }
            })
        });
    } else {
        fill_chunks(&mut out, |start, chunk| {
            for_each_offsets(layout.shape(), [layout], start, chunk.len(), |k, [o]| {
                chunk[k] = f(data[o]);
            })
        });
    }
    out
}

/// `f(a, b)` over two layouts of the same (already broadcast) shape.
pub fn zip_map<A: Copy + Sync, B: Copy + Sync, U: Element>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    f: impl Fn(A, B) -> U + Sync,
) -> Vec<U> {
    debug_assert_eq!(la.shape(), lb.shape());
    let mut out = U::output(la.numel());
    match (la.contiguous_range(), lb.contiguous_range()) {
        (Some(ra), Some(rb)) => {
            let (a, b) = (&a[ra], &b[rb]);
            fill_chunks(&mut out, |start, chunk| {
                let n = chunk.len();
                simd::widest!({
                    for ((o, &x), &y) in chunk.iter_mut().zip(&a[start..start + n]).zip(&b[start..])
                    {
                        *o = f(x, y);
                    }
                })
            });
        }
        _ => fill_chunks(&mut out, |start, chunk| {
            for_each_offsets(la.shape(), [la, lb], start, chunk.len(), |k, [oa, ob]| {
                chunk[k] = f(a[oa], b[ob]);
            })
        }),
    }
    out
}

/// `f(a, b, c)` over three operands of one element type and the same
/// (already broadcast) shape: a unary op's backward from the gradient,
/// input and output.
pub fn map3<T: Element>(
    data: [&[T]; 3],
    layouts: [&Layout; 3],
    f: impl Fn(T, T, T) -> T + Sync,
) -> Vec<T> {
    let shape = layouts[0].shape();
    debug_assert!(layouts.iter().all(|l| l.shape() == shape));
    let mut out = T::output(layouts[0].numel());
    match layouts.map(|l| l.contiguous_range()) {
        [Some(ra), Some(rb), Some(rc)] => {
            let (a, b, c) = (&data[0][ra], &data[1][rb], &data[2][rc]);
            fill_chunks(&mut out, |start, chunk| {
                let end = start + chunk.len();
                // Zipped slices, not indices built per element: the form
                // that vectorises at every width.
                let parts = chunk.iter_mut().zip(&a[start..end]).zip(&b[start..end]);
                simd::widest!({
                    for (((o, &x), &y), &z) in parts.zip(&c[start..end]) {
                        *o = f(x, y, z);
                    }
                })
            });
        }
        _ => fill_chunks(&mut out, |start, chunk| {
            for_each_offsets(shape, layouts, start, chunk.len(), |k, [oa, ob, oc]| {
                chunk[k] = f(data[0][oa], data[1][ob], data[2][oc]);
            })
        }),
    }
    out
}

/// Adds the elements of `src` (under `src_layout`) to those at the
/// positions of `dst_layout` in `dst`; both layouts have the same shape.
/// bf16 elements are added in f32 and rounded.
pub fn add_into<T: Float>(dst: &mut [T], dst_layout: &Layout, src: &[T], src_layout: &Layout) {
    let add = |x: &mut T, y: T| *x = T::narrow(x.widen() + y.widen());
    rows_or_elements(
        dst,
        dst_layout,
        src,
        src_layout,
        |d, s| {
            for (x, &y) in d.iter_mut().zip(s) {
                add(x, y);
            }
        },
        add,
    );
}

/// Copies the elements of `src` (under `src_layout`) to the positions of
/// `dst_layout` in `dst`; both layouts have the same shape.
pub fn copy_into<T: Copy>(dst: &mut [T], dst_layout: &Layout, src: &[T], src_layout: &Layout) {
    rows_or_elements(
        dst,
        dst_layout,
        src,
        src_layout,
        |d, s| d.copy_from_slice(s),
        |x, y| *x = y,
    );
}

/// Applies `run(dst_run, src_run)` to runs of corresponding elements of
/// the two layouts (same shape): the whole of both when contiguous, rows
/// when both have contiguous rows (a narrow's window, a head merge); else
/// `element` to each pair of elements.
fn rows_or_elements<T: Copy>(
    dst: &mut [T],
    dst_layout: &Layout,
    src: &[T],
    src_layout: &Layout,
    run: impl Fn(&mut [T], &[T]),
    element: impl Fn(&mut T, T),
) {
    debug_assert_eq!(dst_layout.shape(), src_layout.shape());
    let n = dst_layout.numel();
    if let (Some(rd), Some(rs)) = (dst_layout.contiguous_range(), src_layout.contiguous_range()) {
        run(&mut dst[rd], &src[rs]);
        return;
    }
    let (shape, rank) = (dst_layout.shape(), dst_layout.rank());
    let contiguous_rows = |l: &Layout| l.strides()[rank - 1] == 1;
    if rank >= 2
        && shape[rank - 1] >= 4
        && contiguous_rows(dst_layout)
        && contiguous_rows(src_layout)
    {
        // Rows contiguous on both sides: one call per row.
        let row = shape[rank - 1];
        let outer = |l: &Layout| {
            Layout::new(
                shape[..rank - 1].to_vec(),
                l.strides()[..rank - 1].to_vec(),
                l.offset(),
            )
        };
        let (dst_rows, src_rows) = (outer(dst_layout), outer(src_layout));
        for_each_offsets(
            dst_rows.shape(),
            [&dst_rows, &src_rows],
            0,
            n / row,
            |_, [od, os]| run(&mut dst[od..od + row], &src[os..os + row]),
        );
        return;
    }
    for_each_offsets(
        dst_layout.shape(),
        [dst_layout, src_layout],
        0,
        n,
        |_, [od, os]| element(&mut dst[od], src[os]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_transposed_view_in_row_major_order() {
        let data: Vec<i32> = (0..6).collect();
        let t = Layout::contiguous(&[2, 3]).permute(&[1, 0]);
        assert_eq!(contiguous_copy(&data, &t), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn starts_in_the_middle_of_a_row() {
        let data: Vec<i32> = (0..24).collect();
        let l = Layout::contiguous(&[2, 3, 4]).permute(&[2, 0, 1]);
        let full = contiguous_copy(&data, &l);
        let mut part = Vec::new();
        for_each_offsets(l.shape(), [&l], 5, 13, |_, [o]| part.push(data[o]));
        assert_eq!(part, full[5..18]);
    }

    /// Heads split off a [batch, time, heads, width] tensor: rows of
    /// `width` contiguous in storage, copied whole. Checked element by
    /// element against the index walk, at a serial and a parallel size
    /// (rows straddling the parallel chunks), from a nonzero offset.
    #[test]
    fn gathers_contiguous_rows_like_the_index_walk() {
        for (b, t, h, w) in [(2, 3, 4, 5), (3, 257, 6, 31)] {
            let data: Vec<i64> = (0..(b * t * h * w + 9) as i64).collect();
            let layout = Layout::new(
                vec![b, t, h, w],
                crate::layout::contiguous_strides(&[b, t, h, w]),
                9,
            )
            .permute(&[0, 2, 1, 3]);
            let mut walked = Vec::new();
            for_each_offsets(layout.shape(), [&layout], 0, layout.numel(), |_, [o]| {
                walked.push(data[o])
            });
            assert!(layout.numel() < PARALLEL_THRESHOLD || b * t * h * w > 2 * PARALLEL_CHUNK);
            assert_eq!(contiguous_copy(&data, &layout), walked, "{b}x{t}x{h}x{w}");
        }
    }

    /// A window of a wider tensor (narrow's backward) filled from a
    /// permuted view: rows copied whole, against the element walk.
    #[test]
    fn copies_contiguous_rows_like_the_element_walk() {
        let src_data: Vec<i64> = (0..2 * 3 * 5 * 7).collect();
        let src = Layout::contiguous(&[2, 5, 3, 7]).permute(&[0, 2, 1, 3]);
        let dst = Layout::contiguous(&[2, 3, 5, 10]).narrow(3, 2, 7);
        let mut rows = vec![-1i64; 2 * 3 * 5 * 10];
        copy_into(&mut rows, &dst, &src_data, &src);
        let mut walked = vec![-1i64; rows.len()];
        for_each_offsets(dst.shape(), [&dst, &src], 0, dst.numel(), |_, [od, os]| {
            walked[od] = src_data[os]
        });
        assert_eq!(rows, walked);
    }

    #[test]
    fn parallel_and_serial_paths_agree() {
        let n = 3 * super::PARALLEL_THRESHOLD + 7;
        let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let l = Layout::contiguous(&[n / 7, 7]).permute(&[1, 0]);
        let out = map(&data, &l, |x| x * 2.0);
        let serial: Vec<f32> = (0..7)
            .flat_map(|c| (0..n / 7).map(move |r| (r * 7 + c) as f32 * 2.0))
            .collect();
        assert_eq!(out, serial);
    }
}
