//! What ops on this thread do beyond their math: whether they record
//! graph nodes (grad mode, `no_grad`), whether dropout is off (eval mode,
//! `eval_mode`, the one switch between training and evaluation), which
//! dtype matrix products run in (`autocast`), where tensors made without
//! naming a device are made (the default device, `Device::as_default`: a
//! convenience for user code; the library names its devices), and one
//! slot a module above carries along (`Carried`: activation
//! checkpointing's dropout replay frames). All are thread-local;
//! `Device::scope` and `Device::map_parts` carry them to the threads that
//! run the work (`Modes`). This module imports nothing but `Device` and
//! `DType`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::thread::LocalKey;

use crate::{DType, Device};

/// A value that travels with this thread's modes onto the threads that
/// run its work, owned by the module that sets it (nn's dropout replay
/// frames); parts run side by side ([`Device::map_parts`]) start without
/// one.
pub(crate) type Carried = Option<Arc<dyn Any + Send + Sync>>;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static EVAL_MODE: Cell<bool> = const { Cell::new(false) };
    static DEFAULT_DEVICE: Cell<Device> = const { Cell::new(Device::Cpu) };
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
    static CARRIED: RefCell<Carried> = const { RefCell::new(None) };
}

/// This thread's carried value.
fn carried() -> Carried {
    CARRIED.with(|c| c.borrow().clone())
}

/// This thread's carried value, `make()` set as it first when there is
/// none.
pub(crate) fn carried_or_insert(
    make: impl FnOnce() -> Arc<dyn Any + Send + Sync>,
) -> Arc<dyn Any + Send + Sync> {
    CARRIED.with(|c| c.borrow_mut().get_or_insert_with(make).clone())
}

/// Makes `value` this thread's carried value until the guard drops.
fn set_carried(value: Carried) -> CarriedGuard {
    CarriedGuard(CARRIED.with(|c| c.replace(value)))
}

/// Restores the carried value [`set_carried`] replaced.
pub(crate) struct CarriedGuard(Carried);

impl Drop for CarriedGuard {
    fn drop(&mut self) {
        let previous = self.0.take();
        CARRIED.with(|c| c.replace(previous));
    }
}

/// Where this thread makes tensors created without a device (`zeros`,
/// `randn`, `from_vec`, `from_ids`, ...): the CPU, unless inside
/// [`Device::as_default`] of another device (PyTorch's `with
/// torch.device(...)`). The crate's own code names its devices and never
/// reads it.
///
/// ```
/// use zeroformer::{Device, default_device};
/// assert_eq!(default_device(), Device::Cpu);
/// ```
pub fn default_device() -> Device {
    DEFAULT_DEVICE.with(|d| d.get())
}

/// Makes `device` this thread's default device until dropped.
pub(crate) struct DeviceGuard {
    previous: Device,
}

impl DeviceGuard {
    pub(crate) fn set(device: Device) -> DeviceGuard {
        DeviceGuard {
            previous: DEFAULT_DEVICE.with(|d| d.replace(device)),
        }
    }
}

impl Drop for DeviceGuard {
    fn drop(&mut self) {
        DEFAULT_DEVICE.with(|d| d.set(self.previous));
    }
}

/// Whether ops on this thread record graph nodes.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Disables gradient recording on this thread until dropped.
///
/// ```
/// use zeroformer::prelude::*;
/// let w = Tensor::ones(&[2]).requires_grad();
/// let y = {
///     let _guard = NoGradGuard::new();
///     w.mul_scalar(3.0)
/// };
/// assert!(!y.is_tracked());
/// ```
pub struct NoGradGuard {
    _mode: FlagGuard,
}

impl NoGradGuard {
    /// Turns gradient recording off until dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        NoGradGuard {
            _mode: FlagGuard::set(&GRAD_ENABLED, false),
        }
    }
}

/// Sets one of this thread's mode flags until dropped, then restores the
/// previous value.
pub(crate) struct FlagGuard {
    flag: &'static LocalKey<Cell<bool>>,
    previous: bool,
}

impl FlagGuard {
    fn set(flag: &'static LocalKey<Cell<bool>>, value: bool) -> Self {
        FlagGuard {
            flag,
            previous: flag.with(|f| f.replace(value)),
        }
    }
}

impl Drop for FlagGuard {
    fn drop(&mut self) {
        self.flag.with(|f| f.set(self.previous));
    }
}

/// Runs `f` with gradient recording disabled (PyTorch's `torch.no_grad()`).
///
/// ```
/// use zeroformer::prelude::*;
/// let w = Tensor::ones(&[3]).requires_grad();
/// let y = no_grad(|| w.exp());
/// assert!(!y.is_tracked());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Runs `f` recording graph nodes, in eval mode or not as `eval` says and
/// with `autocast`, whatever this thread's modes are: how activation
/// checkpointing re-runs a segment's forward from inside a backward pass
/// (which runs without recording or autocast).
pub(crate) fn recording<R>(eval: bool, autocast: Option<DType>, f: impl FnOnce() -> R) -> R {
    let _modes = [
        FlagGuard::set(&GRAD_ENABLED, true),
        FlagGuard::set(&EVAL_MODE, eval),
    ];
    let _autocast = AutocastGuard::set(autocast);
    f()
}

