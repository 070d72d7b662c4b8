//! The graph is freed by backward: the number of live graph nodes is the
//! same after 1,000 training steps of a small MLP as after the first.
//! (Its own test binary: the node counter is process-wide.)

use zeroformer::autograd::live_nodes;
use zeroformer::prelude::*;

#[test]
fn live_graph_nodes_stay_flat_over_1000_training_steps() {
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
