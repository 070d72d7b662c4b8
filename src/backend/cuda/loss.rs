//! Launchers for loss.cu: cross-entropy fused with its log-softmax, forward
//! and backward, with the mean and the count kept on the device.

use super::driver::{DevicePtr, Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::{BackendStorage, CrossEntropyForward, View};
use crate::layout::Layout;

/// loss.cu.
pub const MODULE: Module = Module {
    name: "loss",
    source: include_str!("loss.cu"),
};

const BLOCK: u32 = 256;

/// The one block of `zf_cross_entropy_mean` (ZF_MEAN_THREADS in loss.cu).
const MEAN_THREADS: u32 = 256;

/// The targets' contiguous i64 elements, copied into `keep` when the view
/// is not a contiguous run.
fn targets_ptr((t, tl): View<CudaStorage>, keep: &mut Option<CudaStorage>, op: &str) -> DevicePtr {
    t.expect(op, DType::I64);
    let (whole, start) = t.contiguous(tl, keep);
    whole.ptr_at(start)
}

/// The kernels' form of `ignore_index`: the value and whether there is one.
fn ignore_args(ignore_index: Option<i64>) -> (i64, i32) {
    (ignore_index.unwrap_or(0), i32::from(ignore_index.is_some()))
}

/// The mean loss over counted targets, the log-probabilities and the count.
/// A target out of range makes the loss NaN (a kernel cannot panic).
pub fn cross_entropy(
    x: &CudaStorage,
    layout: &Layout,
    targets: View<CudaStorage>,
    classes: usize,
    ignore_index: Option<i64>,
) -> CrossEntropyForward<CudaStorage> {
    let op = "cross_entropy";
    x.expect(op, DType::F32);
    x.same_gpu(op, targets.0);
    let (mut x_copy, mut t_copy) = (None, None);
    let (whole, start) = x.contiguous(layout, &mut x_copy);
    let (xp, tp) = (whole.ptr_at(start), targets_ptr(targets, &mut t_copy, op));
    let gpu = x.gpu();
    let count = layout.numel() / classes.max(1);
    let log_probs = CudaStorage::uninit(gpu, DType::F32, layout.numel());
    let row_loss = CudaStorage::uninit(gpu, DType::F32, count);
    let (loss, counted) = (
        CudaStorage::uninit(gpu, DType::F32, 1),
        CudaStorage::uninit(gpu, DType::I64, 1),
    );
    let (rows, classes_) = (count as i64, classes as i64);
    let (ignore, has_ignore) = ignore_args(ignore_index);
    let (lp, rl, lo, co) = (log_probs.ptr(), row_loss.ptr(), loss.ptr(), counted.ptr());
    // SAFETY: `rows · classes` contiguous f32 elements from `xp` and in
    // `log_probs`, `rows` i64 targets from `tp`, `rows` in `row_loss`, one
    // element in `loss` and in `counted`.
    unsafe {
        if count > 0 && classes > 0 {
            launch!(gpu, MODULE, "zf_cross_entropy_rows", gpu.grid_for(count * 32, BLOCK), Dim3::x(BLOCK), 0;
                lp, rl, xp, tp, rows, classes_, ignore, has_ignore);
        }
        launch!(gpu, MODULE, "zf_cross_entropy_mean", Dim3::x(1), Dim3::x(MEAN_THREADS), 0;
            lo, co, rl, tp, rows, ignore, has_ignore);
    }
    CrossEntropyForward {
        loss,
        log_probs,
        count: counted,
    }
}

/// `(softmax - one_hot) · g / count` from the forward's log-probabilities,
/// the one-element upstream gradient `g` and the forward's `count`, all
/// read on the device.
pub fn cross_entropy_backward(
    log_probs: &CudaStorage,
    targets: View<CudaStorage>,
    (g, gl): View<CudaStorage>,
    classes: usize,
    ignore_index: Option<i64>,
    count: &CudaStorage,
) -> CudaStorage {
    let op = "cross_entropy backward";
    log_probs.expect(op, DType::F32);
    g.expect(op, DType::F32);
    count.expect(op, DType::I64);
    let mut t_copy = None;
    let tp = targets_ptr(targets, &mut t_copy, op);
    let gpu = log_probs.gpu();
    let n = log_probs.elements();
    let dx = CudaStorage::uninit(gpu, DType::F32, n);
    if n > 0 && classes > 0 {
        let (rows, classes) = ((n / classes) as i64, classes as i64);
        let (ignore, has_ignore) = ignore_args(ignore_index);
        let (dp, lp, gp, cp) = (
            dx.ptr(),
            log_probs.ptr(),
            g.ptr_at(gl.offset()),
            count.ptr(),
        );
        // SAFETY: `rows · classes` f32 elements from `lp` and in `dx`, `rows`
        // i64 targets from `tp`, one element from `gp` and from `cp`.
        unsafe {
            launch!(gpu, MODULE, "zf_cross_entropy_backward", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                dp, lp, tp, gp, cp, rows, classes, ignore, has_ignore)
        };
    }
    dx
}