/// Whether eval mode is on for this thread: dropout passes its input
/// through.
pub fn is_eval_mode() -> bool {
    EVAL_MODE.with(|e| e.get())
}

/// Turns eval mode on for this thread until dropped, then restores the
/// previous mode.
pub struct EvalModeGuard {
    _mode: FlagGuard,
}

impl EvalModeGuard {
    /// Turns eval mode on until dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        EvalModeGuard {
            _mode: FlagGuard::set(&EVAL_MODE, true),
        }
    }
}

/// Runs `f` in eval mode: dropout is off in every module, and back on
/// afterwards. The one switch between training and evaluation (PyTorch's
/// `model.eval()` ... `model.train()` without the `&mut` and without
/// forgetting to switch back); evaluation and generation turn it on
/// themselves.
///
/// ```
/// use zeroformer::prelude::*;
/// use zeroformer::nn::{Dropout, SharedRng};
/// let drop = Dropout::new(0.5, SharedRng::seed_from_u64(0));
/// let x = Tensor::ones(&[100]);
/// assert_eq!(eval_mode(|| drop.forward(&x)).to_vec(), x.to_vec());
/// assert_ne!(drop.forward(&x).to_vec(), x.to_vec());
/// ```
pub fn eval_mode<R>(f: impl FnOnce() -> R) -> R {
    let _guard = EvalModeGuard::new();
    f()
}

/// Runs `f` with mixed precision: inside, matrix products (`matmul`,
/// `addmm`, so `Linear`) and the fused attention cast their f32 operands
/// to `dtype` and compute in it, with f32 sums; losses cast theirs to f32.
/// Other ops run in the dtype of their inputs, and an op of an f32 and a
/// bf16 tensor computes in f32 (PyTorch's CPU autocast,
/// `torch.autocast("cpu", torch.bfloat16)`). Parameters stay f32: the
/// casts are graph nodes, so their gradients arrive in f32. `DType::F32`
/// turns autocast off inside `f` (`enabled=False`).
///
/// The backward pass runs each op in the dtype its forward ran in,
/// whatever the mode then.
///
/// ```
/// use zeroformer::prelude::*;
/// let x = Tensor::ones(&[2, 3]);
/// let w = Tensor::ones(&[3, 4]).requires_grad();
/// let y = autocast(DType::BF16, || x.matmul(&w));
/// assert_eq!(y.dtype(), DType::BF16);
/// y.to_dtype(DType::F32).sum().backward();
/// assert_eq!(w.grad().unwrap().dtype(), DType::F32);
/// ```
///
/// # Panics
/// For a dtype other than `BF16` and `F32`.
pub fn autocast<R>(dtype: DType, f: impl FnOnce() -> R) -> R {
    let lower = match dtype {
        DType::BF16 => Some(dtype),
        DType::F32 => None,
        other => panic!("autocast: computes in bf16 (or f32, to turn it off), not {other:?}"),
    };
    let _guard = AutocastGuard::set(lower);
    f()
}

/// The dtype matrix products cast to on this thread ([`autocast`]), if
/// any.
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(|a| a.get())
}

/// Sets this thread's autocast dtype until dropped.
pub(crate) struct AutocastGuard(Option<DType>);

impl AutocastGuard {
    pub(crate) fn set(dtype: Option<DType>) -> Self {
        AutocastGuard(AUTOCAST.with(|a| a.replace(dtype)))
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        AUTOCAST.with(|a| a.set(self.0));
    }
}

/// A snapshot of this thread's modes, to set on another thread: the grad
/// and eval flags, autocast, the default device, and the carried value
/// (shared, not copied: a checkpointed segment's dropout draws are logged
/// in its frames on whichever thread they happen).
#[derive(Clone)]
pub(crate) struct Modes {
    grad_enabled: bool,
    eval: bool,
    autocast: Option<DType>,
    device: Device,
    carried: Carried,
}

impl Modes {
    /// This thread's modes now.
    pub(crate) fn current() -> Modes {
        Modes {
            grad_enabled: is_grad_enabled(),
            eval: is_eval_mode(),
            autocast: autocast_dtype(),
            device: default_device(),
            carried: carried(),
        }
    }

    /// These modes for one of several parts run side by side
    /// ([`Device::map_parts`]): the same flags and device, and no carried
    /// value, since parts on different threads at once cannot share one
    /// (each shard of a training step checkpoints its own blocks, in
    /// dropout replay frames of its own).
    pub(crate) fn for_part(&self) -> Modes {
        Modes {
            carried: None,
            ..self.clone()
        }
    }

    /// Sets these modes on this thread until the guard drops.
    pub(crate) fn set(&self) -> ([FlagGuard; 2], AutocastGuard, DeviceGuard, CarriedGuard) {
        (
            [
                FlagGuard::set(&GRAD_ENABLED, self.grad_enabled),
                FlagGuard::set(&EVAL_MODE, self.eval),
            ],
            AutocastGuard::set(self.autocast),
            DeviceGuard::set(self.device),
            set_carried(self.carried.clone()),
        )
    }
}
