//! Train a BERT-style encoder from scratch to tell who speaks: which of the
//! eight speakers with the most speeches in tiny Shakespeare delivers a
//! given speech. Reports held-out accuracy beside the majority-class baseline.
//!
//!     cargo run --release --example classify
//!     cargo run --release --example classify -- --help
//!
//! Speeches are the text under a `NAME:` header up to the next blank line
//! (about 1,300 of them for the top eight), split into words, padded per
//! batch, and read by a pre-norm encoder whose mean-pooled output feeds a
//! linear classifier. `--metrics FILE` appends each epoch's mean training
//! loss and lr (split `train`) and the held-out accuracy beside the
//! baseline (split `test`).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use zeroformer::data::speeches::{parse_speeches, top_speakers};
use zeroformer::data::{locate_or_fetch_shakespeare, read_text};
use zeroformer::models::{EncoderConfig, Pooling};
use zeroformer::nn::{Activation, LayerConfig, Module, NormKind, NormPlacement, Positional};
use zeroformer::tokenizer::{Tokenizer, WordTokenizer};
use zeroformer::train::{Precision, Record, TrainConfig, Trainer};
use zeroformer::{Device, Error, EvalModeGuard, GeluApproximation, NoGradGuard, Result, Tensor};

/// Classify who speaks a speech of tiny Shakespeare with an encoder.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The corpus (default: data/tinyshakespeare.txt, else ../shared/data/tinyshakespeare.txt).
    #[arg(long)]
    data: Option<PathBuf>,
    /// How many of the most frequent speakers to tell apart.
    #[arg(long, default_value_t = 8)]
    speakers: usize,
    /// Words per speech kept (longer speeches are truncated).
    #[arg(long, default_value_t = 128)]
    context: usize,
    /// Share of the speeches held out for the accuracy.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Passes over the training speeches.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Sequences per training step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (linear warmup over the first epoch, cosine decay after).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// AdamW weight decay on matrices.
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    /// Dropout probability in every layer (0 for none).
    #[arg(long, default_value_t = 0.1)]
    dropout: f32,
    #[command(flatten)]
    shape: common::ShapeFlags,
    /// Words must occur this often in the training speeches to get an id.
    #[arg(long, default_value_t = 2)]
    min_count: usize,
    /// Seed of the initialisation, the batches and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dtype training's products and attention compute in, and the
    /// evaluation's: f32, or bf16 mixed precision (f32 weights).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    #[command(flatten)]
    run_on: common::RunOn,
    #[command(flatten)]
    metrics: common::MetricsFile,
}

/// A tokenized speech and its speaker's index.
struct Example {
    ids: Vec<i64>,
    label: usize,
}

fn main() {
    common::main(|args: &Args| &args.run_on, train);
}

