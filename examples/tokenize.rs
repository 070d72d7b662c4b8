//! Encode a text file to token ids, or decode ids back to text, with GPT-2's
//! tokenizer (or any byte-level BPE in its files or in Hugging Face's
//! `tokenizer.json`). The ids are printed as one JSON array on the last line.
//!
//!     cargo run --release --example tokenize -- \
//!         --vocab ../shared/data/gpt2/vocab.json --merges ../shared/data/gpt2/merges.txt \
//!         --input ../shared/data/tinyshakespeare.txt
//!     echo '[15496, 995]' | cargo run --release --example tokenize -- \
//!         --tokenizer tokenizer.json --decode
//!
//! Or train a byte-level BPE on a corpus and save it as `tokenizer.json`:
//!
//!     cargo run --release --example tokenize -- \
//!         --train ../shared/data/tinyshakespeare.txt --vocab-size 4096 --out bpe.json
//!
//! `--repeat N` encodes the input N more times and reports the median
//! speed (scripts/bench_tokenizer.py runs it beside tiktoken and Hugging
//! Face tokenizers; scripts/bench_bpe_train.py times training beside Hugging
//! Face's `BpeTrainer`).

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use zeroformer::data::locate_or_fetch_gpt2;
use zeroformer::tokenizer::{BpeTokenizer, BpeTrainer, Tokenizer};
use zeroformer::{Error, Result};

/// Encode text to token ids, decode ids to text, or train a byte-level BPE.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// OpenAI's vocabulary file (GPT-2's `vocab.json`), with --merges.
    #[arg(long, requires = "merges", conflicts_with = "tokenizer")]
    vocab: Option<PathBuf>,
    /// OpenAI's merges file (GPT-2's `merges.txt`), with --vocab.
    #[arg(long, requires = "vocab")]
    merges: Option<PathBuf>,
    /// A Hugging Face `tokenizer.json` (byte-level BPE).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// GPT-2's tokenizer: its files in data/gpt2 or ../shared/data/gpt2,
    /// else downloaded once from the Hugging Face hub into the cache.
    #[arg(long, conflicts_with_all = ["vocab", "tokenizer", "train"])]
    gpt2: bool,
    /// Train a byte-level BPE on this corpus (with --vocab-size and --out).
    #[arg(long, requires_all = ["vocab_size", "out"], conflicts_with_all = ["vocab", "tokenizer"])]
    train: Option<PathBuf>,
    /// The trained vocabulary's size: 256 bytes, the merges, the special tokens.
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Where to write the trained tokenizer (Hugging Face's tokenizer.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A special token of the trained vocabulary (repeatable), e.g. `<|endoftext|>`.
    #[arg(long = "special-token")]
    special_tokens: Vec<String>,
    /// The text to encode, or the JSON array of ids to decode (default: stdin).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Decode a JSON array of ids to text instead of encoding.
    #[arg(long)]
    decode: bool,
    /// Match special tokens (`<|endoftext|>`) in the text instead of
    /// encoding their text as plain text.
    #[arg(long)]
    special: bool,
    /// Encode the input this many more times and report the median speed.
    #[arg(long, default_value_t = 0)]
    repeat: usize,
    /// Threads for encoding (the text cut where a piece must start) and
    /// training.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print only the timing line, not the ids.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    common::exit_on_error(run(Args::parse()));
}

fn load(args: &Args, pool: &rayon::ThreadPool) -> Result<BpeTokenizer> {
    if let (Some(corpus), Some(size), Some(out)) = (&args.train, args.vocab_size, &args.out) {
        let text = std::fs::read_to_string(corpus).map_err(|e| Error::io("reading", corpus, e))?;
        let specials: Vec<&str> = args.special_tokens.iter().map(String::as_str).collect();
        let start = Instant::now();
        let tokenizer =
            pool.install(|| BpeTrainer::new(size).special_tokens(&specials).train(&text))?;
        let seconds = start.elapsed().as_secs_f64();
        tokenizer.save(out)?;
        eprintln!(
            "train bytes={} vocab_size={} merges={} threads={} seconds={seconds:.3}",
            text.len(),
            tokenizer.vocab_size(),
            tokenizer.merges().len(),
            args.threads
        );
        eprintln!("wrote {}", out.display());
        return Ok(tokenizer);
    }
    match (&args.vocab, &args.merges, &args.tokenizer) {
        (Some(v), Some(m), None) => BpeTokenizer::from_gpt2_files(v, m),
        (None, None, Some(t)) => BpeTokenizer::load(t),
        (None, None, None) if args.gpt2 => {
            let (vocab, merges) = locate_or_fetch_gpt2(None)?;
            BpeTokenizer::from_gpt2_files(vocab, merges)
        }
        _ => Err(Error::InvalidConfig(
            "give --gpt2, --vocab FILE --merges FILE, --tokenizer FILE.json, or --train CORPUS"
                .into(),
        )),
    }
}

fn run(args: Args) -> Result<()> {
    if args.threads == 0 {
        return Err(Error::InvalidConfig("--threads must be at least 1".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(|e| Error::InvalidConfig(format!("--threads: {e}")))?;
    let tokenizer = load(&args, &pool)?;
    if args.train.is_some() && args.input.is_none() {
        return Ok(());
    }
    let input = match &args.input {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::io("reading", "standard input", e))?;
            s
        }
    };
    if args.decode {
        let ids: Vec<i64> = serde_json::from_str(input.trim())
            .map_err(|e| Error::InvalidData(format!("--decode reads a JSON array of ids: {e}")))?;
        print!("{}", tokenizer.decode(&ids)?);
        return Ok(());
    }
    let encode = || -> Result<Vec<i64>> {
        if args.special {
            tokenizer.encode_with_special_tokens(&input)
        } else if args.threads == 1 {
            tokenizer.encode(&input)
        } else {
            pool.install(|| tokenizer.encode_parallel(&input))
        }
    };
    let ids = encode()?;
    if args.repeat > 0 {
        let mut seconds: Vec<f64> = (0..args.repeat)
            .map(|_| {
                let start = Instant::now();
                let again = encode();
                let s = start.elapsed().as_secs_f64();
                assert_eq!(
                    again.as_ref().ok(),
                    Some(&ids),
                    "encoding changed between runs"
                );
                s
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        let mb = input.len() as f64 / 1e6;
        eprintln!(
            "encode bytes={} tokens={} threads={} median_s={median:.4} mb_per_s={:.2}",
            input.len(),
            ids.len(),
            args.threads,
            mb / median
        );
    }
    if !args.quiet {
        println!("{}", serde_json::to_string(&ids).expect("ids serialise"));
    }
    Ok(())
}
