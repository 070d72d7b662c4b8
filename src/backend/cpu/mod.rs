//! CPU kernels on slices. Parallel with rayon above a size threshold, serial
//! below it, so that small ops pay no thread-pool overhead.

pub mod attention;
pub mod gemm;
pub mod math;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod simd;
pub mod strided;
pub mod tile;

/// Element count from which elementwise kernels split work across rayon
/// threads. Measured with `cargo bench --bench elementwise` on the 2-core
/// reference machine: below about 32K f32 elements a rayon split costs more
/// than it saves (see docs/performance.md).
pub const PARALLEL_THRESHOLD: usize = 32 * 1024;

/// The chunk size used when an elementwise kernel runs in parallel.
pub(crate) const PARALLEL_CHUNK: usize = 16 * 1024;

/// Sizes the global rayon pool that every CPU kernel runs on: `Some(n)`
/// threads, or rayon's default (one per core) for `None`. Call it once,
/// before the first tensor op; a second call is an error, as with rayon.
pub fn set_threads(threads: Option<usize>) -> crate::Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| crate::Error::InvalidConfig(format!("{n} threads: {e}")))
}
