//! What a training step holds in memory at its peak, and the check that
//! refuses, before anything is allocated, a step the device cannot hold.
//! Each model counts its own activations (`GptConfig::step_memory`,
//! `EncoderDecoderConfig::step_memory`); the parts every step shares are
//! here.
//!
//! Each estimate is parameters, gradients and both AdamW moments, a
//! gradient buffer per data-parallel shard, one micro-batch's activations
//! kept for backward, and 16 MiB for the process itself. The
//! activations are counted per token of the window, in widths of the model,
//! with coefficients calibrated against the peak resident memory of real
//! steps (docs/performance.md); `.ci/run` keeps each estimate within 25%
//! above the measured peak.

use crate::{Device, Error, Result};

use super::TrainConfig;

/// The process's own memory (code, the pool's threads, the allocator).
const PROCESS: u64 = 16 << 20;

/// Floats per query token that `attentions` attentions of `heads` heads
/// over `keys` keys hold when dropout composes them (the fused kernel does
/// not drop weights): about 5.5 rows of `keys` a head (the scores, the
/// weights, the dropout mask and the dropped weights, and their
/// gradients' buffers). Nothing without dropout, where attention is fused
/// and its memory is its outputs.
pub(crate) fn composed_attention(
    dropout: f32,
    attentions: usize,
    heads: usize,
    keys: usize,
) -> Option<u64> {
    if dropout <= 0.0 {
        return Some(0);
    }
    let rows = (attentions as u64)
        .checked_mul(heads as u64)?
        .checked_mul(keys as u64)?;
    Some(rows.checked_mul(11)?.div_ceil(2))
}

/// The bytes of a step of a model of `params` parameters that holds
/// `per_token` floats of activations for each token of a micro-batch of
/// `window`-token sequences: the parameters, their gradients and both
/// AdamW moments, a gradient buffer per data-parallel shard, the
/// activations, and the process itself. `None` on overflow.
pub fn step_bytes(
    params: u64,
    config: &TrainConfig,
    window: usize,
    per_token: u64,
    device: &Device,
) -> Option<u64> {
    let shards = device.parallelism().min(config.batch_size) as u64;
    let state = params.checked_mul(4 + shards)?;
    let tokens = (config.batch_size as u64).checked_mul(window as u64)?;
    tokens
        .checked_mul(per_token)?
        .checked_add(state)?
        .checked_mul(4)?
        .checked_add(PROCESS)
}

/// A step's estimated bytes (`estimate`, `None` on overflow) against what
/// `device` has, as an error a user can act on (unless
/// [`TrainConfig::memory_check`] is off); a window longer than the model's
/// `longest` is an error too. What a model's
/// [`Trainable::check_step`](super::Trainable::check_step) calls with its
/// own estimate.
pub fn check_step_fits(
    config: &TrainConfig,
    longest: usize,
    params: Option<u64>,
    estimate: impl FnOnce() -> Option<u64>,
    device: &Device,
) -> Result<()> {
    check_window(config, longest)?;
    check(config, longest, params, estimate, device)
}

fn check_window(config: &TrainConfig, longest: usize) -> Result<()> {
    match config.context.filter(|&c| c > longest) {
        Some(context) => Err(Error::InvalidConfig(format!(
            "context {context} is longer than the model's {longest}"
        ))),
        None => Ok(()),
    }
}

fn check(
    config: &TrainConfig,
    longest: usize,
    params: Option<u64>,
    estimate: impl FnOnce() -> Option<u64>,
    device: &Device,
) -> Result<()> {
    if !config.memory_check {
        return Ok(());
    }
    let what = format!(
        "a training step of batch {} x context {} on a model of {} parameters (lower the batch size, as gradient accumulation keeps the effective batch; or turn the check off: TrainConfig::memory_check, --no-memory-check)",
        config.batch_size,
        config.context.unwrap_or(longest),
        params.unwrap_or(u64::MAX)
    );
    device.check_fits(estimate().unwrap_or(u64::MAX), &what)
}
