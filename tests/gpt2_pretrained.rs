//! Hugging Face GPT-2 directories in and out, against transformers:
//! tests/fixtures/hf_gpt2_*/ were written by GPT2LMHeadModel.save_pretrained
//! (scripts/make_gpt2_fixtures.py), with the logits, loss and gradients
//! transformers computed for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use zeroformer::prelude::*;

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/hf_gpt2_{name}"))
}

/// Every tensor of a safetensors file: name -> (shape, f32 or i64-as-f64 values).
fn read_all(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = match v.dtype() {
                Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::BF16 => v
                    .data()
                    .chunks_exact(2)
                    .map(|b| zeroformer::half::bf16::from_le_bytes(b.try_into().unwrap()).to_f64())
                    .collect(),
                Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                    .collect(),
                other => panic!("{name}: {other:?}"),
            };
            (name, (v.shape().to_vec(), values))
        })
        .collect()
}

/// Our parameter name and whether Hugging Face stores it transposed.
fn ours(hf: &str) -> (String, bool) {
    let name = hf
        .trim_start_matches("transformer.")
        .replace("h.", "blocks.")
        .replace("attn.c_attn", "attn.qkv")
        .replace("attn.c_proj", "attn.proj")
        .replace("mlp.c_fc", "mlp.fc")
        .replace("mlp.c_proj", "mlp.proj");
    let transposed = hf.contains(".c_") && hf.ends_with(".weight");
    (name, transposed)
}

fn transpose(data: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| data[r * cols + c]))
        .collect()
}

fn assert_close(name: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{name}: lengths");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= rel * scale,
        "{name}: max |diff| {worst:e} > {rel} x {scale:e}"
    );
}

fn check_against_transformers(name: &str) {
    let dir = fixture_dir(name);
    let model = Gpt::from_pretrained(&dir, &Device::Cpu).unwrap();
    let expected = read_all(&dir.join("expected.safetensors"));
    let (ids_shape, ids) = &expected["ids"];
    let ids = Tensor::from_ids(ids.iter().map(|&v| v as i64).collect(), ids_shape);
    let logits = model.forward(&ids, Default::default()).logits;
    let to_f64 = |t: &Tensor| t.to_vec().into_iter().map(f64::from).collect::<Vec<_>>();
    assert_close(
        &format!("{name} logits"),
        &to_f64(&logits),
        &expected["logits"].1,
        1e-4,
    );

    // Hugging Face's loss: position t predicts token t + 1.
    let (b, t) = (ids_shape[0], ids_shape[1]);
    let loss = Gpt::loss(
        &logits.narrow(1, 0, t - 1),
        &ids.narrow(1, 1, t - 1).contiguous(),
    );
    let want = expected["loss"].1[0];
    assert!(
        ((loss.item() as f64) - want).abs() <= 1e-5 * want.abs(),
        "{name} loss {} vs {want}",
        loss.item()
    );
    assert_eq!(b, 2);
    loss.backward();
    let params: HashMap<String, Tensor> = model.named_parameters().into_iter().collect();
    let mut compared = 0;
    for (key, (shape, grad)) in &expected {
        let Some(hf) = key.strip_prefix("grad.") else {
            continue;
        };
        let (our_name, transposed) = ours(hf);
        let got = to_f64(&params[&our_name].grad().unwrap());
        let want = if transposed {
            transpose(grad, shape[0], shape[1])
        } else {
            grad.clone()
        };
        assert_close(&format!("{name} gradient of {hf}"), &got, &want, 1e-3);
        compared += 1;
    }
    assert_eq!(
        compared,
        params.len(),
        "every parameter's gradient compared"
    );
}

#[test]
fn a_hugging_face_file_given_to_load_points_to_from_pretrained() {
    use zeroformer::models::Persist;
    let file = fixture_dir("tiny").join("model.safetensors");
    let err = Gpt::load(&file)
        .err()
        .expect("not a zeroformer checkpoint")
        .to_string();
    assert!(err.contains("Gpt::from_pretrained(dir, &device)"), "{err}");
}

#[test]
fn logits_loss_and_gradients_match_transformers() {
    check_against_transformers("tiny");
    check_against_transformers("wide");
}

