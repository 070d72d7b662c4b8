//! The example's flags, what they make (the model, the recipe, the
//! tokenizer, the prompt's ids), and the checks that run before any work.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use zeroformer::data::locate_or_fetch_gpt2;
use zeroformer::generation::Sampling;
use zeroformer::models::GptConfig;
use zeroformer::nn::MoeConfig;
use zeroformer::plot;
use zeroformer::tokenizer::{BpeTokenizer, BpeTrainer, CharTokenizer, Tokenizer};
use zeroformer::train::TrainConfig;
use zeroformer::{Error, Result};

use crate::common;
use crate::{BEST, LAST};

/// Train a GPT on tiny Shakespeare and sample from it.
///
/// With --resume DIR the run continues from DIR/last.safetensors, into DIR
/// unless --out says otherwise: the model
/// (--preset, --dropout) and --seed are the checkpoint's and cannot change;
/// each training flag given on the command line (--iters, --batch-size,
/// --grad-accum, --lr, --min-lr, --warmup, --weight-decay, --grad-clip)
/// replaces the saved value from the next step on, with a printed notice (a
/// new --iters re-plans the cosine decay from the current step); flags not
/// given continue as saved. The best validation loss and the evaluation
/// batches' random stream are restored too, so a resumed run keeps the
/// best checkpoint an uninterrupted run would.
#[derive(Parser, Debug)]
#[command(version, about, long_about, allow_negative_numbers = true)]
pub struct Args {
    /// The corpus (default: data/tinyshakespeare.txt, else ../shared/data/tinyshakespeare.txt).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model size: cpu-mini, gpt-mini, shakespeare-char, or gpt2 with
    /// --tokenizer gpt2 [default: cpu-mini].
    #[arg(long)]
    pub preset: Option<String>,
    /// Tokens: `char` (the corpus's characters), `bpe` (a byte-level BPE
    /// trained on the training split, saved in the checkpoint) or `gpt2`
    /// (GPT-2's tokenizer) [default: char, or the resumed run's].
    #[arg(long, value_parser = ["char", "bpe", "gpt2"])]
    pub tokenizer: Option<String>,
    /// The vocabulary size of --tokenizer bpe (256 bytes and the merges).
    #[arg(long, default_value_t = 512)]
    pub bpe_vocab_size: usize,
    /// The folder of GPT-2's vocab.json and merges.txt, for --tokenizer gpt2
    /// (default: data/gpt2, else ../shared/data/gpt2).
    #[arg(long)]
    pub gpt2_dir: Option<PathBuf>,
    /// Optimisation steps in total, counting those of a resumed run; the
    /// cosine decay ends there [default: 2000, or the resumed run's].
    #[arg(long)]
    pub iters: Option<usize>,
    /// Sequences per micro-batch [default: 12].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per step (gradient accumulation) [default: 1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate, > 0 [default: 1e-3].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Final learning rate of the cosine decay, in [0, --lr] [default: 1e-4].
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps [default: 100].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// AdamW weight decay, on matrices only, >= 0 [default: 0.1].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Global gradient-norm clip, >= 0 (0 disables) [default: 1.0].
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// The dtype the forward's matrix products and attention compute in:
    /// f32, or bf16 mixed precision (weights, gradients and checkpoints
    /// stay f32) [default: f32, or the resumed run's].
    #[arg(long, value_parser = ["f32", "bf16"])]
    pub precision: Option<String>,
    /// Train even when the step's estimated memory exceeds what the device
    /// has (the estimate is 5-20% above the measured peak).
    #[arg(long)]
    pub no_memory_check: bool,
    /// Dropout probability in [0, 1) [default: 0].
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Activation checkpointing: each block keeps only its input and runs
    /// again in the backward pass (less memory, about a third more compute,
    /// the same numbers). Also when resuming.
    #[arg(long)]
    pub checkpoint_activations: bool,
    /// Sliding-window attention: each block attends over the last W
    /// positions only (O(T·W) attention work; generation's KV cache keeps W
    /// positions a block). Fixed for a run.
    #[arg(long, value_name = "W")]
    pub attention_window: Option<usize>,
    /// With --attention-window: every N-th block attends over all positions
    /// instead (local and global blocks alternating; Gemma 2's N is 2).
    #[arg(long, value_name = "N", requires = "attention_window")]
    pub global_every: Option<usize>,
    /// A Mixture-of-Experts MLP of E experts (each the dense MLP's shape)
    /// in place of the dense one; with --experts-per-token, --moe-every and
    /// the router losses' weights. Fixed for a run.
    #[arg(long, value_name = "E")]
    pub experts: Option<usize>,
    /// With --experts: experts per token, 1 (Switch) or 2 (Mixtral).
    #[arg(long, value_name = "K", default_value_t = 1, requires = "experts")]
    pub experts_per_token: usize,
    /// With --experts: experts in every N-th block only (2: every other).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "experts")]
    pub moe_every: usize,
    /// With --experts: the load-balancing loss's weight.
    #[arg(long, value_name = "W", default_value_t = 0.01, requires = "experts")]
    pub load_balancing_coef: f32,
    /// With --experts: the router z-loss's weight.
    #[arg(long, value_name = "W", default_value_t = 0.0, requires = "experts")]
    pub z_loss_coef: f32,
    /// Steps between evaluations, >= 1.
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    /// Random batches per evaluation estimate, >= 1.
    #[arg(long, default_value_t = 20)]
    pub eval_iters: usize,
    /// Seeds the model's initialisation and every random stream [default: 1337].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Checkpoint folder [default: the --resume folder, else
    /// out-shakespeare]. A folder that already holds checkpoints is refused
    /// unless it is the one given to --resume, or --force is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the checkpoints already in --out.
    #[arg(long)]
    pub force: bool,
    /// Continue from the checkpoints in this folder (see above).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Only generate, from the best checkpoint in --resume.
    #[arg(long)]
    pub sample_only: bool,
    #[arg(long, default_value_t = 500)]
    pub sample_tokens: usize,
    #[command(flatten)]
    pub sampling: common::SamplingFlags,
    /// The text the sample continues (non-empty, in the corpus's characters).
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    #[command(flatten)]
    pub run_on: common::RunOn,
    #[command(flatten)]
    pub metrics: common::MetricsFile,
    /// Draw the trained model's attention on --prompt (its last tokens up
    /// to the context), every layer x head, to this PNG.
    #[arg(long)]
    pub attention_png: Option<PathBuf>,
    /// With --attention-png, draw only this head, as `LAYER.HEAD` (`2.1`).
    #[arg(long, requires = "attention_png")]
    pub attention_head: Option<String>,
}

