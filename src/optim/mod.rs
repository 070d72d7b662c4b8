//! Optimizers, learning-rate schedules and gradient clipping.
//!
//! Updates follow PyTorch's formulas operation for operation, so a run can be
//! compared with `torch.optim` (tests/fixtures/optim.json).

mod adam;
mod clip;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::{clip_coefficient, clip_grad_norm, grad_norm};
pub use schedule::LrSchedule;
pub use sgd::Sgd;

use crate::Tensor;

/// Parameters that share optimizer settings (here: weight decay).
#[derive(Clone)]
pub struct ParamGroup {
    /// The parameters, with their names (checkpoints key the state by them).
    pub params: Vec<(String, Tensor)>,
    /// The weight decay of this group.
    pub weight_decay: f32,
}

/// Splits parameters for weight decay: matrices of linear layers get
/// `weight_decay`; biases, norm weights (rank 1) and embeddings (names
/// containing `wte`, `wpe` or `emb`) get none: minGPT's rule. nanoGPT
/// decays every tensor of rank ≥ 2, embeddings included (and with them
/// the tied output head). This crate keeps minGPT's: the GPT-training
/// recipe it reproduces asks for no decay on embeddings, every recorded
/// result was measured under it, and on tiny Shakespeare the two rules
/// give the same loss within a thousandth, far inside the seeds' spread
/// (docs/performance.md).
/// [`TrainConfig::decay_all`](crate::train::TrainConfig::decay_all)
/// decays everything instead.
pub fn decay_groups(named: Vec<(String, Tensor)>, weight_decay: f32) -> Vec<ParamGroup> {
    let is_embedding =
        |name: &str| name.contains("wte") || name.contains("wpe") || name.contains("emb");
    let (decay, no_decay): (Vec<_>, Vec<_>) = named
        .into_iter()
        .partition(|(name, t)| t.rank() >= 2 && !is_embedding(name));
    vec![
        ParamGroup {
            params: decay,
            weight_decay,
        },
        ParamGroup {
            params: no_decay,
            weight_decay: 0.0,
        },
    ]
}

/// An optimizer whose state a checkpoint can hold
/// ([`Checkpoint::add_optimizer`](crate::checkpoint::Checkpoint::add_optimizer)):
/// a step count and named tensors.
pub trait OptimizerState {
    /// The step count and the state as named tensors, keyed by the
    /// parameters' names.
    fn state(&self) -> (u64, Vec<(String, Tensor)>);

    /// Restores what [`state`](Self::state) returned; `get` gives the
    /// values saved under a name, row-major. Returns the names missing or
    /// mis-sized (and changes nothing for those).
    fn load_state(
        &mut self,
        step: u64,
        get: &mut dyn FnMut(&str) -> Option<Vec<f32>>,
    ) -> Vec<String>;
}

/// The state saved under `key` for parameter `p`, as a tensor of its shape
/// on its device: `Ok(None)` when nothing is saved there, `Err` naming the
/// key when the values do not fill the shape.
fn restore(
    p: &Tensor,
    key: &str,
    get: &mut dyn FnMut(&str) -> Option<Vec<f32>>,
) -> Result<Option<Tensor>, String> {
    match get(key) {
        Some(data) if data.len() == p.numel() => Ok(Some(p.new_tensor(data, p.shape()))),
        Some(data) => Err(format!(
            "{key}: {} values, expected {}",
            data.len(),
            p.numel()
        )),
        None => Ok(None),
    }
}

/// What every optimizer does.
pub trait Optimizer {
    /// Updates every parameter from its gradient (parameters without one are skipped).
    fn step(&mut self);

    /// The learning rate of the next step.
    fn lr(&self) -> f32;

    /// Sets the learning rate (schedules call this before each step).
    fn set_lr(&mut self, lr: f32);

    /// The parameters, by group.
    fn groups(&self) -> &[ParamGroup];

    /// Forgets every parameter's gradient.
    fn zero_grad(&self) {
        for g in self.groups() {
            g.params.iter().for_each(|(_, p)| p.zero_grad());
        }
    }
}
