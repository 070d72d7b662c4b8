//! Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW`).

use super::{Optimizer, ParamGroup};
use crate::Tensor;
use crate::backend::AdamStep;

/// Hyper-parameters of Adam and AdamW.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// The learning rate (schedules change it with `set_lr`).
    pub lr: f32,
    /// The first moment's decay.
    pub beta1: f32,
    /// The second moment's decay.
    pub beta2: f32,
    /// Added to the second moment's root.
    pub eps: f32,
    /// `true`: AdamW's decoupled decay `p -= lr·wd·p`; `false`: Adam's L2
    /// term `g += wd·p`. The amount is each group's `weight_decay`.
    pub decoupled_weight_decay: bool,
}

impl AdamConfig {
    /// AdamW with PyTorch's defaults except `lr`: betas (0.9, 0.999), eps 1e-8.
    pub fn adamw(lr: f32) -> AdamConfig {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled_weight_decay: true,
        }
    }

    /// The same with learning rate `lr`.
    pub fn lr(self, lr: f32) -> AdamConfig {
        AdamConfig { lr, ..self }
    }

    /// The same with moment decays `beta1` and `beta2`.
    pub fn betas(self, beta1: f32, beta2: f32) -> AdamConfig {
        AdamConfig {
            beta1,
            beta2,
            ..self
        }
    }

    /// The same with `eps`.
    pub fn eps(self, eps: f32) -> AdamConfig {
        AdamConfig { eps, ..self }
    }

    /// Adam (L2 weight decay) with PyTorch's defaults except `lr`.
    pub fn adam(lr: f32) -> AdamConfig {
        AdamConfig {
            decoupled_weight_decay: false,
            ..AdamConfig::adamw(lr)
        }
    }
}

/// AdamW with PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8.
impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig::adamw(1e-3)
    }
}

/// Adam / AdamW. State per parameter: the step count and both moments.
pub struct Adam {
    groups: Vec<ParamGroup>,
    /// The update's constants.
    pub config: AdamConfig,
    step: u64,
    /// First and second moments, per group, per parameter: tensors of the
    /// parameter's shape on its device.
    moments: Vec<Vec<(Tensor, Tensor)>>,
}

impl Adam {
    /// An optimizer over every parameter of `module`: matrices decayed by
    /// `weight_decay`, biases, norms and embeddings not
    /// ([`decay_groups`](super::decay_groups), minGPT's split). For groups
    /// of your own, [`new`](Self::new).
    ///
    /// ```
    /// use zeroformer::nn::{LinearConfig, Module};
    /// use zeroformer::optim::{Adam, AdamConfig, Optimizer};
    /// use zeroformer::prelude::*;
    /// let layer = LinearConfig::new(4, 2).init(&Device::Cpu, &mut StdRng::seed_from_u64(0))?;
    /// let mut opt = Adam::for_module(&layer, AdamConfig::default().lr(3e-4), 0.1);
    /// layer.forward(&Tensor::ones(&[1, 4])).sum().backward();
    /// opt.step();
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn for_module(
        module: &impl crate::nn::Module,
        config: AdamConfig,
        weight_decay: f32,
    ) -> Adam {
        Adam::new(
            super::decay_groups(module.named_parameters(), weight_decay),
            config,
        )
    }

    /// An optimizer over `groups`, its moments zeros on each parameter's device.
    pub fn new(groups: Vec<ParamGroup>, config: AdamConfig) -> Adam {
        let moments = groups
            .iter()
            .map(|g| {
                g.params
                    .iter()
                    .map(|(_, p)| (p.zeros_like(), p.zeros_like()))
                    .collect()
            })
            .collect();
        Adam {
            groups,
            config,
            step: 0,
            moments,
        }
    }

