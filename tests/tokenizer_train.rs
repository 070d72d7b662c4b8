//! The BPE trainers against scripts/bpe_reference.py (the slow, obvious
//! algorithm; tests/fixtures/bpe_merges.json), and round trips of trained
//! tokenizers over random and real text.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use zeroformer::tokenizer::{self, BpeTokenizer, BpeTrainer, ClassicBpe, Tokenizer};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bpe_merges.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn pairs(v: &Value) -> Vec<(u32, u32)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32))
        .collect()
}

fn corpus() -> Option<String> {
    let path = common::shared_data("tinyshakespeare.txt")?;
    Some(std::fs::read_to_string(path).unwrap())
}

#[test]
fn byte_level_merges_equal_the_reference_trainers() {
    let Some(text) = corpus() else { return };
    let f = fixture();
    let prefix = &text[..f["bytes"].as_u64().unwrap() as usize];
    let expected = pairs(&f["byte_level"]);
    let tok = BpeTrainer::new(256 + 600).train(prefix).unwrap();
    assert_eq!(tok.merges().len(), expected.len());
    for (i, (got, want)) in tok.merges().iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "merge {i}");
    }
}

#[test]
fn classic_merges_equal_the_reference_trainers() {
    let Some(text) = corpus() else { return };
    let f = fixture();
    let prefix = &text[..f["bytes"].as_u64().unwrap() as usize];
    let tok = ClassicBpe::train(prefix, 400);
    assert_eq!(
        tok.symbols().len(),
        f["classic_symbols"].as_u64().unwrap() as usize
    );
    assert_eq!(tok.merges(), pairs(&f["classic"]));
}

/// Random text from hard pieces: emoji with joiners and skin tones, CJK,
/// combining marks, control characters, white-space runs, apostrophes.
fn random_text(rng: &mut ChaCha8Rng) -> String {
    const PARTS: &[&str] = &[
        "a",
        "e",
        "the",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "   \n",
        "'s",
        "'",
        "don't",
        "1",
        "42",
        "\u{1F600}",
        "\u{1F469}\u{200D}\u{1F469}\u{200D}\u{1F467}",
        "\u{1F44D}\u{1F3FD}",
        "\u{65E5}\u{672C}",
        "\u{4E2D}",
        "e\u{301}",
        "\u{301}",
        "\u{0}",
        "\u{7}",
        "\u{1B}",
        "\u{7F}",
        "\u{85}",
        "\u{A0}",
        "\u{2028}",
        "\u{3000}",
        "\u{FEFF}",
        "\u{10FFFF}",
        "?!",
        "--",
        "\u{5D0}",
        "\u{627}",
    ];
    let n = rng.gen_range(0..30);
    let mut s: String = (0..n)
        .map(|_| PARTS[rng.gen_range(0..PARTS.len())])
        .collect();
    // And arbitrary scalar values.
    for _ in 0..rng.gen_range(0..4) {
        if let Some(c) = char::from_u32(rng.gen_range(0..0x110000)) {
            s.push(c);
        }
    }
    s
}

fn check_round_trips(tok: &dyn Tokenizer, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..3000 {
        let text = random_text(&mut rng);
        let ids = tok.encode(&text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "{text:?}");
    }
}

#[test]
fn trained_and_gpt2_tokenizers_round_trip_any_text() {
    let Some(text) = corpus() else { return };
    let trained = BpeTrainer::new(1000)
        .special_tokens(&["<|endoftext|>"])
        .train(&text[..200_000])
        .unwrap();
    assert_eq!(trained.vocab_size(), 1000);
    assert_eq!(
        trained.special_tokens(),
        [("<|endoftext|>".to_string(), 999)]
    );
    check_round_trips(&trained, 1);
    let ids = trained.encode(&text).unwrap();
    assert_eq!(trained.decode(&ids).unwrap(), text);
    // Fewer tokens than bytes: it compresses.
    assert!(
        ids.len() * 2 < text.len(),
        "{} tokens for {} bytes",
        ids.len(),
        text.len()
    );
    // JSON round trip through the generic reader.
    let again = tokenizer::from_json(&trained.to_json()).unwrap();
    assert_eq!(
        again.encode(&text[..50_000]).unwrap(),
        trained.encode(&text[..50_000]).unwrap()
    );

    let (Some(vocab), Some(merges)) = (
        common::shared_data("gpt2/vocab.json"),
        common::shared_data("gpt2/merges.txt"),
    ) else {
        return;
    };
    check_round_trips(&BpeTokenizer::from_gpt2_files(vocab, merges).unwrap(), 2);
}

#[test]
fn classic_bpe_on_tiny_shakespeare() {
    let Some(text) = corpus() else { return };
    // The seed notebook's run: 4000 merges on the whole corpus.
    let tok = ClassicBpe::train(&text, 4000);
    assert_eq!(tok.merges().len(), 4000);
    let words: Vec<&str> = text.split_whitespace().collect();
    let ids = tok.encode(&text).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), words.join(" "));
    assert!(
        ids.len() < words.len() * 2,
        "{} ids for {} words",
        ids.len(),
        words.len()
    );
    let again = tokenizer::from_json(&tok.to_json()).unwrap();
    assert_eq!(
        again.encode("To be, or not").unwrap(),
        tok.encode("To be, or not").unwrap()
    );
    assert!(tok.encode("\u{65E5}").is_err());
}

#[test]
fn a_vocabulary_too_small_for_the_bytes_is_an_error() {
    let e = BpeTrainer::new(256)
        .special_tokens(&["<s>"])
        .train("abc")
        .unwrap_err();
    assert!(e.to_string().contains("256 bytes and 1 special"), "{e}");
    // A text without repeated pairs stops early.
    let tok = BpeTrainer::new(300).train("abcdefg").unwrap();
    assert_eq!(tok.vocab_size(), 256);
}
