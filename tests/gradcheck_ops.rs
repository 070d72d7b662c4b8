//! A finite-difference gradient check of every differentiable op, on shapes
//! that broadcast and on non-contiguous views. See `zeroformer::gradcheck`
//! for the step and tolerances.

#[macro_use]
mod common;

use zeroformer::gradcheck::GradCheck;
use zeroformer::prelude::*;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, &mut StdRng::seed_from_u64(seed))
}

/// Values in [0.5, 2.5): safe for log, sqrt, division and powers.
fn positive(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, 0.5, 2.5, &mut StdRng::seed_from_u64(seed))
}

/// Distinct values at least 0.1 apart, shuffled: no ties for max, and no
/// element within the finite-difference step of 0 (a relu kink).
fn spaced(shape: &[usize], seed: u64) -> Tensor {
    use rand::seq::SliceRandom;
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n)
        .map(|i| (i as f32 - (n / 2) as f32) * 0.1 + 0.05)
        .collect();
    v.shuffle(&mut StdRng::seed_from_u64(seed));
    Tensor::from_vec(v, shape)
}

/// `t` on `device`.
fn on(device: &Device, t: Tensor) -> Tensor {
    t.to_device(device).expect("the test's device is usable")
}

/// The gradient check of `f` at `inputs`, moved to `device`.
fn check(device: &Device, f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) {
    let inputs: Vec<Tensor> = inputs.iter().map(|t| on(device, t.clone())).collect();
    if let Err(e) = GradCheck::default().check(f, &inputs) {
        panic!("{e}");
    }
}

/// `check` for one input.
fn check1(device: &Device, f: impl Fn(&[Tensor]) -> Tensor, input: &Tensor) {
    check(device, f, std::slice::from_ref(input));
}

fn binary_ops_with_broadcasting(device: &Device) {
    let a = randn(&[2, 3, 4], 1);
    for b in [
        randn(&[3, 1], 2),
        randn(&[4], 3),
        randn(&[1], 4),
        randn(&[2, 3, 4], 5),
    ] {
        check(device, |x| x[0].add(&x[1]), &[a.clone(), b.clone()]);
        check(device, |x| x[0].sub(&x[1]), &[a.clone(), b.clone()]);
        check(device, |x| x[0].mul(&x[1]), &[a.clone(), b.clone()]);
        // Broadcast on the left operand too.
        check(device, |x| x[1].sub(&x[0]), &[a.clone(), b.clone()]);
    }
    check(
        device,
        |x| x[0].div(&x[1]),
        &[a.clone(), positive(&[3, 1], 6)],
    );
    check(device, |x| x[1].div(&x[0]), &[positive(&[4], 7), a.clone()]);
}

fn binary_ops_on_non_contiguous_views(device: &Device) {
    // Both operands transposed, one also narrowed: strided kernels throughout.
    let a = randn(&[4, 3], 8);
    let b = randn(&[5, 4], 9);
    check(
        device,
        |x| x[0].t().mul(&x[1].narrow(0, 1, 3)),
        &[a.clone(), b.clone()],
    );
    check(
        device,
        |x| {
            x[0].t()
                .add(&x[1].t().narrow(1, 0, 4).narrow(0, 0, 3).contiguous())
        },
        &[a, randn(&[4, 3], 10)],
    );
}

fn same_tensor_used_twice_accumulates(device: &Device) {
    check(
        device,
        |x| x[0].mul(&x[0]).add(&x[0]),
        &[randn(&[3, 2], 11)],
    );
}

fn unary_ops(device: &Device) {
    let x = randn(&[3, 5], 12);
    check1(device, |x| x[0].neg(), &x);
    check1(device, |x| x[0].exp(), &x);
    check1(device, |x| x[0].tanh(), &x);
    check1(device, |x| x[0].sigmoid(), &x);
    check1(device, |x| x[0].add_scalar(1.5), &x);
    check1(device, |x| x[0].mul_scalar(-2.5), &x);
    check1(device, |x| x[0].square(), &x);
    check1(device, |x| x[0].gelu(GeluApproximation::None), &x);
    check1(device, |x| x[0].gelu(GeluApproximation::Tanh), &x);
    check1(device, |x| x[0].silu(), &x);
    check(device, |x| x[0].relu(), &[spaced(&[3, 5], 13)]);
    let p = positive(&[3, 5], 14);
    check1(device, |x| x[0].log(), &p);
    check1(device, |x| x[0].sqrt(), &p);
    check1(device, |x| x[0].powf(1.7), &p);
    check(device, |x| x[0].powf(-0.5), &[p]);
    // Operators.
    check1(device, |x| (&x[0] * 2.0 - 1.0) / 4.0 + &x[0], &x);
    // A non-contiguous input.
    check(device, |x| x[0].t().exp(), &[x]);
}

