//! GPT-2 in Hugging Face's layout, in and out: a directory with
//! `config.json` and `model.safetensors` as transformers'
//! `GPT2LMHeadModel.save_pretrained` writes them (and, with the tokenizer,
//! its files and `generation_config.json`). The weights are read from
//! a memory map; Hugging Face's `Conv1D` layers store `[in, out]` and this
//! crate's `Linear` `[out, in]`, so those matrices are transposed on the
//! way in and out. The output head is tied to `wte` and not stored.

use std::collections::BTreeMap;
use std::path::Path;

use memmap2::Mmap;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

use super::{Gpt, GptConfig};
use crate::checkpoint::{describe_safetensors_error, write_atomically};
use crate::nn::Module;
use crate::tokenizer::{BpeTokenizer, Tokenizer};
use crate::{DType, Device, Error, Result, Tensor};

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.safetensors";
const GENERATION_CONFIG: &str = "generation_config.json";

/// One of our parameters as Hugging Face names it, and whether it is a
/// `Conv1D` weight (stored transposed).
struct Mapped {
    ours: String,
    theirs: String,
    transposed: bool,
}

/// Every parameter of a GPT of `n_layer` blocks under Hugging Face's name.
fn mapping(n_layer: usize) -> Vec<Mapped> {
    let plain = |ours: String, theirs: String| Mapped {
        ours,
        theirs,
        transposed: false,
    };
    let mut out = vec![
        plain("wte.weight".into(), "transformer.wte.weight".into()),
        plain("wpe.weight".into(), "transformer.wpe.weight".into()),
    ];
    for i in 0..n_layer {
        let (o, t) = (format!("blocks.{i}."), format!("transformer.h.{i}."));
        for (ours, theirs) in [
            ("ln_1", "ln_1"),
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("ln_2", "ln_2"),
            ("mlp.fc", "mlp.c_fc"),
            ("mlp.proj", "mlp.c_proj"),
        ] {
            let conv = theirs.contains("c_");
            out.push(Mapped {
                ours: format!("{o}{ours}.weight"),
                theirs: format!("{t}{theirs}.weight"),
                transposed: conv,
            });
            out.push(plain(
                format!("{o}{ours}.bias"),
                format!("{t}{theirs}.bias"),
            ));
        }
    }
    out.push(plain(
        "ln_f.weight".into(),
        "transformer.ln_f.weight".into(),
    ));
    out.push(plain("ln_f.bias".into(), "transformer.ln_f.bias".into()));
    out
}

/// The model config a Hugging Face GPT-2 `config.json` describes, or what
/// in it this crate's GPT does not implement.
fn config_from_hf(v: &Value) -> std::result::Result<GptConfig, String> {
    let num = |key: &str| -> std::result::Result<usize, String> {
        v.get(key)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| format!("\"{key}\" is missing or not a positive integer"))
    };
    if let Some(kind) = v.get("model_type").and_then(Value::as_str)
        && kind != "gpt2"
    {
        return Err(format!("\"model_type\" is {kind:?}; only \"gpt2\" is read"));
    }
    let n_embd = num("n_embd")?;
    if let Some(inner) = v.get("n_inner").filter(|i| !i.is_null())
        && inner.as_u64() != Some(4 * n_embd as u64)
    {
        return Err(format!(
            "\"n_inner\" is {inner}; this GPT's MLP is 4 x n_embd = {}",
            4 * n_embd
        ));
    }
    let activation = v
        .get("activation_function")
        .and_then(Value::as_str)
        .unwrap_or("gelu_new");
    if !matches!(activation, "gelu_new" | "gelu_pytorch_tanh") {
        return Err(format!(
            "\"activation_function\" is {activation:?}; this GPT uses GELU's tanh form (\"gelu_new\")"
        ));
    }
    let eps = v
        .get("layer_norm_epsilon")
        .and_then(Value::as_f64)
        .unwrap_or(1e-5);
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(format!(
            "\"layer_norm_epsilon\" is {eps}; this GPT's layer norms use 1e-5"
        ));
    }
    for (key, expected) in [
        ("scale_attn_weights", true),
        ("scale_attn_by_inverse_layer_idx", false),
        ("add_cross_attention", false),
    ] {
        if let Some(value) = v
            .get(key)
            .and_then(Value::as_bool)
            .filter(|b| *b != expected)
        {
            return Err(format!("\"{key}\" is {value}; this GPT needs {expected}"));
        }
    }
    let drop = |key: &str| v.get(key).and_then(Value::as_f64).unwrap_or(0.1);
    let (resid, embd, attn) = (drop("resid_pdrop"), drop("embd_pdrop"), drop("attn_pdrop"));
    if resid != embd || resid != attn {
        return Err(format!(
            "\"resid_pdrop\", \"embd_pdrop\" and \"attn_pdrop\" are {resid}, {embd}, {attn}; this GPT has one dropout probability"
        ));
    }
    let config = GptConfig {
        vocab_size: num("vocab_size")?,
        block_size: num("n_positions")?,
        n_layer: num("n_layer")?,
        n_head: num("n_head")?,
        n_embd,
        dropout: resid as f32,
        bias: true,
        ..GptConfig::default()
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The tensor's values as f32 (exactly: every bf16 and f16 is an f32),
/// for the dtypes Hugging Face writes floats in; `None` for others.
fn view_to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    let halves = || {
        data.chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::BF16 => halves()
            .map(|h| half::bf16::from_bits(h).to_f32())
            .collect(),
        Dtype::F16 => halves().map(|h| half::f16::from_bits(h).to_f32()).collect(),
        _ => return None,
    })
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

