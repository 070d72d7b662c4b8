//! Launchers for attention.cu: fused attention forward (online softmax,
//! logsumexp saved) and backward (probabilities recomputed tile by tile),
//! memory O(T), for head widths up to 128.

use super::driver::{Dim3, Module};
use super::launch;
use super::storage::CudaStorage;
use crate::DType;
use crate::backend::{AttentionParams, View};
use crate::layout::Layout;

/// attention.cu.
pub const MODULE: Module = Module {
    name: "attention",
    source: include_str!("attention.cu"),
};

/// attention.cu's ZF_ATT_WARPS warps a block.
const WARPS: usize = 4;
const BLOCK: u32 = WARPS as u32 * 32;
/// Rows a block owns (ZF_ATT_OWN_ROWS) and rows a shared tile holds
/// (ZF_ATT_TILE).
const OWN_ROWS: usize = 8;
const TILE: usize = 32;
/// The widest head the kernels take (ZF_ATT_MAX_D).
pub const MAX_HEAD_WIDTH: usize = 128;

/// attention.cu's `ZfHeads`: a `[batch, heads, time, d]` operand whose
/// last dimension is contiguous, by its first element's address and the
/// other three strides.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct HeadsArg {
    data: u64,
    batch_stride: i64,
    head_stride: i64,
    time_stride: i64,
}
const _: () = assert!(std::mem::size_of::<HeadsArg>() == 32);

/// attention.cu's `ZfAttention`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct AttentionArgs {
    batch: i64,
    heads: i64,
    tq: i64,
    tk: i64,
    d: i64,
    past: i64,
    scale: f32,
    causal: i32,
    /// 0 for none.
    window: i64,
}
const _: () = assert!(std::mem::size_of::<AttentionArgs>() == 64);

impl AttentionArgs {
    fn of(p: &AttentionParams) -> AttentionArgs {
        AttentionArgs {
            batch: p.batch as i64,
            heads: p.heads as i64,
            tq: p.tq as i64,
            tk: p.tk as i64,
            d: p.d as i64,
            past: p.causal.unwrap_or(0) as i64,
            scale: p.scale,
            causal: i32::from(p.causal.is_some()),
            window: p.window.unwrap_or(0) as i64,
        }
    }
}

/// The kernels' view of a rank-4 operand: read in place when its last
/// dimension is contiguous, else from a contiguous copy kept in `keep`.
fn heads((s, l): View<CudaStorage>, keep: &mut Option<CudaStorage>, op: &str) -> HeadsArg {
    s.expect(op, DType::F32);
    assert_eq!(
        l.rank(),
        4,
        "{op}: expected a [batch, heads, time, d] operand, got {:?}",
        l.shape()
    );
    if l.strides()[3] == 1 || l.shape()[3] <= 1 {
        let st = l.strides();
        return HeadsArg {
            data: s.ptr_at(l.offset()).0,
            batch_stride: st[0] as i64,
            head_stride: st[1] as i64,
            time_stride: st[2] as i64,
        };
    }
    let (whole, start) = s.contiguous(l, keep);
    let sh = l.shape();
    HeadsArg {
        data: whole.ptr_at(start).0,
        batch_stride: (sh[1] * sh[2] * sh[3]) as i64,
        head_stride: (sh[2] * sh[3]) as i64,
        time_stride: sh[3] as i64,
    }
}

/// The key padding mask as contiguous bytes (null when absent).
fn padding_ptr(
    pad: Option<View<CudaStorage>>,
    keep: &mut Option<CudaStorage>,
    op: &str,
) -> super::driver::DevicePtr {
    match pad {
        Some((s, l)) => {
            s.expect(op, DType::Bool);
            let (whole, start) = s.contiguous(l, keep);
            whole.ptr_at(start)
        }
        None => super::driver::DevicePtr(0),
    }
}

fn check_width(p: &AttentionParams, op: &str) {
    assert!(
        p.d <= MAX_HEAD_WIDTH,
        "{op}: the CUDA kernels take head widths up to {MAX_HEAD_WIDTH}, got {}",
        p.d
    );
}

/// Blocks for `rows` owned rows of every head: as many as there is work,
/// up to what fills the device (the kernels loop over the rest).
fn grid(x: &CudaStorage, p: &AttentionParams, rows: usize) -> Dim3 {
    let work = p.batch * p.heads * rows.div_ceil(OWN_ROWS);
    x.gpu().grid_for(work * BLOCK as usize, BLOCK)
}

