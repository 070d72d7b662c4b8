//! The char tokenizer and datasets, on the real corpus where it is available.

mod common;

use rand::SeedableRng;
use zeroformer::data::{
    check_long_enough, random_batch, read_text, sliding_windows, train_val_split,
};
use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
use zeroformer::{Device, Error};

#[test]
fn tiny_shakespeare_tokenizes_and_splits_like_nanogpt() {
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let text = read_text(&path).unwrap();
    assert_eq!(text.len(), 1_115_394);
    let tok = CharTokenizer::from_text(&text);
    // nanoGPT's prepare.py: 65 characters, 1,003,854 train and 111,540 val tokens.
    assert_eq!(tok.vocab_size(), 65);
    assert_eq!(tok.chars()[0], '\n');
    let ids = tok.encode(&text).unwrap();
    let (train, val) = train_val_split(&ids, 0.9);
    assert_eq!((train.len(), val.len()), (1_003_854, 111_540));
    assert_eq!(tok.decode(&ids[..20]).unwrap(), &text[..20]);
    // The vocabulary survives a JSON round trip (checkpoint metadata).
    assert_eq!(CharTokenizer::from_json(&tok.to_json()).unwrap(), tok);
}

#[test]
fn random_batches_are_shifted_windows_of_the_data() {
    let tokens: Vec<i64> = (0..100).collect();
    let (x, y) = random_batch(
        &tokens,
        4,
        8,
        &mut rand::rngs::StdRng::seed_from_u64(0),
        &Device::Cpu,
    );
    assert_eq!(x.shape(), &[4, 8]);
    let (x, y) = (x.to_vec_i64(), y.to_vec_i64());
    for row in 0..4 {
        let start = x[row * 8];
        assert_eq!(
            &x[row * 8..row * 8 + 8],
            &(start..start + 8).collect::<Vec<_>>()[..]
        );
        assert_eq!(
            &y[row * 8..row * 8 + 8],
            &(start + 1..start + 9).collect::<Vec<_>>()[..]
        );
    }
}

#[test]
fn non_overlapping_windows_cover_every_target_once() {
    let tokens: Vec<i64> = (0..23).collect();
    let targets: Vec<i64> = sliding_windows(&tokens, 5, 5, 2, &Device::Cpu)
        .flat_map(|(_, y)| y.to_vec_i64())
        .collect();
    // Windows start at 0, 5, 10, 15 (a window at 20 would need token 25).
    assert_eq!(targets, (1..21).collect::<Vec<_>>());
    let every_offset = sliding_windows(&tokens, 5, 1, 7, &Device::Cpu)
        .map(|(x, _)| x.shape()[0])
        .sum::<usize>();
    assert_eq!(every_offset, 23 - 5);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let missing = read_text(std::path::Path::new("/nonexistent/corpus.txt")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/corpus.txt"));
    let dir = std::env::temp_dir().join(format!("zeroformer-empty-{}", std::process::id()));
    std::fs::write(&dir, "").unwrap();
    assert!(matches!(read_text(&dir), Err(Error::InvalidData(_))));
    std::fs::remove_file(&dir).unwrap();
    assert!(
        check_long_enough(&[1, 2, 3], 8, "val")
            .unwrap_err()
            .to_string()
            .contains("needs at least 9")
    );
    let tok = CharTokenizer::from_text("ab");
    assert!(tok.decode(&[5]).is_err());
}

#[test]
fn tiny_shakespeare_speeches_of_the_eight_main_speakers() {
    use zeroformer::data::speeches::{parse_speeches, top_speakers};
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let speeches = parse_speeches(&read_text(&path).unwrap());
    // Counted independently with a Python split on blank lines and the
    // regex [A-Za-z][A-Za-z' .-]*: for the header.
    assert_eq!(speeches.len(), 7095);
    assert_eq!(speeches[0].speaker, "First Citizen");
    assert_eq!(
        speeches[0].text,
        "Before we proceed any further, hear me speak."
    );
    let top = top_speakers(&speeches, 8);
    assert_eq!(
        top,
        [
            "GLOUCESTER",
            "DUKE VINCENTIO",
            "MENENIUS",
            "ROMEO",
            "PETRUCHIO",
            "CORIOLANUS",
            "KING RICHARD III",
            "ISABELLA"
        ]
    );
    let kept = speeches.iter().filter(|s| top.contains(&s.speaker)).count();
    let largest = speeches.iter().filter(|s| s.speaker == top[0]).count();
    assert_eq!((kept, largest), (1288, 211));
}

#[test]
fn word_tokenizer_counts_and_ranks_words() {
    use zeroformer::tokenizer::{Tokenizer, WordTokenizer};
    let t = WordTokenizer::fit(["To be, or not to be:", "that is the question", "Be TO"], 2);
    // "be" (3) and "to" (3), ties alphabetical; everything else once.
    assert_eq!(t.vocab_size(), 4);
    assert_eq!((t.word(2), t.word(3)), (Some("be"), Some("to")));
    assert_eq!(t.encode("To be or").unwrap(), [3, 2, WordTokenizer::UNK]);
    assert_eq!(t.decode(&[3, 2, 1]).unwrap(), "to be <unk>");
    let again = WordTokenizer::from_json(&t.to_json()).unwrap();
    assert_eq!(
        again.encode("be to x").unwrap(),
        t.encode("be to x").unwrap()
    );
    assert!(t.decode(&[3, 99]).is_err());
    assert_eq!(t.word(9), None);
    let words: Vec<String> = WordTokenizer::words("O'er the hills--and far").collect();
    assert_eq!(words, ["o'er", "the", "hills", "and", "far"]);
}
