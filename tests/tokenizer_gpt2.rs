//! GPT-2's tokenizer against tiktoken (tests/fixtures/gpt2_tokens.json,
//! made by scripts/make_tokenizer_fixtures.py from ../shared/data/gpt2),
//! and the reader of Hugging Face's `tokenizer.json` against the library
//! that wrote one.

mod common;

use serde_json::Value;
use zeroformer::tokenizer::{self, BpeTokenizer, Tokenizer};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

fn gpt2() -> Option<BpeTokenizer> {
    let vocab = common::shared_data("gpt2/vocab.json")?;
    let merges = common::shared_data("gpt2/merges.txt")?;
    Some(BpeTokenizer::from_gpt2_files(vocab, merges).unwrap())
}

/// FNV-1a over the ids as little-endian u32 bytes (as the script computes it).
fn checksum(ids: &[i64]) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &id in ids {
        for b in (id as u32).to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01B3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn hello_world_is_15496_995() {
    let Some(tok) = gpt2() else { return };
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.encode("Hello world").unwrap(), [15496, 995]);
    assert_eq!(tok.special_tokens(), [("<|endoftext|>".to_string(), 50256)]);
}

#[test]
fn gpt2_matches_tiktoken_on_every_hard_case() {
    let Some(tok) = gpt2() else { return };
    let f = fixture("gpt2_tokens.json");
    for case in f["ordinary"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
        assert_eq!(tok.decode(&ids(&case["ids"])).unwrap(), text);
    }
    for case in f["special"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = tok.encode_with_special_tokens(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{text:?} with special tokens");
        assert_eq!(tok.decode(&got).unwrap(), text);
    }
}

#[test]
fn gpt2_matches_tiktoken_on_the_whole_of_tiny_shakespeare() {
    let Some(tok) = gpt2() else { return };
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let expected = &fixture("gpt2_tokens.json")["shakespeare"];
    let got = tok.encode(&text).unwrap();
    assert_eq!(got[..64], ids(&expected["first"])[..]);
    let block = expected["block"].as_u64().unwrap() as usize;
    for (i, (chunk, want)) in got
        .chunks(block)
        .zip(expected["block_checksums"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(
            checksum(chunk),
            want.as_str().unwrap(),
            "ids {}..",
            i * block
        );
    }
    assert_eq!(got.len() as u64, expected["tokens"].as_u64().unwrap());
    assert_eq!(checksum(&got), expected["checksum"].as_str().unwrap());
    assert_eq!(tok.decode(&got).unwrap(), text);
    // Side by side over lines gives the same ids (the pieces never cross a
    // line's end followed by text).
    let lines: Vec<&str> = text.split_inclusive('\n').take(2000).collect();
    let batch = tok.encode_batch(&lines).unwrap();
    let one: usize = batch.iter().map(Vec::len).sum();
    assert_eq!(batch.concat(), tok.encode(&lines.concat()).unwrap()[..one]);
}

#[test]
fn a_long_run_of_one_character_is_fast_and_round_trips() {
    let Some(tok) = gpt2() else { return };
    let text = "a".repeat(100_000);
    let start = std::time::Instant::now();
    let ids = tok.encode(&text).unwrap();
    // Quadratic merging takes seconds here; the heap takes milliseconds.
    assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
    assert_eq!(tok.decode(&ids).unwrap(), text);
}

#[test]
fn saved_tokenizer_json_loads_back_identically() {
    let Some(tok) = gpt2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let again = BpeTokenizer::load(&path).unwrap();
    assert_eq!(again.tokens(), tok.tokens());
    assert_eq!(again.merges(), tok.merges());
    let text = "Round trip: don't  stop\n\u{1F600} <|endoftext|>";
    assert_eq!(again.encode(text).unwrap(), tok.encode(text).unwrap());
    assert_eq!(
        again.encode_with_special_tokens(text).unwrap(),
        tok.encode_with_special_tokens(text).unwrap()
    );
    let boxed = tokenizer::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(boxed.encode(text).unwrap(), tok.encode(text).unwrap());
}

#[test]
fn a_model_directorys_tokenizer_is_found_in_either_layout() {
    let Some(tok) = gpt2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let err = BpeTokenizer::from_pretrained(dir.path()).unwrap_err();
    assert!(err.to_string().contains("neither vocab.json"), "{err}");
    tok.save(dir.path().join("tokenizer.json")).unwrap();
    let text = "A model directory's tokenizer.";
    let from_json = BpeTokenizer::from_pretrained(dir.path()).unwrap();
    assert_eq!(from_json.encode(text).unwrap(), tok.encode(text).unwrap());
    // vocab.json and merges.txt come first when both layouts are there.
    for name in ["vocab.json", "merges.txt"] {
        let source = common::shared_data(&format!("gpt2/{name}")).unwrap();
        std::fs::copy(source, dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("tokenizer.json"), "not json").unwrap();
    let from_files = BpeTokenizer::from_pretrained(dir.path()).unwrap();
    assert_eq!(from_files.encode(text).unwrap(), tok.encode(text).unwrap());
}

#[test]
fn hugging_face_tokenizer_json_encodes_as_hugging_face_does() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let tok = BpeTokenizer::load(format!("{dir}/hf_bpe_tokenizer.json")).unwrap();
    assert_eq!(tok.special_tokens(), [("<|endoftext|>".to_string(), 0)]);
    for case in fixture("hf_bpe_tokens.json")["cases"].as_array().unwrap() {
        // Hugging Face's `encode` matches added tokens in the text.
        let text = case["text"].as_str().unwrap();
        let got = tok.encode_with_special_tokens(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{text:?}");
    }
}

#[test]
fn parallel_encoding_gives_the_ids_of_the_whole() {
    let Some(tok) = gpt2() else { return };
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    // Spaces after spaces, tabs and ideographic spaces near the cuts too.
    let text = text
        .replace("e ", "e  ")
        .replace("t ", "t\u{3000} ")
        .replace("s ", "s\t ");
    let whole = tok.encode(&text).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    assert_eq!(pool.install(|| tok.encode_parallel(&text)).unwrap(), whole);
}

#[test]
fn broken_tokenizer_files_are_errors_naming_the_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // A complete byte alphabet, then "ab" made by one merge.
    let table = zeroformer::tokenizer::byte_to_char();
    let mut vocab: serde_json::Map<String, Value> = table
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), Value::from(i)))
        .collect();
    vocab.insert("ab".into(), Value::from(256));
    let good_vocab = write("vocab.json", &Value::Object(vocab.clone()).to_string());
    let good_merges = write("merges.txt", "#version: 0.2\na b\n");
    let tok = BpeTokenizer::from_gpt2_files(&good_vocab, &good_merges).unwrap();
    assert_eq!(tok.encode("abc").unwrap(), [256, 99]);

    let error = |vocab: &std::path::Path, merges: &std::path::Path| {
        BpeTokenizer::from_gpt2_files(vocab, merges)
            .unwrap_err()
            .to_string()
    };
    let missing = dir.path().join("nope.json");
    let e = error(&missing, &good_merges);
    assert!(e.contains("nope.json"), "{e}");
    let e = error(
        &good_vocab,
        &write("bad_line.txt", "#version: 0.2\na b\nabc\n"),
    );
    assert!(e.contains("bad_line.txt") && e.contains("line 3"), "{e}");
    let e = error(&good_vocab, &write("unknown.txt", "a b\nab zz\n"));
    assert!(e.contains("\"zz\" is not in the vocabulary"), "{e}");
    let e = error(&write("not_json.json", "{\"a\": 0,"), &good_merges);
    assert!(e.contains("not_json.json") && e.contains("JSON"), "{e}");
    let mut gap = vocab.clone();
    gap.insert("ab".into(), Value::from(300));
    let e = error(
        &write("gap.json", &Value::Object(gap).to_string()),
        &good_merges,
    );
    assert!(e.contains("gap.json") && e.contains("id 300"), "{e}");
    let mut no_byte = vocab.clone();
    no_byte.remove(&table[7].to_string());
    no_byte.insert(table[7].to_string() + "x", Value::from(7));
    let e = error(
        &write("no_byte.json", &Value::Object(no_byte).to_string()),
        &good_merges,
    );
    assert!(e.contains("byte 0x07 has no token"), "{e}");
    // A tokenizer.json of another kind of model.
    let e = BpeTokenizer::from_tokenizer_json_str(r#"{"model": {"type": "WordPiece"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("WordPiece"), "{e}");
    assert!(tok.decode(&[257]).is_err());
    assert!(tok.decode(&[-1]).is_err());
}