#[test]
fn save_pretrained_writes_what_transformers_wrote() {
    let source = fixture_dir("tiny");
    let model = Gpt::from_pretrained(&source, &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var("ZEROFORMER_KEEP_SAVED") {
        Ok(keep) => PathBuf::from(keep),
        Err(_) => tmp.path().join("saved"),
    };
    model.save_pretrained(&dir).unwrap();
    // The same tensors, bit for bit, under the same names and shapes.
    let (theirs, mine) = (
        read_all(&source.join("model.safetensors")),
        read_all(&dir.join("model.safetensors")),
    );
    let mut names: Vec<&String> = theirs.keys().collect();
    names.sort();
    let mut my_names: Vec<&String> = mine.keys().collect();
    my_names.sort();
    assert_eq!(names, my_names);
    for name in names {
        assert_eq!(theirs[name], mine[name], "{name}");
    }
    let config = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    let (a, b) = (config(&source), config(&dir));
    for key in [
        "model_type",
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "activation_function",
        "layer_norm_epsilon",
        "n_inner",
    ] {
        assert_eq!(a[key], b[key], "config.json {key}");
    }
    // And it loads back to the same logits.
    let again = Gpt::from_pretrained(&dir, &Device::Cpu).unwrap();
    let ids = Tensor::from_ids(vec![1, 5, 9, 3], &[1, 4]);
    assert_eq!(
        again.forward(&ids, Default::default()).logits.to_vec(),
        model.forward(&ids, Default::default()).logits.to_vec()
    );
}

#[test]
fn a_folder_saved_with_its_tokenizer_is_complete() {
    use zeroformer::tokenizer::{BpeTokenizer, BpeTrainer, Tokenizer};
    let text = "To be, or not to be, that is the question: whether 'tis nobler in the mind.";
    let tok = BpeTrainer::new(300)
        .special_tokens(&["<|endoftext|>"])
        .train(text)
        .unwrap();
    let config = GptConfig {
        vocab_size: tok.vocab_size(),
        block_size: 16,
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        dropout: 0.1,
        bias: true,
        ..GptConfig::default()
    };
    let model = config.init(&Device::Cpu, 3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var("ZEROFORMER_KEEP_SAVED_WITH_TOKENIZER") {
        Ok(keep) => PathBuf::from(keep),
        Err(_) => tmp.path().join("saved"),
    };
    model.save_pretrained_with_tokenizer(&dir, &tok).unwrap();
    let eot = tok.special_tokens()[0].1;
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let (config, generation) = (json("config.json"), json("generation_config.json"));
    for c in [&config, &generation] {
        assert_eq!(
            (c["bos_token_id"].as_i64(), c["eos_token_id"].as_i64()),
            (Some(eot), Some(eot))
        );
    }
    // f32 settings as the numbers they print as.
    let config_text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(
        config_text.contains("\"resid_pdrop\": 0.1,"),
        "{config_text}"
    );
    assert_eq!(json("tokenizer_config.json")["eos_token"], "<|endoftext|>");
    // The folder alone gives back the tokenizer (GPT-2's layout and
    // tokenizer.json) and the model.
    let sample = "whether 'tis nobler<|endoftext|> to be";
    let ids = tok.encode_with_special_tokens(sample).unwrap();
    let from_files = BpeTokenizer::from_pretrained(&dir).unwrap();
    let from_json = BpeTokenizer::load(dir.join("tokenizer.json")).unwrap();
    assert_eq!(from_files.encode_with_special_tokens(sample).unwrap(), ids);
    assert_eq!(from_json.encode_with_special_tokens(sample).unwrap(), ids);
    assert_eq!(from_files.decode(&ids).unwrap(), sample);
    if let Ok(keep) = std::env::var("ZEROFORMER_KEEP_SAVED_WITH_TOKENIZER") {
        let expected = serde_json::json!({"text": sample, "ids": ids});
        std::fs::write(
            PathBuf::from(keep).join("zeroformer_ids.json"),
            expected.to_string(),
        )
        .unwrap();
    }
    let again = Gpt::from_pretrained(&dir, &Device::Cpu).unwrap();
    let x = Tensor::from_ids(ids[..4].to_vec(), &[1, 4]);
    no_grad(|| {
        eval_mode(|| {
            assert_eq!(
                again.forward(&x, Default::default()).logits.to_vec(),
                model.forward(&x, Default::default()).logits.to_vec()
            )
        })
    });
}

/// Rewrites the fixture's weights through `edit` (name, shape, values) into `dir`.
fn edited(dir: &Path, edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let source = fixture_dir("tiny");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
    let all = read_all(&source.join("model.safetensors"));
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = all
        .into_iter()
        .map(|(n, (s, v))| (n, s, v.into_iter().map(|x| x as f32).collect()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut tensors);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &dir.join("model.safetensors")).unwrap();
}

fn error_of(dir: &Path) -> String {
    Gpt::from_pretrained(dir, &Device::Cpu)
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_directory_that_is_not_this_gpt2_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |n: &str| tmp.path().join(n);

    edited(&at("missing"), |t| {
        t.retain(|(n, _, _)| n != "transformer.h.1.mlp.c_fc.bias")
    });
    let e = error_of(&at("missing"));
    assert!(
        e.contains("missing: transformer.h.1.mlp.c_fc.bias") && e.contains("model.safetensors"),
        "{e}"
    );

    edited(&at("extra"), |t| {
        t.push((
            "transformer.h.7.attn.c_attn.weight".into(),
            vec![2],
            vec![0.0, 0.0],
        ))
    });
    let e = error_of(&at("extra"));
    assert!(
        e.contains("unexpected: transformer.h.7.attn.c_attn.weight"),
        "{e}"
    );

    edited(&at("shape"), |t| {
        let w = t
            .iter_mut()
            .find(|(n, _, _)| n == "transformer.h.0.attn.c_attn.weight")
            .unwrap();
        w.1.reverse();
    });
    let e = error_of(&at("shape"));
    assert!(
        e.contains("misshaped: transformer.h.0.attn.c_attn.weight is [96, 32], expected [32, 96]"),
        "{e}"
    );

    // Older files: no prefix, mask buffers, a tied head.
    edited(&at("old"), |t| {
        let wte = t
            .iter()
            .find(|(n, _, _)| n == "transformer.wte.weight")
            .unwrap()
            .clone();
        for (n, _, _) in t.iter_mut() {
            *n = n.trim_start_matches("transformer.").to_string();
        }
        t.push((
            "h.0.attn.bias".into(),
            vec![1, 1, 2, 2],
            vec![1.0, 0.0, 1.0, 1.0],
        ));
        t.push(("lm_head.weight".into(), wte.1, wte.2));
    });
    let ids = Tensor::from_ids(vec![3, 1, 4], &[1, 3]);
    let old = Gpt::from_pretrained(at("old"), &Device::Cpu).unwrap();
    let new = Gpt::from_pretrained(fixture_dir("tiny"), &Device::Cpu).unwrap();
    assert_eq!(
        old.forward(&ids, Default::default()).logits.to_vec(),
        new.forward(&ids, Default::default()).logits.to_vec()
    );

    edited(&at("untied"), |t| {
        let (_, shape, mut values) = t
            .iter()
            .find(|(n, _, _)| n == "transformer.wte.weight")
            .unwrap()
            .clone();
        values[0] += 1.0;
        t.push(("lm_head.weight".into(), shape, values));
    });
    assert!(error_of(&at("untied")).contains("only a tied head"));

    // The config.
    edited(&at("relu"), |_| {});
    let config = std::fs::read_to_string(at("relu").join("config.json")).unwrap();
    std::fs::write(
        at("relu").join("config.json"),
        config.replace("gelu_new", "relu"),
    )
    .unwrap();
    let e = error_of(&at("relu"));
    assert!(
        e.contains("config.json") && e.contains("\"activation_function\" is \"relu\""),
        "{e}"
    );
    std::fs::write(
        at("relu").join("config.json"),
        config.replace("\"n_head\": 4", "\"n_head\": 5"),
    )
    .unwrap();
    assert!(error_of(&at("relu")).contains("config.json"));
    std::fs::remove_file(at("relu").join("config.json")).unwrap();
    assert!(error_of(&at("relu")).contains("config.json"));

    // The weights file itself: truncated, a header longer than the file, not safetensors.
    let weights = std::fs::read(fixture_dir("tiny").join("model.safetensors")).unwrap();
    let broken: [(&str, Vec<u8>); 3] = [
        ("truncated", weights[..weights.len() - 100].to_vec()),
        (
            "header",
            [u64::MAX.to_le_bytes().as_slice(), &weights[8..]].concat(),
        ),
        ("text", b"not a safetensors file at all".to_vec()),
    ];
    for (name, bytes) in broken {
        edited(&at(name), |_| {});
        std::fs::write(at(name).join("model.safetensors"), bytes).unwrap();
        let e = error_of(&at(name));
        assert!(
            e.contains("model.safetensors") && e.contains("not a safetensors file"),
            "{name}: {e}"
        );
    }
}

/// One rounding step of bf16 at `x`: the gap between it and the next
/// representable value away from zero.
fn bf16_ulp(x: f64) -> f64 {
    let e = (x.abs().max(f64::MIN_POSITIVE)).log2().floor();
    2f64.powf(e - 7.0)
}

/// A GPT-2 that transformers saved in bf16 (`scripts/make_gpt2_fixtures.py
/// --only bf16`), loaded and run in bf16 as transformers runs it
/// (`torch_dtype=torch.bfloat16`). The logits on the prompt are within two
/// rounding steps (at the row's largest logit) of transformers': bf16
/// activations rounded after every op, in another summation order, differ
/// by about one at the logits. Greedy
/// decoding with the KV cache picks transformers' tokens until a step where
/// transformers' best two logits are one rounding step apart: a tie that
/// summation order decides, where ours must pick transformers' runner-up.
/// On this fixture that first happens at token 32.
#[test]
fn a_bf16_model_runs_in_bf16_as_transformers_does() {
    use zeroformer::generation::{GenerationConfig, generate_with};
    let dir = fixture_dir("bf16");
    let model = Gpt::from_pretrained(&dir, &Device::Cpu).unwrap();
    model.to_dtype(DType::BF16);
    assert!(model.parameters().iter().all(|p| p.dtype() == DType::BF16));
    let expected = read_all(&dir.join("expected.safetensors"));
    let (ids_shape, ids) = &expected["ids"];
    let prompt: Vec<i64> = ids.iter().map(|&v| v as i64).collect();
    let logits = no_grad(|| {
        model
            .forward(
                &Tensor::from_ids(prompt.clone(), ids_shape),
                Default::default(),
            )
            .logits
    });
    assert_eq!(logits.dtype(), DType::BF16);
    let vocab = logits.shape()[2];
    let theirs = &expected["logits"].1;
    for (row, (ours, theirs)) in logits
        .to_vec()
        .chunks(vocab)
        .zip(theirs.chunks(vocab))
        .enumerate()
    {
        // A logit is a sum whose rounding errors scale with the row's
        // largest terms, not with its own (possibly tiny) value.
        let scale = theirs.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
        for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
            assert!(
                (a as f64 - b).abs() <= 2.0 * bf16_ulp(scale),
                "position {row}, logit {i}: {a} vs transformers' {b}"
            );
        }
    }
    let tokens = generate_with(&model, &prompt, &GenerationConfig::new(40), |_| true)
        .unwrap()
        .tokens;
    let column = |name: &str| expected[name].1.clone();
    let (want, margins, top, runner_up) = (
        column("greedy"),
        column("margins"),
        column("top"),
        column("runner_up"),
    );
    let agreed = tokens
        .iter()
        .zip(&want)
        .take_while(|(a, b)| **a as f64 == **b)
        .count();
    if agreed < want.len() {
        assert!(
            margins[agreed] <= bf16_ulp(top[agreed]) && tokens[agreed] as f64 == runner_up[agreed],
            "token {agreed}: ours {} where transformers picks {} by a margin of {}",
            tokens[agreed],
            want[agreed],
            margins[agreed]
        );
    }
    assert!(
        agreed >= 31,
        "only {agreed} greedy tokens agree: {tokens:?} vs {want:?}"
    );
}
