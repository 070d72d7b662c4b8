//! Ops checked against answers known in closed form.

#[macro_use]
mod common;

use approx::assert_relative_eq;
use zeroformer::prelude::*;

/// `t` on `device`.
fn on(device: &Device, t: Tensor) -> Tensor {
    t.to_device(device).expect("the test's device is usable")
}

fn softmax_rows_sum_to_one_over_any_dim(device: &Device) {
    let x = on(
        device,
        Tensor::randn(&[3, 4, 5], &mut StdRng::seed_from_u64(0)),
    )
    .mul_scalar(10.0);
    for d in 0..3 {
        let s = x.softmax(d).sum_dim(d, false);
        for v in s.to_vec() {
            assert_relative_eq!(v, 1.0, epsilon = 1e-6);
        }
    }
    // log_softmax is the log of softmax.
    let (a, b) = (x.log_softmax(1).to_vec(), x.softmax(1).log().to_vec());
    for (a, b) in a.iter().zip(&b) {
        assert_relative_eq!(a, b, epsilon = 1e-5);
    }
}

test_device!(softmax_rows_sum_to_one_over_any_dim);

fn cross_entropy_of_uniform_logits_is_ln_classes(device: &Device) {
    for classes in [2usize, 10, 65, 50257] {
        let logits = on(device, Tensor::full(&[3, classes], 0.7));
        let targets = on(
            device,
            Tensor::from_ids(vec![0, (classes - 1) as i64, 1], &[3]),
        );
        assert_relative_eq!(
            logits.cross_entropy(&targets).item(),
            (classes as f32).ln(),
            max_relative = 1e-6
        );
    }
}

test_device!(cross_entropy_of_uniform_logits_is_ln_classes);

fn cross_entropy_gradient_is_softmax_minus_one_hot_over_count(device: &Device) {
    let logits = on(
        device,
        Tensor::randn(&[4, 3], &mut StdRng::seed_from_u64(1)),
    )
    .requires_grad();
    let targets = on(device, Tensor::from_ids(vec![2, -100, 0, 1], &[4]));
    logits.cross_entropy(&targets).backward();
    let p = logits.softmax(-1).to_vec();
    let g = logits.grad().unwrap().to_vec();
    let targets = [2i64, -100, 0, 1];
    for (r, &t) in targets.iter().enumerate() {
        for c in 0..3 {
            let expected = if t < 0 {
                0.0
            } else {
                (p[r * 3 + c] - if c as i64 == t { 1.0 } else { 0.0 }) / 3.0
            };
            assert_relative_eq!(g[r * 3 + c], expected, epsilon = 1e-6);
        }
    }
}

test_device!(cross_entropy_gradient_is_softmax_minus_one_hot_over_count);

fn layer_norm_rows_have_zero_mean_and_unit_variance(device: &Device) {
    let x = on(
        device,
        Tensor::randn(&[6, 32], &mut StdRng::seed_from_u64(2)),
    )
    .mul_scalar(3.0)
    .add_scalar(5.0);
    let y = x.layer_norm(None, None, 1e-5);
    for m in y.mean_dim(1, false).to_vec() {
        assert!(m.abs() < 1e-5, "row mean {m}");
    }
    for v in y.var_dim(1, false, false).to_vec() {
        // 1 - eps/var, the eps being inside the square root.
        assert_relative_eq!(v, 1.0, epsilon = 1e-4);
    }
    // The affine part: weight 2, bias -1 maps mean 0 / var 1 to mean -1 / var 4.
    let z = x.layer_norm(
        Some(&on(device, Tensor::full(&[32], 2.0))),
        Some(&on(device, Tensor::full(&[32], -1.0))),
        1e-5,
    );
    for m in z.mean_dim(1, false).to_vec() {
        assert_relative_eq!(m, -1.0, epsilon = 1e-5);
    }
}

test_device!(layer_norm_rows_have_zero_mean_and_unit_variance);

