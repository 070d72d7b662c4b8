//! Creation, views that share storage, conversion and printing.

use ndarray::{ArrayD, array};
use zeroformer::prelude::*;

#[test]
fn views_share_storage_and_contiguous_copies_only_when_needed() {
    let x = Tensor::arange(0.0, 12.0, 1.0).reshape(&[3, 4]);
    let t = x.t();
    assert!(!t.is_contiguous());
    assert_eq!(
        t.to_vec(),
        vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
    );
    let n = x.narrow(1, 1, 2);
    assert_eq!(n.to_vec(), vec![1., 2., 5., 6., 9., 10.]);
    assert_eq!(n.layout().offset(), 1);
    let b = Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).broadcast_to(&[2, 3]);
    assert_eq!(b.layout().strides(), &[1, 0]);
    assert_eq!(b.to_vec(), vec![1., 1., 1., 2., 2., 2.]);
    // A contiguous tensor's contiguous() is itself; a view's is a row-major copy.
    assert_eq!(x.contiguous().id(), x.id());
    let c = t.contiguous();
    assert!(c.is_contiguous());
    assert_eq!(c.to_vec(), t.to_vec());
    // Reshaping a non-contiguous view copies first.
    assert_eq!(t.reshape(&[12]).to_vec(), t.to_vec());
    assert_eq!(x.unsqueeze(0).shape(), &[1, 3, 4]);
    assert_eq!(x.unsqueeze(-1).shape(), &[3, 4, 1]);
    assert_eq!(x.unsqueeze(0).squeeze(0).shape(), &[3, 4]);
    assert_eq!(x.permute(&[1, 0]).to_vec(), t.to_vec());
}

#[test]
fn creation_functions() {
    assert_eq!(Tensor::zeros(&[2, 2]).to_vec(), vec![0.0; 4]);
    assert_eq!(Tensor::ones(&[3]).to_vec(), vec![1.0; 3]);
    assert_eq!(Tensor::full(&[2], 7.5).to_vec(), vec![7.5, 7.5]);
    assert_eq!(Tensor::scalar(3.0).shape(), &[] as &[usize]);
    assert_eq!(Tensor::scalar(3.0).item(), 3.0);
    assert_eq!(Tensor::arange(5.0, 0.0, -2.0).to_vec(), vec![5.0, 3.0, 1.0]);
    // Seeded randomness is reproducible, and roughly standard normal.
    let a = Tensor::randn(&[10_000], &mut StdRng::seed_from_u64(9));
    let b = Tensor::randn(&[10_000], &mut StdRng::seed_from_u64(9));
    assert_eq!(a.to_vec(), b.to_vec());
    assert!(a.mean().item().abs() < 0.05);
    assert!((a.var_dim(0, false, true).item() - 1.0).abs() < 0.05);
    let u = Tensor::uniform(&[1000], -2.0, 3.0, &mut StdRng::seed_from_u64(1)).to_vec();
    assert!(u.iter().all(|&v| (-2.0..3.0).contains(&v)));
    let ids = Tensor::from_ids(vec![3, 1], &[2]);
    assert_eq!(ids.dtype(), DType::I64);
    assert_eq!(ids.to_vec_i64(), vec![3, 1]);
    assert_eq!(ids.device(), Device::Cpu);
}

#[test]
#[should_panic(expected = "from_vec: 5 values cannot fill shape [2, 3] (6 elements)")]
fn from_vec_rejects_a_wrong_length() {
    Tensor::from_vec(vec![0.0; 5], &[2, 3]);
}

#[test]
#[should_panic(expected = "exp: expected an f32 tensor, got I64")]
fn dtype_mismatch_panics_with_the_op() {
    Tensor::from_ids(vec![1], &[1]).exp();
}

#[test]
fn ndarray_round_trip() {
    let a: ArrayD<f32> = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
    let t = Tensor::from(a.clone());
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(ArrayD::from(&t.t()), a.t().to_owned());
}

#[test]
fn comparisons_and_masks() {
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]);
    let b = Tensor::scalar(2.0);
    assert_eq!(a.lt(&b).to_vec_bool(), vec![true, false, false]);
    assert_eq!(a.ge(&b).to_vec_bool(), vec![false, true, true]);
    assert_eq!(a.eq(&b).to_vec_bool(), vec![false, true, false]);
    assert_eq!(a.masked_fill(&a.gt(&b), 0.0).to_vec(), vec![1.0, 2.0, 0.0]);
    assert_eq!(a.argmax_dim(0, false).to_vec_i64(), vec![2]);
    let m = Tensor::causal_mask(3).to_vec_bool();
    assert_eq!(
        m,
        vec![false, true, true, false, false, true, false, false, false]
    );
}

#[test]
fn display_and_debug_show_shape_and_abridged_values() {
    let t = Tensor::arange(0.0, 100.0, 1.0).reshape(&[10, 10]);
    let shown = format!("{t}");
    assert!(shown.contains("Tensor[[10, 10], F32]"), "{shown}");
    assert!(shown.contains("..."), "{shown}");
    assert!(shown.starts_with("[[0, 1, 2, ..., 7, 8, 9]"), "{shown}");
    let dbg = format!("{:?}", Tensor::ones(&[2]).requires_grad());
    assert_eq!(
        dbg,
        "Tensor(shape=[2], dtype=F32, requires_grad, values=[1.0000, 1.0000])"
    );
}

#[test]
fn a_cuda_device_that_cannot_be_used_is_an_error_not_a_panic() {
    // No build has a thousand GPUs; without the `cuda` feature none at all.
    match Device::cuda(1000) {
        Err(Error::CudaUnavailable(why)) => {
            // With the feature: no such GPU, or no CUDA libraries at all.
            let expected: &[&str] = if cfg!(feature = "cuda") {
                &["no GPU 1000", "was not found"]
            } else {
                &["without the `cuda` feature"]
            };
            assert!(expected.iter().any(|e| why.contains(e)), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn few_row_products_against_a_transposed_weight_match_the_general_product() {
    // Decoding's shapes: a few rows times a weight stored by output row
    // (the matrix-vector path), against the same product with the weight
    // copied to [k, n] (the GEMM). 1, 3 and 16 rows; a row of a larger
    // tensor; with and without a bias.
    let mut rng = StdRng::seed_from_u64(3);
    let w = Tensor::randn(&[700, 300], &mut rng);
    let bias = Tensor::randn(&[700], &mut rng);
    let dense = w.t().contiguous();
    for m in [1, 3, 16] {
        let x = Tensor::randn(&[m + 2, 300], &mut rng).narrow(0, 1, m);
        let close = |a: &Tensor, b: &Tensor| {
            let (a, b) = (a.to_vec(), b.to_vec());
            a.iter()
                .zip(&b)
                .all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + q.abs()))
        };
        assert!(close(&x.matmul(&w.t()), &x.matmul(&dense)), "{m} rows");
        assert!(
            close(&bias.addmm(&x, &w.t()), &bias.addmm(&x, &dense)),
            "{m} rows, bias"
        );
        let batched = x.reshape(&[1, m, 300]).matmul(&w.t());
        assert!(
            close(&batched.reshape(&[m, 700]), &x.matmul(&dense)),
            "{m} rows, batched"
        );
    }
}
