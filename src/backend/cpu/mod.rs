//! The CPU device: [`CpuStorage`] implements the primitives with kernels on
//! slices, parallel with rayon above a size threshold and serial below it,
//! so that small ops pay no thread-pool overhead. The thread-pool policy
//! ([`in_pool`], [`side_by_side`]) is reached through `Device::scope` and
//! `Device::map_parts`.

mod attention;
mod attention_decode;
mod cast;
mod elementwise;
// The matrix-product kernels and the buffer pool are not API: public (and
// hidden from the docs) only for the benches and tests that time and count
// them.
#[doc(hidden)]
pub mod gemm;
#[doc(hidden)]
pub mod gemm_bf16;
mod gemv;
mod index;
mod loss;
mod math;
mod matmul;
mod norm;
mod optim;
#[doc(hidden)]
pub mod pool;
mod quantized;
mod random;
mod reduce;
mod simd;
mod storage;
mod strided;
#[doc(hidden)]
pub mod tile;

pub use storage::CpuStorage;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Element count from which elementwise kernels split work across rayon
/// threads. Measured with `cargo bench --bench elementwise` on the 2-core
/// reference machine: below about 32K f32 elements a rayon split costs more
/// than it saves (see docs/performance.md).
pub const PARALLEL_THRESHOLD: usize = 32 * 1024;

/// The chunk size used when an elementwise kernel runs in parallel.
pub(crate) const PARALLEL_CHUNK: usize = 16 * 1024;

/// Runs `f` on a worker thread of the global rayon pool (at once, on this
/// thread, when it already is one), and returns its result. Thread-local
/// state of the caller (autograd's grad mode) does not travel with it:
/// [`Device::scope`](crate::Device::scope) carries it, and is what code
/// above the backend calls.
///
/// Why: a training step is thousands of kernels. A parallel kernel called
/// from outside the pool hands all its work to the workers and puts the
/// caller to sleep until they are done: a wake-up and a sleep per kernel
/// (about 650 context switches in a cpu-mini step), and a third thread
/// contending for the cores. Called from a worker, a kernel runs its first
/// half on that worker while the other workers take the rest, and serial
/// work between kernels runs where the data is warm.
///
/// While `f` runs, the other workers stand by: they spin, taking the
/// kernels' work as it comes, instead of going to sleep between kernels and
/// being woken for the next (OpenMP's busy-wait, which PyTorch's threads
/// do too). A worker with no work for 20 ms goes back to sleeping.
///
/// ```
/// use zeroformer::backend::cpu::in_pool;
/// assert!(in_pool(|| rayon::current_thread_index()).is_some());
/// ```
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        let (owner, done) = (rayon::current_thread_index(), &done);
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(move |_| stand_by(owner, done));
        }
        let _done = SetOnDrop(done);
        f()
    })
}

/// Sets the flag when dropped, also when unwinding from a panic.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Keeps a worker awake and taking the kernels' work until `done`.
fn stand_by(owner: Option<usize>, done: &AtomicBool) {
    // On the owner's own thread the owner is suspended beneath us: waiting
    // for it would never end.
    if rayon::current_thread_index() == owner {
        return;
    }
    let mut idle_since = std::time::Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = std::time::Instant::now(),
            _ if idle_since.elapsed() > STAND_BY_LIMIT => return,
            _ => std::hint::spin_loop(),
        }
    }
}

/// How long a worker stands by with no work before it goes back to rayon's
/// own idling (sleep).
const STAND_BY_LIMIT: std::time::Duration = std::time::Duration::from_millis(20);

thread_local! {
    /// Set inside [`on_one_thread`]: the count of pool threads idle to
    /// lend to this thread's kernels (see [`side_by_side`]).
    static ONE_THREAD: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// How many threads a kernel called on this thread should split its work
/// over: the pool's size, or 1 inside [`on_one_thread`].
pub fn kernel_threads() -> usize {
    ONE_THREAD.with(|c| match &*c.borrow() {
        Some(_) => 1,
        None => rayon::current_num_threads(),
    })
}

/// [`kernel_threads`], plus, inside a part of [`side_by_side`], the
/// threads that the call's other parts left idle by finishing first. How
/// many that is depends on timing, so only a kernel whose results do not
/// depend on how it splits its work may ask for it.
pub(crate) fn kernel_threads_with_lent() -> usize {
    let pool = rayon::current_num_threads();
    ONE_THREAD.with(|c| match &*c.borrow() {
        Some(idle) => 1 + idle.load(Ordering::Relaxed).min(pool - 1),
        None => pool,
    })
}

/// `f` of every item, side by side on the pool's threads, one item per
/// task, each with one-thread kernels ([`on_one_thread`]); the results in
/// the items' order. (As with [`in_pool`], the caller's thread-local state
/// does not travel: [`Device::map_parts`](crate::Device::map_parts)
/// carries the grad mode.) For independent parts of
/// one piece of work, such as the data-parallel shards of a training step.
///
/// Parts finish unevenly (a shared host slows one core more than the
/// other), so a thread left without a part counts itself idle, and the
/// matrix products of the parts still running split their rows across it
/// until the call returns (those whose rows come out the same bits however
/// they are split: see `gemm::batched_matmul`), so results do not depend
/// on that timing.
///
/// ```
/// use zeroformer::backend::cpu::side_by_side;
/// assert_eq!(side_by_side(vec![1, 2, 3], |x| x * 10), vec![10, 20, 30]);
/// ```
pub fn side_by_side<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    use rayon::prelude::*;
    let unfinished = AtomicUsize::new(items.len());
    let idle = Arc::new(AtomicUsize::new(0));
    in_pool(|| {
        let threads = rayon::current_num_threads();
        items
            .into_par_iter()
            .with_max_len(1)
            .map(|item| {
                let result = one_thread_lent(Some(idle.clone()), || f(item));
                // Fewer parts left than threads: none is waiting for this
                // thread, which has nothing more to do.
                if unfinished.fetch_sub(1, Ordering::Relaxed) - 1 < threads {
                    idle.fetch_add(1, Ordering::Relaxed);
                }
                result
            })
            .collect()
    })
}

