//! Decoding ids one at a time, as they are generated: only whole
//! characters come out, so a character split across tokens (byte-level
//! BPE's emoji and CJK) is never printed as a replacement character.

use super::Tokenizer;
use crate::Result;

/// Text as it becomes complete, token by token (Hugging Face's
/// `TextStreamer`, without the printing).
///
/// ```
/// use zeroformer::tokenizer::{BpeTrainer, DecodeStream, Tokenizer};
/// // A byte-level BPE too small to have merged "é" (two bytes) into one token.
/// let tok = BpeTrainer::new(256).train("plain text")?;
/// let ids = tok.encode("é!")?;
/// let mut stream = DecodeStream::new(&tok);
/// let pieces: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect::<Result<_, _>>()?;
/// assert_eq!(pieces, ["", "é", "!"]);
/// assert_eq!(stream.finish(), "");
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub struct DecodeStream<'a> {
    tokenizer: &'a dyn Tokenizer,
    ids: Vec<i64>,
    /// How many bytes of the decoded ids have been returned.
    returned: usize,
    /// The bytes decoded but not returned: an unfinished character.
    pending: Vec<u8>,
}

impl<'a> DecodeStream<'a> {
    /// An empty stream over `tokenizer`.
    pub fn new(tokenizer: &'a dyn Tokenizer) -> DecodeStream<'a> {
        DecodeStream {
            tokenizer,
            ids: Vec::new(),
            returned: 0,
            pending: Vec::new(),
        }
    }

    /// The text `id` completes: every whole character since the last call
    /// ("" while a character waits for the token that ends it). Bytes that
    /// can start no character come out as U+FFFD. An error for an id
    /// outside the vocabulary.
    pub fn push(&mut self, id: i64) -> Result<String> {
        self.ids.push(id);
        // Decoding is a concatenation for every tokenizer here (each
        // token's bytes, or its text and a separator), so the text of the
        // ids so far extends the text of the ids before.
        let bytes = self.tokenizer.decode_bytes(&self.ids)?;
        self.pending = bytes[self.returned.min(bytes.len())..].to_vec();
        let mut out = String::new();
        let mut at = 0;
        loop {
            match std::str::from_utf8(&self.pending[at..]) {
                Ok(text) => {
                    out.push_str(text);
                    at = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = at + e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[at..valid]).expect("valid"));
                    match e.error_len() {
                        // Invalid, not unfinished: replaced, and past it.
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            at = valid + len;
                        }
                        // Unfinished: kept for the next token.
                        None => {
                            at = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.returned += at;
        self.pending.drain(..at);
        Ok(out)
    }

    /// What is left when the stream ends: an unfinished character, as
    /// U+FFFD ("" when the last token ended a character).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{BpeTrainer, CharTokenizer, WordTokenizer};

    fn streamed(tok: &dyn Tokenizer, ids: &[i64]) -> (Vec<String>, String) {
        let mut stream = DecodeStream::new(tok);
        let pieces = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        (pieces, stream.finish())
    }

    #[test]
    fn split_characters_wait_for_their_last_byte_and_the_whole_text_comes_out() {
        // Few merges: emoji, CJK and accents stay split across byte tokens.
        let tok = BpeTrainer::new(300)
            .train("the cat sat on the mat")
            .unwrap();
        let text = "naïve 日本 👩‍👩‍👧 café!";
        let ids = tok.encode(text).unwrap();
        let (pieces, rest) = streamed(&tok, &ids);
        assert_eq!(pieces.concat() + &rest, text);
        assert!(pieces.iter().all(|p| !p.contains('\u{fffd}')), "{pieces:?}");
        // The test splits characters: some tokens complete nothing.
        assert!(
            pieces.iter().filter(|p| p.is_empty()).count() >= 10,
            "{pieces:?}"
        );
    }

    #[test]
    fn an_unfinished_character_at_the_end_is_one_replacement() {
        let tok = BpeTrainer::new(256).train("abc").unwrap();
        let ids = tok.encode("a日").unwrap();
        let (pieces, rest) = streamed(&tok, &ids[..ids.len() - 1]);
        assert_eq!(
            (pieces.concat(), rest),
            ("a".to_string(), "\u{fffd}".to_string())
        );
    }

    #[test]
    fn character_and_word_tokenizers_stream_their_decoded_text() {
        let chars = CharTokenizer::from_text("hello world");
        let ids = chars.encode("low hello").unwrap();
        assert_eq!(streamed(&chars, &ids).0.concat(), "low hello");
        let words = WordTokenizer::fit(["the cat sat on the mat"], 1);
        let ids = words.encode("the cat sat").unwrap();
        let (pieces, rest) = streamed(&words, &ids);
        assert_eq!(pieces.concat() + &rest, words.decode(&ids).unwrap());
        assert_eq!(pieces.len(), 3);
    }

    #[test]
    fn an_id_outside_the_vocabulary_is_an_error() {
        let chars = CharTokenizer::from_text("ab");
        let mut stream = DecodeStream::new(&chars);
        assert!(stream.push(7).is_err());
    }
}
