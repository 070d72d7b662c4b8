//! A Mixture-of-Experts feed-forward layer (Shazeer et al. 2017; the Switch
//! Transformer, Fedus et al. 2021; Mixtral): a linear router scores each
//! token against `n_experts` feed-forward networks, the token goes to its
//! `top_k` best, and their outputs are summed with the router's gates.
//!
//! Tokens are grouped by expert, so each expert runs one product over all
//! of its tokens: the router's choices are read to the host (one sync a
//! layer), the token rows are gathered in expert order, each expert runs
//! on its contiguous slice, and every token's `top_k` outputs are gathered
//! back and weighted. The layer is dropless: every token reaches its
//! experts, however unbalanced the routing (no capacity factor, so nothing
//! is dropped and nothing needs reporting; a skewed batch costs time, not
//! tokens).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{FeedForward, FeedForwardConfig, Linear, Module, SharedRng};
use crate::{Device, Error, Result, Tensor};

/// The shape and losses of a [`MoeFeedForward`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Experts, at least 2.
    pub n_experts: usize,
    /// Experts each token goes to: 1 (Switch) or 2 (GShard, Mixtral).
    pub top_k: usize,
    /// The load-balancing loss's weight in the training loss (the Switch
    /// Transformer's α, 0.01).
    pub load_balancing_coef: f32,
    /// The router z-loss's weight (ST-MoE's, 0.001; 0 for none).
    pub z_loss_coef: f32,
    /// In a model ([`GptConfig::moe`](crate::GptConfig::moe)): every
    /// `every`-th block has experts (1: all; 2: every other one, the second
    /// of each pair, as the Switch Transformer and GShard place them).
    pub every: usize,
}

impl MoeConfig {
    /// `n_experts` experts, `top_k` a token, the Switch Transformer's
    /// load-balancing weight 0.01, no z-loss, in every block.
    pub fn new(n_experts: usize, top_k: usize) -> MoeConfig {
        MoeConfig {
            n_experts,
            top_k,
            load_balancing_coef: 0.01,
            z_loss_coef: 0.0,
            every: 1,
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        if self.n_experts < 2 || !(1..=2).contains(&self.top_k) || self.top_k > self.n_experts {
            return Err(Error::InvalidConfig(format!(
                "a mixture of experts needs at least 2 experts and top_k 1 or 2, got {} experts, top_k {}",
                self.n_experts, self.top_k
            )));
        }
        if self.every == 0 {
            return Err(Error::InvalidConfig(
                "moe.every must be at least 1 (1: experts in every block)".into(),
            ));
        }
        let coefs = [self.load_balancing_coef, self.z_loss_coef];
        if !coefs.iter().all(|c| c.is_finite() && *c >= 0.0) {
            return Err(Error::InvalidConfig(format!(
                "the router's loss weights must be finite and non-negative, got {coefs:?}"
            )));
        }
        Ok(())
    }
}

/// What one [`MoeFeedForward::forward`] routed, and its router losses.
#[derive(Clone, Debug)]
pub struct Routing {
    /// The Switch Transformer's load-balancing loss, `E · Σ_e f_e · P_e`:
    /// `f_e` the share of tokens sent to expert `e` (counting each of a
    /// token's `top_k` choices, so the `f_e` sum to `top_k`), `P_e` the
    /// router's mean probability for it. Gradients reach the router through
    /// `P_e`. Uniform routing gives `top_k`, its minimum. A one-element
    /// tensor, unweighted.
    pub load_balancing_loss: Tensor,
    /// ST-MoE's router z-loss, the mean over tokens of the squared
    /// logsumexp of the router's logits: it keeps the logits small. A
    /// one-element tensor, unweighted.
    pub z_loss: Tensor,
    /// How many tokens each expert received.
    pub tokens_per_expert: Vec<usize>,
}

/// A feed-forward layer of `n_experts` experts and a router; see the module
/// documentation. Parameters are named `router.weight` and
/// `experts.{e}.fc.weight`, `experts.{e}.proj.weight` (and biases). Built
/// by [`MoeConfig::init`].
#[derive(Clone, Module)]
pub struct MoeFeedForward {
    /// Scores each token against each expert, `d_model -> n_experts`, no bias.
    pub router: Linear,
    /// The experts.
    pub experts: Vec<FeedForward>,
    /// Experts a token goes to.
    #[module(skip)]
    pub top_k: usize,
}

impl MoeFeedForward {
    /// `config.n_experts` experts built as `expert` describes (validated
    /// by [`MoeConfig::init`]), their dropout drawing from `dropout_rng`;
    /// the router from N(0, `expert.std`²).
    pub(crate) fn new(
        config: &MoeConfig,
        expert: &FeedForwardConfig,
        rng: &mut impl Rng,
        dropout_rng: &SharedRng,
        device: &Device,
    ) -> Self {
        let router = Linear::new(
            expert.d_model,
            config.n_experts,
            false,
            expert.std,
            rng,
            device,
        );
        let experts = (0..config.n_experts)
            .map(|_| FeedForward::new(expert, rng, dropout_rng, device))
            .collect();
        MoeFeedForward {
            router,
            experts,
            top_k: config.top_k,
        }
    }

