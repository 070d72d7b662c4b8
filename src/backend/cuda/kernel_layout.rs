//! Layouts as kernels take them: [`KernelLayout`] is prelude.cuh's
//! `ZfLayout`, passed by value, with dimensions merged where the strides
//! allow, so that most views reach a kernel with one or two dimensions and
//! contiguous ones with none to walk.

use crate::layout::Layout;

/// The most dimensions a kernel walks (prelude.cuh's `ZF_MAX_DIMS`).
pub const MAX_DIMS: usize = 6;

/// One operand's shape, strides (elements; 0 where broadcast) and offset,
/// laid out as prelude.cuh's `ZfLayout`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    shape: [i64; MAX_DIMS],
    strides: [i64; MAX_DIMS],
    offset: i64,
    rank: i32,
    contiguous: i32,
}

// prelude.cuh asserts the same size for `ZfLayout`.
const _: () = assert!(std::mem::size_of::<KernelLayout>() == 112);

impl KernelLayout {
    /// `layout` with size-1 dimensions dropped and neighbours merged where
    /// one steps exactly over the other; the elements keep their
    /// row-major order. Panics naming `op` when more than [`MAX_DIMS`]
    /// dimensions remain.
    pub fn of(layout: &Layout, op: &str) -> KernelLayout {
        let mut dims: Vec<(usize, usize)> = Vec::with_capacity(layout.rank());
        for (&size, &stride) in layout.shape().iter().zip(layout.strides()) {
            if size == 1 {
                continue;
            }
            match dims.last_mut() {
                Some((outer, outer_stride)) if *outer_stride == stride * size => {
                    *outer *= size;
                    *outer_stride = stride;
                }
                _ => dims.push((size, stride)),
            }
        }
        assert!(
            dims.len() <= MAX_DIMS,
            "{op}: a view of shape {:?} and strides {:?} has {} dimensions that cannot be merged; CUDA kernels take at most {MAX_DIMS}",
            layout.shape(),
            layout.strides(),
            dims.len()
        );
        let mut kernel = KernelLayout {
            shape: [1; MAX_DIMS],
            strides: [0; MAX_DIMS],
            offset: layout.offset() as i64,
            rank: dims.len() as i32,
            contiguous: (dims.is_empty() || (dims.len() == 1 && dims[0].1 == 1)) as i32,
        };
        for (i, &(size, stride)) in dims.iter().enumerate() {
            kernel.shape[i] = size as i64;
            kernel.strides[i] = stride as i64;
        }
        kernel
    }

    /// The view dimension by dimension, none merged: for kernels that
    /// need each dimension's coordinate (gathering along one of them).
    /// Panics naming `op` above [`MAX_DIMS`] dimensions.
    pub fn unmerged(layout: &Layout, op: &str) -> KernelLayout {
        assert!(
            layout.rank() <= MAX_DIMS,
            "{op}: a view of rank {} has more dimensions than the {MAX_DIMS} CUDA kernels take",
            layout.rank()
        );
        let mut kernel = KernelLayout {
            shape: [1; MAX_DIMS],
            strides: [0; MAX_DIMS],
            offset: layout.offset() as i64,
            rank: layout.rank() as i32,
            contiguous: 0,
        };
        for (i, (&size, &stride)) in layout.shape().iter().zip(layout.strides()).enumerate() {
            kernel.shape[i] = size as i64;
            kernel.strides[i] = stride as i64;
        }
        kernel
    }

    /// A contiguous run of elements from `offset`.
    pub fn contiguous(offset: usize) -> KernelLayout {
        KernelLayout {
            shape: [1; MAX_DIMS],
            strides: [0; MAX_DIMS],
            offset: offset as i64,
            rank: 0,
            contiguous: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_views_merge_to_one_run_and_transposes_keep_two_dimensions() {
        let plain = KernelLayout::of(&Layout::contiguous(&[2, 3, 4]), "test");
        assert_eq!((plain.rank, plain.contiguous, plain.shape[0]), (1, 1, 24));
        let t = Layout::contiguous(&[2, 3, 4]).permute(&[0, 2, 1]);
        let k = KernelLayout::of(&t, "test");
        assert_eq!((k.rank, k.contiguous), (3, 0));
        assert_eq!(
            (&k.shape[..3], &k.strides[..3]),
            (&[2, 4, 3][..], &[12, 1, 4][..])
        );
        // A broadcast row: the broadcast dimension stays, with stride 0.
        let b = Layout::contiguous(&[1, 4]).broadcast_to(&[3, 4]).unwrap();
        let k = KernelLayout::of(&b, "test");
        assert_eq!(
            (k.rank, &k.shape[..2], &k.strides[..2]),
            (2, &[3, 4][..], &[0, 1][..])
        );
        // A slice of rows keeps its offset and merges.
        let rows = Layout::contiguous(&[5, 4]).narrow(0, 1, 3);
        let k = KernelLayout::of(&rows, "test");
        assert_eq!((k.rank, k.contiguous, k.offset), (1, 1, 4));
    }

    #[test]
    #[should_panic(expected = "cannot be merged; CUDA kernels take at most 6")]
    fn more_dimensions_than_a_kernel_walks_panic_naming_the_op() {
        let l = Layout::contiguous(&[2; 7]).permute(&[6, 5, 4, 3, 2, 1, 0]);
        KernelLayout::of(&l, "test");
    }
}
