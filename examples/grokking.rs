//! Grokking (Power et al. 2022; Nanda et al. 2023): a one-layer
//! Transformer learns a + b mod p from a fraction of all pairs. Full-batch
//! AdamW with strong weight decay memorises the training pairs early, while
//! accuracy on the held-out pairs stays near chance; far later it jumps to
//! ~100%.
//!
//!     cargo run --release --example grokking
//!     cargo run --release --example grokking -- --fourier-png fourier.png --metrics grok.jsonl
//!
//! Each example is the three tokens `a b =`; the loss is the cross-entropy
//! of the answer at the `=` position only. It draws train and validation
//! accuracy and loss against the step (log scale) to --png, and with
//! --fourier-png the token embedding's energy per Fourier frequency over
//! the p residues: flat at initialisation and after memorising, then
//! concentrating on fewer frequencies as the network groks and weight decay
//! keeps cleaning up (Nanda et al.'s explanation: it adds by rotating
//! through a few key frequencies; docs/pictures.md shows a run). The last
//! line is
//! `final p=.. train_frac=.. memorised_step=.. grokked_step=.. val_acc=..`.
//! `--metrics FILE` appends each evaluation's loss and accuracy on the
//! training pairs (split `train`) and the held-out ones (split `val`).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use zeroformer::nn::Module;
use zeroformer::optim::LrSchedule;
use zeroformer::plot::{LineChart, save_panels};
use zeroformer::train::{Record, TrainConfig, Trainable, Trainer};
use zeroformer::{Device, Error, Gpt, GptConfig, Result, Tensor, no_grad};

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
    /// Steps to keep training once validation accuracy reaches 99% (weight
    /// decay keeps cleaning up the memorised solution meanwhile).
    #[arg(long, default_value_t = 500)]
    after_grokking: usize,
    /// Seed of the split and the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    metrics: common::MetricsFile,
    /// Draw accuracy and loss against the step to this PNG.
    #[arg(long, default_value = "out-grokking/grokking.png")]
    png: PathBuf,
    /// Draw the token embedding's Fourier spectrum (at initialisation,
    /// when memorised, when grokked, at the end) to this PNG.
    #[arg(long)]
    fourier_png: Option<PathBuf>,
    #[command(flatten)]
    run_on: common::RunOn,
}

fn main() {
    common::main(|args: &Args| &args.run_on, train);
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

/// The GPT trained on the answers alone: its loss is the cross-entropy at
/// the `=` position.
#[derive(Module)]
struct Answers {
    gpt: Gpt,
}

impl Trainable for Answers {
    type Batch = (Tensor, Tensor);

    fn loss(&self, (inputs, answers): &Self::Batch) -> Tensor {
        answer_logits(&self.gpt, inputs).cross_entropy(answers)
    }
}

/// The logits of the answer, at the `=` position: `[n, p + 1]`.
fn answer_logits(model: &Gpt, inputs: &Tensor) -> Tensor {
    let logits = model.forward(inputs, Default::default()).logits;
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

/// Each Fourier frequency's share of the residue embeddings' energy: the
/// rows 0..p of the token embedding `[p + 1, width]` (the `=` row left
/// out) as p samples of a width-dimensional signal. Frequency k and p - k
/// carry the same energy, so k runs over 0..=p/2 and k > 0 counts twice;
/// by Parseval's theorem the shares sum to 1.
fn fourier_shares(model: &Gpt, p: usize) -> Vec<f64> {
    let width = model.config.n_embd;
    let embedding: Vec<f64> = model.wte.weight.to_vec()[..p * width]
        .iter()
        .map(|&v| v as f64)
        .collect();
    let energy: f64 = embedding.iter().map(|v| v * v).sum();
    (0..=p / 2)
        .map(|k| {
            let mut power = 0.0;
            for j in 0..width {
                let (mut re, mut im) = (0.0, 0.0);
                for a in 0..p {
                    let angle = std::f64::consts::TAU * (k * a % p) as f64 / p as f64;
                    re += embedding[a * width + j] * angle.cos();
                    im += embedding[a * width + j] * angle.sin();
                }
                power += re * re + im * im;
            }
            let both_signs = if k == 0 || 2 * k == p { 1.0 } else { 2.0 };
            both_signs * power / (p as f64 * energy)
        })
        .collect()
}

/// The share of the energy in the `n` strongest frequencies.
fn top_share(shares: &[f64], n: usize) -> f64 {
    let mut sorted = shares.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.iter().take(n).sum()
}

/// One measurement: the step, then loss and accuracy on train and val.
type Measured = (usize, f32, f64, f32, f64);

/// Accuracy and loss against the step, log-scale x, side by side.
fn draw_curves(history: &[Measured], p: usize, path: &std::path::Path) -> Result<()> {
    let series = |f: fn(&Measured) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|m| (m.0 as f64, f(m))).collect()
    };
    let accuracy = LineChart::new(&format!("Accuracy, a + b mod {p}"))
        .x_label("step")
        .y_label("accuracy")
        .log_x(true)
        .series("train", series(|m| m.2))
        .series("validation", series(|m| m.4));
    let loss = LineChart::new("Loss")
        .x_label("step")
        .y_label("cross-entropy")
        .log_x(true)
        .log_y(true)
        .series("train", series(|m| m.1 as f64))
        .series("validation", series(|m| m.3 as f64));
    save_panels(&[accuracy.size(700, 450), loss.size(700, 450)], path)
}

