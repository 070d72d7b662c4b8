//! The ops at their extremes (saturation, underflow, zero variance, scores
//! in the hundreds) against float64 references from
//! `scripts/make_extreme_fixtures.py`, to the parity tests' tolerance of
//! 1e-5 relative plus 1e-6 absolute. Fast approximations (the rational tanh
//! of GELU, the polynomial exp of softmax and attention) must saturate
//! where the exact functions do.

#[macro_use]
mod common;

use common::Fixture;
use zeroformer::ops::attention::AttentionMask;
use zeroformer::prelude::*;

/// Value and gradient (of the sum) of an elementwise op at every test point.
fn check_elementwise(f: &Fixture, input: &str, name: &str, op: impl Fn(&Tensor) -> Tensor) {
    let x = f.leaf(input);
    let y = op(&x);
    y.sum().backward();
    f.assert_matches(&format!("{name}_y"), &y);
    f.assert_matches(&format!("{name}_dx"), &x.grad().unwrap());
}

fn activations_saturate_exactly(device: &Device) {
    let f = Fixture::load_on("extremes", device);
    check_elementwise(&f, "x", "gelu_tanh", |x| x.gelu(GeluApproximation::Tanh));
    check_elementwise(&f, "x", "gelu", |x| x.gelu(GeluApproximation::None));
    check_elementwise(&f, "x", "sigmoid", Tensor::sigmoid);
    check_elementwise(&f, "x", "silu", Tensor::silu);
    check_elementwise(&f, "x", "tanh", Tensor::tanh);
    check_elementwise(&f, "exp_x", "exp", Tensor::exp);
}
test_device!(activations_saturate_exactly);

fn tanh_gelu_gradient_is_exactly_zero_and_one_far_out(device: &Device) {
    let x = Tensor::from_vec_on(vec![-50.0, -30.0, -20.0, 20.0, 30.0, 50.0], &[6], device)
        .unwrap()
        .requires_grad();
    x.gelu(GeluApproximation::Tanh).sum().backward();
    assert_eq!(
        x.grad().unwrap().to_vec(),
        vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    );
}
test_device!(tanh_gelu_gradient_is_exactly_zero_and_one_far_out);

fn softmax_log_softmax_and_cross_entropy_far_apart_logits(device: &Device) {
    let f = Fixture::load_on("extremes", device);
    let g = f.get("sm_g");
    let softmax = |t: &Tensor| t.softmax(-1);
    let log_softmax = |t: &Tensor| t.log_softmax(-1);
    for (name, op) in [
        ("softmax", &softmax as &dyn Fn(&Tensor) -> Tensor),
        ("log_softmax", &log_softmax),
    ] {
        let logits = f.leaf("sm_logits");
        let y = op(&logits);
        y.mul(&g).sum().backward();
        f.assert_matches(&format!("{name}_y"), &y);
        f.assert_matches(&format!("{name}_dlogits"), &logits.grad().unwrap());
    }
    let logits = f.leaf("sm_logits");
    let loss = logits.cross_entropy(&f.ids("ce_targets"));
    loss.backward();
    f.assert_matches("ce_loss", &loss);
    f.assert_matches("ce_dlogits", &logits.grad().unwrap());
}
test_device!(softmax_log_softmax_and_cross_entropy_far_apart_logits);

fn layer_norm_of_constant_huge_and_tiny_rows(device: &Device) {
    let f = Fixture::load_on("extremes", device);
    let (x, w, b) = (f.leaf("ln_x"), f.leaf("ln_w"), f.leaf("ln_b"));
    let y = x.layer_norm(Some(&w), Some(&b), 1e-5);
    y.backward_with(&f.get("ln_g"));
    f.assert_matches("ln_y", &y);
    f.assert_matches("ln_dx", &x.grad().unwrap());
    f.assert_matches("ln_dw", &w.grad().unwrap());
    f.assert_matches("ln_db", &b.grad().unwrap());
}
test_device!(layer_norm_of_constant_huge_and_tiny_rows);

fn attention_with_scores_in_the_hundreds(device: &Device) {
    let f = Fixture::load_on("extremes", device);
    let (q, k, v) = (f.leaf("att_q"), f.leaf("att_k"), f.leaf("att_v"));
    let y = Tensor::scaled_dot_product_attention(&q, &k, &v, AttentionMask::CAUSAL, 0);
    y.backward_with(&f.get("att_g"));
    f.assert_matches("att_y", &y);
    f.assert_matches("att_dv", &v.grad().unwrap());
    // dq and dk cancel terms near 30 to values near 0, below float32's
    // rounding floor there: each element must lie within the forward error
    // bound of its sum that the script computes (a few 1e-6).
    for (name, got) in [("att_dq", q.grad().unwrap()), ("att_dk", k.grad().unwrap())] {
        let (reference, bound) = (
            f.get(name).to_vec(),
            f.get(&format!("{name}_bound")).to_vec(),
        );
        for (i, (a, (e, b))) in got
            .to_vec()
            .iter()
            .zip(reference.iter().zip(&bound))
            .enumerate()
        {
            assert!(
                (a - e).abs() <= *b,
                "{name}[{i}]: zeroformer {a} vs {e}, beyond the rounding bound {b}"
            );
        }
    }
}
test_device!(attention_with_scores_in_the_hundreds);