fn saturating_activations_far_from_zero(device: &Device) {
    // Where tanh, erf and the logistic function have saturated, each
    // derivative must be exactly flat (0 or 1), not a rounding error that a
    // polynomial term multiplies.
    let x = Tensor::from_vec(
        vec![
            -50.0, -30.0, -20.0, -10.0, -8.0, -6.0, -5.0, -4.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0,
            30.0, 50.0,
        ],
        &[16],
    );
    // Outputs up to 50 carry up to 3e-6 of rounding, 1.5e-4 once divided by
    // 2ε: a tighter tolerance than the default's 1e-3 + 1%, which a
    // derivative off by 1.6e-3 at x = ±50 would pass.
    let tight = GradCheck {
        atol: 5e-4,
        rtol: 1e-3,
        ..GradCheck::default()
    };
    type Op = fn(&Tensor) -> Tensor;
    let ops: [(&str, Op); 5] = [
        ("gelu(tanh)", |x| x.gelu(GeluApproximation::Tanh)),
        ("gelu", |x| x.gelu(GeluApproximation::None)),
        ("sigmoid", Tensor::sigmoid),
        ("silu", Tensor::silu),
        ("tanh", Tensor::tanh),
    ];
    for (name, op) in ops {
        if let Err(e) = tight.check(|x| op(&x[0]), &[on(device, x.clone())]) {
            panic!("{name}: {e}");
        }
    }
}

fn matmul_2d_batched_and_broadcast(device: &Device) {
    check(
        device,
        |x| x[0].matmul(&x[1]),
        &[randn(&[3, 4], 15), randn(&[4, 5], 16)],
    );
    check(
        device,
        |x| x[0].matmul(&x[1]),
        &[randn(&[2, 3, 4], 17), randn(&[2, 4, 5], 18)],
    );
    // Batch dimensions broadcast: [2,1,3,4] @ [3,4,2] -> [2,3,3,2].
    check(
        device,
        |x| x[0].matmul(&x[1]),
        &[randn(&[2, 1, 3, 4], 19), randn(&[3, 4, 2], 20)],
    );
    // A shared matrix across a batch.
    check(
        device,
        |x| x[0].matmul(&x[1]),
        &[randn(&[2, 3, 4], 21), randn(&[4, 2], 22)],
    );
    // Transposed (non-contiguous) operands.
    check(
        device,
        |x| x[0].t().matmul(&x[1].t()),
        &[randn(&[4, 3], 23), randn(&[5, 4], 24)],
    );
    check(
        device,
        |x| x[0].transpose(-1, -2).matmul(&x[1]),
        &[randn(&[2, 4, 3], 25), randn(&[2, 4, 2], 26)],
    );
}

fn reductions(device: &Device) {
    let x = randn(&[2, 3, 4], 27);
    check1(device, |x| x[0].sum(), &x);
    check1(device, |x| x[0].mean(), &x);
    for d in 0..3 {
        check1(device, |x| x[0].sum_dim(d, false), &x);
        check1(device, |x| x[0].sum_dim(d, true), &x);
        check1(device, |x| x[0].mean_dim(d, true), &x);
        check1(device, |x| x[0].var_dim(d, false, true), &x);
        check1(device, |x| x[0].var_dim(d, true, false), &x);
    }
    let s = spaced(&[2, 3, 4], 28);
    check1(device, |x| x[0].max(), &s);
    for d in [0i32, 1, -1] {
        check1(device, |x| x[0].max_dim(d, false), &s);
        check1(device, |x| x[0].max_dim(d, true), &s);
    }
    // Reductions of a non-contiguous view.
    check1(device, |x| x[0].permute(&[2, 0, 1]).sum_dim(1, false), &x);
    check(device, |x| x[0].transpose(0, 2).max_dim(0, false), &[s]);
}

fn softmax_and_log_softmax_over_every_dim(device: &Device) {
    let x = randn(&[2, 3, 4], 29);
    for d in 0..3 {
        check1(device, |x| x[0].softmax(d), &x);
        check1(device, |x| x[0].log_softmax(d), &x);
    }
    check(device, |x| x[0].t().softmax(-1), &[randn(&[5, 3], 30)]);
}

