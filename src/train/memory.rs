//! What a training step holds in memory at its peak, and the check that
//! refuses, before anything is allocated, a step the device cannot hold.
//!
//! Each estimate is parameters, gradients and both AdamW moments, a
//! gradient buffer per data-parallel shard, one micro-batch's activations
//! kept for backward, and [`PROCESS`] bytes for the process itself. The
//! activations are counted per token of the window, in widths of the model,
//! with coefficients calibrated against the peak resident memory of real
//! steps (docs/performance.md); `.ci/run` keeps each estimate within 25%
//! above the measured peak.

use crate::models::{EncoderDecoderConfig, GptConfig};
use crate::{Device, Error, Result};

use super::TrainConfig;

/// The process's own memory (code, the pool's threads, the allocator).
const PROCESS: u64 = 16 << 20;

/// About how many bytes a process training `model` with `config` on
/// `device` holds at the peak of a step (`None` if that overflows). Per
/// token of the window ([`TrainConfig::context`], else the model's) the
/// activations are about 26 widths a layer (the block's saved inputs and
/// outputs, the heads' contiguous copies, and the buffers the pool keeps
/// for reuse), four at the ends, and three vocabulary-wide rows (the
/// logits, their log-probabilities and gradient). With activation
/// checkpointing a block keeps one width, and one block's 26 are held
/// again during its backward; a block with experts adds its MLP's
/// activations for each further expert a token visits and the gathered
/// rows. Calibrated against `examples/step_time` (cpu-mini at batch 12 to
/// 512, gpt-mini, shakespeare-char, GPT-2 on 64-token windows, cpu-mini
/// checkpointed and with 4 experts): 3-19% above the peak.
///
/// ```
/// use zeroformer::{Device, GptConfig};
/// use zeroformer::train::{TrainConfig, step_memory};
///
/// let model = GptConfig::preset("gpt2", 0).unwrap();
/// let short = TrainConfig { batch_size: 32, context: Some(64), ..TrainConfig::nanogpt_cpu(100) };
/// let bytes = step_memory(&model, &short, &Device::Cpu).unwrap();
/// // 124M parameters, their gradients and moments are 2 GiB; 2,048 tokens'
/// // activations about 3 GiB more.
/// assert!(bytes > 5 << 30, "{bytes}");
/// ```
pub fn step_memory(model: &GptConfig, config: &TrainConfig, device: &Device) -> Option<u64> {
    let (c, l, v) = (
        model.n_embd as u64,
        model.n_layer as u64,
        model.vocab_size as u64,
    );
    let block = c.checked_mul(26)?;
    // A block with experts: its MLP's activations once per expert a token
    // visits (about 10 widths each), the rows gathered for the experts and
    // back with their gradients (9 widths a visit), and the router's rows.
    let (experts, k) = model
        .moe
        .as_ref()
        .map_or((0, 1), |m| (m.n_experts as u64, m.top_k as u64));
    let moe_block = block
        .checked_add(k.checked_sub(1)?.checked_mul(10)?.checked_mul(c)?)?
        .checked_add(k.checked_mul(9)?.checked_mul(c)?)?
        .checked_add(experts.checked_mul(2)?)?;
    let moe_blocks = model.expert_blocks() as u64;
    let dense_blocks = l.checked_sub(moe_blocks)?;
    // Checkpointed (dense) blocks keep their input, and one of them holds
    // its activations again, and their gradients' buffers (10 widths),
    // while its backward runs.
    let checkpointed = model.checkpoint_activations && dense_blocks > 0;
    let dense = if checkpointed {
        dense_blocks
            .checked_mul(c)?
            .checked_add(block)?
            .checked_add(c.checked_mul(10)?)?
    } else {
        dense_blocks.checked_mul(block)?
    };
    let per_token = dense
        .checked_add(moe_blocks.checked_mul(moe_block)?)?
        .checked_add(c.checked_mul(4)?)?
        .checked_add(v.checked_mul(3)?)?;
    let window = config.context.unwrap_or(model.block_size);
    let attentions = if checkpointed {
        1 + model.expert_blocks()
    } else {
        model.n_layer
    };
    let attention = composed_attention(model.dropout, attentions, model.n_head, window)?;
    let per_token = per_token.checked_add(attention)?;
    step_bytes(model.parameter_count()?, config, window, per_token, device)
}