fn train(args: Args, device: &Device) -> Result<()> {
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
        ..GptConfig::default()
    };
    let model = config.init(device, args.seed)?;
    // Full-batch AdamW at a constant rate, betas (0.9, 0.98), weight decay
    // on every parameter, no clipping.
    let recipe = TrainConfig {
        batch_size: train.0.shape()[0],
        lr_schedule: Some(LrSchedule::Constant(args.lr)),
        max_lr: args.lr,
        min_lr: args.lr,
        warmup: 0,
        weight_decay: args.weight_decay,
        decay_all: true,
        beta2: 0.98,
        grad_clip: 0.0,
        seed: args.seed,
        ..TrainConfig::nanogpt_cpu(args.steps)
    };
    let mut metrics = args.metrics.open()?;
    println!(
        "a + b mod {p}: {} training pairs, {} held out; {} parameters",
        cut,
        pairs.len() - cut,
        model.num_parameters()
    );
    let mut trainer = Trainer::new(Answers { gpt: model }, recipe)?;
    let started = Instant::now();
    let (mut memorised, mut grokked) = (None, None);
    let mut val_acc = 0.0;
    let mut history: Vec<Measured> = Vec::new();
    let mut spectra = vec![(
        "initialisation".to_string(),
        fourier_shares(&trainer.model.gpt, p),
    )];
    for step in 1..=args.steps {
        trainer.train_step_with(|_| train.clone())?;
        let model = &trainer.model.gpt;
        if step % args.eval_every == 0 || step == args.steps {
            let (train_loss, train_acc) = measure(model, &train);
            let (val_loss, acc) = measure(model, &val);
            val_acc = acc;
            if train_acc >= 0.99 && memorised.is_none() {
                memorised = Some(step);
                let name = format!("memorised (step {step})");
                spectra.push((name, fourier_shares(model, p)));
            }
            if acc >= 0.99 && grokked.is_none() {
                grokked = Some(step);
                let name = format!("grokked (step {step})");
                spectra.push((name, fourier_shares(model, p)));
            }
            history.push((step, train_loss, train_acc, val_loss, acc));
            println!(
                "step {step}: train loss {train_loss:.4} acc {train_acc:.3}, val loss {val_loss:.4} acc {acc:.3}, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            let s = step as u64;
            metrics.write(
                Record::new(s)
                    .split("train")
                    .loss(train_loss)
                    .value("accuracy", train_acc),
            )?;
            metrics.write(
                Record::new(s)
                    .split("val")
                    .loss(val_loss)
                    .value("accuracy", acc),
            )?;
            if grokked.is_some_and(|g| step >= g + args.after_grokking) {
                break;
            }
        }
    }
    draw_curves(&history, p, &args.png)?;
    println!("drew {}", args.png.display());
    let last = history.last().map_or(0, |m| m.0);
    spectra.push((
        format!("end (step {last})"),
        fourier_shares(&trainer.model.gpt, p),
    ));
    let tops: Vec<String> = spectra
        .iter()
        .map(|(name, shares)| format!("{name}: {:.1}%", 100.0 * top_share(shares, 5)))
        .collect();
    println!(
        "embedding energy in the 5 strongest of {} frequencies: {}",
        p / 2 + 1,
        tops.join(", ")
    );
    let end = &spectra[spectra.len() - 1].1;
    let mut strongest: Vec<usize> = (0..end.len()).collect();
    strongest.sort_by(|&a, &b| end[b].total_cmp(&end[a]));
    let listed: Vec<String> = strongest[..5.min(end.len())]
        .iter()
        .map(|&k| format!("k={k} {:.1}%", 100.0 * end[k]))
        .collect();
    let faint = end.iter().filter(|&&s| s < 0.005).count();
    println!(
        "at the end: strongest {}; {faint} of {} frequencies below 0.5% of the energy",
        listed.join(", "),
        end.len()
    );
    if let Some(path) = &args.fourier_png {
        let chart = spectra.iter().fold(
            LineChart::new("Token embedding: energy per Fourier frequency")
                .x_label("frequency k (cycles over the p residues)")
                .y_label("share of the embedding's energy"),
            |chart, (name, shares)| {
                let points = shares.iter().enumerate().map(|(k, &s)| (k as f64, s));
                chart.series(name, points)
            },
        );
        chart.save(path)?;
        println!("drew {}", path.display());
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
