//! Ops defined outside the crate (`autograd::custom_op` with a user's
//! `Backward`): a one-input op and a two-input op that reuses its output,
//! gradient-checked and against the same function composed from built-in
//! ops, on every device; no graph when nothing needs a gradient; and a rule
//! returning a wrong shape is refused naming the op.

#[macro_use]
mod common;

use zeroformer::autograd::{Backward, custom_op};
use zeroformer::gradcheck::GradCheck;
use zeroformer::prelude::*;

/// softplus(x) = ln(1 + eˣ); its derivative is sigmoid(x).
struct SoftplusBackward;

impl Backward for SoftplusBackward {
    fn name(&self) -> &'static str {
        "softplus"
    }

    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        vec![Some(grad.mul(&inputs[0].sigmoid()))]
    }
}

fn softplus(x: &Tensor) -> Tensor {
    custom_op(
        &[x],
        |xs| xs[0].exp().add_scalar(1.0).log(),
        |_| SoftplusBackward,
    )
}

/// hypot(a, b) = √(a² + b²), elementwise; its gradients are a / h and b /
/// h, read from the saved output h.
struct HypotBackward {
    out: Tensor,
}

impl Backward for HypotBackward {
    fn name(&self) -> &'static str {
        "hypot"
    }

    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let scale = grad.div(&self.out);
        vec![Some(scale.mul(&inputs[0])), Some(scale.mul(&inputs[1]))]
    }
}

fn hypot(a: &Tensor, b: &Tensor) -> Tensor {
    custom_op(
        &[a, b],
        |xs| xs[0].square().add(&xs[1].square()).sqrt(),
        |out| HypotBackward { out },
    )
}

fn inputs(device: &Device) -> (Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(3);
    let a = Tensor::randn(&[3, 5], &mut rng).to_device(device).unwrap();
    let b = Tensor::uniform(&[3, 5], 0.5, 2.0, &mut rng)
        .to_device(device)
        .unwrap();
    (a, b)
}

fn user_ops_pass_gradient_checks(device: &Device) {
    let (a, b) = inputs(device);
    GradCheck::default()
        .check(|x| softplus(&x[0]), std::slice::from_ref(&a))
        .unwrap_or_else(|e| panic!("softplus: {e}"));
    GradCheck::default()
        .check(|x| hypot(&x[0], &x[1]), &[a, b])
        .unwrap_or_else(|e| panic!("hypot: {e}"));
}

test_device!(user_ops_pass_gradient_checks);

/// The ops inside a model-like expression equal the same functions
/// composed from built-in ops, values and gradients.
fn user_ops_equal_their_composed_forms(device: &Device) {
    let (a, b) = inputs(device);
    let run = |custom: bool| {
        let (a, b) = (a.clone().requires_grad(), b.clone().requires_grad());
        let y = if custom {
            softplus(&hypot(&a, &b).mul(&a))
        } else {
            let h = a.square().add(&b.square()).sqrt();
            h.mul(&a).exp().add_scalar(1.0).log()
        };
        y.sum().backward();
        [y.detach(), a.grad().unwrap(), b.grad().unwrap()].map(|t| t.to_vec())
    };
    let (custom, composed) = (run(true), run(false));
    for (which, (x, y)) in ["value", "da", "db"]
        .iter()
        .zip(custom.iter().zip(&composed))
    {
        for (p, q) in x.iter().zip(y) {
            assert!(
                (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                "{which}: {p} vs {q}"
            );
        }
    }
}

test_device!(user_ops_equal_their_composed_forms);

#[test]
fn no_graph_when_nothing_needs_a_gradient() {
    let (a, b) = inputs(&Device::Cpu);
    assert!(!hypot(&a, &b).is_tracked());
    let a = a.requires_grad();
    assert!(hypot(&a, &b).is_tracked());
    assert!(!no_grad(|| hypot(&a, &b)).is_tracked());
}

/// A rule that returns its gradient in the wrong shape.
struct WrongShape;

impl Backward for WrongShape {
    fn name(&self) -> &'static str {
        "wrong_shape"
    }

    fn backward(&self, grad: &Tensor, _: &[Tensor]) -> Vec<Option<Tensor>> {
        vec![Some(grad.sum())]
    }
}

#[test]
#[should_panic(expected = "wrong_shape: input 0's gradient is [] on Cpu, the input [3, 5] on Cpu")]
fn a_rule_returning_the_wrong_shape_is_refused_by_name() {
    let (a, _) = inputs(&Device::Cpu);
    let a = a.requires_grad();
    custom_op(&[&a], |xs| xs[0].mul_scalar(2.0), |_| WrongShape)
        .sum()
        .backward();
}
