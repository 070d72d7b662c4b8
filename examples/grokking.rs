//! Grokking (Power et al. 2022; Nanda et al. 2023): a one-layer
//! Transformer learns a + b mod p from a fraction of all pairs. Full-batch
//! AdamW with strong weight decay memorises the training pairs early, while
//! accuracy on the held-out pairs stays near chance; far later it jumps to
//! ~100%.
//!
//!     cargo run --release --example grokking
//!     cargo run --release --example grokking -- --metrics grok.jsonl --p 113
//!
//! Each example is the three tokens `a b =`; the loss is the cross-entropy
//! of the answer at the `=` position only. The last line is
//! `final p=.. train_frac=.. memorised_step=.. grokked_step=.. val_acc=..`.

use std::time::Instant;

use clap::Parser;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use zeroformer::nn::Module;
use zeroformer::optim::{Adam, AdamConfig, Optimizer, ParamGroup};
use zeroformer::train::{MetricsWriter, Record};
use zeroformer::{Error, Gpt, GptConfig, Result, Tensor, no_grad};

/// Train a one-layer Transformer on modular addition until it groks.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The modulus (a prime; Nanda et al. use 113, which groks later).
    #[arg(long, default_value_t = 59)]
    p: usize,
    /// Share of the p² pairs trained on; the rest is held out.
    #[arg(long, default_value_t = 0.3)]
    train_frac: f64,
    /// Full-batch AdamW steps at most (training stops after grokking).
    #[arg(long, default_value_t = 30_000)]
    steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// AdamW weight decay, on every parameter.
    #[arg(long, default_value_t = 1.0)]
    weight_decay: f32,
    /// Model width (the MLP is 4x, the heads 4).
    #[arg(long, default_value_t = 128)]
    d_model: usize,
    /// Steps between measurements.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Seed of the split and the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Append metrics to this file, a JSON object per line.
    #[arg(long)]
    metrics: Option<std::path::PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// `(inputs [n, 3], answers [n])` for the pairs.
fn batch(pairs: &[(usize, usize)], p: usize) -> (Tensor, Tensor) {
    let inputs = pairs
        .iter()
        .flat_map(|&(a, b)| [a as i64, b as i64, p as i64])
        .collect();
    let answers = pairs.iter().map(|&(a, b)| ((a + b) % p) as i64).collect();
    (
        Tensor::from_ids(inputs, &[pairs.len(), 3]),
        Tensor::from_ids(answers, &[pairs.len()]),
    )
}

/// The logits of the answer, at the `=` position: `[n, p + 1]`.
fn answer_logits(model: &Gpt, inputs: &Tensor) -> Tensor {
    let logits = model.forward(inputs);
    let (n, v) = (logits.shape()[0], logits.shape()[2]);
    logits.narrow(1, 2, 1).reshape(&[n, v])
}

/// Loss and accuracy of the answers.
fn measure(model: &Gpt, (inputs, answers): &(Tensor, Tensor)) -> (f32, f64) {
    no_grad(|| {
        let logits = answer_logits(model, inputs);
        let loss = logits.cross_entropy(answers).item();
        let predicted = logits.argmax_dim(-1, false).to_vec_i64();
        let right = predicted
            .iter()
            .zip(answers.to_vec_i64())
            .filter(|(a, b)| **a == *b)
            .count();
        (loss, right as f64 / predicted.len() as f64)
    })
}

fn run(args: Args) -> Result<()> {
    zeroformer::backend::cpu::set_threads(args.threads)?;
    if args.p < 2 || !(args.train_frac > 0.0 && args.train_frac < 1.0) || args.eval_every == 0 {
        return Err(Error::InvalidConfig(
            "--p must be at least 2, --train-frac in (0, 1) and --eval-every at least 1".into(),
        ));
    }
    let p = args.p;
    let mut pairs: Vec<(usize, usize)> = (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).collect();
    pairs.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
    let cut = ((pairs.len() as f64) * args.train_frac).round() as usize;
    let (train, val) = (batch(&pairs[..cut], p), batch(&pairs[cut..], p));
    let config = GptConfig {
        vocab_size: p + 1,
        block_size: 3,
        n_layer: 1,
        n_head: 4,
        n_embd: args.d_model,
        dropout: 0.0,
        bias: true,
    };
    let model = Gpt::new(config, args.seed)?;
    let groups = vec![ParamGroup {
        params: model.named_parameters(),
        weight_decay: args.weight_decay,
    }];
    let mut optimizer = Adam::new(groups, AdamConfig::default().lr(args.lr).betas(0.9, 0.98));
    let mut metrics = args
        .metrics
        .as_ref()
        .map(MetricsWriter::append)
        .transpose()?;
    println!(
        "a + b mod {p}: {} training pairs, {} held out; {} parameters",
        cut,
        pairs.len() - cut,
        model.num_parameters()
    );
    let started = Instant::now();
    let (mut memorised, mut grokked) = (None, None);
    let mut val_acc = 0.0;
    for step in 1..=args.steps {
        let loss = answer_logits(&model, &train.0).cross_entropy(&train.1);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        if step % args.eval_every == 0 || step == args.steps {
            let (train_loss, train_acc) = measure(&model, &train);
            let (val_loss, acc) = measure(&model, &val);
            val_acc = acc;
            if train_acc >= 0.99 {
                memorised.get_or_insert(step);
            }
            if acc >= 0.99 {
                grokked.get_or_insert(step);
            }
            println!(
                "step {step}: train loss {train_loss:.4} acc {train_acc:.3}, val loss {val_loss:.4} acc {acc:.3}, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            if let Some(m) = metrics.as_mut() {
                let s = step as u64;
                m.write(
                    Record::new(s)
                        .split("train")
                        .loss(train_loss)
                        .value("accuracy", train_acc),
                )?;
                m.write(
                    Record::new(s)
                        .split("val")
                        .loss(val_loss)
                        .value("accuracy", acc),
                )?;
            }
            // A few measurements past the jump show it holds.
            if grokked.is_some_and(|g| step >= g + 5 * args.eval_every) {
                break;
            }
        }
    }
    let show = |s: Option<usize>| s.map_or("none".to_string(), |s| s.to_string());
    println!(
        "final p={p} train_frac={} memorised_step={} grokked_step={} val_acc={val_acc:.4}",
        args.train_frac,
        show(memorised),
        show(grokked)
    );
    Ok(())
}