fn cross_entropy_with_and_without_ignored_targets(device: &Device) {
    let logits = randn(&[5, 4], 31);
    let targets = on(device, Tensor::from_ids(vec![0, 3, 1, 1, 2], &[5]));
    check1(device, |x| x[0].cross_entropy(&targets), &logits);
    let with_ignored = on(device, Tensor::from_ids(vec![0, -100, 1, -100, 2], &[5]));
    check1(device, |x| x[0].cross_entropy(&with_ignored), &logits);
    // [batch, time, classes] logits from a non-contiguous view.
    let t3 = on(device, Tensor::from_ids(vec![0, 1, 2, 3, 0, 1], &[2, 3]));
    check(
        device,
        |x| x[0].permute(&[1, 0, 2]).cross_entropy(&t3),
        &[randn(&[3, 2, 4], 32)],
    );
}

fn masked_fill_and_where(device: &Device) {
    let x = randn(&[2, 3, 3], 33);
    let causal = on(device, Tensor::causal_mask(3));
    check(
        device,
        |x| x[0].masked_fill(&causal, -1e9).softmax(-1),
        std::slice::from_ref(&x),
    );
    let cond = on(device, Tensor::from_bools(vec![true, false, true], &[3]));
    check(
        device,
        |x| Tensor::where_cond(&cond, &x[0], &x[1]),
        &[x.clone(), randn(&[3, 1], 34)],
    );
}

fn embedding_scatter_adds_repeated_ids(device: &Device) {
    let ids = on(device, Tensor::from_ids(vec![1, 3, 1, 0, 1, 3], &[2, 3]));
    check(
        device,
        |x| Tensor::embedding(&ids, &x[0]),
        &[randn(&[4, 5], 35)],
    );
}

fn cat_stack_split_chunk(device: &Device) {
    let (a, b) = (randn(&[2, 3], 36), randn(&[2, 2], 37));
    check(
        device,
        |x| Tensor::cat(&[&x[0], &x[1]], 1),
        &[a.clone(), b.clone()],
    );
    check(
        device,
        |x| Tensor::cat(&[&x[0].t(), &x[1]], 0),
        &[randn(&[2, 2], 38), b.clone()],
    );
    check(
        device,
        |x| Tensor::stack(&[&x[0], &x[1], &x[0]], 1),
        &[a.clone(), randn(&[2, 3], 39)],
    );
    check(
        device,
        |x| x[0].split(2, 1)[1].mul_scalar(3.0),
        &[randn(&[2, 5], 40)],
    );
    check(
        device,
        |x| {
            let parts = x[0].chunk(3, 0);
            parts[0].mul(&parts[2]).add(&parts[1])
        },
        &[randn(&[6, 2], 41)],
    );
}

fn views(device: &Device) {
    let x = randn(&[2, 3, 4], 42);
    check(
        device,
        |x| x[0].reshape(&[4, 6]).mul(&x[0].reshape(&[4, 6])),
        std::slice::from_ref(&x),
    );
    check1(device, |x| x[0].permute(&[2, 0, 1]).reshape(&[4, 6]), &x);
    check1(device, |x| x[0].transpose(0, 2).narrow(1, 1, 2), &x);
    check1(device, |x| x[0].unsqueeze(1).squeeze(1).unsqueeze(-1), &x);
    check1(device, |x| x[0].narrow(2, 1, 1).squeeze(2), &x);
    check(
        device,
        |x| x[0].broadcast_to(&[5, 3, 4]),
        &[randn(&[3, 1], 43)],
    );
    check(device, |x| x[0].t().contiguous(), &[randn(&[3, 4], 44)]);
    check1(device, |x| x[0].flatten(0, 1), &x);
}

fn layer_norm_with_and_without_affine(device: &Device) {
    let x = randn(&[4, 6], 45);
    let (w, b) = (randn(&[6], 46), randn(&[6], 47));
    check(
        device,
        |x| x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5),
        &[x.clone(), w.clone(), b.clone()],
    );
    check1(device, |x| x[0].layer_norm(None, None, 1e-5), &x);
    check(
        device,
        |x| x[0].layer_norm(Some(&x[1]), None, 1e-5),
        &[x.clone(), w],
    );
    // A 3-D, non-contiguous input.
    check(
        device,
        |x| x[0].transpose(0, 1).layer_norm(None, Some(&x[1]), 1e-5),
        &[randn(&[3, 2, 6], 48), b],
    );
}

