//! The CUDA backend: tensors in GPU memory, kernels written once as CUDA
//! C++ (`*.cu`, each beside its Rust launcher) and run either on an
//! NVIDIA GPU or, under the `cuda-sim` feature, on the simulated GPU.
//!
//! - `driver` is the only code that talks to CUDA (or the simulator):
//!   memory, copies, kernel launches, cuBLAS, in the shape of CUDA's driver
//!   API.
//! - `gpu` holds one device: its driver, the caching allocator, loaded
//!   kernels, and the registry that opens each device once.
//! - `CudaStorage` holds a device buffer and its dtype and implements
//!   [`BackendStorage`](crate::backend::BackendStorage): each primitive is
//!   a launcher beside its kernels (`copy`, `elementwise`, `reduce`,
//!   `softmax`, `norm`, `loss`, `index`, `attention`, `grouped`, `optim`,
//!   `quantized`, `random`) or cuBLAS (`matmul`). No primitive runs on the
//!   host: data leaves the device only when asked for (`to_host`).
//!
//! Without the `cuda` feature the storage type is uninhabited (`stub.rs`)
//! and every way in returns [`Error::CudaUnavailable`](crate::Error::CudaUnavailable).

#[cfg(not(feature = "cuda"))]
mod stub;
#[cfg(not(feature = "cuda"))]
pub use stub::{CudaStorage, full, upload};

#[cfg(feature = "cuda")]
mod attention;
#[cfg(feature = "cuda")]
mod copy;
#[cfg(feature = "cuda")]
pub mod driver;
#[cfg(feature = "cuda")]
mod elementwise;
#[cfg(feature = "cuda")]
mod gpu;
#[cfg(feature = "cuda")]
mod grouped;
#[cfg(feature = "cuda")]
mod index;
#[cfg(feature = "cuda")]
mod kernel_layout;
#[cfg(all(test, feature = "cuda"))]
mod known_answers;
#[cfg(feature = "cuda")]
mod loss;
#[cfg(feature = "cuda")]
mod matmul;
#[cfg(feature = "cuda")]
mod norm;
#[cfg(feature = "cuda")]
mod optim;
#[cfg(feature = "cuda")]
mod quantized;
#[cfg(feature = "cuda")]
mod random;
#[cfg(feature = "cuda")]
mod reduce;
#[cfg(feature = "cuda-sim")]
mod sim;
#[cfg(feature = "cuda")]
mod softmax;
#[cfg(feature = "cuda")]
mod storage;

#[cfg(feature = "cuda")]
pub use gpu::MemoryStats;
#[cfg(feature = "cuda")]
pub use storage::{CudaStorage, full, upload};

/// Kernels with known answers for the device itself (`known_answers`).
#[cfg(feature = "cuda")]
const SHIM_TESTS: driver::Module = driver::Module {
    name: "shim_tests",
    source: include_str!("sim/shim_tests.cu"),
};

/// Every kernel file of the backend, for compiling them all at once
/// ([`compile_all`]); each launcher names its own.
#[cfg(feature = "cuda")]
pub const MODULES: &[driver::Module] = &[
    attention::MODULE,
    copy::MODULE,
    elementwise::MODULE,
    grouped::MODULE,
    index::MODULE,
    loss::MODULE,
    norm::MODULE,
    optim::MODULE,
    quantized::MODULE,
    random::MODULE,
    reduce::MODULE,
    softmax::MODULE,
    SHIM_TESTS,
];

/// The CUDA device `ordinal` (opening it the first time), or why it
/// cannot be used.
#[cfg(feature = "cuda")]
pub(crate) fn open(ordinal: usize) -> crate::Result<std::sync::Arc<gpu::Gpu>> {
    gpu::gpu(ordinal).map_err(crate::Error::CudaUnavailable)
}

/// The caching allocator's books for CUDA device `ordinal`: bytes in use,
/// bytes kept for reuse, and how many allocations reached the driver.
#[cfg(feature = "cuda")]
pub fn memory_stats(ordinal: usize) -> crate::Result<MemoryStats> {
    Ok(open(ordinal)?.memory_stats())
}

/// Compiles every kernel file with NVRTC for `arch` (`sm_90` gives cubins,
/// `compute_90` PTX), as the GPU driver does when it loads them: the check
/// that every kernel builds for the GPU, which needs libnvrtc but no GPU.
///
/// ```no_run
/// # fn main() -> zeroformer::Result<()> {
/// for (name, ptx) in zeroformer::backend::cuda::compile_all("compute_90")? {
///     println!("{name}.cu: {} bytes of PTX", ptx.len());
/// }
/// # Ok(()) }
/// ```
#[cfg(feature = "cuda")]
pub fn compile_all(arch: &str) -> crate::Result<Vec<(&'static str, Vec<u8>)>> {
    driver::nvidia::check_nvrtc().map_err(crate::Error::CudaUnavailable)?;
    MODULES
        .iter()
        .map(|m| {
            driver::nvidia::compile(m, arch)
                .map(|image| (m.name, image))
                .map_err(crate::Error::CudaUnavailable)
        })
        .collect()
}

/// Queues kernel `$name` of `$module` on `$gpu` with its arguments packed
/// as `cuLaunchKernel` takes them: the address of each value. The values
/// are temporaries of this one expression, alive until the launch returns
/// (which copies them, as `cuLaunchKernel` does). Unsafe: each argument's
/// type must be the kernel's parameter's (a `DevicePtr` for a pointer,
/// `KernelLayout` for a `ZfLayout`, `i64`, `i32`, `f32` as declared).
#[cfg(feature = "cuda")]
macro_rules! launch {
    ($gpu:expr, $module:expr, $name:expr, $grid:expr, $block:expr, $shared:expr; $($arg:expr),* $(,)?) => {
        $gpu.launch(
            &$module,
            $name,
            $grid,
            $block,
            $shared,
            &mut [$(&$arg as *const _ as *mut ::std::ffi::c_void),*],
        )
    };
}
#[cfg(feature = "cuda")]
use launch;
