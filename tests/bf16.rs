//! bf16 as a dtype: casts to and from every other dtype on strided views,
//! gradients through the casts, and Hugging Face files whose weights are
//! bf16 or f16 (read exactly as f32, written as bf16). The casts' bits
//! against `half` on every f32 are a unit test (backend/cpu/cast.rs).

#[macro_use]
mod common;

use zeroformer::half::{bf16, f16};
use zeroformer::ops::attention::AttentionMask;
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

/// The distance between bf16 neighbours at `x`'s magnitude.
fn bf16_ulp(x: f32) -> f32 {
    let x = x.abs().max(f32::MIN_POSITIVE);
    2f32.powi(x.log2().floor() as i32 - 7)
}

/// Asserts our bf16 product `ours` matches PyTorch's `theirs`: both are f32
/// sums of the same exact products in some order, rounded to bf16. Each
/// sum is within `k·2⁻²⁴·Σ|a·b|` of the exact one, so they differ by at
/// most twice that before rounding, and one bf16 step after. Most
/// elements round to the same bf16: at least 90% must be equal.
fn assert_bf16_product(name: &str, ours: &Tensor, theirs: &Tensor, magnitudes: &Tensor, k: usize) {
    assert_eq!(ours.dtype(), DType::BF16, "{name}: dtype");
    assert_eq!(ours.shape(), theirs.shape(), "{name}: shape");
    let (ours, theirs) = (ours.to_dtype(DType::F32).to_vec(), theirs.to_vec());
    let mut equal = 0;
    for (i, ((&o, &t), &mag)) in ours
        .iter()
        .zip(&theirs)
        .zip(&magnitudes.to_vec())
        .enumerate()
    {
        let tol = 2.0 * k as f32 * 2f32.powi(-24) * mag + bf16_ulp(o.abs().max(t.abs()));
        assert!(
            (o - t).abs() <= tol,
            "{name}[{i}]: ours {o} vs PyTorch {t} (tolerance {tol})"
        );
        equal += usize::from(o == t);
    }
    assert!(
        equal * 10 >= ours.len() * 9,
        "{name}: only {equal} of {} elements equal PyTorch's",
        ours.len()
    );
}

/// `Σ|a·b|` for each output of `a @ b`: the scale of its rounding.
fn magnitudes(a: &Tensor, b: &Tensor) -> Tensor {
    let f = |t: &Tensor| t.to_dtype(DType::F32).abs();
    f(a).matmul(&f(b))
}

#[test]
fn bf16_products_and_their_gradients_match_pytorch() {
    let f = common::Fixture::load("bf16_matmul");
    let bf = |name: &str| f.get(name).to_dtype(DType::BF16);
    // Gradients reach f32 leaves (master weights) through the casts.
    let (a32, b32) = (f.leaf("a"), f.leaf("b"));
    let (a, b) = (a32.to_dtype(DType::BF16), b32.to_dtype(DType::BF16));
    let c = a.matmul(&b);
    assert_bf16_product("c", &c, &f.get("c"), &magnitudes(&a, &b), 50);
    // The gradient reaches the product through the cast: rounded to bf16,
    // as PyTorch rounds it.
    c.to_dtype(DType::F32).mul(&f.get("g")).sum().backward();
    let g = f.get("g").to_dtype(DType::BF16);
    let (da, db) = (a32.grad().unwrap(), b32.grad().unwrap());
    assert_eq!(da.dtype(), DType::F32);
    let (da, db) = (da.to_dtype(DType::BF16), db.to_dtype(DType::BF16));
    assert_bf16_product("da", &da, &f.get("da"), &magnitudes(&g, &b.t()), 30);
    assert_bf16_product("db", &db, &f.get("db"), &magnitudes(&a.t(), &g), 24);

    // A Linear's product: the weight transposed, a bias, an odd depth.
    let (x, w, bias) = (bf("x"), bf("w"), bf("bias"));
    let linear = bias.addmm(&x, &w.t());
    let bias_scale = bias.to_dtype(DType::F32).abs().unsqueeze(0);
    let scale = magnitudes(&x, &w.t()).add(&bias_scale);
    assert_bf16_product("linear", &linear, &f.get("linear"), &scale, 34);

    // A batch of matrices against one shared matrix.
    let (p, q) = (bf("p"), bf("q"));
    assert_bf16_product(
        "batched",
        &p.matmul(&q),
        &f.get("batched"),
        &magnitudes(&p, &q),
        16,
    );
}

