//! Fuzz-style tests of every loader of outside data: a valid checkpoint,
//! tokenizer JSON and config JSON, mutated thousands of ways (truncated,
//! bytes flipped, the header length spliced, header numbers made huge,
//! negative or NaN, pieces cut out or doubled). Each load must return `Ok`
//! or `Err`: never panic, and never allocate more than a bound set by the
//! file's size (a counting allocator measures the peak).
//!
//! `ZEROFORMER_FUZZ_CASES=N` sets the cases per loader (default 2000);
//! docs/architecture.md records a longer run. The cases are drawn from a
//! fixed seed (`ZEROFORMER_FUZZ_SEED` changes it), so a failure names a
//! case that reproduces.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zeroformer::checkpoint::Checkpoint;
use zeroformer::prelude::*;
use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
use zeroformer::train::{TrainConfig, Trainer};

/// The system allocator, counting the bytes live now and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests measure one allocation peak: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cases() -> usize {
    std::env::var("ZEROFORMER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn seed() -> u64 {
    std::env::var("ZEROFORMER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261201)
}

/// Runs `load`, and fails the test if it panics or if the bytes it
/// allocates beyond those live before it peak above `bound`.
fn must_not_panic_or_overallocate(case: &str, bound: usize, load: impl FnOnce()) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(load));
    let peak = PEAK.load(Ordering::Relaxed) - before;
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("?");
        panic!("{case}: the loader panicked: {message}");
    }
    assert!(
        peak <= bound,
        "{case}: allocated up to {peak} bytes, the bound is {bound}"
    );
}

/// One mutation of `bytes`: which one and where come from `rng`. `header`
/// is the byte range of the text that carries numbers (a JSON header).
fn mutate(bytes: &[u8], header: std::ops::Range<usize>, rng: &mut ChaCha8Rng) -> (String, Vec<u8>) {
    let mut out = bytes.to_vec();
    let at = |rng: &mut ChaCha8Rng, r: std::ops::Range<usize>| {
        if r.is_empty() {
            r.start
        } else {
            rng.gen_range(r)
        }
    };
    match rng.gen_range(0..7) {
        0 => {
            let len = at(rng, 0..bytes.len());
            out.truncate(len);
            (format!("truncated to {len}"), out)
        }
        1 => {
            let flips = rng.gen_range(1..=8);
            for _ in 0..flips {
                let i = at(rng, 0..out.len());
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            (format!("{flips} bits flipped"), out)
        }
        2 if out.len() >= 8 => {
            // The safetensors header length: random, huge, or off by a little.
            let real = u64::from_le_bytes(out[..8].try_into().unwrap());
            let value = match rng.gen_range(0..4) {
                0 => rng.r#gen::<u64>(),
                1 => u64::MAX - rng.gen_range(0..16),
                2 => real.wrapping_add(rng.gen_range(1..64)),
                _ => real.wrapping_sub(rng.gen_range(1..64)),
            };
            out[..8].copy_from_slice(&value.to_le_bytes());
            (format!("header length {value}"), out)
        }
        3 | 4 => {
            // A number in the header replaced by an extreme.
            let text = &bytes[header.clone()];
            let digits: Vec<usize> = (0..text.len())
                .filter(|&i| text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_digit()))
                .collect();
            if digits.is_empty() {
                return mutate(bytes, header, rng);
            }
            let start = header.start + digits[rng.gen_range(0..digits.len())];
            let end = (start..bytes.len())
                .find(|&i| !bytes[i].is_ascii_digit())
                .unwrap_or(bytes.len());
            let replacement: &[u8] = [
                &b"99999999999999999999"[..],
                b"18446744073709551615",
                b"4294967296",
                b"1000000000",
                b"100000",
                b"4096",
                b"-1",
                b"NaN",
                b"1e308",
                b"0",
                b"0.5",
            ][rng.gen_range(0..11)];
            out.splice(start..end, replacement.iter().copied());
            (
                format!(
                    "number at {start} set to {}",
                    String::from_utf8_lossy(replacement)
                ),
                out,
            )
        }
        5 => {
            let start = at(rng, 0..out.len());
            let end = at(rng, start..out.len().min(start + 64) + 1);
            out.drain(start..end.min(out.len()));
            (format!("bytes {start}..{end} cut"), out)
        }
        _ => {
            let start = at(rng, 0..out.len());
            let end = (start + rng.gen_range(1..64)).min(out.len());
            let piece = out[start..end].to_vec();
            out.splice(start..start, piece);
            (format!("bytes {start}..{end} doubled"), out)
        }
    }
}

