//! Launcher for optim.cu: the fused AdamW update.

use super::driver::{DevicePtr, Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::{AdamStep, BackendStorage, View};

/// optim.cu.
pub const MODULE: Module = Module {
    name: "optim",
    source: include_str!("optim.cu"),
};

const BLOCK: u32 = 256;

/// Updates weights `w` and moments `m`, `v` in place from the gradient
/// times `grad_scale` (a one-element device value; a NaN skips the step).
pub fn adam_update(
    w: &mut CudaStorage,
    (g, gl): View<CudaStorage>,
    m: &mut CudaStorage,
    v: &mut CudaStorage,
    c: AdamStep,
    grad_scale: Option<&CudaStorage>,
) {
    let op = "adam_update";
    for s in [&*w, g, &*m, &*v] {
        s.expect(op, DType::F32);
        w.same_gpu(op, s);
    }
    let n = w.elements();
    assert!(
        gl.numel() == n && m.elements() == n && v.elements() == n,
        "adam_update: weights {n}, gradient {}, moments {} and {} differ in length",
        gl.numel(),
        m.elements(),
        v.elements()
    );
    let mut copy = None;
    let (gs, start) = g.contiguous(gl, &mut copy);
    let scale = grad_scale.map_or(DevicePtr(0), |s| s.expect(op, DType::F32).ptr());
    let gpu = w.gpu().clone();
    if n > 0 {
        let (wp, gp, mp, vp, n_) = (w.ptr(), gs.ptr_at(start), m.ptr(), v.ptr(), n as i64);
        // SAFETY: `n` f32 elements in each of `w`, `m` and `v` (distinct
        // buffers, held mutably) and from `gp`; one from `scale` unless null.
        unsafe {
            launch!(gpu, MODULE, "zf_adam_update", gpu.grid_for(n, BLOCK), Dim3::x(BLOCK), 0;
                wp, gp, mp, vp, n_, c.lr, c.beta1, c.beta2, c.eps, c.step_size, c.bias2_sqrt, c.l2, c.decay, scale)
        };
    }
}