fn activations_match_their_formulas(device: &Device) {
    let x = on(
        device,
        Tensor::from_vec(vec![-3.0, -0.5, 0.0, 0.5, 3.0], &[5]),
    );
    let v = x.to_vec();
    let erf_gelu = x.gelu(GeluApproximation::None).to_vec();
    // Φ(x) = 0.5 (1 + erf(x / √2)), values of erf from tables.
    let expected = [-0.004_049_6, -0.154_268_5, 0.0, 0.345_731_5, 2.995_950_4];
    for (a, e) in erf_gelu.iter().zip(expected) {
        assert_relative_eq!(*a, e, epsilon = 1e-6);
    }
    let tanh_gelu = x.gelu(GeluApproximation::Tanh).to_vec();
    for (a, &xv) in tanh_gelu.iter().zip(&v) {
        let u =
            (2.0f64 / std::f64::consts::PI).sqrt() * (xv as f64 + 0.044715 * (xv as f64).powi(3));
        assert_relative_eq!(
            *a as f64,
            0.5 * xv as f64 * (1.0 + u.tanh()),
            epsilon = 1e-6
        );
    }
    let sig = x.sigmoid().to_vec();
    for (s, &xv) in sig.iter().zip(&v) {
        assert_relative_eq!(*s, 1.0 / (1.0 + (-xv).exp()), epsilon = 1e-7);
    }
    // No overflow at the extremes.
    let big = on(device, Tensor::from_vec(vec![-1000.0, 1000.0], &[2]))
        .sigmoid()
        .to_vec();
    assert_eq!(big, vec![0.0, 1.0]);
}

test_device!(activations_match_their_formulas);

fn var_is_unbiased_by_default_like_pytorch(device: &Device) {
    let x = on(device, Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[4]));
    assert_relative_eq!(x.var_dim(0, false, true).item(), 5.0 / 3.0, epsilon = 1e-6);
    assert_relative_eq!(x.var_dim(0, false, false).item(), 1.25, epsilon = 1e-6);
}

test_device!(var_is_unbiased_by_default_like_pytorch);

fn matmul_matches_a_naive_triple_loop_on_large_parallel_shapes(device: &Device) {
    // Big enough for the rayon row-block split, with transposed operands.
    let mut rng = StdRng::seed_from_u64(3);
    let (m, k, n) = (301, 67, 129);
    let a = on(device, Tensor::randn(&[k, m], &mut rng)).t();
    let b = on(device, Tensor::randn(&[n, k], &mut rng)).t();
    let c = a.matmul(&b).to_vec();
    let (av, bv) = (a.to_vec(), b.to_vec());
    for i in (0..m).step_by(37) {
        for j in (0..n).step_by(11) {
            let e: f64 = (0..k)
                .map(|p| av[i * k + p] as f64 * bv[p * n + j] as f64)
                .sum();
            assert_relative_eq!(c[i * n + j] as f64, e, epsilon = 1e-4);
        }
    }
}

test_device!(matmul_matches_a_naive_triple_loop_on_large_parallel_shapes);

fn fused_causal_softmax_equals_masked_fill_then_softmax(device: &Device) {
    let x = on(
        device,
        Tensor::randn(&[2, 3, 5, 5], &mut StdRng::seed_from_u64(4)),
    )
    .mul_scalar(3.0);
    let fused = x.causal_softmax(0.7, 0).to_vec();
    let unfused = x
        .mul_scalar(0.7)
        .masked_fill(&on(device, Tensor::causal_mask(5)), f32::NEG_INFINITY)
        .softmax(-1)
        .to_vec();
    for (a, b) in fused.iter().zip(&unfused) {
        assert_relative_eq!(a, b, epsilon = 1e-6);
    }
    // With an offset of 2, query i (at position i + 2) sees keys 0..=i+2 of 6.
    let y = on(device, Tensor::zeros(&[2, 6]))
        .causal_softmax(1.0, 2)
        .to_vec();
    let third = 1.0 / 3.0;
    assert_eq!(&y[..6], &[third, third, third, 0.0, 0.0, 0.0]);
    assert_eq!(&y[6..], &[0.25, 0.25, 0.25, 0.25, 0.0, 0.0]);
}

test_device!(fused_causal_softmax_equals_masked_fill_then_softmax);

