//! An NVIDIA GPU through cudarc's thin `result` layer: the primary
//! context, one non-blocking stream, cuBLAS bound to it, and kernel
//! modules compiled by NVRTC for the GPU's own architecture (a cubin, which
//! a driver of the same CUDA major version loads without JIT).
//!
//! cudarc loads libcuda, libnvrtc and libcublas on first use and panics
//! when one is missing, so [`NvidiaDriver::open`] checks each is present
//! first and says which is not.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::Mutex;

use cudarc::cublas::{result as cublas, sys as cublas_sys};
use cudarc::driver::{result, sys};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use super::{DeviceInfo, DevicePtr, Dim3, Driver, Function, Gemm, Module, PRELUDE};

/// Why a library cudarc would load is missing, if it is.
fn missing(present: bool, lib: &str, provides: &str) -> Result<(), String> {
    if present {
        return Ok(());
    }
    Err(format!(
        "{lib} was not found ({provides}); install it, or add the folder holding it to LD_LIBRARY_PATH"
    ))
}

/// Whether NVRTC can be loaded: all that compiling the kernels needs.
pub fn check_nvrtc() -> Result<(), String> {
    // SAFETY: only tries to open the library.
    let present = unsafe { nvrtc_sys::is_culib_present() };
    missing(
        present,
        "libnvrtc.so",
        "CUDA's run-time compiler, which builds the kernels",
    )
}

/// Whether the three libraries the backend needs can be loaded, and if
/// not, which is missing and how to provide it.
pub fn check_libraries() -> Result<(), String> {
    // SAFETY: each only tries to open its library.
    let (driver, cublas) = unsafe { (sys::is_culib_present(), cublas_sys::is_culib_present()) };
    missing(driver, "libcuda.so", "the NVIDIA driver")?;
    check_nvrtc()?;
    missing(cublas, "libcublas.so", "cuBLAS, for the matrix products")
}

/// Compiles `module` (after the prelude) with NVRTC for `arch`: a real
/// architecture (`sm_90`) gives a cubin, a virtual one (`compute_90`) PTX.
pub fn compile(module: &Module, arch: &str) -> Result<Vec<u8>, String> {
    let source = format!(
        "{}\n{}\n#line 1 \"{}.cu\"\n{}",
        PRELUDE[0], PRELUDE[1], module.name, module.source
    );
    let source = CString::new(source).map_err(|e| e.to_string())?;
    let name = CString::new(format!("{}.cu", module.name)).map_err(|e| e.to_string())?;
    let program = nvrtc::create_program(&source, Some(&name)).map_err(|e| e.to_string())?;
    let options = [
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
    ];
    // SAFETY: the program was just created and is destroyed once, below.
    unsafe {
        let compiled = nvrtc::compile_program(program, &options);
        let result = match compiled {
            Err(e) => {
                let log = nvrtc::get_program_log(program).unwrap_or_default();
                let log: Vec<u8> = log
                    .iter()
                    .map(|&c| c as u8)
                    .take_while(|&c| c != 0)
                    .collect();
                Err(format!(
                    "NVRTC could not compile {}.cu for {arch} ({e}):\n{}",
                    module.name,
                    String::from_utf8_lossy(&log)
                ))
            }
            Ok(()) if arch.starts_with("sm_") => cubin(program),
            Ok(()) => nvrtc::get_ptx(program)
                .map(|ptx| ptx.iter().map(|&c| c as u8).collect())
                .map_err(|e| e.to_string()),
        };
        let _ = nvrtc::destroy_program(program);
        result
    }
}

