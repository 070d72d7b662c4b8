//! Finite-difference gradient checking, for the crate's own tests and for
//! anyone writing a new op (PyTorch's `torch.autograd.gradcheck`).
//!
//! The function under test `f` maps inputs to an output tensor of any shape.
//! The harness reduces it to a scalar with a fixed random projection,
//! `L = Σ f(x) ⊙ r` (a plain sum would hide errors: the sum of a softmax is
//! constant, so its gradient is zero whatever the backward rule says), gets
//! `dL/dx` from `backward`, and compares it element by element with the
//! central difference `(L(x + ε) - L(x - ε)) / 2ε`, where `L` is summed in f64.
//!
//! ## The step and the tolerance
//! Everything is f32, so the step is a compromise between two errors:
//! - truncation: the central difference is off by about `ε²/6 · f'''`, which
//!   for ε = 1e-2 and the smooth ops here (|f'''| up to ~10 on the inputs
//!   the tests use) is below 2e-4;
//! - rounding: each output carries about 6e-8 relative error, which survives
//!   the difference and is divided by 2ε: about 3e-6 per unit of output, a
//!   few 1e-5 for the outputs of a test.
//!
//! So ε = 1e-2 with `|numeric - analytic| <= 1e-3 + 1e-2 · |numeric|` leaves
//! a margin of several times the expected error, while a wrong rule (a
//! missing factor, a sign, a gradient not summed over a broadcast dimension)
//! is off by far more than 1%. Inputs must stay further than ε from kinks
//! (relu at 0, ties in max), which the tests arrange.
//!
//! ## Under autocast
//! [`GradCheck::autocast`] checks the gradients `f` computes under
//! [`autocast`](crate::autocast) against the central difference of `f` in
//! f32 (the full-precision function the mixed-precision one approximates).
//! bf16 keeps 8 significant bits, so each rounding is off by at most
//! 2⁻⁹ of its value. A gradient under autocast passes through about six
//! roundings (each operand cast, the product rounded, the upstream
//! gradient cast, the gradient's product rounded, the cast back): about
//! 6·2⁻⁹ ≈ 1.2% of the terms it sums. The tolerance is `2⁻⁵ · |numeric|`
//! (3.1%) plus `2⁻⁶` of the input's largest numeric gradient, for elements
//! whose terms cancel: a margin of 2-3x over that estimate, while a wrong
//! rule is off by far more.

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::Tensor;
use crate::autograd::no_grad;

/// Step and tolerances of a gradient check; see the module docs for why.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// The finite-difference step ε.
    pub eps: f32,
    /// Absolute tolerance.
    pub atol: f64,
    /// Tolerance relative to the numeric gradient.
    pub rtol: f64,
    /// Whether the analytic gradient is computed under
    /// [`autocast`](crate::autocast) of this dtype; `atol` is then
    /// relative to each input's largest numeric gradient.
    pub autocast: Option<crate::DType>,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-2,
            atol: 1e-3,
            rtol: 1e-2,
            autocast: None,
        }
    }
}

/// The worst disagreement a failed check found.
#[derive(Clone, Debug)]
pub struct GradCheckError {
    /// Which input, and which element of it (row-major).
    pub input: usize,
    /// Which element of that input, row-major.
    pub element: usize,
    /// The central difference's gradient.
    pub numeric: f64,
    /// The backward rule's gradient.
    pub analytic: f64,
    /// Elements out of tolerance, over all inputs.
    pub failures: usize,
}

impl std::fmt::Display for GradCheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "gradient check failed at {} element(s); worst: input {} element {}: numeric {:.6} vs analytic {:.6}",
            self.failures, self.input, self.element, self.numeric, self.analytic
        )
    }
}

impl std::error::Error for GradCheckError {}

impl GradCheck {
    /// The check of gradients computed under [`autocast`](crate::autocast)
    /// of `dtype` against f32's central differences, with the tolerances
    /// the [module docs](self) derive for bf16.
    ///
    /// ```
    /// use zeroformer::gradcheck::GradCheck;
    /// use zeroformer::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.25], &[2, 2]);
    /// let w = Tensor::from_vec(vec![1.5, -0.5, 0.75, 2.0], &[2, 2]);
    /// GradCheck::autocast(DType::BF16).check(|xs| xs[0].matmul(&xs[1]), &[x, w]).unwrap();
    /// ```
    pub fn autocast(dtype: crate::DType) -> GradCheck {
        GradCheck {
            eps: 1e-2,
            atol: 2f64.powi(-6),
            rtol: 2f64.powi(-5),
            autocast: Some(dtype),
        }
    }

