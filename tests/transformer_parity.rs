//! The Transformer layers against PyTorch 2.15: RMSNorm, SwiGLU, masked
//! scaled dot-product attention, and whole `nn.TransformerEncoderLayer` /
//! `nn.TransformerDecoderLayer`s (with padding, causal masks and both norm
//! placements) loaded with the same weights. Fixtures come from
//! `scripts/make_fixtures.py`; values must match to 1e-5 relative + 1e-6.

#[macro_use]
mod common;

use common::Fixture;
use zeroformer::nn::{
    Activation, AttentionMask, FeedForwardConfig, LayerConfig, Linear, MultiHeadAttention,
    MultiHeadAttentionConfig, Norm, NormPlacement, RmsNorm, SharedRng,
};
use zeroformer::prelude::*;

/// Overwrites `param` with the fixture's `name` (same shape).
fn load(f: &Fixture, name: &str, param: &Tensor) {
    let value = f.get(name);
    assert_eq!(param.shape(), value.shape(), "{name}");
    param.update_data(|d| d.copy_from_slice(&value.to_vec()));
}

/// A bool mask from a fixture's 0/1 values, on their device.
fn bools(t: &Tensor) -> Tensor {
    Tensor::from_bools(t.to_vec().iter().map(|&v| v != 0.0).collect(), t.shape())
        .to_device(&t.device())
        .unwrap()
}

fn load_linear(f: &Fixture, prefix: &str, l: &Linear) {
    load(f, &format!("{prefix}.weight"), &l.weight);
    load(f, &format!("{prefix}.bias"), l.bias.as_ref().unwrap());
}

fn load_attention(f: &Fixture, prefix: &str, a: &MultiHeadAttention) {
    load(f, &format!("{prefix}.in_proj_weight"), &a.qkv.weight);
    load(
        f,
        &format!("{prefix}.in_proj_bias"),
        a.qkv.bias.as_ref().unwrap(),
    );
    load_linear(f, &format!("{prefix}.out_proj"), &a.proj);
}

fn load_norm(f: &Fixture, prefix: &str, n: &Norm) {
    let Norm::Layer(ln) = n else {
        panic!("LayerNorm expected")
    };
    load(f, &format!("{prefix}.weight"), &ln.weight);
    load(f, &format!("{prefix}.bias"), ln.bias.as_ref().unwrap());
}

fn layer_config(activation: Activation, placement: NormPlacement) -> LayerConfig {
    LayerConfig::new(8, 2, 16)
        .dropout(0.0)
        .activation(activation)
        .placement(placement)
}

fn rms_norm_forward_and_backward(device: &Device) {
    let f = Fixture::load_on("rms_norm", device);
    let norm = RmsNorm {
        weight: f.leaf("w"),
        eps: 1e-6,
    };
    let x = f.leaf("x");
    let y = norm.forward(&x);
    y.backward_with(&f.get("g"));
    f.assert_matches("y", &y);
    f.assert_matches("dx", &x.grad().unwrap());
    f.assert_matches("dw", &norm.weight.grad().unwrap());
}
test_device!(rms_norm_forward_and_backward);

fn swiglu_feed_forward_puts_the_gate_rows_first(device: &Device) {
    let f = Fixture::load_on("swiglu", device);
    let mut rng = StdRng::seed_from_u64(0);
    let ff = FeedForwardConfig::new(6, 5)
        .activation(Activation::SwiGlu)
        .bias(false)
        .init(device, &mut rng)
        .unwrap();
    let fused: Vec<f32> = [f.get("w_gate").to_vec(), f.get("w_up").to_vec()].concat();
    ff.fc.weight.update_data(|d| d.copy_from_slice(&fused));
    load(&f, "w_down", &ff.proj.weight);
    let x = f.leaf("x");
    let y = ff.forward(&x);
    y.backward_with(&f.get("g"));
    f.assert_matches("y", &y);
    f.assert_matches("dx", &x.grad().unwrap());
    let dfc = ff.fc.weight.grad().unwrap();
    f.assert_matches("dw_gate", &dfc.narrow(0, 0, 5));
    f.assert_matches("dw_up", &dfc.narrow(0, 5, 5));
    f.assert_matches("dw_down", &ff.proj.weight.grad().unwrap());
}
test_device!(swiglu_feed_forward_puts_the_gate_rows_first);