/// A decoding step's products (a few rows against a weight of 2^16
/// elements or more: the matrix-vector path), bf16 throughout: each is the
/// f32 sum of the exact products rounded once, so it is within the
/// f32-accumulation bound `k·2⁻²⁴·Σ|x·w|` plus one bf16 step of the exact
/// value (f64 here).
#[test]
fn few_row_bf16_products_are_the_exact_sums_rounded() {
    let (k, n) = (256, 300);
    let w = uniform(&[n, k], 11).to_dtype(DType::BF16);
    let bias = uniform(&[n], 12).to_dtype(DType::BF16);
    let (wv, bv) = (w.to_vec(), bias.to_vec());
    for m in [1, 3, 16] {
        let x = uniform(&[m, k], 13 + m as u64).to_dtype(DType::BF16);
        let xv = x.to_vec();
        for with_bias in [false, true] {
            let y = if with_bias {
                bias.addmm(&x, &w.t())
            } else {
                x.matmul(&w.t())
            };
            assert_eq!(y.dtype(), DType::BF16);
            for (idx, &got) in y.to_vec().iter().enumerate() {
                let (i, r) = (idx / n, idx % n);
                let terms = (0..k).map(|t| xv[i * k + t] as f64 * wv[r * k + t] as f64);
                let b = if with_bias { bv[r] as f64 } else { 0.0 };
                let exact = terms.clone().sum::<f64>() + b;
                let scale = terms.map(f64::abs).sum::<f64>() + b.abs();
                let tol = k as f64 * 2f64.powi(-24) * scale + bf16_ulp(exact as f32) as f64;
                assert!(
                    (got as f64 - exact).abs() <= tol,
                    "{m} rows, bias {with_bias}, ({i}, {r}): {got} vs {exact}"
                );
            }
        }
    }
}

/// An op of an f32 and a bf16 tensor computes in f32 (PyTorch's
/// promotion), each gradient in its input's dtype, and the bf16 operand is
/// widened as it is read: no f32 copy of it joins the graph, where it would
/// stay until the backward (tests/graph_memory.rs counts the nodes).
#[test]
fn an_op_of_f32_and_bf16_computes_in_f32_without_a_widened_copy() {
    let x = Tensor::from_vec(vec![1.5, -2.0, 0.25, 3.0], &[4]).requires_grad();
    let y = Tensor::from_vec(vec![0.1, 0.2, -0.3, 7.0], &[4])
        .to_dtype(DType::BF16)
        .requires_grad();
    let wide = y.to_dtype(DType::F32).to_vec();
    let c = Tensor::from_vec(vec![1.0, 2.0, 3.0, 0.001], &[4]);
    for (name, op, want) in [
        ("add", Tensor::add as fn(&Tensor, &Tensor) -> Tensor, {
            let f: fn(f32, f32) -> f32 = |a, b| a + b;
            f
        }),
        ("mul", Tensor::mul, |a, b| a * b),
    ] {
        for flipped in [false, true] {
            let z = if flipped { op(&y, &x) } else { op(&x, &y) };
            assert_eq!(z.dtype(), DType::F32, "{name}");
            let expected: Vec<f32> = x
                .to_vec()
                .iter()
                .zip(&wide)
                .map(|(&a, &b)| want(a, b))
                .collect();
            assert_eq!(z.to_vec(), expected, "{name}");
            z.mul(&c).sum().backward();
            let (gx, gy) = (x.grad().unwrap(), y.grad().unwrap());
            assert_eq!(
                (gx.dtype(), gy.dtype()),
                (DType::F32, DType::BF16),
                "{name}"
            );
            let (dx, dy): (Vec<f32>, Vec<f32>) = match name {
                "add" => (c.to_vec(), rounded(&c.to_vec())),
                _ => (
                    c.to_vec().iter().zip(&wide).map(|(c, w)| c * w).collect(),
                    rounded(
                        &c.to_vec()
                            .iter()
                            .zip(&x.to_vec())
                            .map(|(c, x)| c * x)
                            .collect::<Vec<_>>(),
                    ),
                ),
            };
            assert_eq!(gx.to_vec(), dx, "{name} flipped {flipped}");
            assert_eq!(
                gy.to_dtype(DType::F32).to_vec(),
                dy,
                "{name} flipped {flipped}"
            );
            x.zero_grad();
            y.zero_grad();
        }
    }
}

