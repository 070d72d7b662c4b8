//! What a training step holds in memory at its peak, and the check that
//! refuses, before a step allocates, a step the device cannot hold. Each
//! model counts its own activations
//! ([`Trainable::activations_per_token`]); the parts every step shares are
//! here.
//!
//! Each estimate is parameters, gradients and both AdamW moments, a
//! gradient buffer per data-parallel shard, one micro-batch's activations
//! kept for backward, and 16 MiB for the process itself. The
//! activations are counted per token of the window, in widths of the model,
//! with coefficients calibrated against the peak resident memory of real
//! steps (docs/performance.md); `.ci/run` keeps each estimate within 25%
//! above the measured peak.

use crate::models::Trainable;
use crate::{Device, Error, Result};

use super::TrainConfig;

/// The process's own memory (code, the pool's threads, the allocator).
const PROCESS: u64 = 16 << 20;

/// About how many bytes a process training `model` with `config` on
/// `device` holds at the peak of a step: the parameters, their gradients
/// and both AdamW moments, a gradient buffer per data-parallel shard, one
/// micro-batch's activations ([`Trainable::activations_per_token`] for
/// each token of its windows: [`TrainConfig::context`], else the model's
/// [`max_len`](Trainable::max_len)), and the process itself. `None` when
/// the model gives no estimate, or on overflow.
///
/// ```
/// use zeroformer::prelude::*;
/// use zeroformer::train::{TrainConfig, memory};
///
/// let model = GptConfig::preset("cpu-mini", 65)?.init(&Device::Cpu, 0)?;
/// let config = TrainConfig::nanogpt_cpu(100);
/// let bytes = memory::step_bytes(&model, &config, &Device::Cpu).unwrap();
/// // 0.8M parameters are 13 MB with their gradients and moments; twelve
/// // 64-token windows' activations about 27 MB more.
/// assert!(bytes > 40 << 20 && bytes < 100 << 20, "{bytes}");
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn step_bytes(model: &impl Trainable, config: &TrainConfig, device: &Device) -> Option<u64> {
    let window = config.context.or(model.max_len())?;
    let per_token = model.activations_per_token(window)?;
    let params = model.num_parameters() as u64;
    let shards = device.parallelism().min(config.batch_size) as u64;
    let state = params.checked_mul(4 + shards)?;
    let tokens = (config.batch_size as u64).checked_mul(window as u64)?;
    tokens
        .checked_mul(per_token)?
        .checked_add(state)?
        .checked_mul(4)?
        .checked_add(PROCESS)
}

/// Refuses a step of `model` with `config` that cannot run: a window
/// longer than the model's [`max_len`](Trainable::max_len), or (unless
/// [`TrainConfig::memory_check`] is off) a [`step_bytes`] estimate
/// above what the model's device has, as an error a user can act on.
/// Nothing is checked for memory where the model gives no estimate.
pub fn check_step_fits(model: &impl Trainable, config: &TrainConfig) -> Result<()> {
    if let (Some(context), Some(longest)) = (config.context, model.max_len())
        && context > longest
    {
        return Err(Error::InvalidConfig(format!(
            "context {context} is longer than the model's {longest}"
        )));
    }
    let window = config.context.or(model.max_len());
    if !config.memory_check
        || window
            .and_then(|w| model.activations_per_token(w))
            .is_none()
    {
        return Ok(());
    }
    let device = model.device();
    let what = format!(
        "a training step of batch {} x context {} on a model of {} parameters (lower the batch size, as gradient accumulation keeps the effective batch; or turn the check off: TrainConfig::memory_check, --no-memory-check)",
        config.batch_size,
        window.expect("checked above"),
        model.num_parameters()
    );
    device.check_fits(
        step_bytes(model, config, &device).unwrap_or(u64::MAX),
        &what,
    )
}