fn train(args: Args, device: &Device) -> Result<()> {
    if args.speakers < 2 || args.context == 0 || args.epochs == 0 || args.batch_size == 0 {
        return Err(Error::InvalidConfig(
            "--speakers must be at least 2; --context, --epochs and --batch-size positive".into(),
        ));
    }
    if !(0.0..1.0).contains(&args.test_fraction) || args.test_fraction == 0.0 {
        return Err(Error::InvalidConfig(format!(
            "--test-fraction must be in (0, 1), got {}",
            args.test_fraction
        )));
    }
    let path = locate_or_fetch_shakespeare(args.data.as_deref())?;
    let speeches = parse_speeches(&read_text(&path)?);
    let speakers = top_speakers(&speeches, args.speakers);
    if speakers.len() < args.speakers {
        return Err(Error::InvalidData(format!(
            "{} has speeches by {} speakers (lines \"NAME:\" before a speech); --speakers {} needs more",
            path.display(),
            speakers.len(),
            args.speakers
        )));
    }
    let mut labelled: Vec<(&str, usize)> = speeches
        .iter()
        .filter_map(|s| {
            let label = speakers.iter().position(|name| *name == s.speaker)?;
            Some((s.text.as_str(), label))
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    labelled.shuffle(&mut rng);
    let n_test = ((labelled.len() as f64 * args.test_fraction).round() as usize).max(1);
    let (test, train) = labelled.split_at(n_test);
    if train.len() < args.speakers {
        return Err(Error::InvalidData(format!(
            "only {} training speeches; the corpus is too small",
            train.len()
        )));
    }

    // The vocabulary comes from the training speeches only.
    let tokenizer = WordTokenizer::fit(train.iter().map(|(t, _)| *t), args.min_count);
    let encode = |set: &[(&str, usize)]| -> zeroformer::Result<Vec<Example>> {
        set.iter()
            .map(|&(text, label)| {
                let mut ids = tokenizer.encode(text)?;
                ids.truncate(args.context);
                if ids.is_empty() {
                    ids.push(WordTokenizer::UNK);
                }
                Ok(Example { ids, label })
            })
            .collect()
    };
    let (mut train, test) = (encode(train)?, encode(test)?);

    let config = EncoderConfig {
        vocab_size: tokenizer.vocab_size(),
        max_len: args.context,
        n_layer: args.shape.layers,
        layer: LayerConfig {
            d_model: args.shape.d_model,
            n_head: args.shape.heads,
            d_ff: 4 * args.shape.d_model,
            dropout: args.dropout,
            activation: Activation::Gelu(GeluApproximation::None),
            norm: NormKind::LayerNorm,
            placement: NormPlacement::Pre,
            bias: true,
        },
        positional: Positional::Learned,
        pooling: Pooling::Mean,
        num_classes: args.speakers,
        checkpoint_activations: false,
    };
    let model = config.init(device, args.seed)?;
    println!(
        "{} speakers ({}), {} training and {} held-out speeches, {} words in the vocabulary, {} parameters",
        speakers.len(),
        speakers.join(", "),
        train.len(),
        test.len(),
        tokenizer.vocab_size(),
        model.num_parameters()
    );

    // The trainer's recipe: AdamW on the matrices, linear warmup over the
    // first epoch, cosine decay to a tenth, clipping at 1.
    let steps_per_epoch = train.len().div_ceil(args.batch_size);
    let total = steps_per_epoch * args.epochs;
    let recipe = TrainConfig {
        batch_size: args.batch_size,
        max_lr: args.lr,
        min_lr: args.lr / 10.0,
        warmup: steps_per_epoch,
        decay_steps: total,
        weight_decay: args.weight_decay,
        beta2: 0.999,
        seed: args.seed,
        precision: args.precision,
        ..TrainConfig::nanogpt_cpu(total)
    };
    let mut trainer = Trainer::new(model, recipe)?;
    let mut progress = common::Progress::new(total as u64, 0);
    let mut metrics = args.metrics.open()?;
    let started = Instant::now();
    for epoch in 0..args.epochs {
        // Each epoch, every training speech once, in a new order.
        train.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for chunk in train.chunks(args.batch_size) {
            let stats = trainer.train_step_with(|_| collate(chunk))?;
            loss_sum += stats.loss.item() * chunk.len() as f32;
            progress.bar.inc(1);
            if progress.plain_due(trainer.step as u64) {
                println!(
                    "step {}/{total} ({:.0}%): epoch {}, loss {:.4}, elapsed {:.0} s",
                    trainer.step,
                    100.0 * trainer.step as f64 / total as f64,
                    epoch + 1,
                    stats.loss.item(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let loss = loss_sum / train.len() as f32;
        let message = format!("epoch {} train loss {loss:.3}", epoch + 1);
        progress.bar.set_message(message);
        let record = Record::new(trainer.step as u64).split("train").loss(loss);
        metrics.write(
            record
                .lr(trainer.config.schedule().lr_at(trainer.step - 1))
                .value("epoch", (epoch + 1) as f64),
        )?;
    }
    progress.bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let (model, trainer_steps) = (trainer.model, trainer.step);
    let _eval = (EvalModeGuard::new(), NoGradGuard::new());
    let correct: usize = zeroformer::autocast(args.precision.dtype(), || {
        test.chunks(args.batch_size)
            .map(|chunk| {
                let (ids, padding, _) = collate(chunk);
                count_correct(&model.classify(&ids, Some(&padding)), chunk)
            })
            .sum()
    });
    let accuracy = correct as f64 / test.len() as f64;
    // The majority baseline always answers the most frequent training speaker.
    let mut counts = vec![0usize; args.speakers];
    train.iter().for_each(|e| counts[e.label] += 1);
    let majority = (0..args.speakers)
        .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
        .expect("at least two speakers");
    let baseline = test.iter().filter(|e| e.label == majority).count() as f64 / test.len() as f64;
    println!(
        "held-out accuracy {:.1}% ({correct}/{}) against {:.1}% for always answering {}; trained in {seconds:.1} s",
        100.0 * accuracy,
        test.len(),
        100.0 * baseline,
        speakers[majority]
    );
    let record = Record::new(trainer_steps as u64)
        .split("test")
        .value("accuracy", accuracy);
    metrics.write(record.value("baseline", baseline))?;
    println!("final accuracy={accuracy:.4} baseline={baseline:.4}");
    Ok(())
}

/// Ids `[batch, longest]` padded with [`WordTokenizer::PAD`], the padding
/// mask, and the labels.
fn collate(batch: &[Example]) -> (Tensor, Tensor, Tensor) {
    let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let (mut ids, mut padding) = (Vec::new(), Vec::new());
    for e in batch {
        ids.extend(&e.ids);
        ids.extend(std::iter::repeat_n(
            WordTokenizer::PAD,
            longest - e.ids.len(),
        ));
        padding.extend((0..longest).map(|i| i >= e.ids.len()));
    }
    let labels = batch.iter().map(|e| e.label as i64).collect();
    (
        Tensor::from_ids(ids, &[batch.len(), longest]),
        Tensor::from_bools(padding, &[batch.len(), longest]),
        Tensor::from_ids(labels, &[batch.len()]),
    )
}

fn count_correct(logits: &Tensor, batch: &[Example]) -> usize {
    let predicted = logits.argmax_dim(-1, false).to_vec_i64();
    predicted
        .iter()
        .zip(batch)
        .filter(|(p, e)| **p == e.label as i64)
        .count()
}