fn dropout_gradient_is_the_mask(device: &Device) {
    let x = randn(&[4, 5], 49);
    check(
        device,
        |x| x[0].dropout(0.3, true, &mut StdRng::seed_from_u64(7)),
        &[x],
    );
}

fn fused_causal_softmax(device: &Device) {
    let x = randn(&[2, 3, 4, 4], 50);
    check1(device, |x| x[0].causal_softmax(0.5, 0), &x);
    // Queries at positions 2..5 over 6 keys (as with a KV cache), from a
    // non-contiguous view.
    check1(
        device,
        |x| x[0].transpose(-1, -2).causal_softmax(1.3, 2),
        &randn(&[2, 6, 3], 51),
    );
}

fn softmax_of_a_fully_masked_row_is_zero_with_zero_gradient(device: &Device) {
    // A padded query that may see no key: its row is all -inf.
    let mask = on(
        device,
        Tensor::from_bools(vec![false, true, false, true, true, true], &[2, 3]),
    );
    let x = on(device, randn(&[2, 3], 52)).requires_grad();
    let p = x.masked_fill(&mask, f32::NEG_INFINITY).softmax(-1);
    assert_eq!(&p.to_vec()[3..], &[0.0, 0.0, 0.0]);
    assert!((p.to_vec()[0] + p.to_vec()[2] - 1.0).abs() < 1e-6);
    p.backward_with(&on(device, randn(&[2, 3], 53)));
    let g = x.grad().unwrap().to_vec();
    assert!(g.iter().all(|v| v.is_finite()));
    assert_eq!(&g[3..], &[0.0, 0.0, 0.0]);
    check1(
        device,
        |x| x[0].masked_fill(&mask, f32::NEG_INFINITY).softmax(-1),
        &randn(&[2, 3], 54),
    );
}

fn rms_norm_and_rotary_embeddings(device: &Device) {
    use zeroformer::nn::{RmsNorm, Rope};
    check(
        device,
        |x| {
            RmsNorm {
                weight: x[1].clone(),
                eps: 1e-6,
            }
            .forward(&x[0])
        },
        &[randn(&[3, 6], 55), randn(&[6], 56)],
    );
    let rope = Rope::new(4, 10, device).unwrap();
    check1(device, |x| rope.apply(&x[0], 3), &randn(&[2, 5, 4], 57));
}

fn attention_with_padding_and_cross_lengths(device: &Device) {
    use zeroformer::nn::{AttentionMask, MultiHeadAttentionConfig, SharedRng};
    let attn = MultiHeadAttentionConfig::new(4, 1)
        .bias(false)
        .init_with_dropout(
            device,
            &mut StdRng::seed_from_u64(0),
            &SharedRng::seed_from_u64(0),
        )
        .unwrap();
    // 3 queries over 5 keys; the second sequence's last two keys are padding.
    let pad = on(
        device,
        Tensor::from_bools(
            [[false; 5], [false, false, false, true, true]].concat(),
            &[2, 5],
        ),
    );
    let mask = AttentionMask {
        causal: true,
        window: None,
        key_padding: Some(&pad),
    };
    check(
        device,
        |x| attn.attend(&x[0], &x[1], &x[2], mask, 2).0,
        &[
            randn(&[2, 1, 3, 4], 58),
            randn(&[2, 1, 5, 4], 59),
            randn(&[2, 1, 5, 4], 60),
        ],
    );
}

fn fused_scaled_dot_product_attention(device: &Device) {
    use zeroformer::nn::AttentionMask;
    check(
        device,
        |x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], AttentionMask::CAUSAL, 0),
        &[
            randn(&[1, 2, 5, 4], 61),
            randn(&[1, 2, 5, 4], 62),
            randn(&[1, 2, 5, 4], 63),
        ],
    );
    // Cross lengths with padding, from non-contiguous (transposed) views.
    let pad = on(
        device,
        Tensor::from_bools(
            [[false; 6], [false, false, false, false, true, true]].concat(),
            &[2, 6],
        ),
    );
    let mask = AttentionMask {
        causal: false,
        window: None,
        key_padding: Some(&pad),
    };
    check(
        device,
        |x| {
            Tensor::scaled_dot_product_attention(
                &x[0].transpose(1, 2),
                &x[1].transpose(1, 2),
                &x[2].transpose(1, 2),
                mask,
                0,
            )
        },
        &[
            randn(&[2, 3, 1, 4], 64),
            randn(&[2, 6, 1, 4], 65),
            randn(&[2, 6, 1, 4], 66),
        ],
    );
    // A sliding window of 3 over 7 positions, fused and composed, and
    // behind 4 cached positions.
    let window = AttentionMask::sliding(Some(3));
    let inputs = [
        randn(&[1, 2, 7, 4], 67),
        randn(&[1, 2, 7, 4], 68),
        randn(&[1, 2, 7, 4], 69),
    ];
    check(
        device,
        |x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], window, 0),
        &inputs,
    );
    let attn = zeroformer::nn::MultiHeadAttentionConfig::new(8, 2)
        .bias(false)
        .init_with_dropout(
            device,
            &mut StdRng::seed_from_u64(0),
            &zeroformer::nn::SharedRng::seed_from_u64(0),
        )
        .unwrap();
    check(
        device,
        |x| attn.attend(&x[0], &x[1], &x[2], window, 0).0,
        &inputs,
    );
    check(
        device,
        |x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], window, 4),
        &[
            randn(&[1, 2, 3, 4], 70),
            randn(&[1, 2, 7, 4], 71),
            randn(&[1, 2, 7, 4], 72),
        ],
    );
}

