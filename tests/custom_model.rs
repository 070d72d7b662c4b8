//! A model of one's own, written the way the README shows a dependency
//! user would: `#[derive(Module)]` for the parameter plumbing, the generic
//! trainer, and save/load through `Persist`. Public API only, serde
//! included: the config derives it through `zeroformer::serde`.

use zeroformer::Result;
use zeroformer::models::Persist;
use zeroformer::nn::{
    Dropout, Linear, LinearConfig, SharedRng, count_parameters, sinusoidal_table,
};
use zeroformer::prelude::*;
use zeroformer::train::{TrainConfig, Trainable, Trainer};

/// An MLP that reads a sinusoid feature table (a buffer) and keeps its
/// config beside the layers.
#[derive(zeroformer::nn::Module)]
struct Mlp {
    #[module(skip)]
    config: MlpConfig,
    layers: Vec<Linear>,
    /// A learned scale on the output, absent when the config says so.
    scale: Option<Tensor>,
    drop: Dropout,
    #[module(buffer)]
    features: Tensor,
    #[module(skip)]
    rng: SharedRng,
}

#[derive(Clone, Debug, PartialEq, zeroformer::serde::Serialize, zeroformer::serde::Deserialize)]
#[serde(crate = "zeroformer::serde")]
struct MlpConfig {
    width: usize,
    depth: usize,
    scale: bool,
    dropout: f32,
}

impl MlpConfig {
    /// The model on `device`, its weights and dropout seeded by `seed`, as
    /// the crate's models are built (`GptConfig::init`).
    fn init(&self, device: &Device, seed: u64) -> Result<Mlp> {
        let mut rng = StdRng::seed_from_u64(seed);
        let layer = LinearConfig::new(self.width, self.width).std(0.3);
        let layers = (0..self.depth)
            .map(|_| layer.init(device, &mut rng))
            .collect::<Result<_>>()?;
        let scale = match self.scale {
            true => Some(Tensor::ones_on(&[self.width], device)?.requires_grad()),
            false => None,
        };
        let shared = SharedRng::seed_from_u64(seed);
        Ok(Mlp {
            scale,
            drop: Dropout::new(self.dropout, shared.clone()),
            features: sinusoidal_table(4, self.width, device)?,
            layers,
            rng: shared,
            config: self.clone(),
        })
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.add(&self.features.narrow(0, 1, 1));
        for layer in &self.layers {
            h = self.drop.forward(&layer.forward(&h).tanh());
        }
        match &self.scale {
            Some(s) => h.mul(s),
            None => h,
        }
    }
}

impl Trainable for Mlp {
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, y): &Self::Batch) -> Tensor {
        self.forward(x).sub(y).square().mean()
    }

    fn dropout_rng(&self) -> Option<&SharedRng> {
        Some(&self.rng)
    }
}

impl Persist for Mlp {
    type Config = MlpConfig;

    fn config(&self) -> &MlpConfig {
        &self.config
    }

    fn build(config: &MlpConfig, device: &Device) -> Result<Mlp> {
        config.init(device, 0)
    }
}

fn config() -> MlpConfig {
    MlpConfig {
        width: 4,
        depth: 2,
        scale: true,
        dropout: 0.0,
    }
}

#[test]
fn derive_names_every_parameter_and_buffer_in_field_order() {
    let model = config().init(&Device::Cpu, 1).unwrap();
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "scale"
        ]
    );
    // Two 4 x 4 layers with biases and a scale of 4.
    assert_eq!(model.num_parameters(), 2 * (16 + 4) + 4);
    let counted = count_parameters(|| config().init(&Device::Cpu, 0)).unwrap();
    assert_eq!(counted, 2 * (16 + 4) + 4);
    let mut buffers = Vec::new();
    model.visit_buffers("", &mut |n, t| {
        buffers.push((n.to_string(), t.shape().to_vec()))
    });
    assert_eq!(buffers, [("features".to_string(), vec![4, 4])]);
    // No scale in the config: no `scale` parameter.
    let plain = MlpConfig {
        scale: false,
        ..config()
    }
    .init(&Device::Cpu, 1)
    .unwrap();
    assert_eq!(plain.named_parameters().len(), 4);
}

#[test]
fn dropout_inside_a_derived_model_is_off_in_eval_mode() {
    let model = MlpConfig {
        dropout: 0.5,
        ..config()
    }
    .init(&Device::Cpu, 2)
    .unwrap();
    let x = Tensor::ones(&[3, 4]);
    assert_ne!(model.forward(&x).to_vec(), model.forward(&x).to_vec());
    let (a, b) = eval_mode(|| (model.forward(&x).to_vec(), model.forward(&x).to_vec()));
    assert_eq!(a, b);
}