/// `(out, lse)`: `[batch, heads, tq, d]` and `[batch, heads, tq]`.
pub fn attention(
    q: &CudaStorage,
    q_layout: &Layout,
    k: View<CudaStorage>,
    v: View<CudaStorage>,
    key_padding: Option<View<CudaStorage>>,
    p: &AttentionParams,
) -> (CudaStorage, CudaStorage) {
    let q = (q, q_layout);
    let op = "scaled_dot_product_attention";
    check_width(p, op);
    q.0.same_gpu(op, k.0);
    q.0.same_gpu(op, v.0);
    let gpu = q.0.gpu();
    let rows = p.batch * p.heads * p.tq;
    let out = CudaStorage::uninit(gpu, DType::F32, rows * p.d);
    let lse = CudaStorage::uninit(gpu, DType::F32, rows);
    if rows == 0 || p.d == 0 {
        return (out, lse);
    }
    let mut keep: [Option<CudaStorage>; 4] = Default::default();
    let [kq, kk, kv, kp] = &mut keep;
    let (qa, ka, va) = (heads(q, kq, op), heads(k, kk, op), heads(v, kv, op));
    let pad = padding_ptr(key_padding, kp, op);
    let args = AttentionArgs::of(p);
    let shared = 4 * (OWN_ROWS * p.d + 2 * TILE * (p.d + 1) + WARPS * 32);
    let (o, l) = (out.ptr(), lse.ptr());
    // SAFETY: the views cover `[batch, heads, tq or tk, d]` elements at
    // their strides; `out` and `lse` hold `rows · d` and `rows`; the
    // padding (unless null) `batch · tk` bytes; `shared` is what the
    // kernel lays out for this `d`.
    unsafe {
        launch!(gpu, MODULE, "zf_attention_forward", grid(q.0, p, p.tq), Dim3::x(BLOCK), shared;
            o, l, qa, ka, va, pad, args)
    };
    (out, lse)
}

/// `(dq, dk, dv)`, contiguous, from the inputs, the forward's output and
/// logsumexp, and the output's gradient `g`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &CudaStorage,
    q_layout: &Layout,
    k: View<CudaStorage>,
    v: View<CudaStorage>,
    out: View<CudaStorage>,
    lse: &CudaStorage,
    g: View<CudaStorage>,
    key_padding: Option<View<CudaStorage>>,
    p: &AttentionParams,
) -> (CudaStorage, CudaStorage, CudaStorage) {
    let q = (q, q_layout);
    let op = "scaled_dot_product_attention backward";
    check_width(p, op);
    lse.expect(op, DType::F32);
    let gpu = q.0.gpu();
    let (q_rows, k_rows) = (p.batch * p.heads * p.tq, p.batch * p.heads * p.tk);
    let dq = CudaStorage::uninit(gpu, DType::F32, q_rows * p.d);
    let dk = CudaStorage::uninit(gpu, DType::F32, k_rows * p.d);
    let dv = CudaStorage::uninit(gpu, DType::F32, k_rows * p.d);
    if p.d == 0 {
        return (dq, dk, dv);
    }
    let mut keep: [Option<CudaStorage>; 6] = Default::default();
    let [kq, kk, kv, ko, kg, kp] = &mut keep;
    let (qa, ka, va) = (heads(q, kq, op), heads(k, kk, op), heads(v, kv, op));
    let (oa, ga) = (heads(out, ko, op), heads(g, kg, op));
    let pad = padding_ptr(key_padding, kp, op);
    let args = AttentionArgs::of(p);
    let delta = CudaStorage::uninit(gpu, DType::F32, q_rows);
    let (dqp, dkp, dvp, lp, dp) = (dq.ptr(), dk.ptr(), dv.ptr(), lse.ptr(), delta.ptr());
    let tiles = 2 * TILE * (p.d + 1);
    let dq_shared = 4 * (2 * OWN_ROWS * p.d + tiles + WARPS * 32);
    let dkv_shared = 4 * (2 * OWN_ROWS * p.d + tiles + 2 * TILE + WARPS * 64);
    // SAFETY: as in `forward`; `delta` and `lse` hold one f32 a query row,
    // `dq` `q_rows · d`, `dk` and `dv` `k_rows · d`; the shared sizes are
    // what each kernel lays out for this `d`.
    unsafe {
        if q_rows > 0 {
            launch!(gpu, MODULE, "zf_attention_delta", gpu.grid_for(q_rows * 32, 256), Dim3::x(256), 0;
                dp, ga, oa, args);
            launch!(gpu, MODULE, "zf_attention_backward_dq", grid(q.0, p, p.tq), Dim3::x(BLOCK), dq_shared;
                dqp, qa, ka, va, ga, lp, dp, pad, args);
        }
        if k_rows > 0 {
            launch!(gpu, MODULE, "zf_attention_backward_dkv", grid(q.0, p, p.tk), Dim3::x(BLOCK), dkv_shared;
                dkp, dvp, qa, ka, va, ga, lp, dp, pad, args);
        }
    }
    (dq, dk, dv)
}
