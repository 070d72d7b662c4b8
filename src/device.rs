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
        let why = if cfg!(feature = "cuda") {
            "the CUDA kernels are not implemented yet in this version of zeroformer"
        } else {
            "zeroformer was built without the `cuda` feature; add `features = [\"cuda\"]`"
        };
        let _ = ordinal;
        Err(Error::CudaUnavailable(why.to_string()))
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
            Device::Cuda(_) => None,
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
    /// 32-bit floats: every differentiable tensor.
    F32,
    /// 64-bit signed integers: token ids and class targets (as PyTorch's `long`).
    I64,
    /// Booleans: masks for `masked_fill` and `where_cond`, results of comparisons.
    Bool,
}
