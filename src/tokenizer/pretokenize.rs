//! GPT-2's pre-tokenisation: the text cut into the pieces BPE merges
//! within, exactly as the pattern
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! cuts it, written out by hand: one pass, no backtracking. The lookahead
//! `\s+(?!\S)` is the one part a plain regular expression cannot say: a run
//! of white space before a non-space gives up its last character, which
//! then starts the next piece (`"a  b"` is `"a"`, `" "`, `" b"`).

use super::unicode_tables::RANGES;

/// What the pattern asks of a character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharClass {
    /// `\p{L}`: a letter of any script.
    Letter,
    /// `\p{N}`: a digit or other number.
    Number,
    /// `\s`: Unicode white space.
    Space,
    /// Anything else: punctuation, symbols, marks, controls, emoji.
    Other,
}

const fn ascii_classes() -> [CharClass; 128] {
    let mut table = [CharClass::Other; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphabetic() {
            CharClass::Letter
        } else if c.is_ascii_digit() {
            CharClass::Number
        } else if matches!(c, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
            CharClass::Space
        } else {
            CharClass::Other
        };
        b += 1;
    }
    table
}

static ASCII: [CharClass; 128] = ascii_classes();

/// The class of `c` under the `regex` crate's Unicode tables (the engine
/// tiktoken runs GPT-2's pattern on), so both cut text alike.
///
/// ```
/// use zeroformer::tokenizer::{CharClass, char_class};
/// assert_eq!(char_class('é'), CharClass::Letter);
/// assert_eq!(char_class('½'), CharClass::Number);
/// assert_eq!(char_class('\u{3000}'), CharClass::Space);
/// assert_eq!(char_class('\u{301}'), CharClass::Other); // a combining mark
/// ```
pub fn char_class(c: char) -> CharClass {
    let code = c as u32;
    if code < 128 {
        return ASCII[code as usize];
    }
    match RANGES.binary_search_by(|&(first, last, _)| {
        if last < code {
            std::cmp::Ordering::Less
        } else if first > code {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => RANGES[i].2,
        Err(_) => CharClass::Other,
    }
}

/// GPT-2's pieces of `text`, in order; together they are `text`.
///
/// ```
/// use zeroformer::tokenizer::gpt2_pieces;
/// let pieces: Vec<&str> = gpt2_pieces("I'll pay  $12!\n").collect();
/// assert_eq!(pieces, ["I", "'ll", " pay", " ", " $", "12", "!", "\n"]);
/// ```
pub fn gpt2_pieces(text: &str) -> Gpt2Pieces<'_> {
    Gpt2Pieces { text, pos: 0 }
}

/// The iterator of [`gpt2_pieces`].
#[derive(Clone, Debug)]
pub struct Gpt2Pieces<'a> {
    text: &'a str,
    pos: usize,
}

/// The character at byte `i` of `s` (which is on a character boundary).
#[inline]
fn char_at(s: &str, i: usize) -> Option<(char, usize)> {
    let b = *s.as_bytes().get(i)?;
    if b < 128 {
        return Some((b as char, 1));
    }
    let c = s[i..].chars().next()?;
    Some((c, c.len_utf8()))
}

/// The end of the run of `class` characters starting at byte `i`.
#[inline]
fn run_end(s: &str, mut i: usize, class: CharClass) -> usize {
    while let Some((c, len)) = char_at(s, i) {
        if char_class(c) != class {
            break;
        }
        i += len;
    }
    i
}

/// The length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`,
/// `'d`; lower case only) at the start of `rest`, if any.
#[inline]
fn contraction(rest: &[u8]) -> Option<usize> {
    match rest {
        [b'\'', b's' | b't' | b'm' | b'd', ..] => Some(2),
        [b'\'', b'r', b'e', ..] | [b'\'', b'v', b'e', ..] | [b'\'', b'l', b'l', ..] => Some(3),
        _ => None,
    }
}

impl<'a> Iterator for Gpt2Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (s, start) = (self.text, self.pos);
        let (first, first_len) = char_at(s, start)?;
        let end = if let Some(len) = contraction(&s.as_bytes()[start..]) {
            start + len
        } else {
            let class = char_class(first);
            match class {
                // ` ?X+`: a space joins the run after it when that run is
                // of letters, numbers or other characters.
                CharClass::Space if first == ' ' => match char_at(s, start + 1) {
                    Some((next, _)) if char_class(next) != CharClass::Space => {
                        run_end(s, start + 1, char_class(next))
                    }
                    _ => space_run_end(s, start),
                },
                CharClass::Space => space_run_end(s, start),
                _ => run_end(s, start + first_len, class),
            }
        };
        self.pos = end;
        Some(&s[start..end])
    }
}

/// Where the white-space piece starting at `start` ends: the whole run at
/// the end of the text, else all of it but its last character (which then
/// starts the next piece), but at least one character.
#[inline]
fn space_run_end(s: &str, start: usize) -> usize {
    let end = run_end(s, start, CharClass::Space);
    if end == s.len() {
        return end;
    }
    let last = s[start..end].chars().next_back().map_or(0, char::len_utf8);
    if end - last > start { end - last } else { end }
}
