//! Reuse of large f32 buffers.
//!
//! Every op returns a new tensor, and a training step frees and re-allocates
//! the same large buffers (activations, gradients, attention scores) step
//! after step. Allocations that large come straight from the kernel as
//! fresh pages, which it must fault in and zero on first touch: profiling
//! `cargo bench --bench train_step` on gpt-mini showed a third of the time
//! in the kernel's page clearing. So storage of at least `MIN_POOLED`
//! elements goes back to this pool when dropped, keyed by length, and
//! kernels that overwrite every element take their output from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Buffers below this many elements (64 KiB) come from the allocator as usual.
pub const MIN_POOLED: usize = 16 * 1024;

static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(4 << 30);
static MISSES: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::default()))
}

/// A buffer of `len` elements whose contents are unspecified (old values):
/// for kernels that write every element.
pub fn take(len: usize) -> Vec<f32> {
    if len >= MIN_POOLED {
        let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = p.free.get_mut(&len).and_then(Vec::pop) {
            p.bytes -= len * 4;
            return v;
        }
        MISSES.fetch_add(1, Ordering::Relaxed);
    }
    vec![0.0; len]
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
pub(crate) fn give(v: Vec<f32>) {
    let len = v.len();
    if len < MIN_POOLED || v.capacity() != len {
        return;
    }
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.bytes + len * 4 <= LIMIT_BYTES.load(Ordering::Relaxed) {
        p.bytes += len * 4;
        p.free.entry(len).or_default().push(v);
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
    p.free.clear();
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
}