fn everyday_ops_match_their_definitions(device: &Device) {
    let x = on(
        device,
        Tensor::from_vec(vec![-2.5, -0.0, 0.5, f32::NAN, 3.0], &[5]),
    );
    let (abs, clamped) = (x.abs().to_vec(), x.clamp(-1.0, 1.0).to_vec());
    assert_eq!(&abs[..3], &[2.5, 0.0, 0.5]);
    assert!(abs[3].is_nan() && abs[4] == 3.0);
    assert_eq!(&clamped[..3], &[-1.0, -0.0, 0.5]);
    assert!(clamped[3].is_nan(), "clamp keeps NaN");
    assert_eq!(clamped[4], 1.0);
    let angles = on(device, Tensor::from_vec(vec![0.0, 1.0, -2.0], &[3]));
    for ((s, c), a) in angles
        .sin()
        .to_vec()
        .iter()
        .zip(angles.cos().to_vec())
        .zip([0.0f32, 1.0, -2.0])
    {
        assert_relative_eq!(*s, a.sin(), epsilon = 1e-7);
        assert_relative_eq!(c, a.cos(), epsilon = 1e-7);
    }
    // maximum/minimum return NaN where either side is NaN.
    let y = on(
        device,
        Tensor::from_vec(vec![0.0, 1.0, 0.0, 2.0, f32::NAN], &[5]),
    );
    let (hi, lo) = (x.maximum(&y).to_vec(), x.minimum(&y).to_vec());
    assert_eq!(&hi[..3], &[0.0, 1.0, 0.5]);
    assert_eq!(&lo[..2], &[-2.5, -0.0]);
    assert!(hi[3].is_nan() && hi[4].is_nan() && lo[3].is_nan() && lo[4].is_nan());
}

fn casts_between_dtypes(device: &Device) {
    let x = on(
        device,
        Tensor::from_vec(vec![-1.7, -0.0, 0.4, 2.9, 1e20], &[5]),
    );
    assert_eq!(
        x.to_dtype(DType::I64).to_vec_i64(),
        vec![-1, 0, 0, 2, i64::MAX]
    );
    assert_eq!(
        x.to_dtype(DType::Bool).to_vec_bool(),
        vec![true, false, true, true, true]
    );
    let ids = on(device, Tensor::from_ids(vec![-3, 0, 7], &[3]));
    assert_eq!(ids.to_dtype(DType::F32).to_vec(), vec![-3.0, 0.0, 7.0]);
    assert_eq!(
        ids.to_dtype(DType::Bool).to_vec_bool(),
        vec![true, false, true]
    );
    let mask = on(device, Tensor::from_bools(vec![true, false], &[2]));
    assert_eq!(mask.to_dtype(DType::I64).to_vec_i64(), vec![1, 0]);
    assert_eq!(mask.to_dtype(DType::F32).to_vec(), vec![1.0, 0.0]);
    // A cast from a transposed view follows the view's order.
    let t = on(device, Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])).t();
    assert_eq!(t.to_dtype(DType::I64).to_vec_i64(), vec![1, 3, 2, 4]);
    // To its own dtype: the same tensor, graph included.
    let w = on(device, Tensor::ones(&[2])).requires_grad();
    assert_eq!(w.to_dtype(DType::F32).id(), w.id());
}

fn cumsum_topk_and_gather_by_hand(device: &Device) {
    // 1e8 + 1 - 1e8: f64 accumulation keeps the 1 that f32 would lose.
    let x = on(device, Tensor::from_vec(vec![1e8, 1.0, -1e8, 1.0], &[4]));
    assert_eq!(x.cumsum(0).to_vec(), vec![1e8, 1e8, 1.0, 2.0]);
    let v = on(
        device,
        Tensor::from_vec(vec![1.0, 3.0, 3.0, f32::NAN, -1.0, 2.0], &[2, 3]),
    );
    let (values, indices) = v.topk(2, 1);
    assert_eq!(indices.to_vec_i64(), vec![1, 2, 0, 2]);
    let values = values.to_vec();
    assert_eq!(&values[..2], &[3.0, 3.0]);
    assert!(values[2].is_nan(), "NaN counts as the largest");
    assert_eq!(values[3], 2.0);
    assert_eq!(v.argmin_dim(1, false).to_vec_i64()[0], 0);
    assert_eq!(v.min_dim(1, false).to_vec()[0], 1.0);
    // gather along dim 0: out[0][j] = v[index[0][j]][j].
    let index = on(device, Tensor::from_ids(vec![1, 0, 1], &[1, 3]));
    let picked = v.gather(0, &index).to_vec();
    assert!(picked[0].is_nan());
    assert_eq!(&picked[1..], &[3.0, 2.0]);
}

#[test]
#[should_panic(expected = "gather: index 3 is out of range for dimension 1 of size 3")]
fn gather_out_of_range_panics_naming_the_op() {
    let x = Tensor::zeros(&[2, 3]);
    x.gather(1, &Tensor::from_ids(vec![0, 3], &[2, 1]));
}
test_device!(everyday_ops_match_their_definitions);
test_device!(casts_between_dtypes);
test_device!(cumsum_topk_and_gather_by_hand);
