//! A training step in steady state takes every large buffer from the pool:
//! after warm-up steps, further GPT steps (fused and composed attention)
//! make no fresh poolable allocation, and neither does a softmax across
//! a strided dimension. A buffer an op drops without handing
//! it back (a temporary contiguous copy, saved log-probabilities) shows up
//! here as one pool miss per step. (Its own test binary: the pool and its
//! miss counter are process-wide.)

use zeroformer::backend::cpu::pool;
use zeroformer::nn::AttentionKernel;
use zeroformer::optim::{Adam, AdamConfig, Optimizer, decay_groups};
use zeroformer::prelude::*;

#[test]
fn steady_state_training_steps_allocate_no_large_buffers() {
    for kernel in [AttentionKernel::Fused, AttentionKernel::Composed] {
        // Activations of 8 x 64 x 64 and logits of 8 x 64 x 65 elements:
        // above the pool's threshold, as every large model's are.
        let config = GptConfig {
            vocab_size: 65,
            block_size: 64,
            n_layer: 2,
            n_head: 4,
            n_embd: 64,
            dropout: 0.0,
            bias: false,
            ..GptConfig::default()
        };
        let mut model = config.init(&Device::Cpu, 0).unwrap();
        for block in &mut model.blocks {
            block.attn.kernel = kernel;
        }
        let mut opt = Adam::new(
            decay_groups(model.named_parameters(), 0.1),
            AdamConfig::adamw(1e-3),
        );
        let ids: Vec<i64> = (0..8 * 65).map(|i| (i * 7 % 65) as i64).collect();
        let seq = Tensor::from_ids(ids, &[8, 65]);
        let (x, y) = (
            seq.narrow(1, 0, 64).contiguous(),
            seq.narrow(1, 1, 64).contiguous(),
        );
        let mut step = || {
            let loss = Gpt::loss(&model.forward(&x, Default::default()).logits, &y);
            loss.backward();
            opt.step();
            opt.zero_grad();
            loss.item()
        };
        let first = step();
        step();
        let warm = pool::misses();
        let mut last = first;
        for _ in 0..3 {
            last = step();
        }
        assert_eq!(
            pool::misses() - warm,
            0,
            "{kernel:?}: steady-state steps allocated large buffers instead of reusing them"
        );
        assert!(last < first, "{kernel:?}: training did not progress");
    }
    // A softmax across a non-last dimension works on a contiguous copy.
    // (A size no buffer above has, so that only these calls feed the pool.)
    let x = Tensor::randn(&[128, 301], &mut StdRng::seed_from_u64(1));
    x.softmax(0);
    let warm = pool::misses();
    for _ in 0..3 {
        x.softmax(0);
    }
    assert_eq!(pool::misses() - warm, 0, "softmax(0) leaked its copy");
}
