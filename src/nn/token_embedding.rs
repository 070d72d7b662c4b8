//! The input of a Transformer stack: token vectors plus position
//! information, scaled, then dropout.

use rand::Rng;

use super::{
    Dropout, Embedding, Module, Positional, Rope, SharedRng, TokenEmbeddingConfig, sinusoidal_table,
};
use crate::{Device, Tensor};

/// Token embeddings with learned or sinusoidal positions added, or rotary
/// positions handed to the attention layers ([`rope`](Self::rope)). Built
/// by [`TokenEmbeddingConfig::init`].
#[derive(Clone, Module)]
pub struct TokenEmbedding {
    /// The token table.
    pub tokens: Embedding,
    /// The learned position table, for [`Positional::Learned`].
    pub positions: Option<Embedding>,
    #[module(buffer)]
    sinusoids: Option<Tensor>,
    rope: Option<Rope>,
    /// Multiplies the token vectors: √d_model in the 2017 Transformer, else 1.
    pub scale: f32,
    drop: Dropout,
}

impl TokenEmbedding {
    /// The embedding `config` describes (validated by it), its dropout
    /// drawing from `dropout_rng`.
    pub(crate) fn new(
        config: &TokenEmbeddingConfig,
        rng: &mut impl Rng,
        dropout_rng: &SharedRng,
        device: &Device,
    ) -> TokenEmbedding {
        let (d, max_len, std) = (config.d_model, config.max_len, config.std);
        let tokens = Embedding::new(config.vocab_size, d, std, rng, device);
        let (mut positions, mut sinusoids, mut rope) = (None, None, None);
        // The config checked the device, so the tables cannot fail.
        let usable = "the config checked its device";
        match config.positional {
            Positional::Learned => positions = Some(Embedding::new(max_len, d, std, rng, device)),
            Positional::Sinusoidal => {
                sinusoids = Some(sinusoidal_table(max_len, d, device).expect(usable))
            }
            Positional::Rotary => {
                rope = Some(Rope::new(config.head_dim, max_len, device).expect(usable))
            }
        }
        TokenEmbedding {
            tokens,
            positions,
            sinusoids,
            rope,
            scale: config.scale,
            drop: Dropout::new(config.dropout, dropout_rng.clone()),
        }
    }

    /// The most positions this embedding covers.
    pub fn max_len(&self) -> usize {
        match (&self.positions, &self.sinusoids, &self.rope) {
            (Some(p), _, _) => p.weight.shape()[0],
            (_, Some(s), _) => s.shape()[0],
            (_, _, Some(r)) => r.max_len(),
            _ => unreachable!("one kind of positions is always set"),
        }
    }

    /// The rotary tables, when positions are rotary.
    pub fn rope(&self) -> Option<&Rope> {
        self.rope.as_ref()
    }

    /// `[batch, time]` ids (i64) whose first position is `offset` to
    /// `[batch, time, d_model]` vectors.
    pub fn forward(&self, ids: &Tensor, offset: usize) -> Tensor {
        assert_eq!(
            ids.rank(),
            2,
            "TokenEmbedding: ids must be [batch, time], got {:?}",
            ids.shape()
        );
        let t = ids.shape()[1];
        assert!(
            offset + t <= self.max_len(),
            "TokenEmbedding: {} positions exceed the maximum length {}",
            offset + t,
            self.max_len()
        );
        let mut x = self.tokens.forward(ids);
        if self.scale != 1.0 {
            x = x.mul_scalar(self.scale);
        }
        if let Some(p) = &self.positions {
            let idx = ids.new_ids((offset as i64..(offset + t) as i64).collect(), &[t]);
            x = x.add(&p.forward(&idx));
        }
        if let Some(s) = &self.sinusoids {
            x = x.add(&s.narrow(0, offset, t));
        }
        self.drop.forward(&x)
    }
}