/// The compiled program's cubin.
///
/// # Safety
/// `program` must be compiled and not destroyed.
unsafe fn cubin(program: nvrtc_sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    let mut size = 0usize;
    // SAFETY: as the caller vouches.
    unsafe {
        nvrtc_sys::nvrtcGetCUBINSize(program, &mut size)
            .result()
            .map_err(|e| e.to_string())?;
        let mut bytes = vec![0u8; size];
        nvrtc_sys::nvrtcGetCUBIN(program, bytes.as_mut_ptr().cast())
            .result()
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

thread_local! {
    /// The context current on this thread, to skip setting it again.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// One NVIDIA GPU.
pub struct NvidiaDriver {
    context: sys::CUcontext,
    device: sys::CUdevice,
    stream: sys::CUstream,
    cublas: cublas_sys::cublasHandle_t,
    info: DeviceInfo,
    modules: Mutex<HashMap<&'static str, usize>>,
}

// SAFETY: CUDA's handles may be used from any thread once the context is
// current there (`bind` makes it so before every call); the module map is
// behind a mutex.
unsafe impl Send for NvidiaDriver {}
unsafe impl Sync for NvidiaDriver {}

fn error(what: &str) -> impl Fn(result::DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl NvidiaDriver {
    /// GPU `ordinal`, or why it cannot be used.
    pub fn open(ordinal: usize) -> Result<NvidiaDriver, String> {
        check_libraries()?;
        result::init().map_err(error("starting the CUDA driver"))?;
        let count = result::device::get_count().map_err(error("counting GPUs"))?;
        if ordinal >= count.max(0) as usize {
            return Err(format!("there is no GPU {ordinal}: CUDA sees {count}"));
        }
        let device = result::device::get(ordinal as i32).map_err(error("opening the GPU"))?;
        // SAFETY: `device` comes from the driver; the context is released on drop.
        unsafe {
            let context =
                result::primary_ctx::retain(device).map_err(error("creating a context"))?;
            result::ctx::set_current(context).map_err(error("binding the context"))?;
            CURRENT.with(|c| c.set(context as usize));
            let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
                .map_err(error("creating a stream"))?;
            let handle = cublas::create_handle().map_err(|e| format!("starting cuBLAS: {e}"))?;
            cublas::set_stream(handle, stream as _).map_err(|e| format!("binding cuBLAS: {e}"))?;
            let attribute = |a| result::device::get_attribute(device, a).unwrap_or(0).max(0) as u32;
            use sys::CUdevice_attribute::*;
            let info = DeviceInfo {
                name: result::device::get_name(device).unwrap_or_else(|_| format!("GPU {ordinal}")),
                multiprocessors: attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).max(1),
                compute_capability: (
                    attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                    attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
                ),
                total_memory: result::device::total_mem(device).unwrap_or(0) as u64,
            };
            Ok(NvidiaDriver {
                context,
                device,
                stream,
                cublas: handle,
                info,
                modules: Mutex::new(HashMap::new()),
            })
        }
    }

    /// Makes this GPU's context current on the calling thread.
    fn bind(&self) {
        let context = self.context as usize;
        if CURRENT.with(|c| c.get()) != context {
            // SAFETY: the context lives as long as the driver.
            unsafe { result::ctx::set_current(self.context) }
                .unwrap_or_else(|e| panic!("CUDA: binding the context to a thread: {e}"));
            CURRENT.with(|c| c.set(context));
        }
    }

    /// The loaded module `module`, compiled the first time.
    fn module(&self, module: &Module) -> Result<sys::CUmodule, String> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&loaded) = modules.get(module.name) {
            return Ok(loaded as sys::CUmodule);
        }
        let (major, minor) = self.info.compute_capability;
        let image = compile(module, &format!("sm_{major}{minor}"))?;
        // SAFETY: a cubin NVRTC just produced.
        let loaded = unsafe { result::module::load_data(image.as_ptr().cast()) }
            .map_err(error(&format!("loading kernels {}.cu", module.name)))?;
        modules.insert(module.name, loaded as usize);
        Ok(loaded)
    }
}

impl Drop for NvidiaDriver {
    fn drop(&mut self) {
        self.bind();
        // SAFETY: the handles were made in `open` and are released once.
        unsafe {
            let _ = result::stream::synchronize(self.stream);
            let _ = cublas::destroy_handle(self.cublas);
            for (_, &module) in self
                .modules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                let _ = result::module::unload(module as sys::CUmodule);
            }
            let _ = result::stream::destroy(self.stream);
            let _ = result::primary_ctx::release(self.device);
        }
    }
}

impl Driver for NvidiaDriver {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn free_memory(&self) -> Option<u64> {
        self.bind();
        result::mem_get_info().ok().map(|(free, _)| free as u64)
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, String> {
        self.bind();
        // SAFETY: a plain allocation.
        unsafe { result::malloc_sync(bytes.max(1)) }
            .map(DevicePtr)
            .map_err(|e| format!("allocating {bytes} bytes: {e}"))
    }

