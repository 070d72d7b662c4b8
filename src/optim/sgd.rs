//! Stochastic gradient descent with momentum (PyTorch's `torch.optim.SGD`).

use super::{Optimizer, ParamGroup};
use crate::{Tensor, no_grad};

/// `buf = momentum·buf + g` (the first step `buf = g`), `p -= lr·buf`, with
/// L2 weight decay added to the gradient. The momentum buffers are tensors
/// on their parameters' device.
pub struct Sgd {
    groups: Vec<ParamGroup>,
    lr: f32,
    momentum: f32,
    buffers: Vec<Vec<Option<Tensor>>>,
}

impl Sgd {
    /// Stochastic gradient descent over `groups` at rate `lr`, with `momentum` (0 for none) and each group's weight decay.
    pub fn new(groups: Vec<ParamGroup>, lr: f32, momentum: f32) -> Sgd {
        let buffers = groups.iter().map(|g| vec![None; g.params.len()]).collect();
        Sgd {
            groups,
            lr,
            momentum,
            buffers,
        }
    }
}

/// The momentum buffers that exist (`<param>.momentum_buffer`, PyTorch's
/// name; none before the first step or without momentum). No step count.
impl super::OptimizerState for Sgd {
    fn state(&self) -> (u64, Vec<(String, Tensor)>) {
        let mut out = Vec::new();
        for (group, buffers) in self.groups.iter().zip(&self.buffers) {
            for ((name, _), buf) in group.params.iter().zip(buffers) {
                if let Some(b) = buf {
                    out.push((format!("{name}.momentum_buffer"), b.clone()));
                }
            }
        }
        (0, out)
    }

    fn load_state(
        &mut self,
        _step: u64,
        get: &mut dyn FnMut(&str) -> Option<Vec<f32>>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (group, buffers) in self.groups.iter().zip(&mut self.buffers) {
            for ((name, p), buf) in group.params.iter().zip(buffers.iter_mut()) {
                match super::restore(p, &format!("{name}.momentum_buffer"), get) {
                    Ok(saved) => *buf = saved,
                    Err(problem) => problems.push(problem),
                }
            }
        }
        problems
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) {
        no_grad(|| {
            for (group, buffers) in self.groups.iter().zip(&mut self.buffers) {
                for ((_, p), buf) in group.params.iter().zip(buffers.iter_mut()) {
                    let Some(mut g) = p.grad() else { continue };
                    if group.weight_decay != 0.0 {
                        g = g.add(&p.mul_scalar(group.weight_decay));
                    }
                    if self.momentum != 0.0 {
                        let next = match buf.take() {
                            Some(b) => b.mul_scalar(self.momentum).add(&g),
                            None => g.contiguous(),
                        };
                        g = buf.insert(next).clone();
                    }
                    p.assign(&p.sub(&g.mul_scalar(self.lr)));
                }
            }
        })
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
}
