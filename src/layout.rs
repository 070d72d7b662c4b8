//! Shape, strides and offset: how a tensor's elements sit in its storage.
//!
//! Every view op (reshape of contiguous data, permute, narrow, broadcast,
//! unsqueeze, squeeze) is a new [`Layout`] over the same storage; nothing is
//! copied. Strides are in elements; a broadcast dimension has stride 0.

/// Row-major strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// The position of a tensor's elements in its storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// A contiguous, row-major layout starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub(crate) fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout {
            shape,
            strides,
            offset,
        }
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The step in storage, in elements, along each dimension (0 where broadcast).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Where the first element sits in storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are laid out row-major without gaps, so the
    /// tensor is the slice `offset..offset + numel` of its storage.
    /// Strides of size-1 dimensions do not matter.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// The storage range of a contiguous layout, `None` otherwise.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.numel())
    }

    /// Reorders the dimensions: dimension `i` of the result is `dims[i]` of `self`.
    pub fn permute(&self, dims: &[usize]) -> Layout {
        Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        }
    }

    /// Keeps `len` elements of dimension `dim`, starting at `start`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut shape = self.shape.clone();
        shape[dim] = len;
        Layout {
            shape,
            strides: self.strides.clone(),
            offset: self.offset + start * self.strides[dim],
        }
    }

    /// Broadcasts to `shape` with NumPy's rules (align trailing dimensions,
    /// stretch size-1 dimensions with stride 0); `None` when incompatible.
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<Layout> {
        if shape.len() < self.rank() {
            return None;
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &target) in shape.iter().enumerate().skip(lead) {
            let (d, s) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if d == target {
                s
            } else if d == 1 {
                0
            } else {
                return None;
            };
        }
        Some(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// A view with a new shape over the same elements, `None` when the
    /// strides allow none (PyTorch's rule for `view`): every group of
    /// dimensions that the new shape merges or splits must be laid out
    /// contiguously among itself. Splitting `[b, t, c]` rows that are
    /// `3c` apart (a third of a qkv projection) into `[b, t, h, c / h]`
    /// works; merging a transposed pair of dimensions does not.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return None;
        }
        let view = |strides| Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        };
        if numel == 0 || self.is_contiguous() {
            return Some(view(contiguous_strides(shape)));
        }
        // Walk the old dimensions from the last, in runs laid out
        // contiguously among themselves; each run's elements must be
        // exactly the product of a run of new dimensions, which then get
        // strides from the run's innermost stride.
        let (old_shape, old_strides) = (&self.shape, &self.strides);
        let mut strides = vec![0; shape.len()];
        let mut next_new = shape.len();
        let mut base = *old_strides.last().expect("rank >= 1: not contiguous");
        let (mut run_numel, mut new_numel) = (1, 1);
        for d in (0..old_shape.len()).rev() {
            run_numel *= old_shape[d];
            let run_ends =
                d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != run_numel * base);
            if !run_ends {
                continue;
            }
            while next_new > 0 && (new_numel < run_numel || shape[next_new - 1] == 1) {
                strides[next_new - 1] = new_numel * base;
                new_numel *= shape[next_new - 1];
                next_new -= 1;
            }
            if new_numel != run_numel {
                return None;
            }
            if d > 0 {
                base = old_strides[d - 1];
                run_numel = 1;
                new_numel = 1;
            }
        }
        (next_new == 0).then(|| view(strides))
    }

    /// Inserts a dimension of size 1 at `dim`.
    pub fn unsqueeze(&self, dim: usize) -> Layout {
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        let stride = if dim < self.rank() {
            self.strides[dim] * self.shape[dim]
        } else {
            1
        };
        shape.insert(dim, 1);
        strides.insert(dim, stride);
        Layout {
            shape,
            strides,
            offset: self.offset,
        }
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: usize) -> Layout {
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        shape.remove(dim);
        strides.remove(dim);
        Layout {
            shape,
            strides,
            offset: self.offset,
        }
    }

    /// Storage offset of the element at multi-index `index`.
    pub fn offset_of(&self, index: &[usize]) -> usize {
        self.offset
            + index
                .iter()
                .zip(&self.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()
    }
}

