//! Where a tensor lives and what its elements are.

use crate::{Error, Result};

/// The device a tensor's storage lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Main memory; every kernel exists here.
    #[default]
    Cpu,
    /// The CUDA device with this ordinal (the `cuda` feature).
    Cuda(usize),
}

impl Device {
    /// The CUDA device `ordinal`, or an error saying why it cannot be used.
    ///
    /// ```
    /// use zeroformer::{Device, Error};
    /// // Without a CUDA backend this is an error the caller can act on, not a panic.
    /// match Device::cuda(0) {
    ///     Ok(dev) => println!("using {dev:?}"),
    ///     Err(Error::CudaUnavailable(why)) => println!("falling back to the CPU: {why}"),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            crate::backend::cuda::open(ordinal).map(|_| Device::Cuda(ordinal))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(Error::CudaUnavailable(
                "zeroformer was built without the `cuda` feature; add `features = [\"cuda\"]`"
                    .to_string(),
            ))
        }
    }

    /// `Ok` when tensors can be made on this device (always on the CPU; on
    /// CUDA, what [`Device::cuda`] says).
    pub(crate) fn ensure_usable(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(i) => Device::cuda(*i).map(drop),
        }
    }

    /// Runs `f` where this device's work is best issued from, with the
    /// caller's modes (grad and eval mode, the default device), and returns
    /// its result. On the CPU: on a worker of the kernels' thread pool,
    /// whose other workers stand by meanwhile, so that each parallel kernel
    /// inside starts without a thread hand-off (see
    /// [`backend::cpu::in_pool`](crate::backend::cpu::in_pool)); a training
    /// step is thousands of kernels. The trainer runs each step inside it,
    /// and generation each decoding run; wrap a loop of your own ops to
    /// gain the same. It changes nothing else: tensors made inside without
    /// naming a device are made where they would be outside.
    ///
    /// ```
    /// use zeroformer::{Device, Tensor};
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).requires_grad();
    /// x.device().scope(|| x.mul(&x).sum().backward());
    /// assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 4.0, 6.0]);
    /// ```
    pub fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        // Set, not only carried: a pool worker runs other queued jobs on top
        // of its own while a kernel waits, and its thread-local modes are
        // still that job's.
        let modes = crate::mode::Modes::current();
        match self {
            Device::Cpu => crate::backend::cpu::in_pool(|| {
                let _modes = modes.set();
                f()
            }),
            Device::Cuda(_) => f(),
        }
    }

    /// Runs `f` with this device as the one where tensors made without
    /// naming a device are made (`zeros`, `randn`, `from_vec`, `from_ids`,
    /// ...), on this thread (PyTorch's `torch.set_default_device`, or
    /// `with torch.device(...)`): a convenience for code of your own. The
    /// crate's layers, models and trainer take their device as an
    /// argument and ignore it.
    ///
    /// ```
    /// use zeroformer::{Device, Tensor};
    /// let device = Device::Cpu; // or Device::cuda(0)?
    /// let x = device.as_default(|| Tensor::zeros(&[2, 3]));
    /// assert_eq!(x.device(), device);
    /// ```
    pub fn as_default<R>(&self, f: impl FnOnce() -> R) -> R {
        let _device = crate::mode::DeviceGuard::set(*self);
        f()
    }

    /// `f` of every item, the results in the items' order: independent
    /// parts of one piece of work (the data-parallel shards of a training
    /// step, the parameters of an optimizer step), each with the caller's
    /// grad and eval modes. On the CPU they run side by side on the pool's threads,
    /// each with one-thread kernels (see
    /// [`backend::cpu::side_by_side`](crate::backend::cpu::side_by_side));
    /// results do not depend on how they were spread.
    ///
    /// ```
    /// use zeroformer::Device;
    /// assert_eq!(Device::Cpu.map_parts(vec![1, 2, 3], |x| x * 10), vec![10, 20, 30]);
    /// ```
    pub fn map_parts<T: Send, R: Send>(&self, items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
        let modes = crate::mode::Modes::current();
        let with_mode = |item: T| {
            let _modes = modes.for_part().set();
            f(item)
        };
        match self {
            Device::Cpu => crate::backend::cpu::side_by_side(items, with_mode),
            Device::Cuda(_) => items.into_iter().map(with_mode).collect(),
        }
    }

    /// How many parts [`map_parts`](Self::map_parts) runs at once
    /// here: on the CPU, the threads a kernel called now would use.
    pub fn parallelism(&self) -> usize {
        match self {
            Device::Cpu => crate::backend::cpu::kernel_threads(),
            Device::Cuda(_) => 1,
        }
    }

    /// Bytes this device can still give out, when the platform says
    /// (`MemAvailable` of /proc/meminfo for the CPU on Linux), else `None`.
    /// What-fits checks (a model's parameters, a training step's
    /// activations) compare their estimates with it before allocating.
    pub fn available_memory(&self) -> Option<u64> {
        match self {
            Device::Cpu => {
                let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
                let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                kib.checked_mul(1024)
            }
            Device::Cuda(_i) => {
                #[cfg(feature = "cuda")]
                {
                    crate::backend::cuda::open(*_i).ok()?.available_memory()
                }
                #[cfg(not(feature = "cuda"))]
                {
                    None
                }
            }
        }
    }

    /// `Ok` when `bytes` fit in [`available_memory`](Self::available_memory)
    /// (or it is unknown), else an error giving the estimate, what it is
    /// for, and what the device has.
    pub fn check_fits(&self, bytes: u64, what: &str) -> Result<()> {
        match self.available_memory() {
            Some(available) if bytes > available => Err(Error::InvalidConfig(format!(
                "{what} needs about {}, and {} has {} available",
                human_bytes(bytes),
                match self {
                    Device::Cpu => "this machine".to_string(),
                    Device::Cuda(i) => format!("CUDA device {i}"),
                },
                human_bytes(available)
            ))),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;

    /// `cpu`, `cuda` (device 0) or `cuda:N`, as PyTorch names them; a CUDA
    /// device is opened, so one that cannot be used is an error here.
    ///
    /// ```
    /// use zeroformer::Device;
    /// assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
    /// assert!("tpu".parse::<Device>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Device> {
        let ordinal = match name {
            "cpu" => return Ok(Device::Cpu),
            "cuda" => Some(0),
            _ => name.strip_prefix("cuda:").and_then(|n| n.parse().ok()),
        };
        match ordinal {
            Some(n) => Device::cuda(n),
            None => Err(Error::InvalidConfig(format!(
                "unknown device '{name}': use cpu, cuda or cuda:N"
            ))),
        }
    }
}