impl Gpt {
    /// GPT-2 from a Hugging Face model directory (`config.json` and
    /// `model.safetensors`, as `GPT2LMHeadModel.save_pretrained` writes
    /// them; names with or without the `transformer.` prefix). The weights
    /// are memory-mapped and checked before any is used: every missing,
    /// unexpected or misshaped tensor is named in one error, as is a config
    /// field this GPT does not implement (another activation, layer-norm
    /// epsilon or MLP width). The attention-mask buffers of older files
    /// are skipped, and an `lm_head.weight` must equal `wte` (tied).
    /// Dropout is `resid_pdrop`, active in training mode only. The model
    /// is built on `device`, each weight copied there once from the file;
    /// weights saved in bf16 or f16 load exactly, as f32.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Gpt> {
        let dir = dir.as_ref();
        let config_path = dir.join(CONFIG);
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::io("reading the model config", &config_path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid_file(&config_path, format!("not JSON: {e}")))?;
        let config = config_from_hf(&value).map_err(|m| Error::invalid_file(&config_path, m))?;

        let path = dir.join(WEIGHTS);
        let bad = |m: String| Error::invalid_file(&path, m);
        let file =
            std::fs::File::open(&path).map_err(|e| Error::io("opening the weights", &path, e))?;
        // SAFETY: read-only and private to this call; like every reader of a
        // mapped file, it assumes no other process truncates the file while
        // the weights are copied out of it.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mapping the weights", &path, e))?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|e| bad(describe_safetensors_error(&e, map.len())))?;