fn addmm_with_strided_operands(device: &Device) {
    // The bias [n] added to [m, k] @ [k, n]; b as a transposed view, as
    // Linear passes its weight.
    check(
        device,
        |x| x[0].addmm(&x[1], &x[2].t()),
        &[randn(&[4], 1), randn(&[3, 5], 2), randn(&[4, 5], 3)],
    );
    // Equal to the unfused form.
    let (bias, a, b) = (randn(&[4], 4), randn(&[6, 5], 5), randn(&[5, 4], 6));
    let fused = bias.addmm(&a, &b).to_vec();
    let unfused = a.matmul(&b).add(&bias).to_vec();
    for (f, u) in fused.iter().zip(&unfused) {
        assert!((f - u).abs() <= 1e-6 * u.abs().max(1.0), "{f} vs {u}");
    }
}

/// Every row of the unary op table (src/backend/op_tables.rs) with its
/// example parameters, against finite differences and the CPU's values: a
/// new op is checked on every device by its row alone. The inputs lie
/// between 0.3 and 1.9, where every op is defined, each 0.05 from the
/// grid of tenths that holds every kink (clamp's bounds among them).
fn every_unary_op_of_the_table(device: &Device) {
    use zeroformer::backend::UnaryOp;
    let x = spaced(&[4, 4], 74).add_scalar(1.1);
    let cpu = Device::Cpu;
    for &op in UnaryOp::EXAMPLES {
        let probe = x.t();
        if let Err(e) = GradCheck::default().check(|x| x[0].unary(op), &[on(device, probe.clone())])
        {
            panic!("{}: {e}", op.name());
        }
        let here = on(device, probe.clone()).unary(op).to_vec();
        for (a, b) in here
            .iter()
            .zip(probe.unary(op).to_device(&cpu).unwrap().to_vec())
        {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{}: {a} on {device:?}, {b} on the CPU",
                op.name()
            );
        }
    }
}

fn everyday_elementwise_ops(device: &Device) {
    // `spaced` keeps every element at least 0.05 from 0, the kink of abs.
    let x = spaced(&[3, 4], 70);
    check1(device, |x| x[0].abs(), &x);
    check1(device, |x| x[0].sin(), &randn(&[3, 4], 71));
    check1(device, |x| x[0].cos(), &randn(&[3, 4], 72));
    // Bounds between the grid's values, so no element sits on a kink.
    check1(device, |x| x[0].clamp(-0.32, 0.41), &x);
    check1(device, |x| x[0].clamp(f32::NEG_INFINITY, 0.13), &x);
    // maximum and minimum, broadcasting; the two grids never tie.
    let other = spaced(&[4], 73).add_scalar(0.02);
    check(device, |x| x[0].maximum(&x[1]), &[x.clone(), other.clone()]);
    check(device, |x| x[0].minimum(&x[1]), &[x.clone(), other.clone()]);
}

fn maximum_and_minimum_split_the_gradient_of_a_tie(device: &Device) {
    let a = on(device, Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])).requires_grad();
    let b = on(device, Tensor::from_vec(vec![0.0, 2.0, 4.0], &[3])).requires_grad();
    a.maximum(&b).sum().backward();
    assert_eq!(a.grad().unwrap().to_vec(), vec![1.0, 0.5, 0.0]);
    assert_eq!(b.grad().unwrap().to_vec(), vec![0.0, 0.5, 1.0]);
    a.zero_grad();
    b.zero_grad();
    a.minimum(&b).sum().backward();
    assert_eq!(a.grad().unwrap().to_vec(), vec![0.0, 0.5, 1.0]);
    assert_eq!(b.grad().unwrap().to_vec(), vec![1.0, 0.5, 0.0]);
}