pub const DEFAULT_PRESET: &str = "cpu-mini";
pub const DEFAULT_OUT: &str = "out-shakespeare";
pub const DEFAULT_ITERS: usize = 2000;
pub const DEFAULT_SEED: u64 = 1337;

impl Args {
    /// Where checkpoints go: --out, else the folder a run resumes from
    /// (continued in place), else out-shakespeare.
    pub fn out(&self) -> PathBuf {
        self.out
            .clone()
            .or_else(|| self.resume.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT))
    }

    /// Every flag checked before any work (the prompt once the corpus gives
    /// the vocabulary): a bad one never costs a training run. The sampling
    /// they ask for.
    pub fn check(&self) -> Result<Sampling> {
        let sampling = self.sampling.sampling()?;
        for (name, value) in [
            ("--eval-every", self.eval_every),
            ("--eval-iters", self.eval_iters),
        ] {
            if value == 0 {
                return Err(Error::InvalidConfig(format!("{name} must be at least 1")));
            }
        }
        attention_head(self, None)?;
        if let Some(path) = self.attention_png.as_deref().filter(|p| p.is_dir()) {
            return Err(Error::InvalidConfig(format!(
                "--attention-png {} is a folder; give the PNG file's path",
                path.display()
            )));
        }
        if let Some(dir) = self.resume.as_deref().filter(|d| !d.is_dir()) {
            let what = if dir.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            return Err(Error::InvalidConfig(format!(
                "--resume {}: {what}; give the folder a run wrote (its --out)",
                dir.display()
            )));
        }
        Ok(sampling)
    }

    /// The model the flags ask for, over a vocabulary of `vocab_size`.
    pub fn model(&self, vocab_size: usize, tokenizer: &str) -> Result<GptConfig> {
        let preset = self.preset.as_deref().unwrap_or(DEFAULT_PRESET);
        let mut model = GptConfig::preset(preset, vocab_size)?;
        if preset == "gpt2" && tokenizer != "gpt2" {
            return Err(Error::InvalidConfig("the gpt2 preset needs --tokenizer gpt2; use cpu-mini, gpt-mini or shakespeare-char".into()));
        }
        model.dropout = self.dropout.unwrap_or(0.0);
        model.checkpoint_activations = self.checkpoint_activations;
        if let Some(window) = self.attention_window {
            model = model.with_sliding_window(window, self.global_every.unwrap_or(0));
        }
        model.moe = moe_config(self);
        Ok(model)
    }
}

