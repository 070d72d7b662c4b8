//! Layers: parameters with stable dotted names, and the building blocks of
//! a Transformer. Training and evaluation differ by one switch,
//! [`eval_mode`](crate::eval_mode), which turns dropout off.
//!
//! Layers are plain structs whose fields are tensors (leaves that require
//! grad) and sub-layers. Each has an inherent `forward`; the [`Module`]
//! trait is what optimizers and checkpoints use to visit every parameter.

mod attention;
mod block;
mod checkpoint;
mod config;
pub(crate) mod dropout;
mod embedding;
mod feed_forward;
mod linear;
mod moe;
mod norm;
mod positional;
pub(crate) mod shape_only;
mod token_embedding;
mod transformer_layer;
mod visit;

pub use attention::{
    AttentionKernel, AttentionMask, KvCache, LayerKvCache, MultiHeadAttention, padding_mask,
};
pub use block::{BlockMlp, BlockOutput, GptBlock};
pub use checkpoint::checkpoint;
pub use config::{
    EmbeddingConfig, FeedForwardConfig, LayerNormConfig, LinearConfig, MultiHeadAttentionConfig,
    NormConfig, TokenEmbeddingConfig,
};
pub use dropout::{Dropout, SharedRng};
pub use embedding::Embedding;
pub use feed_forward::{Activation, FeedForward};
pub use linear::Linear;
pub use moe::{MoeConfig, MoeFeedForward, Routing};
pub use norm::{LayerNorm, Norm, NormKind, RmsNorm};
pub use positional::{Positional, Rope, sinusoidal_table};
pub(crate) use shape_only::{buffer, check_count, counting, parameter};
pub use shape_only::{count_parameters, parameter_shapes};
pub use token_embedding::TokenEmbedding;
pub use transformer_layer::{
    DecoderLayer, DecoderLayerCache, EncoderLayer, LayerConfig, NormPlacement,
};
pub use visit::Visit;
/// `#[derive(Module)]` on a struct of layers and tensors:
///
/// ```
/// use zeroformer::nn::{Dropout, Linear, LinearConfig, Module, SharedRng};
/// use zeroformer::prelude::*;
///
/// #[derive(Module)]
/// struct Scaled {
///     hidden: Linear,            // parameters hidden.weight, hidden.bias
///     gain: Tensor,              // a parameter named gain
///     drop: Dropout,             // no parameters; off in eval_mode
///     #[module(buffer)]
///     table: Tensor,             // moved by to_device, never trained
///     #[module(skip)]
///     note: std::sync::Arc<str>, // not visited at all
/// }
/// let mut rng = StdRng::seed_from_u64(0);
/// let m = Scaled {
///     hidden: LinearConfig::new(2, 2).init(&Device::Cpu, &mut rng)?,
///     gain: Tensor::ones(&[2]),
///     drop: Dropout::new(0.1, SharedRng::seed_from_u64(1)),
///     table: Tensor::zeros(&[4]),
///     note: "any data".into(),
/// };
/// let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["hidden.weight", "hidden.bias", "gain"]);
/// assert!(m.draws_randomly()); // the dropout: the trainer keeps batches whole
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub use zeroformer_derive::Module;

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::{Device, Tensor};

