//! CPU kernels on slices. Parallel with rayon above a size threshold, serial
//! below it, so that small ops pay no thread-pool overhead.

pub mod attention;
pub mod gemm;
pub mod math;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod strided;

/// Element count from which elementwise kernels split work across rayon
/// threads. Measured with `cargo bench --bench elementwise` on the 2-core
/// reference machine: below about 32K f32 elements a rayon split costs more
/// than it saves (see docs/performance.md).
pub const PARALLEL_THRESHOLD: usize = 32 * 1024;

/// The chunk size used when an elementwise kernel runs in parallel.
pub(crate) const PARALLEL_CHUNK: usize = 16 * 1024;
