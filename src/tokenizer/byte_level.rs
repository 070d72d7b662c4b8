//! GPT-2's byte-level alphabet: each of the 256 byte values stands for one
//! printable character, so that a vocabulary of byte strings can be written
//! as JSON text (`vocab.json`, `merges.txt`, `tokenizer.json`). Printable
//! Latin-1 bytes stand for themselves; the rest (controls, space, 0x7F-0xA0,
//! 0xAD) for the characters from U+0100 on, in order: a space is `Ġ`, a
//! newline `Ċ`.

/// The character each byte is written as.
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        *slot = if printable {
            char::from_u32(b as u32).expect("Latin-1")
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below U+0200")
        };
    }
    table
}

/// A token written in the byte-level alphabet.
pub fn encode_bytes(bytes: &[u8], table: &[char; 256]) -> String {
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// The bytes of a token written in the byte-level alphabet; `None` when a
/// character is not in it.
pub fn decode_chars(text: &str, table: &[char; 256]) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| {
            let code = c as u32;
            // Printable Latin-1 stands for itself; U+0100.. for the rest.
            if code < 256 && table[code as usize] == c {
                Some(code as u8)
            } else if (256..256 + 68).contains(&code) {
                table.iter().position(|&t| t == c).map(|b| b as u8)
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_is_gpt2s() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xAD], 'Ń');
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_chars(&encode_bytes(&all, &t), &t).unwrap(), all);
        assert_eq!(decode_chars("a\u{3000}", &t), None);
    }
}