        let expected = mapping(config.n_layer);
        let prefixed = st.names().iter().any(|n| n.starts_with("transformer."));
        let file_name = |theirs: &str| {
            if prefixed {
                theirs.to_string()
            } else {
                theirs.trim_start_matches("transformer.").to_string()
            }
        };
        let model = config.init(device, 0)?;
        let ours: BTreeMap<String, Tensor> = model.named_parameters().into_iter().collect();
        let (mut missing, mut misshaped, mut wrong_dtype) = (Vec::new(), Vec::new(), Vec::new());
        let mut values = Vec::with_capacity(expected.len());
        for m in &expected {
            let name = file_name(&m.theirs);
            let param = &ours[&m.ours];
            let Ok(view) = st.tensor(&name) else {
                missing.push(name);
                continue;
            };
            let mut want = param.shape().to_vec();
            if m.transposed {
                want.reverse();
            }
            if !matches!(view.dtype(), Dtype::F32 | Dtype::BF16 | Dtype::F16) {
                wrong_dtype.push(format!("{name} ({:?})", view.dtype()));
            } else if view.shape() != want.as_slice() {
                misshaped.push(format!("{name} is {:?}, expected {want:?}", view.shape()));
            } else {
                values.push((param.clone(), view, m.transposed));
            }
        }
        let known: std::collections::HashSet<String> =
            expected.iter().map(|m| file_name(&m.theirs)).collect();
        let unexpected: Vec<String> = st
            .names()
            .into_iter()
            .filter(|n| !known.contains(*n) && *n != "lm_head.weight")
            .filter(|n| !(n.ends_with(".attn.bias") || n.ends_with(".attn.masked_bias")))
            .cloned()
            .collect();
        let mut problems = Vec::new();
        for (what, list) in [
            ("missing", missing),
            ("unexpected", unexpected),
            ("misshaped", misshaped),
            ("not F32, BF16 or F16", wrong_dtype),
        ] {
            if !list.is_empty() {
                problems.push(format!("{what}: {}", list.join(", ")));
            }
        }
        if !problems.is_empty() {
            return Err(bad(format!(
                "does not hold the GPT-2 {CONFIG} describes; {}",
                problems.join("; ")
            )));
        }
        for (param, view, transposed) in values {
            let data = view_to_f32(&view).expect("a float dtype, checked above");
            let data = if transposed {
                transpose(&data, view.shape()[0], view.shape()[1])
            } else {
                data
            };
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("a tensor holds {} at element {i}", data[i])));
            }
            param.assign(&param.new_tensor(data, param.shape()));
        }
        if let Ok(head) = st.tensor("lm_head.weight") {
            let wte = model.wte.weight.to_vec();
            if head.shape() != model.wte.weight.shape() || view_to_f32(&head) != Some(wte) {
                return Err(bad(
                    "lm_head.weight differs from the token embedding; only a tied head is read"
                        .into(),
                ));
            }
        }
        Ok(model)
    }

    /// GPT-2 from a Hugging Face model repository by name (`gpt2`,
    /// `gpt2-medium`, `openai-community/gpt2`, or any `org/name` in GPT-2's
    /// format): its files downloaded once into the cache
    /// ([`Hub::model`](crate::hub::Hub::model); `$ZEROFORMER_CACHE`,
    /// `$HF_ENDPOINT`), then [`from_pretrained`](Self::from_pretrained). The
    /// tokenizer is in the same folder (`BpeTokenizer::from_pretrained`).
    #[cfg(feature = "hub")]
    pub fn from_hub(repo: &str, device: &Device) -> Result<Gpt> {
        let dir = crate::hub::Hub::default().model(repo, &mut |_, _, _| {})?;
        Gpt::from_pretrained(dir, device)
    }

    /// Writes the model as a Hugging Face GPT-2 directory (`config.json`,
    /// `model.safetensors`), which transformers'
    /// `GPT2LMHeadModel.from_pretrained(dir)` loads to the same logits.
    /// Only models with biases (GPT-2's kind) can be written. Each file is
    /// written atomically.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.write_pretrained(dir.as_ref(), None, DType::F32)
    }

    /// [`save_pretrained`](Self::save_pretrained) with the weights in
    /// `dtype`: `DType::F32`, or `DType::BF16` (half the bytes, each weight
    /// rounded to nearest, ties to even; `torch_dtype` "bfloat16"), which
    /// `GPT2LMHeadModel.from_pretrained(dir)` and
    /// [`from_pretrained`](Self::from_pretrained) read.
    ///
    /// ```
    /// use zeroformer::prelude::*;
    /// let config = GptConfig { vocab_size: 8, block_size: 4, n_layer: 1, n_head: 2, n_embd: 8, ..GptConfig::default() };
    /// let model = config.init(&Device::Cpu, 0)?;
    /// let dir = std::env::temp_dir().join("zeroformer-bf16-doc");
    /// model.save_pretrained_as(&dir, DType::BF16)?;
    /// let back = Gpt::from_pretrained(&dir, &Device::Cpu)?;
    /// // Each weight is the f32 one rounded to bf16.
    /// let rounded = model.wte.weight.to_dtype(DType::BF16).to_dtype(DType::F32);
    /// assert_eq!(back.wte.weight.to_vec(), rounded.to_vec());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), zeroformer::Error>(())
    /// ```
    pub fn save_pretrained_as(&self, dir: impl AsRef<Path>, dtype: DType) -> Result<()> {
        self.write_pretrained(dir.as_ref(), None, dtype)
    }

    /// [`save_pretrained`](Self::save_pretrained) with the tokenizer beside
    /// the weights ([`BpeTokenizer::save_pretrained`]'s files) and its end
    /// of text (the first special token, GPT-2's `<|endoftext|>`) as
    /// `bos_token_id` and `eos_token_id` in `config.json` and
    /// `generation_config.json`: the folder alone is what transformers'
    /// text-generation pipeline and examples/gpt2_generate need.
    pub fn save_pretrained_with_tokenizer(
        &self,
        dir: impl AsRef<Path>,
        tokenizer: &BpeTokenizer,
    ) -> Result<()> {
        let dir = dir.as_ref();
        let end_of_text = tokenizer.special_tokens().first().map(|&(_, id)| id);
        self.write_pretrained(dir, end_of_text, DType::F32)?;
        tokenizer.save_pretrained(dir)
    }

    fn write_pretrained(&self, dir: &Path, end_of_text: Option<i64>, dtype: DType) -> Result<()> {
        let c = &self.config;
        let (st_dtype, torch_dtype) = match dtype {
            DType::F32 => (Dtype::F32, "float32"),
            DType::BF16 => (Dtype::BF16, "bfloat16"),
            other => {
                return Err(Error::InvalidConfig(format!(
                    "save_pretrained writes f32 or bf16 weights, not {other:?}"
                )));
            }
        };
        if !c.bias {
            return Err(Error::InvalidConfig(
                "save_pretrained writes GPT-2, whose linear layers and norms have biases; this model has none".into(),
            ));
        }
        if c.attention_windows.iter().any(Option::is_some) {
            return Err(Error::InvalidConfig(
                "save_pretrained writes GPT-2, whose attention sees every earlier position; this model has sliding-window layers (attention_windows), which GPT-2's config cannot express".into(),
            ));
        }
        if c.moe.is_some() {
            return Err(Error::InvalidConfig(
                "save_pretrained writes GPT-2, whose blocks have one MLP each; this model has mixtures of experts (moe)".into(),
            ));
        }
        let ours: BTreeMap<String, Tensor> = self.named_parameters().into_iter().collect();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for m in mapping(c.n_layer) {
            let t = &ours[&m.ours];
            let mut shape = t.shape().to_vec();
            let mut t = t.clone();
            if m.transposed {
                t = t.t();
                shape.reverse();
            }
            let bytes = match dtype {
                DType::BF16 => t
                    .to_dtype(DType::BF16)
                    .to_vec_bf16()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                _ => t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            tensors.push((m.theirs, shape, bytes));
        }
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
                let view =
                    TensorView::new(st_dtype, shape.clone(), bytes).expect("shape and bytes agree");
                (name.clone(), view)
            })
            .collect::<Vec<_>>();
        let metadata = Some(std::collections::HashMap::from([(
            "format".to_string(),
            "pt".to_string(),
        )]));
        let bytes = safetensors::serialize(views, &metadata)
            .map_err(|e| Error::InvalidData(format!("serialising the weights: {e}")))?;
        let mut config = json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": c.vocab_size,
            "n_positions": c.block_size,
            "n_ctx": c.block_size,
            "n_embd": c.n_embd,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "n_inner": null,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "resid_pdrop": f32_json(c.dropout),
            "embd_pdrop": f32_json(c.dropout),
            "attn_pdrop": f32_json(c.dropout),
            "initializer_range": 0.02,
            "scale_attn_weights": true,
            "scale_attn_by_inverse_layer_idx": false,
            "reorder_and_upcast_attn": false,
            "tie_word_embeddings": true,
            "torch_dtype": torch_dtype,
        });
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the model folder", dir, e))?;
        write_atomically(&dir.join(WEIGHTS), &bytes)?;
        if let Some(id) = end_of_text {
            config["bos_token_id"] = json!(id);
            config["eos_token_id"] = json!(id);
            let generation = json!({"bos_token_id": id, "eos_token_id": id});
            let text = serde_json::to_string_pretty(&generation).expect("JSON values serialise");
            write_atomically(&dir.join(GENERATION_CONFIG), text.as_bytes())?;
        }
        let text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
        write_atomically(&dir.join(CONFIG), text.as_bytes())
    }
}

/// An f32 as the number it prints as (`0.1`), not its exact binary value
/// widened to f64 (`0.10000000149011612`).
fn f32_json(x: f32) -> Value {
    json!(
        x.to_string()
            .parse::<f64>()
            .expect("an f32 prints as a number")
    )
}
