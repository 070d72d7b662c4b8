//! One CUDA device as the backend uses it: its driver, a caching allocator
//! over the driver's memory, the kernels it has loaded, and the registry
//! that opens each device once.
//!
//! **Allocation.** Device memory is reused, not freed, between steps: a
//! dropped buffer goes back to a free list keyed by its rounded size, and
//! the next request of that size takes it (PyTorch's caching allocator,
//! without splitting). Every operation goes to one stream in order, so a
//! buffer freed while queued work still reads it is only handed out to
//! work queued after. When the driver runs out of memory, the free lists
//! are returned to it and the allocation tried once more.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::driver::{DeviceInfo, DevicePtr, Dim3, Driver, Function, Gemm, Module};
use crate::device::human_bytes;

/// A CUDA device, opened once and shared by every buffer on it.
pub struct Gpu {
    ordinal: usize,
    driver: Box<dyn Driver>,
    cache: Mutex<Cache>,
    functions: Mutex<HashMap<(&'static str, &'static str), Function>>,
    /// Copies to the host so far: each waits for the queued work.
    downloads: AtomicU64,
}

/// The allocator's books.
#[derive(Default)]
struct Cache {
    /// Free buffers by rounded size.
    free: HashMap<usize, Vec<DevicePtr>>,
    /// Bytes in buffers handed out.
    in_use: usize,
    /// Bytes in the free lists.
    cached: usize,
    /// Allocations the driver was asked for.
    fresh: u64,
}

/// Sizes are rounded up so that nearly equal requests share buffers:
/// to 512 bytes under 1 MiB, to 1 MiB above.
fn rounded(bytes: usize) -> usize {
    if bytes < 1 << 20 {
        bytes.next_multiple_of(512)
    } else {
        bytes.next_multiple_of(1 << 20)
    }
}

/// Device memory from a [`Gpu`]'s allocator, returned to it when dropped.
pub struct DeviceBuffer {
    ptr: DevicePtr,
    bytes: usize,
    gpu: Arc<Gpu>,
}

impl DeviceBuffer {
    /// The buffer's address (null for an empty buffer).
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }

    /// The device it lives on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer({:#x}, {} bytes, GPU {})",
            self.ptr.0, self.bytes, self.gpu.ordinal
        )
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut cache = self.gpu.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.in_use -= self.bytes;
        cache.cached += self.bytes;
        cache.free.entry(self.bytes).or_default().push(self.ptr);
    }
}

/// What the allocator holds and how often the host read the device: for
/// tests and out-of-memory messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in buffers in use.
    pub in_use: usize,
    /// Bytes in free buffers kept for reuse.
    pub cached: usize,
    /// Allocations the driver was asked for since the device was opened.
    pub fresh_allocations: u64,
    /// Copies from the device to the host since it was opened (a loss
    /// read, a checkpoint saved): each waits for the work queued before it.
    pub downloads: u64,
}

impl Gpu {
    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's properties.
    pub fn info(&self) -> &DeviceInfo {
        self.driver.info()
    }

