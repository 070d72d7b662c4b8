//! The crate against PyTorch 2.15 on composite cases. Fixtures come from
//! `scripts/make_fixtures.py` (run by hand; it needs torch). Every value
//! must match to 1e-5 relative (plus 1e-6 absolute, for values near zero).

mod common;

use common::Fixture;
use zeroformer::prelude::*;

#[test]
fn two_layer_mlp_forward_and_every_gradient() {
    let f = Fixture::load("mlp");
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

#[test]
fn layer_norm_forward_and_backward() {
    let f = Fixture::load("layer_norm");
    let (x, w, b) = (f.leaf("x"), f.leaf("w"), f.leaf("b"));
    let y = x.layer_norm(Some(&w), Some(&b), 1e-5);
    y.backward_with(&f.get("g"));
    f.assert_matches("y", &y);
    f.assert_matches("dx", &x.grad().unwrap());
    f.assert_matches("dw", &w.grad().unwrap());
    f.assert_matches("db", &b.grad().unwrap());
}

#[test]
fn softmax_log_softmax_and_cross_entropy() {
    let f = Fixture::load("softmax_cross_entropy");
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

#[test]
fn batched_matmul_with_broadcast_batch_dims() {
    let f = Fixture::load("batched_matmul");
    let (a, b) = (f.leaf("a"), f.leaf("b"));
    let c = a.matmul(&b);
    c.backward_with(&f.get("g"));
    f.assert_matches("c", &c);
    f.assert_matches("da", &a.grad().unwrap());
    f.assert_matches("db", &b.grad().unwrap());
}

#[test]
fn exact_gelu_values_and_gradient() {
    let f = Fixture::load("gelu_exact");
    let x = f.leaf("x");
    let y = x.gelu(GeluApproximation::None);
    y.sum().backward();
    f.assert_matches("y", &y);
    f.assert_matches("dx", &x.grad().unwrap());
}
