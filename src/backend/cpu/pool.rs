//! Reuse of large f32 and bf16 buffers.
//!
//! Every op returns a new tensor, and a training step frees and re-allocates
//! the same large buffers (activations, gradients, attention scores) step
//! after step. Allocations that large come straight from the kernel as
//! fresh pages, which it must fault in and zero on first touch: profiling
//! `cargo bench --bench train_step` on gpt-mini showed a third of the time
//! in the kernel's page clearing. So storage of at least `MIN_POOLED`
//! elements goes back to this pool when dropped, and kernels that
//! overwrite every element take their output from it.
//!
//! Buffers are kept by size class, eight classes per doubling, so a buffer
//! serves any length up to its class (at most 12.5% of it unused): a
//! training step that asks for the same lengths every time reuses them as
//! before, and one whose lengths vary from step to step (a mixture of
//! experts' per-expert batches) reuses them too, where pooling by exact
//! length kept a buffer of every length ever seen, up to the pool's limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use half::bf16;

/// Buffers below this many elements (64 KiB of f32) come from the
/// allocator as usual.
pub const MIN_POOLED: usize = 16 * 1024;

static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(4 << 30);
static MISSES: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
pub struct Pool {
    /// f32 buffers whose capacity is at least the key, a size class.
    f32: HashMap<usize, Vec<Vec<f32>>>,
    /// bf16 buffers, likewise.
    bf16: HashMap<usize, Vec<Vec<bf16>>>,
    bytes: usize,
}

/// An element type the pool keeps buffers of.
pub trait Pooled: Copy + Default + Send + 'static {
    /// This type's free lists.
    fn free_lists(pool: &mut Pool) -> &mut HashMap<usize, Vec<Vec<Self>>>;
}

impl Pooled for f32 {
    fn free_lists(pool: &mut Pool) -> &mut HashMap<usize, Vec<Vec<f32>>> {
        &mut pool.f32
    }
}

impl Pooled for bf16 {
    fn free_lists(pool: &mut Pool) -> &mut HashMap<usize, Vec<Vec<bf16>>> {
        &mut pool.bf16
    }
}

/// The step between size classes at `n`: an eighth of the power of two
/// at or below it.
fn class_step(n: usize) -> usize {
    (1usize << (usize::BITS - 1 - n.leading_zeros())) / 8
}

/// The smallest size class of at least `len` elements.
fn class_above(len: usize) -> usize {
    len.div_ceil(class_step(len)) * class_step(len)
}

/// The largest size class of at most `capacity` elements.
fn class_below(capacity: usize) -> usize {
    capacity / class_step(capacity) * class_step(capacity)
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::default()))
}

/// A buffer of `len` elements whose contents are unspecified (old values):
/// for kernels that write every element.
pub fn take<T: Pooled>(len: usize) -> Vec<T> {
    if len < MIN_POOLED {
        return vec![T::default(); len];
    }
    let class = class_above(len);
    let reused = {
        let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
        let v = T::free_lists(&mut p).get_mut(&class).and_then(Vec::pop);
        if let Some(v) = &v {
            p.bytes -= v.capacity() * size_of::<T>();
        }
        v
    };
    match reused {
        Some(mut v) => {
            // Old values are fine; only a buffer shorter than `len` is
            // extended (with zeros).
            v.resize(len, T::default());
            v
        }
        None => {
            MISSES.fetch_add(1, Ordering::Relaxed);
            let mut v = vec![T::default(); class];
            v.truncate(len);
            v
        }
    }
}

/// A buffer of `len` zeros.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    take_filled(len, 0.0)
}

/// A buffer of `len` copies of `value`.
pub fn take_filled(len: usize, value: f32) -> Vec<f32> {
    let mut v = take(len);
    v.fill(value);
    v
}

/// Returns a buffer to the pool (dropping it when small or the pool is full).
pub(crate) fn give<T: Pooled>(v: Vec<T>) {
    let capacity = v.capacity();
    if capacity < MIN_POOLED {
        return;
    }
    let bytes = capacity * size_of::<T>();
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.bytes + bytes <= LIMIT_BYTES.load(Ordering::Relaxed) {
        p.bytes += bytes;
        T::free_lists(&mut p)
            .entry(class_below(capacity))
            .or_default()
            .push(v);
    }
}

/// Caps the memory the pool keeps (default 4 GiB); `0` disables pooling.
pub fn set_limit_bytes(bytes: usize) {
    LIMIT_BYTES.store(bytes, Ordering::Relaxed);
    if bytes == 0 {
        clear();
    }
}

/// Bytes held by the pool now.
pub fn pooled_bytes() -> usize {
    pool().lock().unwrap_or_else(|e| e.into_inner()).bytes
}

/// How many requests for a poolable buffer found none to reuse (each one a
/// fresh allocation): flat across training steps once the pool is warm.
pub fn misses() -> usize {
    MISSES.load(Ordering::Relaxed)
}

/// Frees every pooled buffer.
pub fn clear() {
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    p.f32.clear();
    p.bf16.clear();
    p.bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_returned_buffer_of_the_same_length() {
        // A length no other test uses, so parallel tests do not interfere.
        let len = MIN_POOLED + 12_345;
        let mut v = take(len);
        v[0] = 42.0;
        let ptr = v.as_ptr();
        give(v);
        let again = take(len);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(again[0], 42.0);
        give(again);
        assert_eq!(take_zeroed(len)[0], 0.0);
    }

    #[test]
    fn bf16_buffers_are_pooled_apart_from_f32_ones() {
        // A length no other test uses.
        let len = MIN_POOLED + 23_456;
        let v: Vec<bf16> = take(len);
        let ptr = v.as_ptr();
        give(v);
        // An f32 request of the same length does not get the bf16 buffer;
        // a bf16 one does.
        let other: Vec<f32> = take(len);
        assert_ne!(other.as_ptr().cast::<bf16>(), ptr);
        give(other);
        let again: Vec<bf16> = take(len);
        assert_eq!(again.as_ptr(), ptr);
        give(again);
    }

    #[test]
    fn a_buffer_serves_any_length_of_its_size_class() {
        // Lengths no other test uses: a class of 2^20 + k · 2^17.
        let class = (1 << 20) + 5 * (1 << 17);
        let v = take::<f32>(class - 1000);
        assert_eq!((v.len(), v.capacity()), (class - 1000, class));
        let ptr = v.as_ptr();
        give(v);
        // A shorter and a longer length of the same class reuse it.
        let shorter = take(class - (1 << 17) + 1);
        assert_eq!(shorter.as_ptr(), ptr);
        assert_eq!(shorter.len(), class - (1 << 17) + 1);
        give(shorter);
        let longer = take(class);
        assert_eq!((longer.as_ptr(), longer.len()), (ptr, class));
        give(longer);
        // The next class up does not.
        let next = take(class + 1);
        assert_ne!(next.as_ptr(), ptr);
        give(next);
        for (len, above, below) in [
            (16_384, 16_384, 16_384),
            (16_385, 18_432, 16_384),
            (20_000, 20_480, 18_432),
        ] {
            assert_eq!(
                (class_above(len), class_below(len)),
                (above, below),
                "{len}"
            );
        }
    }
}
