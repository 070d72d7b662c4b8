//! Tokenizers: text to integer ids and back.

mod char_level;

pub use char_level::CharTokenizer;