/// [`step_memory`] for an encoder-decoder, whose source and target windows
/// are both [`TrainConfig::context`] tokens, else the model's `max_len`.
/// Per token the activations are about 15 widths and 2.75 feed-forward
/// widths an encoder layer, 24 and 2.75 a decoder layer (self- and
/// cross-attention), 22 widths at the ends and three target-vocabulary
/// rows. Calibrated against `examples/seq2seq` (batch 512 to 1024, windows
/// 64 and 128, widths 64 and 128, feed-forward 256 and 1024, 2 and 4
/// layers a side): 5-10% above the peak.
///
/// ```
/// use zeroformer::Device;
/// use zeroformer::models::EncoderDecoderConfig;
/// use zeroformer::train::{TrainConfig, encoder_decoder_step_memory};
///
/// let model = EncoderDecoderConfig::preset("transformer-base", 37000, 37000, 256).unwrap();
/// let train = TrainConfig { batch_size: 64, ..TrainConfig::nanogpt_cpu(100) };
/// let bytes = encoder_decoder_step_memory(&model, &train, &Device::Cpu).unwrap();
/// assert!(bytes > 1 << 30);
/// ```
pub fn encoder_decoder_step_memory(
    model: &EncoderDecoderConfig,
    config: &TrainConfig,
    device: &Device,
) -> Option<u64> {
    let (c, f, v) = (
        model.layer.d_model as u64,
        model.layer.d_ff as u64,
        model.tgt_vocab_size as u64,
    );
    // In quarters of a width, so that fractional coefficients stay exact.
    let encoder = c.checked_mul(60)?.checked_add(f.checked_mul(11)?)?;
    let decoder = c.checked_mul(96)?.checked_add(f.checked_mul(11)?)?;
    let quarter_widths = encoder
        .checked_mul(model.n_encoder_layers as u64)?
        .checked_add(decoder.checked_mul(model.n_decoder_layers as u64)?)?
        .checked_add(c.checked_mul(88)?)?;
    let per_token = quarter_widths.div_ceil(4).checked_add(v.checked_mul(3)?)?;
    let window = config.context.unwrap_or(model.max_len);
    // Self-attention in each layer, and cross-attention in the decoder's.
    let attentions = model
        .n_encoder_layers
        .checked_add(model.n_decoder_layers.checked_mul(2)?)?;
    let attention =
        composed_attention(model.layer.dropout, attentions, model.layer.n_head, window)?;
    let per_token = per_token.checked_add(attention)?;
    step_bytes(model.parameter_count()?, config, window, per_token, device)
}

/// Floats per query token that `attentions` attentions of `heads` heads
/// over `keys` keys hold when dropout composes them (the fused kernel does
/// not drop weights): about 5.5 rows of `keys` a head (the scores, the
/// weights, the dropout mask and the dropped weights, and their
/// gradients' buffers). Nothing without dropout, where attention is fused
/// and its memory is its outputs.
fn composed_attention(dropout: f32, attentions: usize, heads: usize, keys: usize) -> Option<u64> {
    if dropout <= 0.0 {
        return Some(0);
    }
    let rows = (attentions as u64)
        .checked_mul(heads as u64)?
        .checked_mul(keys as u64)?;
    Some(rows.checked_mul(11)?.div_ceil(2))
}

/// Parameters' state plus `per_token` floats for each token of a
/// micro-batch of `window`-token sequences, in bytes.
fn step_bytes(
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

/// [`step_memory`] against what `device` has, as an error a user can act
/// on (unless [`TrainConfig::memory_check`] is off); a window longer than
/// the model's context is an error too.
pub(crate) fn check_step_fits(
    model: &GptConfig,
    config: &TrainConfig,
    device: &Device,
) -> Result<()> {
    check_window(config, model.block_size)?;
    check(
        config,
        model.block_size,
        model.parameter_count(),
        || step_memory(model, config, device),
        device,
    )
}

/// [`encoder_decoder_step_memory`] against what `device` has, as
/// [`check_step_fits`] does for GPT.
pub(crate) fn check_encoder_decoder_step_fits(
    model: &EncoderDecoderConfig,
    config: &TrainConfig,
    device: &Device,
) -> Result<()> {
    check_window(config, model.max_len)?;
    check(
        config,
        model.max_len,
        model.parameter_count(),
        || encoder_decoder_step_memory(model, config, device),
        device,
    )
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
