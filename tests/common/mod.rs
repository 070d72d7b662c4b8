//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use zeroformer::{Device, Tensor};

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

/// A file from the shared data folder (`../shared/data/<rel>` beside the
/// repository). When it is missing the test is skipped with a printed
/// reason, unless `ZEROFORMER_REQUIRE_DATA=1`, which makes it a failure.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("ZEROFORMER_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!(
            "{} is missing and ZEROFORMER_REQUIRE_DATA=1",
            path.display()
        );
    }
    eprintln!(
        "skipping: {} is missing (set ZEROFORMER_REQUIRE_DATA=1 to fail instead)",
        path.display()
    );
    None
}
