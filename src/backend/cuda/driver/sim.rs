//! The simulated GPU's driver: device memory is host memory handed out as
//! device addresses, which only this driver reads and writes; kernels are
//! the `.cu` files compiled for the host (build.rs), run by the fiber
//! scheduler; cuBLAS is the reference in `sim::cublas`. Work runs when it
//! is queued, so the stream is always idle.
//!
//! Every copy, fill and product is checked against the live allocations,
//! so an address or size the backend got wrong panics here, naming the
//! operation, instead of corrupting memory.

use std::alloc::Layout as Alloc;
use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_void};
use std::sync::Mutex;

use super::{DeviceInfo, DevicePtr, Dim3, Driver, Function, Gemm, Module};
use crate::backend::cuda::sim::{cublas, fibers};

/// One entry of a module's kernel table (shim.h's `zf_sim_kernel`).
#[repr(C)]
pub(crate) struct SimKernel {
    name: *const c_char,
    entry: Option<fibers::Entry>,
}

mod tables {
    include!(concat!(env!("OUT_DIR"), "/sim_modules.rs"));
}

/// How many GPUs the simulator offers: two, so that ops given tensors on
/// two devices can be tested.
pub const DEVICES: usize = 2;

/// Alignment of every allocation, as `cuMemAlloc`'s.
const ALIGN: usize = 256;

/// A simulated GPU.
pub struct SimDriver {
    info: DeviceInfo,
    /// Live allocations: start address to size in bytes.
    allocations: Mutex<BTreeMap<u64, usize>>,
}

impl SimDriver {
    /// Simulated GPU `ordinal`, or why there is none.
    pub fn open(ordinal: usize) -> Result<SimDriver, String> {
        if ordinal >= DEVICES {
            return Err(format!(
                "there is no GPU {ordinal}: the simulated GPU has devices 0 to {}",
                DEVICES - 1
            ));
        }
        let threads = rayon::current_num_threads() as u32;
        let total_memory = crate::Device::Cpu.available_memory().unwrap_or(1 << 34);
        Ok(SimDriver {
            info: DeviceInfo {
                name: format!("zeroformer simulated GPU {ordinal} ({threads} CPU threads)"),
                multiprocessors: threads.max(1),
                compute_capability: (9, 0),
                total_memory,
            },
            allocations: Mutex::new(BTreeMap::new()),
        })
    }

    /// Panics naming `op` unless `bytes` from `ptr` lie in one live allocation.
    fn check(&self, op: &str, ptr: DevicePtr, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let allocations = self.allocations.lock().unwrap_or_else(|e| e.into_inner());
        let inside = allocations
            .range(..=ptr.0)
            .next_back()
            .is_some_and(|(&start, &len)| ptr.0 + bytes as u64 <= start + len as u64);
        assert!(
            inside,
            "simulated GPU: {op} of {bytes} bytes at {:#x} is outside every allocation",
            ptr.0
        );
    }
}

impl Driver for SimDriver {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn free_memory(&self) -> Option<u64> {
        crate::Device::Cpu.available_memory()
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, String> {
        let layout = Alloc::from_size_align(bytes.max(1), ALIGN).map_err(|e| e.to_string())?;
        // SAFETY: the size is not zero.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(format!("out of memory allocating {bytes} bytes"));
        }
        let mut allocations = self.allocations.lock().unwrap_or_else(|e| e.into_inner());
        allocations.insert(ptr as u64, bytes.max(1));
        Ok(DevicePtr(ptr as u64))
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: usize) {
        let mut allocations = self.allocations.lock().unwrap_or_else(|e| e.into_inner());
        let len = allocations.remove(&ptr.0);
        assert_eq!(
            len,
            Some(bytes.max(1)),
            "simulated GPU: freeing {bytes} bytes at {:#x}, which is not an allocation of that size",
            ptr.0
        );
        let layout = Alloc::from_size_align(bytes.max(1), ALIGN).expect("allocated with it");
        // SAFETY: allocated above with this layout, and now forgotten.
        unsafe { std::alloc::dealloc(ptr.0 as *mut u8, layout) };
    }

    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) {
        self.check("a copy to the device", dst, src.len());
        // SAFETY: checked against the allocations.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.0 as *mut u8, src.len()) };
    }

    unsafe fn copy_to_host(&self, dst: &mut [u8], src: DevicePtr) {
        self.check("a copy to the host", src, dst.len());
        // SAFETY: checked against the allocations.
        unsafe { std::ptr::copy_nonoverlapping(src.0 as *const u8, dst.as_mut_ptr(), dst.len()) };
    }

    unsafe fn copy_on_device(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) {
        self.check("a device-to-device copy's source", src, bytes);
        self.check("a device-to-device copy's destination", dst, bytes);
        // SAFETY: checked; `copy` allows overlap, as cuMemcpy's result is
        // then undefined but not unsafe.
        unsafe { std::ptr::copy(src.0 as *const u8, dst.0 as *mut u8, bytes) };
    }

    unsafe fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) {
        self.check("a memset", dst, bytes);
        // SAFETY: checked against the allocations.
        unsafe { std::ptr::write_bytes(dst.0 as *mut u8, value, bytes) };
    }

    fn function(&self, module: &Module, name: &'static str) -> Result<Function, String> {
        let (_, table) = tables::MODULES
            .iter()
            .find(|(m, _)| *m == module.name)
            .ok_or_else(|| format!("no compiled kernel module `{}`", module.name))?;
        // SAFETY: build.rs writes a table ended by a null entry.
        unsafe {
            let mut entry = table();
            while !(*entry).name.is_null() {
                if CStr::from_ptr((*entry).name).to_bytes() == name.as_bytes() {
                    let handle = (*entry).entry.expect("a named entry has a function") as usize;
                    return Ok(Function {
                        name,
                        handle: handle as u64,
                    });
                }
                entry = entry.add(1);
            }
        }
        Err(format!("module `{}` has no kernel `{name}`", module.name))
    }

    unsafe fn launch(
        &self,
        function: &Function,
        grid: Dim3,
        block: Dim3,
        shared_bytes: usize,
        args: &mut [*mut c_void],
    ) -> Result<(), String> {
        // SAFETY: the handle is an entry from `function`.
        let entry: fibers::Entry = unsafe { std::mem::transmute(function.handle as usize) };
        let launch = fibers::Launch {
            name: function.name,
            entry,
            grid,
            block,
            shared_bytes,
            max_shared_bytes: fibers::DEFAULT_MAX_SHARED_BYTES,
            args: args.as_mut_ptr(),
        };
        // SAFETY: the caller vouches for the arguments.
        unsafe { fibers::run(&launch) };
        Ok(())
    }

    unsafe fn sgemm_strided_batched(&self, gemm: &Gemm) -> Result<(), String> {
        cublas::validate(gemm)?;
        let (a, b, c) = cublas::extents(gemm);
        self.check("cuBLAS's A", gemm.a, a * 4);
        self.check("cuBLAS's B", gemm.b, b * 4);
        self.check("cuBLAS's C", gemm.c, c * 4);
        // SAFETY: the extents are checked against the allocations.
        unsafe { cublas::sgemm_strided_batched(gemm) }
    }

    fn synchronize(&self) -> Result<(), String> {
        Ok(())
    }
}