/// A small trained checkpoint's bytes, and the range of its JSON header.
fn valid_checkpoint(dir: &Path) -> (Vec<u8>, std::ops::Range<usize>) {
    let model = GptConfig {
        vocab_size: 11,
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
        bias: true,
        ..GptConfig::default()
    };
    let train = TrainConfig {
        batch_size: 2,
        ..TrainConfig::nanogpt_cpu(10)
    };
    let mut trainer = Trainer::new(model.init(&Device::Cpu, train.seed).unwrap(), train).unwrap();
    let tokens: Vec<i64> = (0..200).map(|i| (i * 3 % 11) as i64).collect();
    trainer.train_step(&tokens).unwrap();
    let path = dir.join("valid.safetensors");
    trainer
        .save(
            &path,
            &[(
                "tokenizer",
                CharTokenizer::from_text("abcdefghijk").to_json(),
            )],
        )
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (bytes, 8..8 + n)
}

/// One field of a checkpoint's metadata (a number in `model_config` or
/// `train_config`, or a counter) set to an extreme, the file otherwise
/// valid: what reaches the checks behind the safetensors reader's.
fn mutate_metadata(bytes: &[u8], rng: &mut ChaCha8Rng) -> (String, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let extremes: [serde_json::Value; 9] = [
        u64::MAX.into(),
        (1u64 << 40).into(),
        1_000_000_000.into(),
        100_000.into(),
        4096.into(),
        0.into(),
        (-1).into(),
        1e308.into(),
        "NaN".into(),
    ];
    let value = extremes[rng.gen_range(0..extremes.len())].clone();
    let meta = header["__metadata__"].as_object_mut().unwrap();
    let key = [
        "model_config",
        "train_config",
        "step",
        "optim.step",
        "best_val_loss",
    ][rng.gen_range(0..5)];
    let what = if key.ends_with("config") {
        let mut config: serde_json::Value =
            serde_json::from_str(meta[key].as_str().unwrap()).unwrap();
        let fields: Vec<String> = config.as_object().unwrap().keys().cloned().collect();
        let field = &fields[rng.gen_range(0..fields.len())];
        config[field] = value.clone();
        meta.insert(key.into(), config.to_string().into());
        format!("{key}.{field} = {value}")
    } else {
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        meta.insert(key.into(), text.into());
        format!("{key} = {value}")
    };
    let mut encoded = serde_json::to_vec(&header).unwrap();
    encoded.resize(encoded.len().div_ceil(8) * 8, b' ');
    let mut out = (encoded.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&bytes[8 + n..]);
    (what, out)
}

#[test]
fn mutated_checkpoints_load_or_fail_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (valid, header) = valid_checkpoint(dir.path());
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let path = dir.path().join("case.safetensors");
    let (mut loaded, mut resumed) = (0, 0);
    for case in 0..cases() {
        let (what, bytes) = if rng.gen_bool(0.25) {
            mutate_metadata(&valid, &mut rng)
        } else {
            mutate(&valid, header.clone(), &mut rng)
        };
        std::fs::write(&path, &bytes).unwrap();
        // Reading the file, its tensors and a model as large as they are,
        // each at most once more for a copy on the way: 8x the file, plus
        // the fixed costs of a trainer (threads' buffers, the pool).
        let bound = 8 * bytes.len() + (4 << 20);
        must_not_panic_or_overallocate(&format!("case {case} ({what})"), bound, || {
            let Ok(ckpt) = Checkpoint::load(&path) else {
                return;
            };
            loaded += 1;
            if let Ok(json) = ckpt.require_meta("tokenizer") {
                let _ = CharTokenizer::from_json(json);
            }
            if Trainer::<Gpt>::resume(&path, &Device::Cpu).is_ok() {
                resumed += 1;
            }
        });
    }
    // The mutations reach past the first check: some files still load,
    // and some of those still resume.
    println!("{} cases: {loaded} loaded, {resumed} resumed", cases());
    assert!(
        loaded > 0 && resumed > 0,
        "{loaded} loaded, {resumed} resumed"
    );
}

