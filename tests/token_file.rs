//! Token files: round trips at both id widths, the same windows as the
//! in-memory sampler, and every way a file can be wrong.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use zeroformer::Device;
use zeroformer::data::{TokenFile, random_batch};
use zeroformer::tokenizer::{CharTokenizer, Tokenizer};

fn write(path: &std::path::Path, vocab: usize, ids: &[i64]) -> zeroformer::Result<()> {
    TokenFile::write(path, vocab, "\"ab\"", |sink| {
        for chunk in ids.chunks(7) {
            sink.push(chunk)?;
        }
        Ok(())
    })
}

#[test]
fn ids_round_trip_as_u16_and_u32() {
    let dir = tempfile::tempdir().unwrap();
    for (vocab, width) in [(2usize, 2usize), (65_536, 2), (65_537, 4), (100_000, 4)] {
        let ids: Vec<i64> = (0..1000)
            .map(|i| (i * 7919) % vocab as i64)
            .chain([vocab as i64 - 1])
            .collect();
        let path = dir.path().join(format!("v{vocab}.bin"));
        write(&path, vocab, &ids).unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert_eq!(
            (file.len(), file.vocab_size(), file.id_width()),
            (ids.len(), vocab, width)
        );
        assert_eq!(file.to_vec(0..ids.len()), ids);
        assert_eq!(file.tokenizer_json(), "\"ab\"");
    }
}

#[test]
fn windows_are_the_in_memory_samplers() {
    let dir = tempfile::tempdir().unwrap();
    let tok = CharTokenizer::from_text("abcdefgh");
    let ids = tok.encode(&"abcdefgh".repeat(50)).unwrap();
    let path = dir.path().join("t.bin");
    TokenFile::write(&path, tok.vocab_size(), &tok.to_json(), |s| s.push(&ids)).unwrap();
    let file = TokenFile::open(&path).unwrap();
    let (a, b) = (
        file.random_batch(4, 16, &mut ChaCha8Rng::seed_from_u64(3), &Device::Cpu),
        random_batch(&ids, 4, 16, &mut ChaCha8Rng::seed_from_u64(3), &Device::Cpu),
    );
    assert_eq!(a.0.to_vec_i64(), b.0.to_vec_i64());
    assert_eq!(a.1.to_vec_i64(), b.1.to_vec_i64());
    assert_eq!(
        file.tokenizer()
            .unwrap()
            .decode(&file.to_vec(0..8))
            .unwrap(),
        "abcdefgh"
    );
}

#[test]
fn a_failed_write_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.bin");
    let e = write(&path, 10, &[1, 2, 10]).unwrap_err();
    assert!(
        e.to_string()
            .contains("token id 10 is outside the vocabulary of 10"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(TokenFile::write(&path, 0, "", |_| Ok(())).is_err());
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.bin");
    write(&good, 300, &[1, 2, 299, 4]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let data = bytes.len() - 8;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not a token file"),
        (
            "magic",
            [b"NOTTOKEN".as_slice(), &bytes[8..]].concat(),
            "not a token file",
        ),
        ("truncated", bytes[..bytes.len() - 1].to_vec(), "truncated"),
        (
            "longer",
            [bytes.as_slice(), &[0, 0]].concat(),
            "ids of 2 bytes",
        ),
        (
            "version",
            {
                let mut b = bytes.clone();
                b[8] = 9;
                b
            },
            "format version 9",
        ),
        (
            "width",
            {
                let mut b = bytes.clone();
                b[12] = 3;
                b
            },
            "3 bytes per id",
        ),
        (
            "count",
            {
                let mut b = bytes.clone();
                b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            },
            "the header says",
        ),
        (
            "text",
            {
                let mut b = bytes.clone();
                b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            },
            "tokenizer takes",
        ),
        (
            "vocab",
            {
                let mut b = bytes.clone();
                b[24..32].copy_from_slice(&100_000u64.to_le_bytes());
                b
            },
            "does not fit",
        ),
        (
            "id",
            {
                let mut b = bytes.clone();
                b[data + 2..data + 4].copy_from_slice(&300u16.to_le_bytes());
                b
            },
            "id 300 at position 1",
        ),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(format!("{name}.bin"));
        std::fs::write(&path, content).unwrap();
        let e = TokenFile::open(&path).unwrap_err().to_string();
        assert!(
            e.contains(expected) && e.contains(&format!("{name}.bin")),
            "{name}: {e}"
        );
    }
    let e = TokenFile::open(dir.path().join("missing.bin"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.bin"), "{e}");
}

#[test]
fn a_trainer_steps_on_a_token_file_as_on_the_ids_in_memory() {
    use zeroformer::GptConfig;
    use zeroformer::train::{TrainConfig, Trainer};
    let dir = tempfile::tempdir().unwrap();
    let tok = CharTokenizer::from_text("abcdefghij ");
    let ids = tok.encode(&"abcdefghij jihgfedcba ".repeat(30)).unwrap();
    let path = dir.path().join("train.bin");
    TokenFile::write(&path, tok.vocab_size(), &tok.to_json(), |s| s.push(&ids)).unwrap();
    let file = TokenFile::open(&path).unwrap();
    let model = GptConfig {
        vocab_size: tok.vocab_size(),
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        dropout: 0.0,
        bias: false,
        ..GptConfig::default()
    };
    let mut config = TrainConfig::nanogpt_cpu(5);
    config.batch_size = 4;
    let mut from_memory = Trainer::new(
        model.init(&Device::Cpu, config.seed).unwrap(),
        config.clone(),
    )
    .unwrap();
    let mut from_file =
        Trainer::new(model.init(&Device::Cpu, config.seed).unwrap(), config).unwrap();
    for _ in 0..5 {
        let a = from_memory.train_step(&ids).unwrap();
        let b = from_file
            .train_step_with(|rng| file.random_batch(4, 8, rng, &Device::Cpu))
            .unwrap();
        assert_eq!(a.loss.item(), b.loss.item());
    }
}