    /// Checks the gradients of `f` at `inputs` (f32 tensors; copies are
    /// made, each on its input's device).
    ///
    /// ```
    /// use zeroformer::gradcheck::GradCheck;
    /// use zeroformer::Tensor;
    /// let x = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3]);
    /// GradCheck::default().check(|xs| xs[0].tanh(), &[x]).unwrap();
    /// ```
    pub fn check(
        &self,
        f: impl Fn(&[Tensor]) -> Tensor,
        inputs: &[Tensor],
    ) -> Result<(), GradCheckError> {
        let values: Vec<Vec<f32>> = inputs.iter().map(|x| x.to_vec()).collect();
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|x| x.shape().to_vec()).collect();
        // Fresh leaves on each input's own device.
        let on_device = |values: &[Vec<f32>]| -> Vec<Tensor> {
            inputs
                .iter()
                .zip(values)
                .zip(&shapes)
                .map(|((x, v), s)| x.new_tensor(v.clone(), s))
                .collect()
        };
        let leaves: Vec<Tensor> = on_device(&values)
            .into_iter()
            .map(Tensor::requires_grad)
            .collect();
        let out = match self.autocast {
            Some(dtype) => crate::autocast(dtype, || f(&leaves)).to_dtype(crate::DType::F32),
            None => f(&leaves),
        };
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let r = Tensor::uniform(out.shape(), -1.0, 1.0, &mut rng).to_vec();
        let projection = out.new_tensor(r.clone(), out.shape());
        out.mul(&projection).sum().backward();

        let loss_at = |values: &[Vec<f32>]| -> f64 {
            let xs = on_device(values);
            let y = no_grad(|| f(&xs)).to_vec();
            y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum()
        };

        let mut worst: Option<(f64, GradCheckError)> = None;
        let mut failures = 0;
        let mut probe = values.clone();
        for (i, leaf) in leaves.iter().enumerate() {
            let analytic = leaf
                .grad()
                .map(|g| g.to_vec())
                .unwrap_or_else(|| vec![0.0; leaf.numel()]);
            let numeric: Vec<f64> = (0..values[i].len())
                .map(|j| {
                    probe[i][j] = values[i][j] + self.eps;
                    let plus = loss_at(&probe);
                    probe[i][j] = values[i][j] - self.eps;
                    let minus = loss_at(&probe);
                    probe[i][j] = values[i][j];
                    // The step actually taken, after f32 rounding of x ± ε.
                    let step = (values[i][j] + self.eps) as f64 - (values[i][j] - self.eps) as f64;
                    (plus - minus) / step
                })
                .collect();
            let scale = match self.autocast {
                Some(_) => numeric.iter().fold(0.0f64, |m, x| m.max(x.abs())),
                None => 1.0,
            };
            for (j, &numeric) in numeric.iter().enumerate() {
                let a = analytic[j] as f64;
                let excess = (numeric - a).abs() - (self.atol * scale + self.rtol * numeric.abs());
                if excess > 0.0 || !a.is_finite() {
                    failures += 1;
                    if worst.as_ref().is_none_or(|(e, _)| excess > *e) {
                        let err = GradCheckError {
                            input: i,
                            element: j,
                            numeric,
                            analytic: a,
                            failures: 0,
                        };
                        worst = Some((excess, err));
                    }
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((_, mut err)) => {
                err.failures = failures;
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::{self, Backward};

    /// Forward `2x`, backward claiming `3g`: a rule the check must reject.
    struct WrongRule;

    impl Backward for WrongRule {
        fn name(&self) -> &'static str {
            "wrong"
        }

        fn backward(&self, g: &Tensor, _: &[Tensor]) -> Vec<Option<Tensor>> {
            vec![Some(g.mul_scalar(3.0))]
        }
    }

    fn wrong_double(x: &Tensor) -> Tensor {
        let data = x.mul_scalar(2.0).storage().contiguous_copy(x.layout());
        Tensor::from_output(data, x.shape(), autograd::node(&[x], || WrongRule))
    }

    #[test]
    fn rejects_a_wrong_backward_rule() {
        let x = Tensor::from_vec(vec![0.1, 0.2, 0.3], &[3]);
        let err = GradCheck::default()
            .check(|xs| wrong_double(&xs[0]), &[x])
            .unwrap_err();
        assert_eq!(err.failures, 3);
        assert!((err.analytic / err.numeric - 1.5).abs() < 1e-3, "{err}");
    }

    #[test]
    fn accepts_a_right_one() {
        let x = Tensor::from_vec(vec![0.1, 0.2, 0.3], &[3]);
        GradCheck::default()
            .check(|xs| xs[0].mul_scalar(2.0), &[x])
            .unwrap();
    }
}