/// The shape two operands broadcast to under NumPy's rules, `None` when they don't.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
    }

    #[test]
    fn transposed_layout_is_not_contiguous() {
        let l = Layout::contiguous(&[2, 3]);
        assert!(l.is_contiguous());
        let t = l.permute(&[1, 0]);
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.strides(), &[1, 3]);
        assert!(!t.is_contiguous());
        assert_eq!(t.offset_of(&[2, 1]), 5);
    }

    #[test]
    fn broadcast_rules_follow_numpy() {
        assert_eq!(broadcast_shape(&[3, 1], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast_shape(&[2, 3], &[3, 3]), None);
        let l = Layout::contiguous(&[3, 1])
            .broadcast_to(&[2, 3, 4])
            .unwrap();
        assert_eq!(l.strides(), &[0, 1, 0]);
        assert!(Layout::contiguous(&[3]).broadcast_to(&[4]).is_none());
    }

    /// Storage offsets of every element, in row-major order.
    fn offsets(l: &Layout) -> Vec<usize> {
        let mut index = vec![0; l.rank()];
        (0..l.numel())
            .map(|_| {
                let o = l.offset_of(&index);
                for d in (0..l.rank()).rev() {
                    index[d] += 1;
                    if index[d] < l.shape()[d] {
                        break;
                    }
                    index[d] = 0;
                }
                o
            })
            .collect()
    }

    #[test]
    fn reshape_is_a_view_where_the_strides_allow() {
        // A third of a [2, 3, 12] qkv row: rows 12 apart, split into heads.
        let third = Layout::contiguous(&[2, 3, 12]).narrow(2, 4, 4);
        let heads = third.reshape(&[2, 3, 2, 2]).unwrap();
        assert_eq!((heads.strides(), heads.offset()), (&[36, 12, 2, 1][..], 4));
        // Batch and time merge (36 = 3 · 12); a transpose's dimensions do not.
        assert_eq!(third.reshape(&[6, 4]).unwrap().strides(), &[12, 1]);
        assert!(third.reshape(&[2, 12]).is_none());
        let t = Layout::contiguous(&[2, 3]).permute(&[1, 0]);
        assert!(t.reshape(&[6]).is_none());
        // A size-1 dimension fits anywhere (its stride does not matter).
        let s = t.reshape(&[3, 1, 2]).unwrap();
        assert_eq!((s.strides()[0], s.strides()[2]), (1, 3));
        assert!(third.reshape(&[5, 5]).is_none());
    }

    #[test]
    fn a_reshaped_view_reads_the_elements_in_the_same_order() {
        // Every view reshape must visit storage as the original layout does.
        let bases = [
            Layout::contiguous(&[2, 3, 12]).narrow(2, 4, 4),
            Layout::contiguous(&[4, 6]).permute(&[1, 0]),
            Layout::contiguous(&[2, 1, 6]).narrow(2, 1, 4),
            Layout::contiguous(&[3, 4])
                .broadcast_to(&[2, 3, 4])
                .unwrap(),
            Layout::contiguous(&[2, 3, 4]).permute(&[0, 2, 1]),
        ];
        let shapes: &[&[usize]] = &[
            &[24],
            &[2, 12],
            &[6, 4],
            &[4, 6],
            &[2, 3, 4],
            &[2, 3, 2, 2],
            &[1, 24, 1],
            &[2, 2, 6],
            &[3, 8],
            &[12, 2],
            &[6, 2, 2],
        ];
        let mut views = 0;
        for base in &bases {
            for &shape in shapes {
                if shape.iter().product::<usize>() != base.numel() {
                    continue;
                }
                if let Some(view) = base.reshape(shape) {
                    assert_eq!(offsets(&view), offsets(base), "{base:?} as {shape:?}");
                    views += 1;
                }
            }
        }
        assert!(views >= 10, "only {views} views");
    }

    #[test]
    fn narrow_moves_the_offset() {
        let l = Layout::contiguous(&[4, 5]).narrow(0, 1, 2).narrow(1, 2, 3);
        assert_eq!(l.offset(), 7);
        assert_eq!(l.shape(), &[2, 3]);
        assert!(!l.is_contiguous());
        let rows = Layout::contiguous(&[4, 5]).narrow(0, 1, 2);
        assert_eq!(rows.contiguous_range(), Some(5..15));
    }
}