#[test]
fn mutated_config_and_tokenizer_json_parse_or_fail_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = serde_json::to_string(&GptConfig::preset("cpu-mini", 65).unwrap()).unwrap();
    let train = serde_json::to_string(&TrainConfig::nanogpt_cpu(2000)).unwrap();
    let tokenizer = CharTokenizer::from_text("\n !$&',-.3:;?ABCabc").to_json();
    let mut rng = ChaCha8Rng::seed_from_u64(seed() ^ 1);
    let mut valid = 0;
    for case in 0..cases() {
        for (name, text) in [
            ("model", &model),
            ("train", &train),
            ("tokenizer", &tokenizer),
        ] {
            let (what, bytes) = mutate(text.as_bytes(), 0..text.len(), &mut rng);
            let Ok(json) = String::from_utf8(bytes) else {
                continue;
            };
            let bound = 16 * json.len() + (64 << 10);
            let label = format!("{name} case {case} ({what})");
            must_not_panic_or_overallocate(&label, bound, || match name {
                "model" => {
                    // Validating builds nothing, whatever sizes the config
                    // claims (its count, a counting build, is checked
                    // against a file's numbers where one is loaded).
                    let parsed = serde_json::from_str::<GptConfig>(&json);
                    if parsed.ok().is_some_and(|c| c.validate().is_ok()) {
                        valid += 1;
                    }
                }
                "train" => {
                    if let Ok(c) = serde_json::from_str::<TrainConfig>(&json) {
                        let _ = c.validate();
                    }
                }
                _ => {
                    if let Ok(t) = CharTokenizer::from_json(&json) {
                        // What loads round-trips.
                        assert_eq!(CharTokenizer::from_json(&t.to_json()).unwrap(), t);
                    }
                }
            });
        }
    }
    assert!(valid > 0, "no mutated model config was still valid");
}

#[test]
fn mutated_bpe_and_word_tokenizer_json_load_or_fail_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hf_bpe_tokenizer.json"
    );
    let bpe = std::fs::read_to_string(path).unwrap();
    let word =
        zeroformer::tokenizer::WordTokenizer::fit(["to be or not to be", "be it so"], 1).to_json();
    let mut rng = ChaCha8Rng::seed_from_u64(seed() ^ 2);
    let mut loaded = 0;
    let text = "Tokens: don't  stop \u{1F600}\n<|endoftext|> 123";
    for case in 0..cases() {
        for (name, json) in [("bpe", &bpe), ("word", &word)] {
            let (what, bytes) = mutate(json.as_bytes(), 0..json.len(), &mut rng);
            let Ok(json) = String::from_utf8(bytes) else {
                continue;
            };
            let bound = 64 * json.len() + (256 << 10);
            let label = format!("{name} tokenizer case {case} ({what})");
            must_not_panic_or_overallocate(&label, bound, || {
                if let Ok(t) = zeroformer::tokenizer::from_json(&json) {
                    loaded += 1;
                    if name == "bpe" {
                        // A byte-level BPE that loads encodes any text and
                        // decodes it back.
                        let ids = t.encode(text).unwrap();
                        assert_eq!(t.decode(&ids).unwrap(), text);
                    }
                }
            });
        }
    }
    assert!(loaded > 0, "no mutated tokenizer loaded");
}

#[test]
fn mutated_token_files_open_or_fail_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tok = CharTokenizer::from_text("abcdefgh");
    let ids = tok.encode(&"abcdefgh".repeat(40)).unwrap();
    let good = dir.path().join("good.bin");
    zeroformer::data::TokenFile::write(&good, tok.vocab_size(), &tok.to_json(), |s| s.push(&ids))
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed() ^ 3);
    let (mut opened, path) = (0, dir.path().join("case.bin"));
    for case in 0..cases() {
        let (what, mutated) = mutate(&bytes, 8..40, &mut rng);
        std::fs::write(&path, &mutated).unwrap();
        let bound = 4 * mutated.len() + (64 << 10);
        must_not_panic_or_overallocate(&format!("token file case {case} ({what})"), bound, || {
            if let Ok(file) = zeroformer::data::TokenFile::open(&path) {
                opened += 1;
                let all = file.to_vec(0..file.len());
                assert!(all.iter().all(|&id| (id as usize) < file.vocab_size()));
                if file.len() > 4 {
                    let _ = file.random_batch(
                        2,
                        4,
                        &mut ChaCha8Rng::seed_from_u64(0),
                        &zeroformer::Device::Cpu,
                    );
                }
            }
        });
    }
    assert!(opened > 0, "no mutated token file opened");
}
