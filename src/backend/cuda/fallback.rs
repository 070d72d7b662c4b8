//! The one host fallback: for a primitive without a CUDA kernel, download
//! its operands, run the CPU backend's kernel, upload the results. Each
//! such primitive is listed in [`HOST_FALLBACKS`] and every call counted,
//! so that tests and benchmarks see what still leaves the device.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::gpu::Gpu;
use super::storage::CudaStorage;
use crate::backend::View;
use crate::backend::cpu::CpuStorage;
use crate::layout::Layout;

/// The primitives that run on the host: everything without a `.cu` kernel
/// of its own.
pub const HOST_FALLBACKS: &[&str] = &["attention", "attention_backward"];

static COUNTS: [AtomicUsize; HOST_FALLBACKS.len()] =
    [const { AtomicUsize::new(0) }; HOST_FALLBACKS.len()];

/// How many times each primitive of [`HOST_FALLBACKS`] ran on the host in
/// this process, in that list's order.
///
/// ```
/// let counts = zeroformer::backend::cuda::host_fallbacks();
/// assert_eq!(counts.len(), zeroformer::backend::cuda::HOST_FALLBACKS.len());
/// ```
pub fn host_fallbacks() -> Vec<(&'static str, usize)> {
    HOST_FALLBACKS
        .iter()
        .zip(&COUNTS)
        .map(|(&name, count)| (name, count.load(Ordering::Relaxed)))
        .collect()
}

/// Counts one host run of `op`, which must be listed.
pub(crate) fn count(op: &str) {
    let at = HOST_FALLBACKS
        .iter()
        .position(|&name| name == op)
        .unwrap_or_else(|| panic!("{op} falls back to the host but is not in HOST_FALLBACKS"));
    COUNTS[at].fetch_add(1, Ordering::Relaxed);
}

/// Every element of a device storage, on the host.
pub(crate) fn host(storage: &CudaStorage) -> CpuStorage {
    storage.to_cpu()
}

/// An optional operand on the host, with its layout.
pub(crate) fn host_view<'a>(
    view: Option<View<'a, CudaStorage>>,
) -> Option<(CpuStorage, &'a Layout)> {
    view.map(|(s, l)| (host(s), l))
}

/// The view of an optional host operand.
pub(crate) fn view<'a>(host: &'a Option<(CpuStorage, &'a Layout)>) -> Option<View<'a, CpuStorage>> {
    host.as_ref().map(|(s, l)| (s, *l))
}

/// A host result on the device.
pub(crate) fn device(gpu: &Arc<Gpu>, host: &CpuStorage) -> CudaStorage {
    CudaStorage::from_host(gpu, host)
}

/// Counts `op` and runs its CPU kernel.
pub(crate) fn run_host<R>(op: &str, f: impl FnOnce() -> R) -> R {
    count(op);
    f()
}