/// Something with parameters: a layer or a whole model.
pub trait Module {
    /// Calls `f(name, parameter)` for every parameter, names prefixed by
    /// `prefix` (`"blocks.0.attn."`). Order is stable: it is the order of
    /// checkpoints and optimizer state.
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor));

    /// Calls `f(name, buffer)` for every buffer: a fixed tensor the module
    /// computes with but does not train (PyTorch's `register_buffer`), such
    /// as a sinusoid table. [`to_device`](Self::to_device) moves buffers
    /// with the parameters. None by default.
    fn visit_buffers(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    /// True when a forward in training draws from a random stream: a
    /// [`Dropout`] with `p > 0` somewhere inside. The trainer then runs a
    /// batch whole, so the draws come in one order whatever the thread
    /// count. Derived modules ask their fields; false by default.
    fn draws_randomly(&self) -> bool {
        false
    }

    /// Every parameter with its dotted name, e.g. `blocks.0.attn.qkv.weight`.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_parameters("", &mut |name, t| out.push((name.to_string(), t.clone())));
        out
    }

    /// Every parameter, in `named_parameters` order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// The number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }

    /// The device of the parameters (the CPU when there are none): where
    /// the module's work is issued from
    /// ([`Device::scope`](crate::Device::scope)).
    fn device(&self) -> crate::Device {
        let mut device = None;
        self.visit_parameters("", &mut |_, t| {
            device.get_or_insert(t.device());
        });
        device.unwrap_or_default()
    }

    /// Moves every parameter (and its gradient) to `device`, in place: the
    /// optimizer and the model keep holding the same parameters. On error
    /// (a CUDA device that cannot be used) no parameter has moved.
    ///
    /// ```
    /// use zeroformer::nn::{LinearConfig, Module};
    /// use zeroformer::prelude::*;
    /// let layer = LinearConfig::new(3, 2).init(&Device::Cpu, &mut StdRng::seed_from_u64(0))?;
    /// layer.to_device(&Device::Cpu)?;
    /// assert!(layer.to_device(&Device::Cuda(1000)).is_err());
    /// assert_eq!(layer.device(), Device::Cpu);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    fn to_device(&self, device: &crate::Device) -> crate::Result<()> {
        let mut params = self.parameters();
        self.visit_buffers("", &mut |_, t| params.push(t.clone()));
        // Every copy first, then the swaps: an error leaves all in place.
        let copies = params
            .iter()
            .map(|p| p.copy_to(device))
            .collect::<crate::Result<Vec<_>>>()?;
        params.iter().zip(copies).for_each(|(p, c)| p.install(c));
        Ok(())
    }

    /// Casts every parameter, floating-point buffer and gradient to
    /// `dtype` (`F32` or `BF16`) in place, as PyTorch's `module.to(dtype)`:
    /// the model and an optimizer keep holding the same parameters. A bf16
    /// model runs in bf16 throughout, as transformers' `torch_dtype=bfloat16`
    /// does (half the bytes read per decoded token); training keeps f32
    /// weights and runs under [`autocast`](crate::autocast) instead. Panics
    /// for a dtype that is not floating-point. Int8 copies of weights
    /// (`Gpt::quantize_int8`) take f32 activations: a bf16 model drops
    /// them first.
    ///
    /// ```
    /// use zeroformer::nn::{LinearConfig, Module};
    /// use zeroformer::prelude::*;
    /// let layer = LinearConfig::new(3, 2).init(&Device::Cpu, &mut StdRng::seed_from_u64(0))?;
    /// layer.to_dtype(DType::BF16);
    /// assert!(layer.parameters().iter().all(|p| p.dtype() == DType::BF16));
    /// let y = layer.forward(&Tensor::ones(&[1, 3]).to_dtype(DType::BF16));
    /// assert_eq!(y.dtype(), DType::BF16);
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    fn to_dtype(&self, dtype: crate::DType) {
        use crate::DType;
        assert!(
            matches!(dtype, DType::F32 | DType::BF16),
            "Module::to_dtype: parameters are floating-point (F32 or BF16), not {dtype:?}"
        );
        let float = |t: &Tensor| matches!(t.dtype(), DType::F32 | DType::BF16);
        self.visit_parameters("", &mut |_, p| p.cast_in_place(dtype));
        self.visit_buffers("", &mut |_, b| {
            if float(b) {
                b.cast_in_place(dtype)
            }
        });
    }

    /// Forgets every parameter's gradient.
    fn zero_grad(&self) {
        self.parameters().iter().for_each(Tensor::zero_grad);
    }
}

/// A leaf parameter of `shape` on `device`, drawn from N(0, std²) on the
/// host and copied there once (a placeholder, nothing drawn, inside
/// [`count_parameters`]).
///
/// ```
/// use zeroformer::nn::normal_parameter;
/// use zeroformer::prelude::*;
/// let w = normal_parameter(&[3, 2], 0.02, &mut StdRng::seed_from_u64(0), &Device::Cpu);
/// assert!(w.is_leaf_requiring_grad() && w.shape() == [3, 2]);
/// ```
pub fn normal_parameter(shape: &[usize], std: f32, rng: &mut impl Rng, device: &Device) -> Tensor {
    let dist = Normal::new(0.0f32, std).expect("std must be finite and non-negative");
    parameter(shape, device, || {
        let data = (0..shape.iter().product())
            .map(|_| dist.sample(rng))
            .collect();
        on_device(Tensor::from_vec_on(data, shape, device))
    })
}

/// A leaf parameter of `dim` zeros (a bias) on `device`.
pub(crate) fn zeros_parameter(dim: usize, device: &Device) -> Tensor {
    parameter(&[dim], device, || {
        on_device(Tensor::zeros_on(&[dim], device))
    })
}

/// A leaf parameter of `dim` ones (a norm's scale) on `device`.
pub(crate) fn ones_parameter(dim: usize, device: &Device) -> Tensor {
    parameter(&[dim], device, || {
        on_device(Tensor::ones_on(&[dim], device))
    })
}

/// A parameter made on a device the layer configs checked
/// (`Device::ensure_usable`) before building.
fn on_device(made: crate::Result<Tensor>) -> Tensor {
    made.expect("the layer's config checked its device")
        .requires_grad()
}

/// Overwrites every parameter of rank 2 or more of `module` with Glorot
/// (Xavier) uniform values, `U(-a, a)` with `a = √(6 / (fan_in + fan_out))`,
/// as `torch.nn.init.xavier_uniform_` (the Annotated Transformer's
/// initialisation). Vectors (biases, norm weights) are left alone.
pub fn xavier_uniform(module: &dyn Module, rng: &mut impl Rng) {
    if counting() {
        return;
    }
    module.visit_parameters("", &mut |_, t| {
        if t.rank() < 2 {
            return;
        }
        let receptive: usize = t.shape()[2..].iter().product();
        let (fan_out, fan_in) = (t.shape()[0] * receptive, t.shape()[1] * receptive);
        let a = (6.0 / (fan_in + fan_out) as f32).sqrt();
        let dist = Uniform::new_inclusive(-a, a);
        let values = (0..t.numel()).map(|_| dist.sample(rng)).collect();
        t.assign(&t.new_tensor(values, t.shape()));
    });
}

/// `prefix + name`, the dotted name of a child.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}