/// The training recipe: `base` with every training flag given on the
/// command line in its place.
pub fn recipe(args: &Args, base: TrainConfig) -> TrainConfig {
    TrainConfig {
        batch_size: args.batch_size.unwrap_or(base.batch_size),
        grad_accum: args.grad_accum.unwrap_or(base.grad_accum),
        max_lr: args.lr.unwrap_or(base.max_lr),
        min_lr: args.min_lr.unwrap_or(base.min_lr),
        warmup: args.warmup.unwrap_or(base.warmup),
        decay_steps: args.iters.unwrap_or(base.decay_steps),
        weight_decay: args.weight_decay.unwrap_or(base.weight_decay),
        grad_clip: args.grad_clip.unwrap_or(base.grad_clip),
        memory_check: base.memory_check && !args.no_memory_check,
        precision: args
            .precision
            .as_deref()
            .map_or(base.precision, |p| p.parse().expect("clap checked it")),
        ..base
    }
}

/// The tokenizer `kind` (char, bpe or gpt2) for `text`: characters of the
/// whole text, a BPE trained on the first 90% (the training split), or
/// GPT-2's from its files.
pub fn build_tokenizer(kind: &str, text: &str, args: &Args) -> Result<Box<dyn Tokenizer>> {
    Ok(match kind {
        "char" => Box::new(CharTokenizer::from_text(text)),
        "bpe" => {
            let mut cut = text.len() * 9 / 10;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let t = Instant::now();
            let bpe = BpeTrainer::new(args.bpe_vocab_size).train(&text[..cut])?;
            println!(
                "trained a byte-level BPE of {} tokens on the training split in {:.2} s",
                bpe.vocab_size(),
                t.elapsed().as_secs_f64()
            );
            Box::new(bpe)
        }
        "gpt2" => {
            let (vocab, merges) = locate_or_fetch_gpt2(args.gpt2_dir.as_deref())?;
            Box::new(BpeTokenizer::from_gpt2_files(vocab, merges)?)
        }
        other => {
            return Err(Error::InvalidConfig(format!(
                "--tokenizer {other}: use char, bpe or gpt2"
            )));
        }
    })
}

/// The prompt's ids, refused before training if it is empty or holds a
/// character the corpus does not.
pub fn encode_prompt(tokenizer: &dyn Tokenizer, prompt: &str) -> Result<Vec<i64>> {
    if prompt.is_empty() {
        return Err(Error::InvalidConfig("--prompt must not be empty".into()));
    }
    tokenizer.encode(prompt).map_err(|e| match e {
        // One prefix: the flag's, then what is wrong with it.
        Error::InvalidData(why) => Error::InvalidConfig(format!("--prompt: {why}")),
        other => other,
    })
}

/// The mixture of experts the flags ask for (`None` without --experts).
pub fn moe_config(args: &Args) -> Option<MoeConfig> {
    args.experts.map(|n_experts| MoeConfig {
        n_experts,
        top_k: args.experts_per_token,
        every: args.moe_every,
        load_balancing_coef: args.load_balancing_coef,
        z_loss_coef: args.z_loss_coef,
    })
}

/// Refuses to train into a folder that holds another run's checkpoints
/// (a short trial would replace a long run's best model) unless that run
/// is the one being resumed, or `--force` is given.
pub fn check_out_dir_free(args: &Args) -> Result<()> {
    let out_dir = args.out();
    let existing: Vec<PathBuf> = [LAST, BEST]
        .iter()
        .map(|name| out_dir.join(name))
        .filter(|p| p.exists())
        .collect();
    let same_dir = |dir: &Path| match (dir.canonicalize(), out_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if existing.is_empty() || args.force || args.resume.as_deref().is_some_and(same_dir) {
        return Ok(());
    }
    let out = out_dir.display();
    Err(Error::InvalidConfig(format!(
        "--out {out} already holds checkpoints ({}); give --resume {out} to continue that run, --force to replace it, or another --out",
        existing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// --attention-head as (layer, head), checked against the model's shape
/// once `config` is known.
pub fn attention_head(args: &Args, config: Option<&GptConfig>) -> Result<Option<(usize, usize)>> {
    let Some(text) = &args.attention_head else {
        return Ok(None);
    };
    let (layer, head) = plot::parse_head(text).ok_or_else(|| {
        Error::InvalidConfig(format!("--attention-head {text}: give LAYER.HEAD, as 2.1"))
    })?;
    if let Some(c) = config.filter(|c| layer >= c.n_layer || head >= c.n_head) {
        return Err(Error::InvalidConfig(format!(
            "--attention-head {text}: the model has layers 0..{} and heads 0..{}",
            c.n_layer, c.n_head
        )));
    }
    Ok(Some((layer, head)))
}
