//! The crate against PyTorch 2.15 on composite cases. Fixtures come from
//! `scripts/make_fixtures.py` (run by hand; it needs torch). Every value
//! must match to 1e-5 relative (plus 1e-6 absolute, for values near zero).

#[macro_use]
mod common;

use common::Fixture;
use zeroformer::prelude::*;

fn two_layer_mlp_forward_and_every_gradient(device: &Device) {
    let f = Fixture::load_on("mlp", device);
    let (x, w1, b1, w2, b2) = (
        f.leaf("x"),
        f.leaf("w1"),
        f.leaf("b1"),
        f.leaf("w2"),
        f.leaf("b2"),
    );
    let h = x.matmul(&w1).add(&b1).gelu(GeluApproximation::Tanh);
    let logits = h.matmul(&w2).add(&b2);
    let loss = logits.cross_entropy(&f.ids("targets"));
    loss.backward();
    f.assert_matches("logits", &logits);
    f.assert_matches("loss", &loss);
    for (name, t) in [
        ("dx", &x),
        ("dw1", &w1),
        ("db1", &b1),
        ("dw2", &w2),
        ("db2", &b2),
    ] {
        f.assert_matches(name, &t.grad().unwrap());
    }
}
test_device!(two_layer_mlp_forward_and_every_gradient);

fn layer_norm_forward_and_backward(device: &Device) {
    let f = Fixture::load_on("layer_norm", device);
    let (x, w, b) = (f.leaf("x"), f.leaf("w"), f.leaf("b"));
    let y = x.layer_norm(Some(&w), Some(&b), 1e-5);
    y.backward_with(&f.get("g"));
    f.assert_matches("y", &y);
    f.assert_matches("dx", &x.grad().unwrap());
    f.assert_matches("dw", &w.grad().unwrap());
    f.assert_matches("db", &b.grad().unwrap());
}
test_device!(layer_norm_forward_and_backward);

fn softmax_log_softmax_and_cross_entropy(device: &Device) {
    let f = Fixture::load_on("softmax_cross_entropy", device);
    let logits = f.leaf("logits");
    let g = f.get("g");
    let p = logits.softmax(-1);
    let lp = logits.log_softmax(-1);
    let loss = logits.cross_entropy(&f.ids("targets"));
    p.mul(&g)
        .sum()
        .add(&lp.mul(&g).sum().mul_scalar(0.5))
        .add(&loss)
        .backward();
    f.assert_matches("softmax", &p);
    f.assert_matches("log_softmax", &lp);
    f.assert_matches("loss", &loss);
    f.assert_matches("dlogits", &logits.grad().unwrap());
}
test_device!(softmax_log_softmax_and_cross_entropy);

fn batched_matmul_with_broadcast_batch_dims(device: &Device) {
    let f = Fixture::load_on("batched_matmul", device);
    let (a, b) = (f.leaf("a"), f.leaf("b"));
    let c = a.matmul(&b);
    c.backward_with(&f.get("g"));
    f.assert_matches("c", &c);
    f.assert_matches("da", &a.grad().unwrap());
    f.assert_matches("db", &b.grad().unwrap());
}
test_device!(batched_matmul_with_broadcast_batch_dims);

fn exact_gelu_values_and_gradient(device: &Device) {
    let f = Fixture::load_on("gelu_exact", device);
    let x = f.leaf("x");
    let y = x.gelu(GeluApproximation::None);
    y.sum().backward();
    f.assert_matches("y", &y);
    f.assert_matches("dx", &x.grad().unwrap());
}
test_device!(exact_gelu_values_and_gradient);
