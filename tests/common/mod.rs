//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use zeroformer::{Device, GptConfig, Tensor};

/// Defines one `#[test]` per device this build has, each calling
/// `$test(&device)`, in a module named after the test: `$test::cpu` on
/// the CPU and, with the `cuda` feature, `$test::cuda` on CUDA device 0
/// (candle's `test_device!`). A test written once runs on every device; a
/// new backend adds its function here.
#[macro_export]
macro_rules! test_device {
    ($test:ident) => {
        mod $test {
            #[test]
            fn cpu() {
                super::$test(&zeroformer::Device::Cpu)
            }

            #[cfg(feature = "cuda")]
            #[test]
            fn cuda() {
                if let Some(device) = $crate::common::cuda_device() {
                    super::$test(&device)
                }
            }
        }
    };
}

/// CUDA device 0, or `None` with a printed reason when it cannot be used;
/// with `ZEROFORMER_REQUIRE_CUDA=1` that is a failure instead.
pub fn cuda_device() -> Option<Device> {
    match Device::cuda(0) {
        Ok(device) => Some(device),
        Err(e) if std::env::var("ZEROFORMER_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("{e} and ZEROFORMER_REQUIRE_CUDA=1")
        }
        Err(e) => {
            eprintln!("skipping on CUDA: {e}");
            None
        }
    }
}

/// Tensors written by `scripts/make_fixtures.py` (PyTorch reference values),
/// handed out on one device.
pub struct Fixture(HashMap<String, Tensor>, Device);

impl Fixture {
    /// The fixture's tensors, on the CPU.
    pub fn load(name: &str) -> Fixture {
        Fixture::load_on(name, &Device::Cpu)
    }

    /// The fixture's tensors, handed out on `device`.
    pub fn load_on(name: &str, device: &Device) -> Fixture {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let tensors = json
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let shape: Vec<usize> = v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let data: Vec<f32> = v["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                (k.clone(), Tensor::from_vec(data, &shape))
            })
            .collect();
        Fixture(tensors, *device)
    }

    pub fn get(&self, name: &str) -> Tensor {
        self.0[name]
            .to_device(&self.1)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Whether the fixture holds `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn leaf(&self, name: &str) -> Tensor {
        self.get(name).requires_grad()
    }

    pub fn ids(&self, name: &str) -> Tensor {
        let t = self.get(name);
        Tensor::from_ids_on(
            t.to_vec().iter().map(|&v| v as i64).collect(),
            t.shape(),
            &self.1,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Asserts `actual` matches the fixture's `name` elementwise.
    pub fn assert_matches(&self, name: &str, actual: &Tensor) {
        let expected = self.get(name);
        assert_eq!(actual.shape(), expected.shape(), "{name}: shape");
        for (i, (a, e)) in actual.to_vec().iter().zip(expected.to_vec()).enumerate() {
            let tol = 1e-5 * e.abs() + 1e-6;
            assert!(
                (a - e).abs() <= tol,
                "{name}[{i}]: zeroformer {a} vs PyTorch {e} (diff {})",
                (a - e).abs()
            );
        }
    }
}

impl Fixture {
    /// Asserts `actual` matches the fixture's `name` within 1e-5 of the
    /// tensor's scale (its largest magnitude): for a gradient that sums
    /// many terms, whose small entries carry the rounding of the large
    /// terms they cancel.
    pub fn assert_matches_to_scale(&self, name: &str, actual: &Tensor) {
        let expected = self.get(name).to_vec();
        assert_eq!(actual.shape(), self.get(name).shape(), "{name}: shape");
        let scale = expected.iter().fold(0.0f32, |m, e| m.max(e.abs()));
        for (i, (a, e)) in actual.to_vec().iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-5 * scale,
                "{name}[{i}]: zeroformer {a} vs PyTorch {e} (diff {}, scale {scale})",
                (a - e).abs()
            );
        }
    }
}

/// A data file, found where the examples look: `data/<rel>` in the
/// repository, then `../shared/data/<rel>` beside it, then (for GPT-2's
/// tokenizer files) the download cache of `tokenize --gpt2`. When it is
/// missing the test is skipped, and says so on the terminal even without
/// `--nocapture` (the notice is written past the test harness's capture),
/// naming the file and how to fetch it; with `ZEROFORMER_REQUIRE_DATA=1`
/// it fails instead.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut places = vec![
        root.join("data").join(rel),
        root.join("../shared/data").join(rel),
    ];
    if let Some(file) = rel.strip_prefix("gpt2/") {
        let cache = std::env::var_os("ZEROFORMER_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/zeroformer"))
            });
        if let Some(cache) = cache {
            places.push(cache.join("models/gpt2").join(file));
        }
    }
    if let Some(found) = places.iter().find(|p| p.exists()) {
        return Some(found.clone());
    }
    let fetch = if rel.starts_with("gpt2/") {
        "cargo run --release --example tokenize -- --gpt2 --input Cargo.toml"
    } else {
        "cargo run --release --example shakespeare -- --iters 1"
    };
    let why = format!(
        "{} is missing (looked in {}); `{fetch}` fetches it",
        rel,
        places
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if std::env::var("ZEROFORMER_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{why}, and ZEROFORMER_REQUIRE_DATA=1");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Straight to the terminal: eprintln! would be captured with the
    // test's output and shown only if it failed.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {test}: {why}\n").as_bytes(),
    );
    None
}

/// 3000 tokens over a vocabulary of 17, from a rule with short and long
/// periods: what the small training tests learn.
pub fn periodic_tokens() -> Vec<i64> {
    (0..3000).map(|i| ((i * 7 + i / 13) % 17) as i64).collect()
}

/// A GPT small enough to train in milliseconds on [`periodic_tokens`]: two
/// layers of width 16, two heads, a context of 16, with biases.
pub fn tiny_gpt(dropout: f32) -> GptConfig {
    GptConfig {
        vocab_size: 17,
        block_size: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        dropout,
        ..GptConfig::default()
    }
}

/// A trainer of a fresh GPT of `config` on `device`, seeded by the run's
/// seed: what a training script writes, `Trainer::new(config.init(&device,
/// train.seed)?, train)`.
pub fn gpt_trainer_on(
    config: &GptConfig,
    train: zeroformer::train::TrainConfig,
    device: &Device,
) -> zeroformer::Result<zeroformer::train::Trainer<zeroformer::Gpt>> {
    zeroformer::train::Trainer::new(config.init(device, train.seed)?, train)
}

/// [`gpt_trainer_on`] the CPU.
pub fn gpt_trainer(
    config: &GptConfig,
    train: zeroformer::train::TrainConfig,
) -> zeroformer::Result<zeroformer::train::Trainer<zeroformer::Gpt>> {
    gpt_trainer_on(config, train, &Device::Cpu)
}
