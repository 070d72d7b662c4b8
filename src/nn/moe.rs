//! A Mixture-of-Experts feed-forward layer (Shazeer et al. 2017; the Switch
//! Transformer, Fedus et al. 2021; Mixtral): a linear router scores each
//! token against `n_experts` feed-forward networks, the token goes to its
//! `top_k` best, and their outputs are summed with the router's gates.
//!
//! Tokens are grouped by expert on the device, and every expert runs in
//! one grouped product over its contiguous rows
//! ([`Tensor::grouped_linear`], MegaBlocks' grouped GEMM): each (token,
//! slot) pair's place in expert order is computed from a running count of
//! the router's choices, the token rows are gathered into that order, the
//! experts' projections run over their slices, and every token's `top_k`
//! outputs are gathered back and weighted. Nothing is read to the host. The
//! layer is dropless: every token reaches its experts, however unbalanced
//! the routing (no capacity factor, so nothing is dropped and nothing needs
//! reporting; a skewed batch costs time, not tokens).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{FeedForward, FeedForwardConfig, Linear, Module, SharedRng};
use crate::{DType, Device, Error, Result, Tensor};

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
    /// How many tokens each expert received, `[n_experts]` f32 counts on
    /// the device (read them when logging).
    pub tokens_per_expert: Tensor,
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
        let (n, k) = (x.numel() / c.max(1), self.top_k);
        let flat = x.reshape(&[n, c]);
        let logits = self.router.forward(&flat);
        let probs = logits.softmax(-1);
        let (top, choice) = probs.topk(k, -1);
        let gates = if k == 1 {
            top
        } else {
            top.div(&top.sum_dim(-1, true))
        };
        let groups = ExpertGroups::of(&choice, self.experts.len());
        // The token rows in expert order through every expert at once.
        let rows = Tensor::embedding(&groups.token_of(k), &flat);
        let outputs = self.experts_forward(&rows, &groups.offsets);
        let weighted = outputs.mul(&Tensor::embedding(
            &groups.order,
            &gates.reshape(&[n * k, 1]),
        ));
        // Back in token order: slot s of token t sits at position[t·k + s].
        let position = groups.position.reshape(&[n, k]);
        let slot = |s: usize| Tensor::embedding(&position.narrow(1, s, 1).reshape(&[n]), &weighted);
        let y = (1..k).fold(slot(0), |y, s| y.add(&slot(s)));
        let routing = Routing {
            load_balancing_loss: load_balancing_loss(&probs, &groups.counts, n),
            z_loss: z_loss(&logits),
            tokens_per_expert: groups.counts,
        };
        (y.reshape(x.shape()), routing)
    }

    /// Every expert on its slice of `rows` (sorted by expert, `offsets`
    /// bounding each one's), in two grouped products: the experts'
    /// projections stacked into one `[E, out, in]` weight each (a copy of
    /// the weights a forward; the gradients flow back to each expert's
    /// own), the nonlinearity between them, then the experts' dropout.
    fn experts_forward(&self, rows: &Tensor, offsets: &Tensor) -> Tensor {
        let stacked = |layer: fn(&FeedForward) -> &Linear| {
            let weights: Vec<&Tensor> = self.experts.iter().map(|e| &layer(e).weight).collect();
            let biases: Option<Vec<&Tensor>> = self
                .experts
                .iter()
                .map(|e| layer(e).bias.as_ref())
                .collect();
            (
                Tensor::stack(&weights, 0),
                biases.map(|b| Tensor::stack(&b, 0)),
            )
        };
        let ((w_in, b_in), (w_out, b_out)) = (stacked(|e| &e.fc), stacked(|e| &e.proj));
        let first = &self.experts[0];
        let h = first.activate(&rows.grouped_linear(&w_in, offsets, b_in.as_ref()));
        first.dropout(&h.grouped_linear(&w_out, offsets, b_out.as_ref()))
    }
}

/// The (token, slot) pairs of a routing sorted by expert, stably, computed
/// on the device from a running count of the choices: no pair's expert is
/// read to the host. Counts are f32, exact below 2^24 pairs.
struct ExpertGroups {
    /// `[pairs]` i64: the pair at each place of expert order.
    order: Tensor,
    /// `[pairs]` i64: each pair's place in expert order (`order`'s inverse).
    position: Tensor,
    /// `[experts + 1]` i64: where each expert's places start, and the end.
    offsets: Tensor,
    /// `[experts]` f32: the pairs each expert received.
    counts: Tensor,
}

impl ExpertGroups {
    /// The grouping of `choice` (`[tokens, k]` i64 experts, pair `t·k + s`
    /// for slot `s` of token `t`) among `experts`.
    fn of(choice: &Tensor, experts: usize) -> ExpertGroups {
        let pairs = choice.numel();
        assert!(
            pairs < 1 << 24,
            "MoeFeedForward: {pairs} (token, slot) pairs exceed the 2^24 its f32 counts hold exactly"
        );
        let chosen = choice.reshape(&[pairs, 1]).to_dtype(DType::F32);
        let ids = chosen.new_tensor((0..experts).map(|e| e as f32).collect(), &[1, experts]);
        let one_hot = chosen.eq(&ids).to_dtype(DType::F32);
        // Row p: how many of pairs 0..=p chose each expert.
        let running = one_hot.cumsum(0);
        let counts = running.narrow(0, pairs.max(1) - 1, 1).reshape(&[experts]);
        let ends = counts.cumsum(0);
        let starts = ends.sub(&counts);
        // A pair's place: its expert's start, plus the pairs before it that
        // chose the same expert.
        let place = one_hot
            .mul(&running.add(&starts.reshape(&[1, experts])).add_scalar(-1.0))
            .sum_dim(1, false);
        let position = place.to_dtype(DType::I64);
        let pair_ids = place.new_tensor((0..pairs).map(|p| p as f32).collect(), &[pairs]);
        let order = place
            .zeros_like()
            .scatter_add(0, &position, &pair_ids)
            .to_dtype(DType::I64);
        let offsets =
            Tensor::cat(&[&ends.zeros_like().narrow(0, 0, 1), &ends], 0).to_dtype(DType::I64);
        ExpertGroups {
            order,
            position,
            offsets,
            counts,
        }
    }

    /// `[pairs]` i64: the token of each place in expert order, for `k`
    /// slots a token.
    fn token_of(&self, k: usize) -> Tensor {
        let pairs = self.order.numel();
        let tokens = self
            .order
            .new_tensor((0..pairs).map(|p| (p / k) as f32).collect(), &[pairs]);
        tokens.gather(0, &self.order).to_dtype(DType::I64)
    }
}

/// `E · Σ_e f_e · P_e` over `n` tokens' router probabilities `probs`
/// `[n, E]`, with `f_e = counts[e] / n` (`counts` f32 on the device).
fn load_balancing_loss(probs: &Tensor, counts: &Tensor, n: usize) -> Tensor {
    let e = counts.numel();
    let shares = counts.div(&counts.scalar_like(n.max(1) as f32));
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