    /// The driver's free memory plus what the allocator keeps for reuse.
    pub fn available_memory(&self) -> Option<u64> {
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).cached as u64;
        self.driver.free_memory().map(|free| free + cached)
    }

    /// The allocator's books.
    pub fn memory_stats(&self) -> MemoryStats {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        MemoryStats {
            in_use: cache.in_use,
            cached: cache.cached,
            fresh_allocations: cache.fresh,
            downloads: self.downloads.load(Ordering::Relaxed),
        }
    }

    /// A buffer of at least `bytes` bytes, reused when one is free. Panics
    /// when the device has no memory left even after returning the free
    /// buffers to it.
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> DeviceBuffer {
        if bytes == 0 {
            return DeviceBuffer {
                ptr: DevicePtr(0),
                bytes: 0,
                gpu: self.clone(),
            };
        }
        let size = rounded(bytes);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let reused = cache.free.get_mut(&size).and_then(Vec::pop);
        let ptr = match reused {
            Some(ptr) => {
                cache.cached -= size;
                ptr
            }
            None => {
                let ptr = self.driver.alloc(size).or_else(|_| {
                    // Give the free lists back to the device and try again.
                    for (len, ptrs) in cache.free.drain() {
                        for p in ptrs {
                            // SAFETY: free buffers belong to this driver, and
                            // queued work is ordered before the free.
                            unsafe { self.driver.free(p, len) };
                        }
                    }
                    cache.cached = 0;
                    self.driver.alloc(size)
                });
                let ptr = ptr.unwrap_or_else(|e| {
                    panic!(
                        "CUDA device {}: out of memory allocating {} ({} in use): {e}",
                        self.ordinal,
                        human_bytes(size as u64),
                        human_bytes(cache.in_use as u64)
                    )
                });
                cache.fresh += 1;
                ptr
            }
        };
        cache.in_use += size;
        DeviceBuffer {
            ptr,
            bytes: size,
            gpu: self.clone(),
        }
    }

    /// Host bytes in a new device buffer.
    pub fn upload(self: &Arc<Self>, bytes: &[u8]) -> DeviceBuffer {
        let buffer = self.alloc(bytes.len());
        if !bytes.is_empty() {
            // SAFETY: the buffer holds at least `bytes.len()` bytes.
            unsafe { self.driver.copy_to_device(buffer.ptr, bytes) };
        }
        buffer
    }

    /// `bytes` bytes from `src` to the host, after the queued work.
    pub fn download(&self, src: DevicePtr, bytes: usize) -> Vec<u8> {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let mut host = vec![0u8; bytes];
        if bytes > 0 {
            // SAFETY: the callers pass a range of one of their buffers.
            unsafe { self.driver.copy_to_host(&mut host, src) };
        }
        host
    }

    /// Copies `bytes` bytes between device buffers.
    ///
    /// # Safety
    /// Both ranges must be valid.
    pub unsafe fn copy(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) {
        if bytes > 0 {
            // SAFETY: as the caller vouches.
            unsafe { self.driver.copy_on_device(dst, src, bytes) };
        }
    }

    /// Sets `bytes` bytes to `value`.
    ///
    /// # Safety
    /// The range must be valid.
    pub unsafe fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) {
        if bytes > 0 {
            // SAFETY: as the caller vouches.
            unsafe { self.driver.memset(dst, value, bytes) };
        }
    }

    /// The kernel `name` of `module`, loaded once.
    pub fn function(&self, module: &Module, name: &'static str) -> Function {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        *functions.entry((module.name, name)).or_insert_with(|| {
            self.driver
                .function(module, name)
                .unwrap_or_else(|e| panic!("CUDA device {}: {e}", self.ordinal))
        })
    }

    /// Queues kernel `name` of `module`; panics naming it when the launch
    /// fails.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters (see [`Driver::launch`]).
    pub unsafe fn launch(
        &self,
        module: &Module,
        name: &'static str,
        grid: Dim3,
        block: Dim3,
        shared_bytes: usize,
        args: &mut [*mut c_void],
    ) {
        let function = self.function(module, name);
        // SAFETY: as the caller vouches.
        unsafe {
            self.driver
                .launch(&function, grid, block, shared_bytes, args)
        }
        .unwrap_or_else(|e| panic!("CUDA device {}: {e}", self.ordinal));
    }

    /// Blocks for a grid-stride kernel over `n` items: enough to fill the
    /// device (a few per multiprocessor), no more than the items need.
    pub fn grid_for(&self, n: usize, block: u32) -> Dim3 {
        let wanted = n.div_ceil(block as usize).max(1);
        let fill = self.info().multiprocessors as usize * 8;
        Dim3::x(wanted.min(fill) as u32)
    }

    /// Queues a strided batched SGEMM; panics with cuBLAS's error.
    ///
    /// # Safety
    /// As [`Driver::sgemm_strided_batched`].
    pub unsafe fn gemm(&self, gemm: &Gemm) {
        // SAFETY: as the caller vouches.
        unsafe { self.driver.sgemm_strided_batched(gemm) }
            .unwrap_or_else(|e| panic!("CUDA device {}: {e}", self.ordinal));
    }
}

/// The devices opened so far, by ordinal.
fn registry() -> &'static Mutex<Vec<Option<Arc<Gpu>>>> {
    static GPUS: OnceLock<Mutex<Vec<Option<Arc<Gpu>>>>> = OnceLock::new();
    GPUS.get_or_init(|| Mutex::new(Vec::new()))
}

/// CUDA device `ordinal`, opened the first time; why it cannot be used
/// otherwise.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>, String> {
    let mut gpus = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Some(gpu)) = gpus.get(ordinal) {
        return Ok(gpu.clone());
    }
    let driver = open_driver(ordinal)?;
    let gpu = Arc::new(Gpu {
        ordinal,
        driver,
        cache: Mutex::new(Cache::default()),
        functions: Mutex::new(HashMap::new()),
        downloads: AtomicU64::new(0),
    });
    if gpus.len() <= ordinal {
        gpus.resize(ordinal + 1, None);
    }
    gpus[ordinal] = Some(gpu.clone());
    Ok(gpu)
}

#[cfg(feature = "cuda-sim")]
fn open_driver(ordinal: usize) -> Result<Box<dyn Driver>, String> {
    Ok(Box::new(super::driver::sim::SimDriver::open(ordinal)?))
}

#[cfg(not(feature = "cuda-sim"))]
fn open_driver(ordinal: usize) -> Result<Box<dyn Driver>, String> {
    Ok(Box::new(super::driver::nvidia::NvidiaDriver::open(
        ordinal,
    )?))
}
