//! Stochastic gradient descent with momentum (PyTorch's `torch.optim.SGD`).

use super::{Optimizer, ParamGroup};

/// `buf = momentum·buf + g` (the first step `buf = g`), `p -= lr·buf`, with
/// L2 weight decay added to the gradient.
pub struct Sgd {
    groups: Vec<ParamGroup>,
    lr: f32,
    momentum: f32,
    buffers: Vec<Vec<Option<Vec<f32>>>>,
}

impl Sgd {
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

impl Optimizer for Sgd {
    fn step(&mut self) {
        for (group, buffers) in self.groups.iter().zip(&mut self.buffers) {
            for ((_, p), buf) in group.params.iter().zip(buffers.iter_mut()) {
                let Some(grad) = p.grad() else { continue };
                let mut g = grad.to_vec();
                if group.weight_decay != 0.0 {
                    let w = p.to_vec();
                    g.iter_mut()
                        .zip(&w)
                        .for_each(|(g, w)| *g += group.weight_decay * w);
                }
                if self.momentum != 0.0 {
                    match buf {
                        Some(b) => b
                            .iter_mut()
                            .zip(&g)
                            .for_each(|(b, g)| *b = self.momentum * *b + g),
                        None => *buf = Some(g.clone()),
                    }
                    g.clone_from(buf.as_ref().expect("set above"));
                }
                let lr = self.lr;
                p.update_data(|w| w.iter_mut().zip(&g).for_each(|(w, g)| *w -= lr * g));
            }
        }
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
