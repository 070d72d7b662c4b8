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

/// Windows of one tensor (q, k and v narrowed out of one projection, two of
/// them overlapping here) behind a tracked op: the engine adds each window's
/// gradient into the sum in place. Checked against the closed form, for
/// both orders in which the windows' gradients can arrive.
#[test]
fn narrowed_windows_accumulate_their_gradients() {
    let w: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
    let upstream = Tensor::from_vec(w.clone(), &[2, 3, 4]);
    for reversed in [false, true] {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let x = Tensor::randn(&[2, 3, 10], &mut rng).requires_grad();
        // A tracked op in between, so the windows' input is not a leaf.
        let h = x.mul_scalar(2.0);
        let windows = [(0, 4), (4, 4), (6, 4)];
        let mut terms: Vec<Tensor> = windows
            .iter()
            .enumerate()
            .map(|(i, &(start, len))| {
                h.narrow(2, start, len)
                    .mul(&upstream.mul_scalar(i as f32 + 1.0))
                    .sum()
            })
            .collect();
        if reversed {
            terms.reverse();
        }
        let loss = terms[1..].iter().fold(terms[0].clone(), |s, t| s.add(t));
        loss.backward();
        // d loss / d x[.., .., c] = 2 · Σ over windows holding c of
        // (window number + 1) · w[.., .., c - start].
        let mut want = vec![0.0f32; 60];
        for (i, &(start, len)) in windows.iter().enumerate() {
            for row in 0..6 {
                for j in 0..len {
                    want[row * 10 + start + j] += 2.0 * (i as f32 + 1.0) * w[row * 4 + j];
                }
            }
        }
        assert_eq!(x.grad().unwrap().to_vec(), want, "reversed: {reversed}");
    }
}

/// The gradient summed so far for a tensor may be shared with another
/// input's (an add hands both inputs the same gradient): a window must not
/// be added into it in place, or the other input's gradient changes too.
#[test]
fn a_shared_gradient_is_not_added_into_in_place() {
    for reversed in [false, true] {
        let x = Tensor::from_vec(vec![1.0; 8], &[2, 4]).requires_grad();
        let y = Tensor::from_vec(vec![2.0; 8], &[2, 4]).requires_grad();
        let (hx, hy) = (x.mul_scalar(1.0), y.mul_scalar(1.0));
        let both = hx.add(&hy).sum();
        let window = hx.narrow(1, 1, 2).mul_scalar(5.0).sum();
        let loss = if reversed {
            window.add(&both)
        } else {
            both.add(&window)
        };
        loss.backward();
        assert_eq!(
            y.grad().unwrap().to_vec(),
            vec![1.0; 8],
            "reversed: {reversed}"
        );
        assert_eq!(
            x.grad().unwrap().to_vec(),
            vec![1.0, 6.0, 6.0, 1.0, 1.0, 6.0, 6.0, 1.0],
            "reversed: {reversed}"
        );
    }
}
