//! bf16 as a dtype: casts to and from every other dtype on strided views,
//! gradients through the casts, and Hugging Face files whose weights are
//! bf16 or f16 (read exactly as f32, written as bf16). The casts' bits
//! against `half` on every f32 are a unit test (backend/cpu/cast.rs).

#[macro_use]
mod common;

use zeroformer::half::{bf16, f16};
use zeroformer::prelude::*;

/// `x` rounded to bf16 and back, by `half`'s reference conversion.
fn rounded(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect()
}

#[test]
fn casts_round_to_bf16_and_back_on_strided_views() {
    let values: Vec<f32> = (0..24)
        .map(|i| (i as f32 - 11.5) * 0.731_f32.powi(i))
        .collect();
    let x = Tensor::from_vec(values, &[4, 6]);
    // A transposed, narrowed view: the cast walks its strides.
    let view = x.t().narrow(0, 1, 4);
    let expected = rounded(&view.to_vec());
    let cast = view.to_dtype(DType::BF16);
    assert_eq!((cast.dtype(), cast.shape()), (DType::BF16, &[4, 4][..]));
    assert_eq!(cast.to_dtype(DType::F32).to_vec(), expected);
    assert_eq!(
        cast.to_vec_bf16(),
        expected
            .iter()
            .map(|&v| bf16::from_f32(v))
            .collect::<Vec<_>>()
    );
    // Integers and booleans go through f32 both ways.
    let ids = Tensor::from_ids(vec![-3, 0, 257, 1 << 20], &[4]);
    assert_eq!(
        ids.to_dtype(DType::BF16).to_dtype(DType::I64).to_vec_i64(),
        vec![-3, 0, 256, 1 << 20]
    );
    let mask = Tensor::from_bools(vec![true, false], &[2]).to_dtype(DType::BF16);
    assert_eq!(mask.to_dtype(DType::F32).to_vec(), vec![1.0, 0.0]);
    assert_eq!(mask.to_dtype(DType::Bool).to_vec_bool(), vec![true, false]);
    // The abridged print shows bf16 values as numbers.
    assert!(format!("{cast:?}").contains("dtype=BF16"), "{cast:?}");
}

/// The gradient of a cast is the upstream gradient cast back: through
/// f32 -> bf16 -> f32 it reaches the f32 leaf rounded to bf16.
fn gradients_reach_f32_weights_through_casts(device: &Device) {
    let x = Tensor::from_vec_on(vec![0.3, -1.2, 2.5], &[3], device)
        .unwrap()
        .requires_grad();
    let w = vec![1.0 + 1.0 / 256.0, 2.345_678, -0.1];
    let upstream = x.new_tensor(w.clone(), &[3]);
    let through = x.to_dtype(DType::BF16).to_dtype(DType::F32);
    through.mul(&upstream).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), rounded(&w));
    assert!(through.is_tracked());
}

/// Casts to and from bf16 run on the CPU; CUDA refuses them, naming the
/// op and the dtype.
fn bf16_casts_on_each_device(device: &Device) {
    if *device == Device::Cpu {
        gradients_reach_f32_weights_through_casts(device);
        return;
    }
    let x = Tensor::ones_on(&[2], device).unwrap();
    let refused = std::panic::catch_unwind(|| x.to_dtype(DType::BF16)).unwrap_err();
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("to_dtype") && message.contains("BF16"),
        "{message}"
    );
}

test_device!(bf16_casts_on_each_device);

/// The tiny Hugging Face GPT-2 of tests/fixtures, and its weights rounded
/// to bf16.
fn tiny_gpt2() -> Gpt {
    let dir = format!("{}/tests/fixtures/hf_gpt2_tiny", env!("CARGO_MANIFEST_DIR"));
    Gpt::from_pretrained(dir, &Device::Cpu).unwrap()
}

#[test]
fn a_bf16_hugging_face_directory_holds_the_rounded_weights() {
    let model = tiny_gpt2();
    let dir = tempfile::tempdir().unwrap();
    model.save_pretrained_as(dir.path(), DType::BF16).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
    // Half the bytes of the f32 file, give or take the header.
    let f32_dir = tempfile::tempdir().unwrap();
    model.save_pretrained(f32_dir.path()).unwrap();
    let size = |d: &std::path::Path| {
        std::fs::metadata(d.join("model.safetensors"))
            .unwrap()
            .len()
    };
    let (bf16_bytes, f32_bytes) = (size(dir.path()), size(f32_dir.path()));
    assert!(
        bf16_bytes * 2 < f32_bytes + 8192,
        "{bf16_bytes} vs {f32_bytes}"
    );
    let back = Gpt::from_pretrained(dir.path(), &Device::Cpu).unwrap();
    for ((name, a), (_, b)) in model.named_parameters().iter().zip(back.named_parameters()) {
        assert_eq!(b.to_vec(), rounded(&a.to_vec()), "{name}");
    }
    // And the logits are those of the rounded weights, exactly.
    let ids = Tensor::from_ids(vec![1, 5, 9, 2], &[1, 4]);
    for p in model.parameters() {
        p.update_data(|d| d.iter_mut().for_each(|v| *v = bf16::from_f32(*v).to_f32()));
    }
    let logits = |m: &Gpt| no_grad(|| m.forward(&ids, Default::default()).logits.to_vec());
    assert_eq!(logits(&back), logits(&model));
}

#[test]
fn an_f16_hugging_face_directory_loads_exactly() {
    // transformers writes `torch_dtype: float16` models with F16 tensors:
    // the tiny fixture's, each weight rounded to f16 here.
    let source = format!("{}/tests/fixtures/hf_gpt2_tiny", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(format!("{source}/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let bytes = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .flat_map(|x| f16::from_f32(x).to_le_bytes())
                .collect();
            (name, view.shape().to_vec(), bytes)
        })
        .collect();
    let views = halves.iter().map(|(name, shape, bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes)
                .unwrap();
        (name.clone(), view)
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{source}/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    safetensors::serialize_to_file(views, &None, &dir.path().join("model.safetensors")).unwrap();
    let loaded = Gpt::from_pretrained(dir.path(), &Device::Cpu).unwrap();
    let reference = tiny_gpt2();
    for ((name, a), (_, b)) in reference
        .named_parameters()
        .iter()
        .zip(loaded.named_parameters())
    {
        let expected: Vec<f32> = a
            .to_vec()
            .iter()
            .map(|&v| f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(b.to_vec(), expected, "{name}");
    }
}