impl Device {
    /// Sizes the CPU's thread pool, which every CPU kernel runs on (and the
    /// simulated GPU's blocks): `Some(n)` threads, or one per core for
    /// `None`. Call it once, before the first tensor op; a second call is
    /// an error, and so is `Some(0)`.
    pub fn set_threads(threads: Option<usize>) -> Result<()> {
        crate::backend::cpu::set_threads(threads)
    }
}

/// `bytes` in the largest binary unit that keeps a number of at least 1.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tensor, no_grad};

    #[test]
    fn in_pool_carries_the_callers_grad_mode() {
        let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad();
        assert!(Device::Cpu.scope(|| x.mul(&x)).is_tracked());
        assert!(!no_grad(|| Device::Cpu.scope(|| x.mul(&x))).is_tracked());
        // The worker's own mode is left as it was.
        assert!(Device::Cpu.scope(|| x.mul(&x)).is_tracked());
    }

    #[test]
    fn in_pool_sets_the_grad_mode_on_a_worker_busy_in_no_grad_work() {
        // Every worker sits in a no-grad job, yielding: the next job queued
        // runs on top of one of them, and must still record a graph.
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (started, done) = (AtomicUsize::new(0), AtomicBool::new(false));
        let workers = rayon::current_num_threads();
        let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    no_grad(|| {
                        Device::Cpu.scope(|| {
                            started.fetch_add(1, Ordering::SeqCst);
                            while !done.load(Ordering::SeqCst) {
                                rayon::yield_now();
                            }
                        })
                    })
                });
            }
            while started.load(Ordering::SeqCst) < workers {
                std::thread::yield_now();
            }
            let tracked = Device::Cpu.scope(|| x.mul(&x).is_tracked());
            done.store(true, Ordering::SeqCst);
            assert!(tracked);
        });
    }

    #[test]
    fn in_pool_from_several_threads_at_once_gives_each_its_own_result() {
        // More callers than workers, each with parallel kernels inside: the
        // stand-by jobs and nested jobs must neither deadlock nor mix results.
        let input = |i: usize| {
            Tensor::from_vec(
                (0..300_000).map(|j| ((i + j) % 7) as f32).collect(),
                &[300_000],
            )
        };
        let expected: Vec<f32> = (0..6)
            .map(|i| input(i).mul(&input(i)).sum().item())
            .collect();
        let got: Vec<f32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    s.spawn(move || Device::Cpu.scope(|| input(i).mul(&input(i)).sum().item()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn map_parts_keeps_order_and_the_callers_grad_mode() {
        use crate::autograd::is_grad_enabled;
        let items: Vec<usize> = (0..20).collect();
        let got = Device::Cpu.map_parts(items.clone(), |i| (i, is_grad_enabled()));
        assert_eq!(got, items.iter().map(|&i| (i, true)).collect::<Vec<_>>());
        let got = no_grad(|| Device::Cpu.map_parts(vec![1, 2, 3], |_| is_grad_enabled()));
        assert_eq!(got, vec![false; 3]);
    }

    #[test]
    fn what_does_not_fit_is_an_error_with_both_figures() {
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_bytes(512), "512.0 B");
        assert!(Device::Cpu.check_fits(1024, "a test").is_ok());
        if Device::Cpu.available_memory().is_some() {
            let message = Device::Cpu
                .check_fits(u64::MAX, "a test")
                .unwrap_err()
                .to_string();
            assert!(message.contains("a test needs about 16.0 EiB"), "{message}");
            assert!(message.contains("available"), "{message}");
        }
    }
}

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floats: parameters, gradients and most activations.
    F32,
    /// 64-bit signed integers: token ids and class targets (as PyTorch's `long`).
    I64,
    /// Booleans: masks for `masked_fill` and `where_cond`, results of comparisons.
    Bool,
    /// 8-bit signed integers: quantized weights, with f32 scales beside them
    /// ([`Tensor::quantize_rows_int8`](crate::Tensor::quantize_rows_int8)).
    I8,
    /// bfloat16 (`half::bf16`): f32's exponent with 8 bits of mantissa,
    /// half the bytes. Casts from f32 round to nearest, ties to even.
    BF16,
}

impl DType {
    /// The bytes one element takes.
    ///
    /// ```
    /// use zeroformer::DType;
    /// assert_eq!((DType::F32.size_in_bytes(), DType::BF16.size_in_bytes()), (4, 2));
    /// ```
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
            DType::Bool | DType::I8 => 1,
            DType::BF16 => 2,
        }
    }
}
