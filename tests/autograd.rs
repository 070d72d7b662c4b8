//! Behaviour of the graph walk itself: deep chains, accumulation, no_grad,
//! detach, repeated backward.

use zeroformer::prelude::*;

#[test]
fn a_chain_of_100k_ops_backpropagates_and_drops_without_overflow() {
    // Run on a thread with a small stack: recursion of any depth in the
    // walk or in Drop would overflow it.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let x = Tensor::from_vec(vec![1.0], &[1]).requires_grad();
            let mut y = x.clone();
            for _ in 0..100_000 {
                y = y.mul_scalar(1.0).add_scalar(0.0);
            }
            y.sum().backward();
            assert_eq!(x.grad().unwrap().to_vec(), vec![1.0]);

            // A chain dropped without ever running backward.
            let mut z = x.clone();
            for _ in 0..100_000 {
                z = z.add_scalar(1.0);
            }
            assert_eq!(z.to_vec(), vec![100_001.0]);
            drop(z);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn gradients_accumulate_across_uses_and_across_backward_calls() {
    let x = Tensor::from_vec(vec![2.0, 3.0], &[2]).requires_grad();
    // y = x*x + 3x: dy/dx = 2x + 3
    x.mul(&x).add(&x.mul_scalar(3.0)).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![7.0, 9.0]);
    // A second backward adds to .grad, as in PyTorch.
    x.mul_scalar(2.0).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![9.0, 11.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn gradient_of_sum_is_ones() {
    let x = Tensor::randn(&[3, 4], &mut StdRng::seed_from_u64(1)).requires_grad();
    x.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![1.0; 12]);
}

#[test]
fn backward_with_an_explicit_upstream_gradient() {
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).requires_grad();
    let y = x.mul_scalar(2.0);
    y.backward_with(&Tensor::from_vec(vec![1.0, 10.0, 100.0], &[3]));
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 20.0, 200.0]);
}

#[test]
fn no_grad_and_detach_stop_recording() {
    let w = Tensor::ones(&[2]).requires_grad();
    assert!(!no_grad(|| w.mul(&w)).is_leaf_requiring_grad());
    assert!(!no_grad(|| w.mul(&w)).is_tracked());
    let d = w.detach();
    assert!(!d.is_tracked());
    // Gradient flows through w only, not through the detached copy.
    w.mul(&d.mul_scalar(5.0)).sum().backward();
    assert_eq!(w.grad().unwrap().to_vec(), vec![5.0, 5.0]);
    // no_grad restores the previous mode, even inside nesting.
    no_grad(|| no_grad(|| ()));
    assert!(w.exp().is_tracked());
}

#[test]
fn only_leaves_that_require_grad_get_gradients() {
    let a = Tensor::ones(&[2]).requires_grad();
    let b = Tensor::ones(&[2]);
    let h = a.mul(&b);
    h.sum().backward();
    assert!(a.grad().is_some());
    assert!(b.grad().is_none());
    assert!(h.grad().is_none());
}

#[test]
#[should_panic(expected = "backward: needs a one-element tensor")]
fn backward_on_a_non_scalar_panics_with_the_shape() {
    Tensor::ones(&[2]).requires_grad().exp().backward();
}

#[test]
#[should_panic(expected = "matmul: inner dimensions differ, shapes [2, 3] and [4, 5]")]
fn shape_errors_name_the_op_and_both_shapes() {
    Tensor::zeros(&[2, 3]).matmul(&Tensor::zeros(&[4, 5]));
}

#[test]
#[should_panic(expected = "add: shapes [2, 3] and [4] cannot be broadcast together")]
fn broadcast_errors_name_the_op_and_both_shapes() {
    let _ = Tensor::zeros(&[2, 3]) + Tensor::zeros(&[4]);
}
