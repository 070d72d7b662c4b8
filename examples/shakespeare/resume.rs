//! `--resume DIR`: a run continued from its checkpoint, the flags that
//! cannot change refused, the training flags given applied.

use std::path::Path;

use zeroformer::checkpoint::Checkpoint;
use zeroformer::models::{Gpt, GptConfig};
use zeroformer::tokenizer::{self, CharTokenizer, Tokenizer};
use zeroformer::train::{TrainConfig, Trainer};
use zeroformer::{Device, Error, Result};

use crate::flags::{Args, moe_config, recipe};
use crate::{BEST, LAST, RunResult};

/// The last checkpoint in `dir` (else the best), checked against the
/// corpus's vocabulary and the model flags, with the training flags given
/// applied (each change printed).
pub fn resume(
    dir: &Path,
    text: &str,
    args: &Args,
    device: &Device,
) -> RunResult<(Trainer<Gpt>, Box<dyn Tokenizer>, String)> {
    let path = [dir.join(LAST), dir.join(BEST)]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "--resume {}: no {LAST} or {BEST} there",
                dir.display()
            ))
        })?;
    let (mut trainer, ckpt) = Trainer::<Gpt>::resume(&path, device)?;
    if args.checkpoint_activations {
        trainer.model.config.checkpoint_activations = true;
    }
    let (saved, kind) = saved_tokenizer(&ckpt)?;
    if args.tokenizer.as_ref().is_some_and(|k| *k != kind) {
        return Err(Error::InvalidConfig(format!(
            "--tokenizer cannot change when a run continues: {} was trained with {kind}",
            path.display()
        ))
        .into());
    }
    if kind == "char" {
        let corpus = CharTokenizer::from_text(text);
        if saved.to_json() != corpus.to_json() {
            return Err(Error::Checkpoint {
                path,
                message: format!(
                    "it was trained on another vocabulary ({} characters; this corpus has {})",
                    saved.vocab_size(),
                    corpus.vocab_size()
                ),
            }
            .into());
        }
    }
    check_fixed_flags(&trainer, args, &path)?;
    let changes = apply_training_flags(&mut trainer, args)?;
    println!("resumed from {} at step {}", path.display(), trainer.step);
    if let Some(changes) = changes {
        println!("changed from the next step on: {changes}");
    }
    Ok((trainer, saved, kind))
}

/// Refuses a flag that would change what a checkpoint fixes: the model
/// and the seed.
fn check_fixed_flags(trainer: &Trainer<Gpt>, args: &Args, path: &Path) -> Result<()> {
    let model = &trainer.model.config;
    let fixed = [
        (
            "--preset",
            args.preset.as_ref().map(|p| {
                let preset = GptConfig::preset(p, model.vocab_size);
                preset.is_ok_and(|c| {
                    (c.n_layer, c.n_head, c.n_embd, c.block_size)
                        == (model.n_layer, model.n_head, model.n_embd, model.block_size)
                })
            }),
        ),
        ("--dropout", args.dropout.map(|d| d == model.dropout)),
        (
            "--experts",
            args.experts.map(|_| moe_config(args) == model.moe),
        ),
        (
            "--attention-window",
            args.attention_window.map(|w| {
                let asked = model
                    .clone()
                    .with_sliding_window(w, args.global_every.unwrap_or(0));
                asked.attention_windows == model.attention_windows
            }),
        ),
        ("--seed", args.seed.map(|s| s == trainer.config.seed)),
    ];
    match fixed.into_iter().find(|(_, same)| *same == Some(false)) {
        Some((flag, _)) => Err(Error::InvalidConfig(format!(
            "{flag} cannot change when a run continues: it is fixed by {}",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// The training flags given, applied from the next step on; what changed,
/// when something did.
fn apply_training_flags(trainer: &mut Trainer<Gpt>, args: &Args) -> Result<Option<String>> {
    let old = trainer.config.clone();
    let new = recipe(args, old.clone());
    type Field = fn(&TrainConfig) -> String;
    let fields: [(&str, Field); 9] = [
        ("--iters", |c| c.decay_steps.to_string()),
        ("--batch-size", |c| c.batch_size.to_string()),
        ("--grad-accum", |c| c.grad_accum.to_string()),
        ("--lr", |c| c.max_lr.to_string()),
        ("--min-lr", |c| c.min_lr.to_string()),
        ("--warmup", |c| c.warmup.to_string()),
        ("--weight-decay", |c| c.weight_decay.to_string()),
        ("--grad-clip", |c| c.grad_clip.to_string()),
        ("--precision", |c| {
            format!("{:?}", c.precision).to_lowercase()
        }),
    ];
    let changes: Vec<String> = fields
        .into_iter()
        .map(|(flag, get)| (flag, get(&old), get(&new)))
        .filter(|(_, a, b)| a != b)
        .map(|(flag, a, b)| format!("{flag} {a} -> {b}"))
        .collect();
    trainer.set_config(new)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let replanned = if old.decay_steps != trainer.config.decay_steps {
        " (the cosine decay is re-planned to end at the new --iters)"
    } else {
        ""
    };
    Ok(Some(format!("{}{replanned}", changes.join(", "))))
}

/// The tokenizer a checkpoint was trained with, and its kind (`char` for
/// checkpoints that do not say).
pub fn saved_tokenizer(ckpt: &Checkpoint) -> Result<(Box<dyn Tokenizer>, String)> {
    let tokenizer = tokenizer::from_json(ckpt.require_meta("tokenizer")?)?;
    let kind = ckpt.meta("tokenizer_kind").unwrap_or("char").to_string();
    Ok((tokenizer, kind))
}