/// Runs `f` with this thread's kernels asking for one thread (see
/// [`kernel_threads`]): for work that is itself one of several running side
/// by side, such as a data-parallel shard of a training step, where
/// splitting each matrix product again would only duplicate its packing.
pub fn on_one_thread<R>(f: impl FnOnce() -> R) -> R {
    one_thread_lent(None, f)
}

/// [`on_one_thread`], with the count of threads idle to lend (none when `None`).
fn one_thread_lent<R>(idle: Option<Arc<AtomicUsize>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<AtomicUsize>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ONE_THREAD.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let idle = idle.unwrap_or_default();
    let _restore = Restore(ONE_THREAD.with(|c| c.replace(Some(idle))));
    f()
}

/// Sizes the global rayon pool that every CPU kernel runs on: `Some(n)`
/// threads, or rayon's default (one per core) for `None`. Call it once,
/// before the first tensor op; a second call is an error, as with rayon,
/// and so is `Some(0)` (rayon would read it as its default).
pub fn set_threads(threads: Option<usize>) -> crate::Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    if n == 0 {
        return Err(crate::Error::InvalidConfig(
            "the thread count must be at least 1 (leave it unset for one per core)".into(),
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| crate::Error::InvalidConfig(format!("{n} threads: {e}")))
}

#[cfg(test)]
mod tests {
    use super::in_pool;

    #[test]
    fn in_pool_runs_on_a_worker_and_nests_in_place() {
        assert_eq!(rayon::current_thread_index(), None);
        let (outer, inner) = in_pool(|| {
            let outer = rayon::current_thread_index();
            (outer, in_pool(rayon::current_thread_index))
        });
        assert!(outer.is_some());
        assert_eq!(inner, outer);
    }

    #[test]
    fn on_one_thread_asks_kernels_for_one_thread_until_it_returns() {
        let pool = rayon::current_num_threads();
        assert_eq!(super::kernel_threads(), pool);
        super::on_one_thread(|| {
            assert_eq!(super::kernel_threads(), 1);
            super::on_one_thread(|| assert_eq!(super::kernel_threads(), 1));
            // Still one thread after the nested call returns.
            assert_eq!(super::kernel_threads(), 1);
        });
        assert_eq!(super::kernel_threads(), pool);
        let _ = std::panic::catch_unwind(|| super::on_one_thread(|| panic!("inside")));
        assert_eq!(super::kernel_threads(), pool);
    }

    #[test]
    fn side_by_side_keeps_order() {
        let items: Vec<usize> = (0..20).collect();
        let got = super::side_by_side(items.clone(), |i| i * 3);
        assert_eq!(got, items.iter().map(|&i| i * 3).collect::<Vec<_>>());
    }

    #[test]
    fn a_part_left_running_alone_gets_the_idle_threads() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        if rayon::current_num_threads() < 2 {
            return;
        }
        let first_done = AtomicBool::new(false);
        let seen = super::side_by_side(vec![0, 1], |part| {
            if part == 0 {
                first_done.store(true, Ordering::SeqCst);
                return (super::kernel_threads(), super::kernel_threads_with_lent());
            }
            // Part 1 waits (taking queued work, so that part 0 runs even if
            // both landed on this thread) until part 0 has finished and
            // lent its thread.
            let start = Instant::now();
            while super::kernel_threads_with_lent() < 2 && start.elapsed() < Duration::from_secs(10)
            {
                rayon::yield_now();
            }
            (super::kernel_threads(), super::kernel_threads_with_lent())
        });
        assert!(first_done.load(Ordering::SeqCst));
        // Lent to the kernels that may take it; the others stay on one thread.
        assert_eq!(
            seen[1],
            (1, 2),
            "the part still running was not lent the idle thread"
        );
        // Outside one-thread work, kernels use the whole pool as before.
        assert_eq!(super::kernel_threads(), rayon::current_num_threads());
    }

    #[test]
    #[should_panic(expected = "in a part")]
    fn side_by_side_passes_a_part_panic_on() {
        super::side_by_side(vec![0, 1, 2], |i| {
            if i == 1 {
                panic!("in a part");
            }
        });
    }

    #[test]
    #[should_panic(expected = "from the worker")]
    fn in_pool_passes_a_panic_on_to_the_caller() {
        in_pool(|| panic!("from the worker"));
    }
}