/// Layer norm of bf16 rows (a bf16 model's) reads and writes bf16 and
/// computes in f32: its output and gradients are the f32 layer norm's of
/// the same values, rounded once, bit for bit (odd widths reach the
/// kernels' tails).
#[test]
fn bf16_layer_norm_is_the_f32_one_rounded() {
    for (rows, d) in [(3, 37), (4, 64), (2, 5)] {
        let bf = |t: Tensor| t.to_dtype(DType::BF16);
        let x = bf(uniform(&[rows, d], 21).mul_scalar(3.0).add_scalar(0.5));
        let (w, b) = (bf(uniform(&[d], 22).add_scalar(1.0)), bf(uniform(&[d], 23)));
        let c = bf(uniform(&[rows, d], 24));
        let wide = |t: &Tensor| t.to_dtype(DType::F32).requires_grad();
        let (x16, w16, b16) = (
            x.clone().requires_grad(),
            w.clone().requires_grad(),
            b.clone().requires_grad(),
        );
        let (x32, w32, b32) = (wide(&x), wide(&w), wide(&b));
        let y16 = x16.layer_norm(Some(&w16), Some(&b16), 1e-5);
        let y32 = x32.layer_norm(Some(&w32), Some(&b32), 1e-5);
        assert_eq!(y16.dtype(), DType::BF16);
        let bits = |t: &Tensor| t.to_dtype(DType::BF16).to_vec_bf16();
        assert_eq!(bits(&y16), bits(&y32), "{rows}x{d} forward");
        y16.mul(&c).sum().backward();
        y32.mul(&c.to_dtype(DType::F32)).sum().backward();
        for (name, a, b) in [
            ("x", &x16, &x32),
            ("weight", &w16, &w32),
            ("bias", &b16, &b32),
        ] {
            let (ga, gb) = (a.grad().unwrap(), b.grad().unwrap());
            assert_eq!(ga.dtype(), DType::BF16, "{name}");
            assert_eq!(bits(&ga), bits(&gb), "{rows}x{d} d{name}");
        }
    }
}

