//! Fits a small MLP to `y = sin(x)` on [-3, 3] with plain gradient descent,
//! printing the falling loss. Everything is tensors and `backward()`: no
//! layers or optimizers yet, so the training loop shows all the moving parts.
//!
//! cargo run --release --example autograd_basics

use zeroformer::prelude::*;

fn main() {
    let mut rng = StdRng::seed_from_u64(0);
    // 256 points of the target function, as a [256, 1] column.
    let x = Tensor::arange(-3.0, 3.0, 6.0 / 256.0).reshape(&[256, 1]);
    let y = x.to_vec().iter().map(|v| v.sin()).collect::<Vec<f32>>();
    let y = Tensor::from_vec(y, &[256, 1]);

    // One hidden layer of 32 tanh-GELU units, a small output layer so that early steps stay stable.
    let hidden = 32;
    let w1 = Tensor::randn(&[1, hidden], &mut rng).requires_grad();
    let b1 = Tensor::zeros(&[hidden]).requires_grad();
    let w2 = Tensor::randn(&[hidden, 1], &mut rng)
        .mul_scalar(0.1)
        .detach()
        .requires_grad();
    let b2 = Tensor::zeros(&[1]).requires_grad();
    let params = [&w1, &b1, &w2, &b2];

    let lr = 0.03;
    let steps = 5000;
    for step in 0..=steps {
        let pred = x
            .matmul(&w1)
            .add(&b1)
            .gelu(GeluApproximation::Tanh)
            .matmul(&w2)
            .add(&b2);
        let loss = pred.sub(&y).square().mean();
        loss.backward();
        for p in params {
            let g = p.grad().expect("every parameter is used").to_vec();
            p.update_data(|w| w.iter_mut().zip(&g).for_each(|(w, g)| *w -= lr * g));
            p.zero_grad();
        }
        if step % 500 == 0 {
            println!("step {step:5}  mse {:.6}", loss.item());
        }
    }

    let probe = Tensor::from_vec(vec![-2.0, -0.5, 1.0, 2.5], &[4, 1]);
    let fit = no_grad(|| {
        probe
            .matmul(&w1)
            .add(&b1)
            .gelu(GeluApproximation::Tanh)
            .matmul(&w2)
            .add(&b2)
    });
    for (x, f) in probe.to_vec().iter().zip(fit.to_vec()) {
        println!("sin({x:5.2}) = {:7.4}   model: {f:7.4}", x.sin());
    }
}
