//! Generate text with a GPT-2 from a Hugging Face model directory
//! (`config.json` + `model.safetensors`), streaming it as it comes, and
//! report the speed: tokens per second and the weight bytes read per
//! second (each new token reads every weight once).
//!
//!     cargo run --release --example gpt2_generate -- --model-dir gpt2 --prompt "Hello, I'm a language model,"
//!     cargo run --release --example gpt2_generate -- --init-random /tmp/gpt2-random   # GPT-2 124M's shape, random weights
//!     cargo run --release --example gpt2_generate -- --model-dir /tmp/gpt2-random --prompt-ids 1,2,3 --print-ids
//!     cargo run --release --example gpt2_generate -- --model-dir gpt2 --max-new-tokens 0 \
//!         --prompt "The cat sat on the mat because it was tired." --attention-png attention.png
//!
//! The tokenizer comes from the model directory (vocab.json + merges.txt,
//! or tokenizer.json), else from --gpt2-dir (default data/gpt2, then
//! ../shared/data/gpt2).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use zeroformer::data::{locate_gpt2, locate_or_fetch_gpt2};
use zeroformer::generation::{GenerationConfig, generate_with};
use zeroformer::hub::Hub;
use zeroformer::nn::Module;
use zeroformer::plot;
use zeroformer::tokenizer::{BpeTokenizer, DecodeStream, Tokenizer};
use zeroformer::train::Precision;
use zeroformer::{Device, Error, Gpt, GptConfig, Result};

/// Generate text with a GPT-2 model directory and report tokens/s.
#[derive(Parser, Debug)]
#[command(version, allow_negative_numbers = true)]
struct Args {
    /// A Hugging Face model by name: gpt2, gpt2-medium, gpt2-large,
    /// gpt2-xl, openai-community/gpt2, or any org/name in GPT-2's format.
    /// Downloaded once into the cache ($ZEROFORMER_CACHE, else
    /// ~/.cache/zeroformer; $HF_ENDPOINT names a mirror).
    #[arg(long, conflicts_with = "model_dir")]
    model: Option<String>,
    /// A Hugging Face GPT-2 directory (config.json, model.safetensors, and
    /// its tokenizer files if it has them): works offline.
    #[arg(long, required_unless_present_any = ["init_random", "model"])]
    model_dir: Option<PathBuf>,
    /// Write a GPT-2 124M-shaped model with random weights to this
    /// directory and exit (for benchmarks: nothing can be downloaded here).
    #[arg(long)]
    init_random: Option<PathBuf>,
    /// The text to continue.
    #[arg(long, conflicts_with = "prompt_ids")]
    prompt: Option<String>,
    /// The token ids to continue, comma-separated (instead of --prompt).
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<i64>>,
    /// How many tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: common::SamplingFlags,
    /// Hugging Face's repetition penalty (1: none).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Seeds the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop at this token id (repeatable); GPT-2's end of text is 50256.
    #[arg(long = "stop-token")]
    stop_tokens: Vec<i64>,
    /// Decode with int8 copies of the weights (one scale per row; the
    /// activations stay f32): a quarter of the bytes read per token.
    #[arg(long, conflicts_with = "dtype")]
    int8: bool,
    /// The dtype of the weights and activations: f32, or bf16 (the model
    /// cast after loading, as transformers' `torch_dtype=torch.bfloat16`
    /// runs it: half the bytes read per token, the sums in f32).
    #[arg(long, default_value = "f32")]
    dtype: Precision,
    /// Print the generated ids as one JSON array on the last line.
    #[arg(long)]
    print_ids: bool,
    /// Generate one token from the prompt first, untimed, as a benchmark
    /// warms up the side it compares with (the buffers a forward pass
    /// takes are then allocated and touched).
    #[arg(long)]
    warm_up: bool,
    /// The folder of GPT-2's vocab.json and merges.txt when the model
    /// directory has no tokenizer.
    #[arg(long)]
    gpt2_dir: Option<PathBuf>,
    #[command(flatten)]
    run_on: common::RunOn,
    /// Draw the model's attention on the prompt to this PNG before
    /// generating: every layer x head, with the prompt's tokens as labels.
    #[arg(long)]
    attention_png: Option<PathBuf>,
    /// With --attention-png, draw only this head, as `LAYER.HEAD` (`5.1`).
    #[arg(long, requires = "attention_png")]
    attention_head: Option<String>,
}

