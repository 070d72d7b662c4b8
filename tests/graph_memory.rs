//! The graph is freed by backward: the number of live graph nodes is the
//! same after 1,000 training steps of a small MLP as after the first.
//! (Its own test binary: the node counter is process-wide, and its tests
//! take turns.)

use std::sync::Mutex;

use zeroformer::autograd::live_nodes;
use zeroformer::prelude::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn live_graph_nodes_stay_flat_over_1000_training_steps() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = StdRng::seed_from_u64(0);
    let w1 = Tensor::randn(&[4, 16], &mut rng)
        .mul_scalar(0.5)
        .requires_grad();
    let w2 = Tensor::randn(&[16, 1], &mut rng)
        .mul_scalar(0.5)
        .requires_grad();
    let x = Tensor::randn(&[32, 4], &mut rng);
    let y = x.sum_dim(1, true).tanh();
    let params = [w1.clone(), w2.clone()];
    let step = || {
        let pred = x.matmul(&w1).gelu(GeluApproximation::Tanh).matmul(&w2);
        let loss = pred.sub(&y).square().mean();
        // Keep `loss` alive across backward: the graph must be freed by the
        // walk itself, not by dropping the root.
        loss.backward();
        for p in &params {
            let g = p.grad().unwrap().to_vec();
            p.update_data(|d| d.iter_mut().zip(&g).for_each(|(w, g)| *w -= 0.05 * g));
            p.zero_grad();
        }
        (loss.item(), live_nodes())
    };
    let before = live_nodes();
    let (first_loss, after_first) = step();
    assert_eq!(after_first, before, "backward left graph nodes alive");
    let mut last_loss = first_loss;
    for _ in 0..999 {
        let (loss, live) = step();
        assert_eq!(live, before, "graph nodes leak across steps");
        last_loss = loss;
    }
    assert!(
        last_loss < first_loss * 0.5,
        "training did not progress: {first_loss} -> {last_loss}"
    );
}

/// An op of an f32 and a bf16 tensor is one graph node: the bf16 operand
/// is widened as it is read, not cast into an f32 tensor that the graph
/// would keep until the backward (a residual add under autocast).
#[test]
fn an_op_of_f32_and_bf16_is_one_node() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let x = Tensor::ones(&[8]).requires_grad();
    let y = Tensor::ones(&[8]).to_dtype(DType::BF16).requires_grad();
    let before = live_nodes();
    let z = x.add(&y);
    assert_eq!(live_nodes(), before + 1);
    z.sum().backward();
    assert_eq!(y.grad().unwrap().dtype(), DType::BF16);
}
