//! The only code that talks to CUDA: a small [`Driver`] interface in the
//! shape of CUDA's driver API, and its two implementations.
//!
//! - `nvidia` (the `cuda` feature): an NVIDIA GPU through cudarc, which
//!   loads libcuda, libnvrtc and libcublas at run time. Kernels are
//!   compiled from their `.cu` source by NVRTC for the GPU's architecture.
//! - `sim` (the `cuda-sim` feature): the simulated GPU. Its memory is host
//!   memory reached only through device addresses, its kernels the same
//!   `.cu` files compiled for the host (build.rs), run by the fiber
//!   scheduler in `sim/`; its cuBLAS is a reference with cuBLAS's
//!   column-major semantics.
//!
//! Everything above (allocator, launchers, `CudaStorage`) is written
//! against the trait, so both run the same code.

use std::ffi::c_void;

#[cfg(feature = "cuda")]
#[cfg_attr(feature = "cuda-sim", allow(dead_code))]
pub(crate) mod nvidia;
#[cfg(feature = "cuda-sim")]
pub(crate) mod sim;

/// A grid or block size, x fastest (CUDA's `dim3`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dim3 {
    /// The fastest-varying extent.
    pub x: u32,
    /// The middle extent.
    pub y: u32,
    /// The slowest-varying extent.
    pub z: u32,
}

impl Dim3 {
    /// `x` along the first axis, 1 along the others.
    pub fn x(x: u32) -> Dim3 {
        Dim3 { x, y: 1, z: 1 }
    }

    /// How many elements: `x · y · z`.
    pub fn count(self) -> u64 {
        self.x as u64 * self.y as u64 * self.z as u64
    }

    /// The coordinates of the `i`-th element in x-fastest order.
    pub fn at(self, i: u64) -> Dim3 {
        let (x, y) = (self.x as u64, self.y as u64);
        Dim3 {
            x: (i % x) as u32,
            y: (i / x % y) as u32,
            z: (i / (x * y)) as u32,
        }
    }
}

/// An address in device memory (passed to kernels as a pointer).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevicePtr(pub u64);

impl DevicePtr {
    /// The address `bytes` further on.
    pub fn offset(self, bytes: usize) -> DevicePtr {
        DevicePtr(self.0 + bytes as u64)
    }
}

/// A kernel source file of this backend: its name and CUDA C++ text.
/// Kernels are `extern "C" __global__` functions, so they are found by
/// their plain names on both drivers.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// The file's stem (`copy` for copy.cu).
    pub name: &'static str,
    /// The file's text, without the prelude.
    pub source: &'static str,
}

/// The text every kernel file is compiled after: prelude.cuh, then the
/// op tables' codes that build.rs writes from src/backend/op_tables.rs.
pub const PRELUDE: [&str; 2] = [
    include_str!("../prelude.cuh"),
    include_str!(concat!(env!("OUT_DIR"), "/op_tables.cuh")),
];

/// A loaded kernel: its name and the driver's handle to it.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// The kernel's name, for messages.
    pub name: &'static str,
    /// The driver's handle (a `CUfunction`, or the simulator's entry).
    pub handle: u64,
}

/// One `cublasSgemmStridedBatched` call, column-major as cuBLAS reads it:
/// `C_i = alpha · op(A_i) · op(B_i) + beta · C_i` for each batch `i`, with
/// `op(A)` `m x k`, `op(B)` `k x n` and `C` `m x n`.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// `op(A) = Aᵀ` (`CUBLAS_OP_T`) instead of `A`.
    pub transa: bool,
    /// `op(B) = Bᵀ`.
    pub transb: bool,
    /// Rows of `op(A)` and `C`.
    pub m: i32,
    /// Columns of `op(B)` and `C`.
    pub n: i32,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: i32,
    /// The product's factor.
    pub alpha: f32,
    /// `A`'s first element.
    pub a: DevicePtr,
    /// `A`'s leading dimension (elements between columns).
    pub lda: i32,
    /// Elements between one batch's `A` and the next's (0: shared).
    pub stride_a: i64,
    /// `B`'s first element.
    pub b: DevicePtr,
    /// `B`'s leading dimension.
    pub ldb: i32,
    /// Elements between batches of `B`.
    pub stride_b: i64,
    /// `C`'s factor; 0 means `C` is not read.
    pub beta: f32,
    /// `C`'s first element.
    pub c: DevicePtr,
    /// `C`'s leading dimension.
    pub ldc: i32,
    /// Elements between batches of `C`.
    pub stride_c: i64,
    /// How many products.
    pub batch: i32,
}

