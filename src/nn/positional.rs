//! Position information beside the learned table (an [`Embedding`](super::Embedding)):
//! the fixed sinusoids of "Attention Is All You Need" and rotary embeddings
//! (RoPE, Su et al. 2021), which rotate queries and keys instead of adding
//! anything to the input.

use serde::{Deserialize, Serialize};

use crate::{Device, Result, Tensor};

/// How a model tells positions apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positional {
    /// A learned `[max_len, d_model]` table added to the token embeddings (GPT, BERT).
    #[default]
    Learned,
    /// The fixed sinusoids of Vaswani et al. added to the token embeddings.
    Sinusoidal,
    /// Rotary embeddings applied to every self-attention's queries and keys.
    Rotary,
}

/// The sinusoidal encodings `[max_len, dim]` of Vaswani et al. (2017):
/// `PE(pos, 2i) = sin(pos / 10000^(2i/dim))` and
/// `PE(pos, 2i+1) = cos(pos / 10000^(2i/dim))`. Computed in f64.
///
/// ```
/// use zeroformer::Device;
/// use zeroformer::nn::sinusoidal_table;
/// let pe = sinusoidal_table(2, 4, &Device::Cpu)?.to_vec();
/// // Position 0 is sin(0) = 0 and cos(0) = 1 in every pair.
/// assert_eq!(&pe[..4], &[0.0, 1.0, 0.0, 1.0]);
/// assert!((pe[4] - 1f32.sin()).abs() < 1e-7);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn sinusoidal_table(max_len: usize, dim: usize, device: &Device) -> Result<Tensor> {
    device.ensure_usable()?;
    Ok(crate::nn::buffer(&[max_len, dim], device, || {
        let mut data = Vec::with_capacity(max_len * dim);
        for pos in 0..max_len {
            for j in 0..dim {
                let i = (j / 2) as f64;
                let angle = pos as f64 / 10_000f64.powf(2.0 * i / dim as f64);
                data.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
            }
        }
        Tensor::from_vec_on(data, &[max_len, dim], device).expect("checked above")
    }))
}

/// Rotary position embeddings for heads of width `head_dim` (even), in the
/// "rotate half" layout of GPT-NeoX and Hugging Face's LLaMA: dimension `i`
/// of the first half pairs with `i + head_dim/2`, and the pair at position
/// `p` turns by the angle `p · base^(-2i/head_dim)`.
///
/// A rotation keeps each vector's norm, and the dot product of a query at
/// position `m` with a key at `n` depends on `m - n` only.
#[derive(Clone, crate::nn::Module)]
pub struct Rope {
    /// `[max_len, head_dim]` cosines and sines of every position's angles:
    /// buffers, so [`Module::to_device`](crate::nn::Module::to_device)
    /// moves them.
    #[module(buffer)]
    cos: Tensor,
    #[module(buffer)]
    sin: Tensor,
}

impl Rope {
    /// Tables for positions `0..max_len` with the usual `base` 10000, on
    /// `device` (an error only where it cannot be used).
    pub fn new(head_dim: usize, max_len: usize, device: &Device) -> Result<Rope> {
        Rope::with_base(head_dim, max_len, 10_000.0, device)
    }

    /// Rotary tables with another frequency base than 10,000.
    pub fn with_base(head_dim: usize, max_len: usize, base: f64, device: &Device) -> Result<Rope> {
        device.ensure_usable()?;
        assert!(
            head_dim.is_multiple_of(2) && head_dim > 0,
            "Rope: head_dim must be even and positive, got {head_dim}"
        );
        let half = head_dim / 2;
        let shape = [max_len, head_dim];
        let angle = |pos: usize, j: usize| {
            pos as f64 * base.powf(-2.0 * (j % half) as f64 / head_dim as f64)
        };
        let table = |f: fn(f64) -> f64| {
            crate::nn::buffer(&shape, device, || {
                let data = (0..max_len)
                    .flat_map(|pos| (0..head_dim).map(move |j| f(angle(pos, j)) as f32))
                    .collect();
                Tensor::from_vec_on(data, &shape, device).expect("checked above")
            })
        };
        Ok(Rope {
            cos: table(f64::cos),
            sin: table(f64::sin),
        })
    }

    /// The most positions the tables cover.
    pub fn max_len(&self) -> usize {
        self.cos.shape()[0]
    }

    /// Rotates `x` `[.., time, head_dim]` whose first row sits at absolute
    /// position `offset`: `x·cos + rotate_half(x)·sin`, differentiable.
    ///
    /// ```
    /// use zeroformer::{Device, Tensor, nn::Rope};
    /// // head_dim 2: one pair, turned by `position` radians.
    /// let x = Tensor::from_vec(vec![1.0, 0.0], &[1, 2]);
    /// let y = Rope::new(2, 8, &Device::Cpu)?.apply(&x, 1).to_vec();
    /// assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[1] - 1f32.sin()).abs() < 1e-6);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn apply(&self, x: &Tensor, offset: usize) -> Tensor {
        let d = self.cos.shape()[1];
        assert!(
            x.rank() >= 2 && x.shape()[x.rank() - 1] == d,
            "Rope: input must be [.., time, {d}], got {:?}",
            x.shape()
        );
        let t = x.shape()[x.rank() - 2];
        assert!(
            offset + t <= self.max_len(),
            "Rope: positions up to {} exceed the table's {}",
            offset + t,
            self.max_len()
        );
        let half = d / 2;
        let (cos, sin) = (self.cos.narrow(0, offset, t), self.sin.narrow(0, offset, t));
        let rotated = Tensor::cat(
            &[&x.narrow(-1, half, half).neg(), &x.narrow(-1, 0, half)],
            -1,
        );
        x.mul(&cos).add(&rotated.mul(&sin))
    }
}