#[test]
fn derive_knows_whether_the_model_draws_randomly() {
    // The trainer asks, to keep a model with dropout's batches whole.
    let with_dropout = MlpConfig {
        dropout: 0.5,
        ..config()
    };
    assert!(with_dropout.init(&Device::Cpu, 2).unwrap().draws_randomly());
    assert!(!config().init(&Device::Cpu, 2).unwrap().draws_randomly());
}

#[test]
fn a_custom_model_trains_saves_and_loads() {
    let mut train = TrainConfig::nanogpt_cpu(60);
    (
        train.batch_size,
        train.max_lr,
        train.warmup,
        train.weight_decay,
    ) = (8, 3e-2, 0, 0.0);
    let mut trainer = Trainer::new(config().init(&Device::Cpu, 3).unwrap(), train).unwrap();
    // Learn y = sin(x) elementwise from random inputs.
    let draw = |rng: &mut zeroformer::rand_chacha::ChaCha8Rng| {
        let x = Tensor::uniform(&[8, 4], -1.5, 1.5, rng);
        let y = x.sin();
        (x, y)
    };
    let first = trainer.estimate_loss_with(4, draw).unwrap();
    for _ in 0..60 {
        trainer.train_step_with(draw).unwrap();
    }
    let last = trainer.estimate_loss_with(4, draw).unwrap();
    assert!(last < first / 4.0, "loss {first} -> {last}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.safetensors");
    trainer.model.save(&path).unwrap();
    let loaded = Mlp::load(&path).unwrap();
    let x = Tensor::uniform(&[2, 4], -1.0, 1.0, &mut StdRng::seed_from_u64(9));
    assert_eq!(
        loaded.forward(&x).to_vec(),
        trainer.model.forward(&x).to_vec()
    );
    // The whole run resumes, too.
    let ckpt = dir.path().join("run.safetensors");
    trainer.save(&ckpt, &[]).unwrap();
    let (resumed, _) = Trainer::<Mlp>::resume(&ckpt, &Device::Cpu).unwrap();
    assert_eq!(resumed.step, 60);
}

#[test]
fn layer_configs_build_layers_with_their_numbers() {
    use zeroformer::nn::{
        FeedForwardConfig, LayerConfig, LayerNormConfig, LinearConfig, Module,
        MultiHeadAttentionConfig, Positional, TokenEmbeddingConfig,
    };
    let device = Device::Cpu;
    let config = LinearConfig::new(64, 128).bias(false).std(0.5);
    let built = config.init(&device, &mut StdRng::seed_from_u64(4)).unwrap();
    assert_eq!(built.weight.shape(), &[128, 64]);
    assert!(built.bias.is_none());
    // 8,192 draws from N(0, 0.5²): their standard deviation is 0.5 within 3%.
    let w = built.weight.to_vec();
    let sd = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    assert!((sd - 0.5).abs() < 0.015, "{sd}");
    // The same rng, the same layer; the layer's dropout stream is drawn from it too.
    let again = config.init(&device, &mut StdRng::seed_from_u64(4)).unwrap();
    assert_eq!(again.weight.to_vec(), w);
    let norm = LayerNormConfig::new(6).bias(false).init(&device).unwrap();
    assert_eq!(norm.named_parameters().len(), 1);
    let ff = FeedForwardConfig::new(4, 8)
        .init(&device, &mut StdRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(ff.num_parameters(), 4 * 8 + 8 + 8 * 4 + 4);
    // Bad numbers are errors, not panics.
    let mut rng = StdRng::seed_from_u64(0);
    assert!(
        MultiHeadAttentionConfig::new(32, 5)
            .init(&device, &mut rng)
            .is_err()
    );
    assert!(
        MultiHeadAttentionConfig::new(32, 4)
            .dropout(1.0)
            .init(&device, &mut rng)
            .is_err()
    );
    assert!(
        FeedForwardConfig::new(4, 8)
            .dropout(-0.1)
            .init(&device, &mut rng)
            .is_err()
    );
    assert!(
        MultiHeadAttentionConfig::new(32, 4)
            .window(Some(0))
            .init(&device, &mut rng)
            .is_err()
    );
    assert!(
        TokenEmbeddingConfig::new(10, 8, 16)
            .positional(Positional::Rotary)
            .head_dim(3)
            .init(&device, &mut rng)
            .is_err()
    );
    assert!(
        LayerConfig::new(32, 5, 64)
            .init_encoder(&device, &mut rng)
            .is_err()
    );
    // The layer config's defaults are PyTorch's nn.TransformerEncoderLayer's.
    let layer = LayerConfig::new(8, 2, 16)
        .init_encoder(&device, &mut rng)
        .unwrap();
    assert!(layer.draws_randomly(), "dropout 0.1 by default");
    assert_eq!(
        layer.num_parameters(),
        4 * 8 * 8 + 4 * 8 + 2 * 8 * 16 + 16 + 8 + 2 * 2 * 8
    );
}

/// The child side of the next test: set when this test binary runs again
/// to load a model in a process that never saw it built.
const LOAD_IN_CHILD: &str = "ZEROFORMER_TEST_LOAD_IN_CHILD";

#[test]
fn a_saved_model_loads_in_a_fresh_process() {
    let x = Tensor::from_vec(vec![0.5, -0.25, 1.0, 2.0], &[1, 4]);
    if let Ok(path) = std::env::var(LOAD_IN_CHILD) {
        let model = Mlp::load(&path).unwrap();
        println!("OUTPUT {:?}", model.forward(&x).to_vec());
        return;
    }
    let model = config().init(&Device::Cpu, 11).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.safetensors");
    model.save(&path).unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_saved_model_loads_in_a_fresh_process",
            "--nocapture",
        ])
        .env(LOAD_IN_CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "the child failed: {stdout}");
    let expected = format!("OUTPUT {:?}", model.forward(&x).to_vec());
    assert!(
        stdout.lines().any(|l| l == expected),
        "expected {expected} in the child's output:\n{stdout}"
    );
}