/// What a device is.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Its name (`NVIDIA H100 80GB HBM3`, or the simulator's).
    pub name: String,
    /// Its multiprocessors: grid-stride kernels launch a few blocks per one.
    pub multiprocessors: u32,
    /// Its compute capability, `(major, minor)`.
    pub compute_capability: (u32, u32),
    /// Its memory, in bytes.
    pub total_memory: u64,
}

/// The operations the backend needs from CUDA, in the shape of its driver
/// API. All work goes to one stream, in order; copies to the host wait for
/// it. Errors are messages: the layer above panics with them (a device
/// error inside a primitive is a panic naming the op) or, at start-up,
/// returns them as [`Error::CudaUnavailable`](crate::Error::CudaUnavailable).
pub trait Driver: Send + Sync {
    /// The device's properties.
    fn info(&self) -> &DeviceInfo;
    /// The device memory still free, in bytes, when the driver can tell.
    fn free_memory(&self) -> Option<u64>;

    /// `bytes` of device memory, aligned to 256 bytes.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr, String>;
    /// Returns memory from [`alloc`](Self::alloc) to the device.
    ///
    /// # Safety
    /// `ptr` and `bytes` must be an allocation of this driver that no
    /// queued work still uses.
    unsafe fn free(&self, ptr: DevicePtr, bytes: usize);

    /// Copies host bytes to the device.
    ///
    /// # Safety
    /// `dst` must be valid for `src.len()` bytes.
    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]);
    /// Copies device bytes to the host, after the work queued before it.
    ///
    /// # Safety
    /// `src` must be valid for `dst.len()` bytes.
    unsafe fn copy_to_host(&self, dst: &mut [u8], src: DevicePtr);
    /// Copies `bytes` between device buffers.
    ///
    /// # Safety
    /// Both must be valid for `bytes` bytes.
    unsafe fn copy_on_device(&self, dst: DevicePtr, src: DevicePtr, bytes: usize);
    /// Sets `bytes` bytes to `value`.
    ///
    /// # Safety
    /// `dst` must be valid for `bytes` bytes.
    unsafe fn memset(&self, dst: DevicePtr, value: u8, bytes: usize);

    /// The kernel `name` of `module`, loading (and on a GPU compiling) the
    /// module the first time.
    fn function(&self, module: &Module, name: &'static str) -> Result<Function, String>;
    /// Queues `function` on `grid` blocks of `block` threads with
    /// `shared_bytes` of dynamic shared memory and its packed arguments,
    /// one pointer per parameter (`cuLaunchKernel`'s `kernelParams`).
    ///
    /// # Safety
    /// `args` must match the kernel's parameters, and every device
    /// address among them be valid for what the kernel does with it.
    unsafe fn launch(
        &self,
        function: &Function,
        grid: Dim3,
        block: Dim3,
        shared_bytes: usize,
        args: &mut [*mut c_void],
    ) -> Result<(), String>;
    /// Queues a strided batched SGEMM (cuBLAS).
    ///
    /// # Safety
    /// Every operand must be valid for the extents the call reads and writes.
    unsafe fn sgemm_strided_batched(&self, gemm: &Gemm) -> Result<(), String>;
    /// Waits for every queued operation.
    fn synchronize(&self) -> Result<(), String>;
}