fn min_and_cumsum(device: &Device) {
    let x = spaced(&[3, 4], 74);
    check1(device, |x| x[0].min_dim(1, false), &x);
    check1(device, |x| x[0].min_dim(0, true), &x);
    check1(device, |x| x[0].min(), &x);
    check1(device, |x| x[0].cumsum(1), &randn(&[3, 4], 75));
    check1(device, |x| x[0].cumsum(0), &randn(&[3, 4], 76));
    // Along a transposed view's dimension.
    check1(device, |x| x[0].t().cumsum(-1), &randn(&[5, 2], 77));
}

fn gather_index_select_and_topk(device: &Device) {
    let index = on(device, Tensor::from_ids(vec![2, 0, 2, 1, 1, 0], &[2, 3]));
    check1(device, |x| x[0].gather(1, &index), &randn(&[2, 4], 78));
    // An index smaller than the input along the other dimension, repeated
    // positions (their gradients add), gathered from a transposed view.
    let rows = on(device, Tensor::from_ids(vec![0, 2, 2], &[3, 1]));
    check1(device, |x| x[0].t().gather(0, &rows), &randn(&[2, 3], 79));
    let ids = on(device, Tensor::from_ids(vec![3, 0, 3], &[3]));
    check1(device, |x| x[0].index_select(1, &ids), &randn(&[2, 4], 80));
    let two = ids.narrow(0, 1, 2);
    check1(device, |x| x[0].index_select(0, &two), &randn(&[4, 3], 81));
    // Distinct values: no ties for the order to depend on.
    check1(device, |x| x[0].topk(2, -1).0, &spaced(&[3, 5], 82));
    check1(device, |x| x[0].topk(3, 0).0, &spaced(&[4, 2], 83));
}

fn scatter_add_and_grouped_linear(device: &Device) {
    // Repeated positions add up; the source's gradient gathers.
    let index = on(device, Tensor::from_ids(vec![2, 0, 2, 1, 1, 0], &[2, 3]));
    check(
        device,
        |x| x[0].scatter_add(1, &index, &x[1]),
        &[randn(&[2, 4], 84), randn(&[2, 3], 85)],
    );
    // Groups of 2, 0 and 3 rows (an empty one between), from a transposed
    // view, with and without a bias.
    let offsets = on(device, Tensor::from_ids(vec![0, 2, 2, 5], &[4]));
    let (rows, weights, bias) = (
        randn(&[4, 5], 86),
        randn(&[3, 2, 4], 87),
        randn(&[3, 2], 88),
    );
    check(
        device,
        |x| x[0].t().grouped_linear(&x[1], &offsets, Some(&x[2])),
        &[rows.clone(), weights.clone(), bias],
    );
    check(
        device,
        |x| x[0].t().grouped_linear(&x[1], &offsets, None),
        &[rows, weights],
    );
}

test_device!(scatter_add_and_grouped_linear);
test_device!(binary_ops_with_broadcasting);
test_device!(binary_ops_on_non_contiguous_views);
test_device!(same_tensor_used_twice_accumulates);
test_device!(unary_ops);
test_device!(saturating_activations_far_from_zero);
test_device!(matmul_2d_batched_and_broadcast);
test_device!(reductions);
test_device!(softmax_and_log_softmax_over_every_dim);
test_device!(cross_entropy_with_and_without_ignored_targets);
test_device!(masked_fill_and_where);
test_device!(embedding_scatter_adds_repeated_ids);
test_device!(cat_stack_split_chunk);
test_device!(views);
test_device!(layer_norm_with_and_without_affine);
test_device!(dropout_gradient_is_the_mask);
test_device!(fused_causal_softmax);
test_device!(softmax_of_a_fully_masked_row_is_zero_with_zero_gradient);
test_device!(rms_norm_and_rotary_embeddings);
test_device!(attention_with_padding_and_cross_lengths);
test_device!(fused_scaled_dot_product_attention);
test_device!(addmm_with_strided_operands);
test_device!(everyday_elementwise_ops);
test_device!(every_unary_op_of_the_table);
test_device!(maximum_and_minimum_split_the_gradient_of_a_tie);
test_device!(min_and_cumsum);
test_device!(gather_index_select_and_topk);