    unsafe fn free(&self, ptr: DevicePtr, _bytes: usize) {
        self.bind();
        // SAFETY: the caller vouches that no queued work uses it; waiting
        // for the stream makes sure.
        unsafe {
            let _ = result::stream::synchronize(self.stream);
            let _ = result::free_sync(ptr.0);
        }
    }

    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) {
        self.bind();
        // SAFETY: from pageable memory the call returns once `src` is
        // staged, so it may be dropped after.
        unsafe { result::memcpy_htod_async(dst.0, src, self.stream) }
            .unwrap_or_else(|e| panic!("CUDA: copying {} bytes to the GPU: {e}", src.len()));
    }

    unsafe fn copy_to_host(&self, dst: &mut [u8], src: DevicePtr) {
        self.bind();
        let bytes = dst.len();
        // SAFETY: the copy is waited for before `dst` is used.
        unsafe {
            result::memcpy_dtoh_async(dst, src.0, self.stream)
                .and_then(|()| result::stream::synchronize(self.stream))
        }
        .unwrap_or_else(|e| panic!("CUDA: copying {bytes} bytes from the GPU (or the work queued before it failed): {e}"));
    }

    unsafe fn copy_on_device(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) {
        self.bind();
        // SAFETY: as the caller vouches.
        unsafe { result::memcpy_dtod_async(dst.0, src.0, bytes, self.stream) }
            .unwrap_or_else(|e| panic!("CUDA: copying {bytes} bytes on the GPU: {e}"));
    }

    unsafe fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) {
        self.bind();
        // SAFETY: as the caller vouches.
        unsafe { result::memset_d8_async(dst.0, value, bytes, self.stream) }
            .unwrap_or_else(|e| panic!("CUDA: setting {bytes} bytes: {e}"));
    }

    fn function(&self, module: &Module, name: &'static str) -> Result<Function, String> {
        self.bind();
        let loaded = self.module(module)?;
        let c_name = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: the module stays loaded as long as the driver.
        let function = unsafe { result::module::get_function(loaded, c_name) }.map_err(error(
            &format!("finding kernel {name} in {}.cu", module.name),
        ))?;
        Ok(Function {
            name,
            handle: function as u64,
        })
    }

    unsafe fn launch(
        &self,
        function: &Function,
        grid: Dim3,
        block: Dim3,
        shared_bytes: usize,
        args: &mut [*mut c_void],
    ) -> Result<(), String> {
        self.bind();
        // SAFETY: as the caller vouches.
        unsafe {
            result::launch_kernel(
                function.handle as sys::CUfunction,
                (grid.x, grid.y, grid.z),
                (block.x, block.y, block.z),
                shared_bytes as u32,
                self.stream,
                args,
            )
        }
        .map_err(|e| {
            format!(
                "launching kernel `{}` ({} x {} x {} blocks of {} x {} x {} threads, {shared_bytes} bytes of shared memory): {e}",
                function.name, grid.x, grid.y, grid.z, block.x, block.y, block.z
            )
        })
    }

    unsafe fn sgemm_strided_batched(&self, g: &Gemm) -> Result<(), String> {
        self.bind();
        let op = |t: bool| {
            if t {
                cublas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                cublas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        // SAFETY: as the caller vouches; alpha and beta are read before
        // the call returns.
        unsafe {
            cublas::sgemm_strided_batched(
                self.cublas,
                op(g.transa),
                op(g.transb),
                g.m,
                g.n,
                g.k,
                &g.alpha,
                g.a.0 as *const f32,
                g.lda,
                g.stride_a,
                g.b.0 as *const f32,
                g.ldb,
                g.stride_b,
                &g.beta,
                g.c.0 as *mut f32,
                g.ldc,
                g.stride_c,
                g.batch,
            )
        }
        .map_err(|e| format!("cublasSgemmStridedBatched: {e}"))
    }

    fn synchronize(&self) -> Result<(), String> {
        self.bind();
        // SAFETY: the stream lives as long as the driver.
        unsafe { result::stream::synchronize(self.stream) }.map_err(|e| e.to_string())
    }
}
