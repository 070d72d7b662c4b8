//! Tokenizers: text to integer ids and back.

mod char_level;
mod word_level;

pub use char_level::CharTokenizer;
pub use word_level::WordTokenizer;