fn main() {
    common::main(|args: &Args| &args.run_on, generate_text);
}

/// Hugging Face model `name`'s folder in the cache, downloaded the first
/// time with a progress bar per file.
fn fetch(name: &str) -> Result<PathBuf> {
    let mut bar: Option<(String, ProgressBar)> = None;
    let dir = Hub::default().model(name, &mut |file, done, total| {
        if bar.as_ref().is_none_or(|(f, _)| f != file) {
            if let Some((_, old)) = bar.take() {
                old.finish();
            }
            let new = ProgressBar::new(total.unwrap_or(0));
            new.set_style(
                ProgressStyle::with_template(
                    "{msg:20} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("a valid template"),
            );
            new.set_message(file.to_string());
            bar = Some((file.to_string(), new));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done);
        }
    })?;
    if let Some((_, b)) = bar {
        b.finish();
    }
    Ok(dir)
}

/// The model directory's tokenizer, else GPT-2's files.
fn tokenizer(dir: &Path, gpt2_dir: Option<&Path>) -> Result<BpeTokenizer> {
    if ["vocab.json", "tokenizer.json"]
        .iter()
        .any(|name| dir.join(name).is_file())
    {
        return BpeTokenizer::from_pretrained(dir);
    }
    let (vocab, merges) = locate_or_fetch_gpt2(gpt2_dir)?;
    BpeTokenizer::from_gpt2_files(vocab, merges)
}

/// The attention on `prompt`: every layer x head, or the head `LAYER.HEAD`.
fn draw_attention(
    model: &Gpt,
    tok: Option<&BpeTokenizer>,
    prompt: &[i64],
    head: Option<&str>,
    path: &Path,
) -> Result<()> {
    let tok = tok.ok_or_else(|| {
        Error::InvalidConfig("--attention-png needs the tokenizer for its labels".into())
    })?;
    match head {
        None => plot::gpt_attention(model, tok, prompt, path),
        Some(text) => {
            let head = plot::parse_head(text).ok_or_else(|| {
                Error::InvalidConfig(format!("--attention-head {text}: give LAYER.HEAD, as 5.1"))
            })?;
            plot::gpt_attention_head(model, tok, prompt, head, path)
        }
    }
}

