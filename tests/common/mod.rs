//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use zeroformer::Tensor;

/// Tensors written by `scripts/make_fixtures.py` (PyTorch reference values).
pub struct Fixture(HashMap<String, Tensor>);

impl Fixture {
    pub fn load(name: &str) -> Fixture {
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
        Fixture(tensors)
    }

    pub fn get(&self, name: &str) -> Tensor {
        self.0[name].clone()
    }

    pub fn leaf(&self, name: &str) -> Tensor {
        self.get(name).requires_grad()
    }

    pub fn ids(&self, name: &str) -> Tensor {
        let t = self.get(name);
        Tensor::from_ids(t.to_vec().iter().map(|&v| v as i64).collect(), t.shape())
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