/// The fused attention of bf16 q, k, v (autocast's) reads them as bf16,
/// a head widened at a time, and computes in f32: its output is the f32
/// attention's of the same values rounded once, bit for bit, and so is dV.
/// dQ and dK depend on the output through the softmax backward's row
/// correction `delta_i = Σ dO_i·O_i`, which reads the bf16 output (its
/// rounding, 2⁻⁹ relative, moves delta by at most 2⁻⁹·Σ|dO_i·O_i|), so
/// they are within that change carried through (`scale · Δdelta ·
/// Σ_j P_ij·|x_j|`, with x the keys for dQ and the queries for dK, doubled
/// for the f32 sums) plus one bf16 rounding step. Several tiles (T = 70),
/// causal or not, many heads or one (the backward's two ways of splitting
/// work).
#[test]
fn bf16_attention_is_the_f32_one_rounded() {
    for (batch, heads) in [(2, 3), (1, 1)] {
        for mask in [AttentionMask::CAUSAL, AttentionMask::NONE] {
            let (t, d) = (70, 16);
            let shape = [batch, heads, t, d];
            let bf = |seed| uniform(&shape, seed).mul_scalar(2.0).to_dtype(DType::BF16);
            let (q, k, v, c) = (bf(31), bf(32), bf(33), bf(34));
            let leaf = |t: &Tensor| t.clone().requires_grad();
            let wide = |t: &Tensor| t.to_dtype(DType::F32).requires_grad();
            let (q16, k16, v16) = (leaf(&q), leaf(&k), leaf(&v));
            let (q32, k32, v32) = (wide(&q), wide(&k), wide(&v));
            let y16 = Tensor::scaled_dot_product_attention(&q16, &k16, &v16, mask, 0);
            let y32 = Tensor::scaled_dot_product_attention(&q32, &k32, &v32, mask, 0);
            assert_eq!(y16.dtype(), DType::BF16);
            let bits = |t: &Tensor| t.to_dtype(DType::BF16).to_vec_bf16();
            let case = format!("{batch}x{heads} causal {}", mask.causal);
            assert_eq!(bits(&y16), bits(&y32), "{case}: output");
            y16.mul(&c).sum().backward();
            y32.mul(&c.to_dtype(DType::F32)).sum().backward();
            let grad = |x: &Tensor| {
                let g = x.grad().unwrap();
                assert_eq!(g.dtype(), x.dtype());
                g.to_dtype(DType::F32).to_vec()
            };
            assert_eq!(grad(&v16), rounded(&grad(&v32)), "{case}: dv");
            // max_i Σ_d |dO_id · O_id|, and the largest |q| and |k|.
            let (o, dout) = (y32.to_vec(), c.to_dtype(DType::F32).to_vec());
            let delta_scale = o
                .chunks(d)
                .zip(dout.chunks(d))
                .map(|(o, g)| o.iter().zip(g).map(|(a, b)| (a * b).abs()).sum::<f32>())
                .fold(0.0, f32::max);
            let largest = |x: &Tensor| {
                x.to_dtype(DType::F32)
                    .abs()
                    .to_vec()
                    .into_iter()
                    .fold(0.0, f32::max)
            };
            let scale = 1.0 / (d as f32).sqrt();
            for (name, ours, theirs, x) in [("q", &q16, &q32, &k), ("k", &k16, &k32, &q)] {
                let carried = 2.0 * scale * 2f32.powi(-9) * delta_scale * largest(x);
                for (i, (a, b)) in grad(ours).iter().zip(grad(theirs)).enumerate() {
                    let tol = carried + bf16_ulp(b);
                    assert!(
                        (a - b).abs() <= tol,
                        "{case}: d{name}[{i}] {a} vs {b} (tolerance {tol})"
                    );
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "matmul: tensors of different dtypes, BF16 and F32")]
fn a_product_of_bf16_and_f32_panics_naming_both() {
    let a = Tensor::ones(&[2, 3]).to_dtype(DType::BF16);
    a.matmul(&Tensor::ones(&[3, 2]));
}

#[test]
fn a_gpt_step_runs_under_autocast() {
    let config = common::tiny_gpt(0.1);
    let model = config.init(&Device::Cpu, 7).unwrap();
    let ids = Tensor::from_ids((0..32).map(|i| i % 17).collect(), &[2, 16]);
    let targets = Tensor::from_ids((1..33).map(|i| i % 17).collect(), &[2, 16]);
    let loss = autocast(DType::BF16, || {
        let logits = model.forward(&ids, Default::default()).logits;
        assert_eq!(logits.dtype(), DType::BF16);
        Gpt::loss(&logits, &targets)
    });
    assert_eq!(loss.dtype(), DType::F32);
    loss.backward();
    for (name, p) in model.named_parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_eq!(g.dtype(), DType::F32, "{name}");
    }
}

/// Values in [-1, 1) from a seed.
fn uniform(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// The gradients `f` computes under autocast against f32's central
/// differences, with the tolerances `GradCheck::autocast` derives from
/// bf16's 8 significant bits (src/gradcheck.rs).
fn check_under_autocast(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) {
    use zeroformer::gradcheck::GradCheck;
    if let Err(e) = GradCheck::autocast(DType::BF16).check(f, inputs) {
        panic!("{e}");
    }
}

#[test]
fn gradients_under_autocast_match_f32_finite_differences() {
    // Products: plain, batched with a broadcast operand, transposed.
    check_under_autocast(
        |x| x[0].matmul(&x[1]),
        &[uniform(&[5, 7], 1), uniform(&[7, 3], 2)],
    );
    check_under_autocast(
        |x| x[0].matmul(&x[1].t()),
        &[uniform(&[2, 4, 6], 3), uniform(&[5, 6], 4)],
    );
    // A Linear's addmm, an activation in bf16, a loss in f32.
    let targets = Tensor::from_ids(vec![0, 2, 1, 2], &[4]);
    check_under_autocast(
        |x| {
            let h = x[2].addmm(&x[0], &x[1].t()).gelu(GeluApproximation::Tanh);
            h.matmul(&x[3]).cross_entropy(&targets)
        },
        &[
            uniform(&[4, 5], 5),
            uniform(&[6, 5], 6),
            uniform(&[6], 7),
            uniform(&[6, 3], 8),
        ],
    );
    // The fused attention on bf16 operands, and a residual f32 + bf16 sum
    // into a layer norm (promoted to f32).
    check_under_autocast(
        |x| {
            let (q, k, v) = (&x[0], &x[1], &x[2]);
            let y = Tensor::scaled_dot_product_attention(q, k, v, AttentionMask::CAUSAL, 0);
            q.add(&y).layer_norm(None, None, 1e-5)
        },
        &[
            uniform(&[1, 2, 5, 4], 9),
            uniform(&[1, 2, 5, 4], 10),
            uniform(&[1, 2, 5, 4], 11),
        ],
    );
}

#[test]
fn two_hundred_bf16_steps_follow_the_f32_loss_curve_within_two_percent() {
    use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
    use zeroformer::train::{Precision, TrainConfig, Trainer};
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let tok = CharTokenizer::from_text(&text);
    let ids = tok.encode(&text).unwrap();
    let train_ids = &ids[..ids.len() * 9 / 10];
    // cpu-mini, nanoGPT's CPU recipe over 200 steps.
    let model = GptConfig::preset("cpu-mini", tok.vocab_size()).unwrap();
    let curve = |precision: Precision| -> Vec<f32> {
        let train = TrainConfig {
            precision,
            ..TrainConfig::nanogpt_cpu(200)
        };
        let mut trainer =
            Trainer::new(model.init(&Device::Cpu, train.seed).unwrap(), train).unwrap();
        (0..200)
            .map(|_| trainer.train_step(train_ids).unwrap().loss.item())
            .collect()
    };
    let (f32_losses, bf16_losses) = (curve(Precision::F32), curve(Precision::Bf16));
    // The same batches (one data stream), so the curves are compared
    // window by window: means over 20 steps, each within 2%.
    for (w, (a, b)) in f32_losses
        .chunks(20)
        .zip(bf16_losses.chunks(20))
        .enumerate()
    {
        let (a, b) = (a.iter().sum::<f32>() / 20.0, b.iter().sum::<f32>() / 20.0);
        assert!(
            (a - b).abs() <= 0.02 * a,
            "steps {}..{}: f32 mean loss {a}, bf16 {b}",
            20 * w,
            20 * w + 20
        );
    }
    // And they differ: the bf16 run did compute in bf16.
    assert_ne!(f32_losses, bf16_losses);
}

#[test]
fn generation_runs_under_autocast() {
    use zeroformer::generation::{Sampling, generate};
    let model = common::tiny_gpt(0.0).init(&Device::Cpu, 3).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    // Past the context of 16: the cache slides.
    let run = |rng: &mut StdRng| generate(&model, &[1, 2, 3], 20, &Sampling::GREEDY, rng).unwrap();
    let f32_ids = run(&mut rng);
    let bf16_ids = autocast(DType::BF16, || run(&mut rng));
    assert_eq!(bf16_ids.len(), f32_ids.len());
}