fn generate_text(args: Args, device: &Device) -> Result<()> {
    if let Some(dir) = &args.init_random {
        let model = GptConfig::preset("gpt2", 0)?.init(device, 0)?;
        // With GPT-2's tokenizer files at hand the folder gets them too, and
        // needs no --gpt2-dir to generate from.
        let with = match locate_gpt2(args.gpt2_dir.as_deref()) {
            Ok((vocab, merges)) => {
                let tok = BpeTokenizer::from_gpt2_files(vocab, merges)?;
                model.save_pretrained_with_tokenizer(dir, &tok)?;
                " and GPT-2's tokenizer"
            }
            Err(_) => {
                model.save_pretrained(dir)?;
                ""
            }
        };
        println!(
            "wrote a random GPT-2 ({} parameters){with} to {}",
            model.num_parameters(),
            dir.display()
        );
        return Ok(());
    }
    let sampling = args.sampling.sampling()?;
    let fetched;
    let dir = match (&args.model, &args.model_dir) {
        (Some(name), _) => {
            fetched = fetch(name)?;
            fetched.as_path()
        }
        (None, Some(dir)) => dir.as_path(),
        (None, None) => unreachable!("clap requires one"),
    };
    let t = Instant::now();
    let mut model = Gpt::from_pretrained(dir, device)?;
    if args.int8 {
        model.quantize_int8();
    }
    model.to_dtype(args.dtype.dtype());
    let loaded = t.elapsed().as_secs_f64();
    let tok = match (&args.prompt_ids, args.print_ids) {
        // Ids in and out need no tokenizer, but text out is printed when one exists.
        (Some(_), true) => tokenizer(dir, args.gpt2_dir.as_deref()).ok(),
        _ => Some(tokenizer(dir, args.gpt2_dir.as_deref())?),
    };
    let prompt = match (&args.prompt_ids, &args.prompt, &tok) {
        (Some(ids), _, _) => ids.clone(),
        (None, Some(text), Some(tok)) => tok.encode(text)?,
        _ => {
            return Err(Error::InvalidConfig(
                "give --prompt TEXT or --prompt-ids 1,2,3".into(),
            ));
        }
    };
    if prompt.is_empty() {
        return Err(Error::InvalidConfig("the prompt is empty".into()));
    }
    if let Some(path) = &args.attention_png {
        draw_attention(
            &model,
            tok.as_ref(),
            &prompt,
            args.attention_head.as_deref(),
            path,
        )?;
        println!(
            "drew the attention on {} prompt tokens to {}",
            prompt.len(),
            path.display()
        );
    }
    let config = GenerationConfig::new(args.max_new_tokens)
        .sampling(sampling)
        .repetition_penalty(args.repetition_penalty)
        .stop_tokens(&args.stop_tokens)
        .seed(args.seed);
    if let (Some(tok), None) = (&tok, &args.prompt_ids) {
        print!("{}", tok.decode(&prompt)?);
    }
    // Whole characters only: one split across tokens waits for its end.
    let mut text = tok.as_ref().map(|t| DecodeStream::new(t));
    let mut stdout = std::io::stdout();
    if args.warm_up {
        generate_with(&model, &prompt, &GenerationConfig::new(1), |_| true)?;
    }
    let start = Instant::now();
    let mut first_token_at = None;
    let out = generate_with(&model, &prompt, &config, |id| {
        first_token_at.get_or_insert_with(Instant::now);
        if let Some(Ok(piece)) = text.as_mut().map(|t| t.push(id)) {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
        true
    })?;
    let end = Instant::now();
    println!("{}", text.map(DecodeStream::finish).unwrap_or_default());
    let first = first_token_at.unwrap_or(end);
    let prefill = first - start;
    let decode_s = (end - first).as_secs_f64();
    let decoded = out.tokens.len().saturating_sub(1);
    let tokens_per_s = decoded as f64 / decode_s.max(1e-9);
    // Bytes of weights read per token: the matrices in int8 (plus a scale
    // a row) with --int8, the rest (embeddings' rows, norms) negligible.
    let weight_bytes = if args.int8 {
        let c = &model.config;
        (c.n_layer * 12 * c.n_embd * c.n_embd + c.vocab_size * c.n_embd) as f64
    } else {
        model.num_parameters() as f64 * args.dtype.dtype().size_in_bytes() as f64
    };
    eprintln!(
        "loaded in {loaded:.2} s; prompt {} tokens in {:.1} ms; {} new tokens, {tokens_per_s:.2} tokens/s after the first, {:.1} GB/s of weights read ({:?})",
        prompt.len(),
        prefill.as_secs_f64() * 1e3,
        out.tokens.len(),
        tokens_per_s * weight_bytes / 1e9,
        out.finish
    );
    // With the prompt's forward: what a caller of generate waits for.
    let overall = out.tokens.len() as f64 / (end - start).as_secs_f64().max(1e-9);
    eprintln!(
        "speed new_tokens={} tokens_per_s={tokens_per_s:.3} tokens_per_s_with_prompt={overall:.3} weight_gb_per_s={:.3} prefill_ms={:.1}",
        out.tokens.len(),
        tokens_per_s * weight_bytes / 1e9,
        prefill.as_secs_f64() * 1e3
    );
    if args.print_ids {
        println!(
            "{}",
            serde_json::to_string(&out.tokens).expect("ids serialise")
        );
    }
    Ok(())
}
