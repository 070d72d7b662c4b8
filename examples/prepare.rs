//! Encode a text corpus once into token files, nanoGPT's `prepare.py`:
//! `train.bin` (the first 90%) and `val.bin` (the rest), little-endian
//! u16 ids (u32 for vocabularies above 65,536) behind a header that names
//! the tokenizer. Training then samples windows from the memory-mapped
//! files (`zeroformer::data::TokenFile`), however large the corpus.
//!
//!     cargo run --release --example prepare -- --tokenizer gpt2 --out-dir data/shakespeare-gpt2
//!     cargo run --release --example prepare -- --input corpus.txt --tokenizer bpe --vocab-size 8192 --out-dir data/corpus

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use zeroformer::data::{TokenFile, locate_or_fetch_gpt2, locate_or_fetch_shakespeare, read_text};
use zeroformer::tokenizer::{self, BpeTokenizer, BpeTrainer, CharTokenizer, Tokenizer};
use zeroformer::{Error, Result};

/// Encode a text file into train.bin and val.bin token files.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The text (default: data/tinyshakespeare.txt, else ../shared/data/tinyshakespeare.txt).
    #[arg(long)]
    input: Option<PathBuf>,
    /// `char` (the text's characters), `bpe` (a byte-level BPE trained on
    /// the training part), `gpt2` (GPT-2's), or a tokenizer JSON file.
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// The vocabulary size of --tokenizer bpe.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    /// The folder of GPT-2's vocab.json and merges.txt (default: data/gpt2,
    /// else ../shared/data/gpt2).
    #[arg(long)]
    gpt2_dir: Option<PathBuf>,
    /// Where train.bin and val.bin go (created if missing; files there are replaced).
    #[arg(long)]
    out_dir: PathBuf,
    /// The share of the text, at its end, that becomes val.bin, in [0, 1).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
}

fn main() {
    common::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    if !(0.0..1.0).contains(&args.val_fraction) {
        return Err(Error::InvalidConfig(format!(
            "--val-fraction must be in [0, 1), got {}",
            args.val_fraction
        )));
    }
    let path = locate_or_fetch_shakespeare(args.input.as_deref())?;
    let text = read_text(&path)?;
    // The split falls where a token must start, so both parts encode as
    // the whole does.
    let target = ((1.0 - args.val_fraction) * text.len() as f64) as usize;
    let cut = tokenizer::chunks(&text, target.max(1))[0].len();
    let (train, val) = text.split_at(if args.val_fraction == 0.0 {
        text.len()
    } else {
        cut
    });
    let tokenizer: Box<dyn Tokenizer> = match args.tokenizer.as_str() {
        "char" => Box::new(CharTokenizer::from_text(&text)),
        "bpe" => Box::new(BpeTrainer::new(args.vocab_size).train(train)?),
        "gpt2" => {
            let (vocab, merges) = locate_or_fetch_gpt2(args.gpt2_dir.as_deref())?;
            Box::new(BpeTokenizer::from_gpt2_files(vocab, merges)?)
        }
        file => {
            let json = std::fs::read_to_string(file)
                .map_err(|e| Error::io("reading the tokenizer", file, e))?;
            tokenizer::from_json(&json)?
        }
    };
    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::io("creating", &args.out_dir, e))?;
    let started = Instant::now();
    let bar = ProgressBar::new(text.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} ({percent}%) {bytes_per_sec} elapsed {elapsed} ETA {eta}")
            .expect("valid template"),
    );
    let mut counts = Vec::new();
    for (name, part) in [("train.bin", train), ("val.bin", val)] {
        let out = args.out_dir.join(name);
        let json = tokenizer.to_json();
        TokenFile::write(&out, tokenizer.vocab_size(), &json, |sink| {
            // Chunks of about a megabyte, a thread's worth at a time.
            let chunks = tokenizer::chunks(part, 1 << 20);
            for group in chunks.chunks(rayon::current_num_threads().max(1)) {
                let ids: Vec<Vec<i64>> = group
                    .par_iter()
                    .map(|c| tokenizer.encode(c))
                    .collect::<Result<_>>()?;
                for (chunk, ids) in group.iter().zip(ids) {
                    sink.push(&ids)?;
                    bar.inc(chunk.len() as u64);
                }
            }
            counts.push((name, sink.count(), part.len()));
            Ok(())
        })?;
    }
    bar.finish_and_clear();
    for (name, tokens, bytes) in counts {
        println!(
            "{}: {tokens} tokens from {bytes} bytes ({:.2} bytes per token)",
            args.out_dir.join(name).display(),
            bytes as f64 / tokens.max(1) as f64
        );
    }
    println!(
        "vocabulary {} ({}), {:.1} s",
        tokenizer.vocab_size(),
        args.tokenizer,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