#[test]
fn mean_loss_over_a_split_of_uneven_batches_is_the_mean_over_its_examples() {
    use zeroformer::train::mean_loss;
    // Dropout on: the split is evaluated without it, and the model is left
    // training.
    let model = MlpConfig {
        dropout: 0.5,
        ..config()
    }
    .init(&Device::Cpu, 4)
    .unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let x = Tensor::uniform(&[7, 4], -1.0, 1.0, &mut rng);
    let y = Tensor::uniform(&[7, 4], -1.0, 1.0, &mut rng);
    let split: Vec<_> = [(0, 4), (4, 1), (5, 2)]
        .iter()
        .map(|&(start, len)| (x.narrow(0, start, len), y.narrow(0, start, len)))
        .collect();
    let whole = eval_mode(|| model.loss(&(x.clone(), y.clone())).item());
    let split_mean = mean_loss(&model, &split);
    assert!(
        (split_mean - whole).abs() <= 1e-6 * whole.abs().max(1.0),
        "{split_mean} vs {whole}"
    );
    // An unweighted mean of the three batch means differs: the weights matter.
    let unweighted: f32 =
        eval_mode(|| split.iter().map(|b| model.loss(b).item()).sum::<f32>()) / 3.0;
    assert!((unweighted - whole).abs() > 1e-4, "{unweighted} vs {whole}");
    let probe = Tensor::ones(&[3, 4]);
    assert_ne!(
        model.forward(&probe).to_vec(),
        model.forward(&probe).to_vec()
    );
}

#[test]
fn decay_all_decays_what_the_matrix_rule_leaves_alone_and_eps_reaches_adam() {
    use zeroformer::optim::LrSchedule;
    #[derive(zeroformer::nn::Module)]
    struct Two {
        matrix: Tensor,
        vector: Tensor,
    }
    impl Trainable for Two {
        type Batch = Tensor;
        // Gradients of zero: only weight decay moves the parameters.
        fn loss(&self, x: &Tensor) -> Tensor {
            let zero = self.matrix.sum().add(&self.vector.sum()).mul_scalar(0.0);
            zero.add(&x.sum())
        }
    }
    for decay_all in [false, true] {
        let model = Two {
            matrix: Tensor::ones(&[2, 2]).requires_grad(),
            vector: Tensor::ones(&[2]).requires_grad(),
        };
        let config = TrainConfig {
            decay_all,
            lr_schedule: Some(LrSchedule::Constant(0.1)),
            weight_decay: 0.5,
            grad_clip: 0.0,
            batch_size: 1,
            eps: 1e-9,
            ..TrainConfig::nanogpt_cpu(10)
        };
        let mut trainer = Trainer::new(model, config).unwrap();
        assert_eq!(trainer.optimizer.config.eps, 1e-9);
        trainer.train_step_with(|_| Tensor::ones(&[1, 1])).unwrap();
        let shrunk = 1.0 - 0.1 * 0.5;
        let close = |got: Vec<f32>, want: f32| got.iter().all(|g| (g - want).abs() < 1e-6);
        assert!(close(trainer.model.matrix.to_vec(), shrunk));
        let vector = if decay_all { shrunk } else { 1.0 };
        assert!(
            close(trainer.model.vector.to_vec(), vector),
            "decay_all {decay_all}"
        );
    }
}