fn masked_attention_matches_scaled_dot_product_attention(device: &Device) {
    let f = Fixture::load_on("masked_attention", device);
    let mut rng = StdRng::seed_from_u64(0);
    let attn = MultiHeadAttentionConfig::new(8, 2)
        .bias(false)
        .init_with_dropout(device, &mut rng, &SharedRng::seed_from_u64(0))
        .unwrap();
    let pad = bools(&f.get("pad"));
    // Cross-attention shapes: 3 queries over 5 keys, two of them padding.
    let (q, k, v) = (f.leaf("q"), f.leaf("k"), f.leaf("v"));
    let padding = AttentionMask {
        causal: false,
        window: None,
        key_padding: Some(&pad),
    };
    let (y, _) = attn.attend(&q, &k, &v, padding, 0);
    y.backward_with(&f.get("g"));
    f.assert_matches("y", &y);
    for (name, t) in [("dq", &q), ("dk", &k), ("dv", &v)] {
        f.assert_matches(name, &t.grad().unwrap());
    }
    // Causal self-attention with the same padding.
    let (q, k, v) = (f.leaf("sq"), f.leaf("sk"), f.leaf("sv"));
    let both = AttentionMask {
        causal: true,
        window: None,
        key_padding: Some(&pad),
    };
    let (y, _) = attn.attend(&q, &k, &v, both, 0);
    y.backward_with(&f.get("sg"));
    f.assert_matches("sy", &y);
    for (name, t) in [("dsq", &q), ("dsk", &k), ("dsv", &v)] {
        f.assert_matches(name, &t.grad().unwrap());
    }
}
test_device!(masked_attention_matches_scaled_dot_product_attention);

fn post_norm_encoder_layer_with_padding_matches_pytorch(device: &Device) {
    let f = Fixture::load_on("transformer_layers", device);
    let mut rng = StdRng::seed_from_u64(0);
    let config = layer_config(Activation::Relu, NormPlacement::Post);
    let layer = config.init_encoder(device, &mut rng).unwrap();
    load_attention(&f, "enc.self_attn", &layer.self_attn);
    load_linear(&f, "enc.linear1", &layer.ff.fc);
    load_linear(&f, "enc.linear2", &layer.ff.proj);
    load_norm(&f, "enc.norm1", &layer.norm_1);
    load_norm(&f, "enc.norm2", &layer.norm_2);
    let x = f.leaf("x");
    let y = layer.forward(&x, Some(&bools(&f.get("pad"))), None);
    y.backward_with(&f.get("g"));
    f.assert_matches("enc_y", &y);
    f.assert_matches("enc_dx", &x.grad().unwrap());
    f.assert_matches("enc_d_in_proj", &layer.self_attn.qkv.weight.grad().unwrap());
}
test_device!(post_norm_encoder_layer_with_padding_matches_pytorch);

fn pre_norm_decoder_layer_with_cross_attention_matches_pytorch(device: &Device) {
    let f = Fixture::load_on("transformer_layers", device);
    let mut rng = StdRng::seed_from_u64(0);
    let config = layer_config(
        Activation::Gelu(GeluApproximation::None),
        NormPlacement::Pre,
    );
    let layer = config.init_decoder(device, &mut rng).unwrap();
    load_attention(&f, "dec.self_attn", &layer.self_attn);
    load_attention(&f, "dec.multihead_attn", &layer.cross_attn);
    load_linear(&f, "dec.linear1", &layer.ff.fc);
    load_linear(&f, "dec.linear2", &layer.ff.proj);
    load_norm(&f, "dec.norm1", &layer.norm_1);
    load_norm(&f, "dec.norm2", &layer.norm_2);
    load_norm(&f, "dec.norm3", &layer.norm_3);
    let (tgt, memory) = (f.leaf("tgt"), f.leaf("memory"));
    let y = layer.forward(&tgt, &memory, None, Some(&bools(&f.get("pad"))), None, None);
    y.backward_with(&f.get("dg"));
    f.assert_matches("dec_y", &y);
    f.assert_matches("dec_dtgt", &tgt.grad().unwrap());
    f.assert_matches("dec_dmemory", &memory.grad().unwrap());
    f.assert_matches(
        "dec_d_cross_in_proj",
        &layer.cross_attn.qkv.weight.grad().unwrap(),
    );
}
test_device!(pre_norm_decoder_layer_with_cross_attention_matches_pytorch);