    /// Sets the weight decay of parameter group `group` (for a run that
    /// continues with a new setting).
    pub fn set_weight_decay(&mut self, group: usize, weight_decay: f32) {
        self.groups[group].weight_decay = weight_decay;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The state as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`,
    /// each of its parameter's shape) and the step count, for checkpoints.
    pub fn state(&self) -> (u64, Vec<(String, Tensor)>) {
        let mut out = Vec::new();
        for (group, moments) in self.groups.iter().zip(&self.moments) {
            for ((name, _), (m, v)) in group.params.iter().zip(moments) {
                out.push((format!("{name}.exp_avg"), m.clone()));
                out.push((format!("{name}.exp_avg_sq"), v.clone()));
            }
        }
        (self.step, out)
    }

    /// Restores state saved by [`state`](Self::state); `get` returns the
    /// values saved under a name, row-major. Returns the names missing or
    /// mis-sized.
    pub fn load_state(
        &mut self,
        step: u64,
        mut get: impl FnMut(&str) -> Option<Vec<f32>>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (group, moments) in self.groups.iter().zip(&mut self.moments) {
            for ((name, p), (m, v)) in group.params.iter().zip(moments.iter_mut()) {
                for (suffix, slot) in [("exp_avg", m), ("exp_avg_sq", v)] {
                    let key = format!("{name}.{suffix}");
                    match super::restore(p, &key, &mut get) {
                        Ok(Some(saved)) => *slot = saved,
                        Ok(None) => problems.push(format!("{key}: missing")),
                        Err(problem) => problems.push(problem),
                    }
                }
            }
        }
        self.step = step;
        problems
    }
}

/// Both moments of every parameter, `<param>.exp_avg` and
/// `<param>.exp_avg_sq` (PyTorch's names), and the step.
impl super::OptimizerState for Adam {
    fn state(&self) -> (u64, Vec<(String, Tensor)>) {
        Adam::state(self)
    }

    fn load_state(
        &mut self,
        step: u64,
        get: &mut dyn FnMut(&str) -> Option<Vec<f32>>,
    ) -> Vec<String> {
        Adam::load_state(self, step, get)
    }
}

impl Adam {
    /// One update of every parameter that has a gradient, each gradient
    /// multiplied by `grad_scale` (a one-element tensor on the parameters'
    /// device, such as [`clip_coefficient`](super::clip_coefficient)): the
    /// clipping folded into the update, with nothing read back. A NaN scale
    /// skips the update on the device (weights and moments unchanged) while
    /// the step count still advances; [`set_steps`](Self::set_steps) winds
    /// it back.
    pub fn step_scaled(&mut self, grad_scale: &Tensor) {
        self.update(Some(grad_scale));
    }

    /// Sets the count of steps taken (the bias corrections' `t`): for a
    /// caller that learns later that some updates were skipped.
    pub fn set_steps(&mut self, steps: u64) {
        self.step = steps;
    }

    fn update(&mut self, grad_scale: Option<&Tensor>) {
        self.step += 1;
        let c = self.config;
        // In f64 from the whole u64 count (as PyTorch's Python floats), so
        // that no step count is truncated.
        let t = self.step as f64;
        let bias1 = (1.0 - (c.beta1 as f64).powf(t)) as f32;
        let bias2_sqrt = (1.0 - (c.beta2 as f64).powf(t)).sqrt() as f32;
        let step_size = c.lr / bias1;
        let mut updates = Vec::new();
        for (group, moments) in self.groups.iter().zip(&mut self.moments) {
            let wd = group.weight_decay;
            let step = AdamStep {
                lr: c.lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                step_size,
                bias2_sqrt,
                l2: if c.decoupled_weight_decay { 0.0 } else { wd },
                decay: if c.decoupled_weight_decay { wd } else { 0.0 },
            };
            for ((_, p), (m, v)) in group.params.iter().zip(moments.iter_mut()) {
                if let Some(grad) = p.grad() {
                    updates.push((p, grad, m, v, step));
                }
            }
        }
        // The parameters side by side, each on one thread: one hand-off for
        // the whole update instead of one per parameter (elements are
        // independent, so the bits do not depend on the split).
        let device = updates.first().map(|u| u.0.device()).unwrap_or_default();
        device.map_parts(updates, |(p, grad, m, v, step)| {
            p.adam_update(&grad, m, v, step, grad_scale)
        });
    }
}

impl Optimizer for Adam {
    /// One update of every parameter that has a gradient.
    fn step(&mut self) {
        self.update(None);
    }

    fn lr(&self) -> f32 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
}