    /// The experts' weighted outputs for `x` `[..., d_model]` (same shape),
    /// and the routing. Each token's gates are the router's softmax
    /// probabilities of its `top_k` experts: as they are for top-1 (the
    /// Switch Transformer's), renormalised to sum to 1 for top-2
    /// (Mixtral's). Gradients reach the router through the gates and the
    /// losses; the choice itself (top-k) has none.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Routing) {
        let c = self.router.in_features();
        assert!(
            x.rank() >= 1 && x.shape()[x.rank() - 1] == c,
            "MoeFeedForward: input must be [..., {c}], got {:?}",
            x.shape()
        );
        let (n, k, e) = (x.numel() / c.max(1), self.top_k, self.experts.len());
        let flat = x.reshape(&[n, c]);
        let logits = self.router.forward(&flat);
        let probs = logits.softmax(-1);
        let (top, choice) = probs.topk(k, -1);
        let gates = if k == 1 {
            top
        } else {
            top.div(&top.sum_dim(-1, true))
        };
        // Each (token, slot) in expert order, tokens in order within one.
        let choice = choice.to_vec_i64();
        let mut order: Vec<usize> = (0..n * k).collect();
        order.sort_by_key(|&a| choice[a]);
        let mut tokens_per_expert = vec![0; e];
        for &a in &order {
            tokens_per_expert[choice[a] as usize] += 1;
        }
        let ids = |v: Vec<usize>, len: usize| {
            x.new_ids(v.into_iter().map(|i| i as i64).collect(), &[len])
        };
        // The token rows in expert order, and each expert's slice through
        // its network, in one product each.
        let rows = Tensor::embedding(&ids(order.iter().map(|a| a / k).collect(), n * k), &flat);
        let mut start = 0;
        let outputs: Vec<Tensor> = self
            .experts
            .iter()
            .zip(&tokens_per_expert)
            .filter(|&(_, &count)| count > 0)
            .map(|(expert, &count)| {
                let y = expert.forward(&rows.narrow(0, start, count));
                start += count;
                y
            })
            .collect();
        let outputs = Tensor::cat(&outputs.iter().collect::<Vec<_>>(), 0);
        let gate_rows = ids(order.clone(), n * k);
        let weighted = outputs.mul(&Tensor::embedding(&gate_rows, &gates.reshape(&[n * k, 1])));
        // Back in token order: slot s of token t sits at position[t·k + s].
        let mut position = vec![0; n * k];
        for (at, &a) in order.iter().enumerate() {
            position[a] = at;
        }
        let mut y = Tensor::embedding(
            &ids((0..n).map(|t| position[t * k]).collect(), n),
            &weighted,
        );
        for s in 1..k {
            let slot = ids((0..n).map(|t| position[t * k + s]).collect(), n);
            y = y.add(&Tensor::embedding(&slot, &weighted));
        }
        let routing = Routing {
            load_balancing_loss: load_balancing_loss(&probs, &tokens_per_expert, n),
            z_loss: z_loss(&logits),
            tokens_per_expert,
        };
        (y.reshape(x.shape()), routing)
    }
}

/// `E · Σ_e f_e · P_e` over `n` tokens' router probabilities `probs`
/// `[n, E]`, with `f_e = counts[e] / n`.
fn load_balancing_loss(probs: &Tensor, counts: &[usize], n: usize) -> Tensor {
    let e = counts.len();
    let shares = counts.iter().map(|&c| c as f32 / n.max(1) as f32).collect();
    let shares = probs.new_tensor(shares, &[e]);
    probs
        .mean_dim(0, false)
        .mul(&shares)
        .sum()
        .mul_scalar(e as f32)
}

/// The mean over rows of `logsumexp(logits_row)²`, its logsumexp taken as
/// `x_0 - log_softmax(x)_0` (stable, and differentiable as logsumexp).
fn z_loss(logits: &Tensor) -> Tensor {
    let lse = logits
        .narrow(-1, 0, 1)
        .sub(&logits.log_softmax(-1).narrow(-1, 0, 1));
    lse.mul(&lse).mean()
}
