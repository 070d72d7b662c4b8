//! One-call persistence (`Persist`): every built-in model saves and loads
//! its weights and config, from its own file or a trainer's checkpoint;
//! configs that do not fit the file are refused before anything is built.

use zeroformer::checkpoint::Checkpoint;
use zeroformer::models::{Encoder, EncoderConfig, EncoderDecoder, EncoderDecoderConfig, Persist};
use zeroformer::nn::{
    Activation, LinearConfig, Module, MoeConfig, NormKind, NormPlacement, Positional,
    count_parameters,
};
use zeroformer::prelude::*;
use zeroformer::train::{TrainConfig, Trainer};

fn tiny_gpt() -> GptConfig {
    GptConfig {
        vocab_size: 11,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
        bias: true,
        ..GptConfig::default()
    }
}

/// Every layer variant the configs can ask for.
fn variants() -> Vec<(Activation, NormKind, NormPlacement, bool, Positional)> {
    let mut out = Vec::new();
    for activation in [
        Activation::Relu,
        Activation::Gelu(GeluApproximation::Tanh),
        Activation::SwiGlu,
    ] {
        for norm in [NormKind::LayerNorm, NormKind::RmsNorm] {
            for placement in [NormPlacement::Pre, NormPlacement::Post] {
                for bias in [true, false] {
                    for positional in [
                        Positional::Learned,
                        Positional::Sinusoidal,
                        Positional::Rotary,
                    ] {
                        out.push((activation, norm, placement, bias, positional));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn parameter_counts_from_configs_equal_the_built_models() {
    let gpt = tiny_gpt().init(&Device::Cpu, 0).unwrap();
    assert_eq!(
        tiny_gpt().parameter_count(),
        Some(gpt.num_parameters() as u64)
    );
    for (activation, norm, placement, bias, positional) in variants() {
        let mut e = EncoderConfig::preset("encoder-tiny", 13, 3, 9).unwrap();
        (
            e.layer.activation,
            e.layer.norm,
            e.layer.placement,
            e.layer.bias,
        ) = (activation, norm, placement, bias);
        e.positional = positional;
        for classes in [0, 3] {
            e.num_classes = classes;
            let built = e.init(&Device::Cpu, 0).unwrap().num_parameters() as u64;
            assert_eq!(e.parameter_count(), Some(built), "{e:?}");
        }
        let mut s = EncoderDecoderConfig::preset("transformer-tiny", 7, 9, 10).unwrap();
        (
            s.layer.activation,
            s.layer.norm,
            s.layer.placement,
            s.layer.bias,
        ) = (activation, norm, placement, bias);
        s.positional = positional;
        s.n_decoder_layers = 3;
        let built = s.init(&Device::Cpu, 0).unwrap().num_parameters() as u64;
        assert_eq!(s.parameter_count(), Some(built), "{s:?}");
    }
    let mut huge = tiny_gpt();
    huge.n_embd = usize::MAX / 2;
    assert_eq!(huge.parameter_count(), None);
}

/// Counting builds (what `parameter_count`, the memory check and the file
/// check use) against the models made for real: placeholders have the
/// parameters' shapes, and buffers are not counted.
#[test]
fn counting_builds_count_what_the_models_hold() {
    for (bias, moe, windows) in [
        (true, None, vec![]),
        (false, None, vec![Some(4), None]),
        (true, Some(MoeConfig::new(4, 2)), vec![]),
        (false, Some(MoeConfig::new(3, 1)), vec![]),
    ] {
        let config = GptConfig {
            bias,
            moe,
            attention_windows: windows,
            ..tiny_gpt()
        };
        let counted = count_parameters(|| config.init(&Device::Cpu, 0)).unwrap();
        let built = config.init(&Device::Cpu, 0).unwrap().num_parameters() as u64;
        assert_eq!((counted, config.parameter_count()), (built, Some(built)));
    }
    let mut rotary = EncoderConfig::preset("encoder-tiny", 13, 3, 9).unwrap();
    rotary.positional = Positional::Rotary;
    let counted = count_parameters(|| rotary.init(&Device::Cpu, 0)).unwrap();
    let model = rotary.init(&Device::Cpu, 0).unwrap();
    assert_eq!(counted, model.num_parameters() as u64);
    let mut buffers = 0;
    model.visit_buffers("", &mut |_, t| buffers += t.numel());
    assert!(
        buffers > 0,
        "the rotary tables are buffers, left out of the count"
    );
}

/// A counting build whose `build` panics leaves the thread making real
/// tensors afterwards, not placeholders.
#[test]
fn a_panicking_counting_build_leaves_later_builds_real() {
    let layer = LinearConfig::new(4, 4);
    let init = || layer.init(&Device::Cpu, &mut StdRng::seed_from_u64(0));
    let counted = std::panic::catch_unwind(|| {
        count_parameters(|| -> zeroformer::Result<zeroformer::nn::Linear> {
            let _ = init();
            panic!("a build that fails half-way")
        })
    });
    assert!(counted.is_err());
    let weights = init().unwrap().weight.to_vec();
    assert!(weights.iter().all(|w| *w != 0.0), "{weights:?}");
}

/// A config claiming a table of 2^40 rows would take terabytes if made: a
/// counting build makes placeholders, so counting it and refusing it for
/// a file that holds far less both return at once.
#[test]
fn configs_of_any_size_are_counted_and_refused_without_being_made() {
    let mut huge = EncoderConfig::preset("encoder-tiny", 13, 3, 9).unwrap();
    huge.vocab_size = 1 << 40;
    let d = huge.layer.d_model as u64;
    let small = EncoderConfig::preset("encoder-tiny", 13, 3, 9).unwrap();
    let extra = ((1u64 << 40) - 13) * d;
    assert_eq!(
        huge.parameter_count(),
        Some(small.parameter_count().unwrap() + extra)
    );
    let path = temp_path("huge-encoder.safetensors");
    small.init(&Device::Cpu, 0).unwrap().save(&path).unwrap();
    let mut ckpt = Checkpoint::load(&path).unwrap();
    ckpt.set_meta("model_config", serde_json::to_string(&huge).unwrap());
    ckpt.save(&path).unwrap();
    let err = Encoder::load(&path).err().expect("refused").to_string();
    assert!(err.contains("describes more parameters than"), "{err}");
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    dir.join(name)
}

#[test]
fn every_model_round_trips_through_save_and_load() {
    let path = temp_path("gpt.safetensors");
    let gpt = tiny_gpt().init(&Device::Cpu, 3).unwrap();
    gpt.save(&path).unwrap();
    let loaded = Gpt::load(&path).unwrap();
    assert_eq!(loaded.config, gpt.config);
    let ids = Tensor::from_ids(vec![1, 2, 3, 4], &[1, 4]);
    assert_eq!(
        loaded.forward(&ids, Default::default()).logits.to_vec(),
        gpt.forward(&ids, Default::default()).logits.to_vec()
    );

    let mut e = EncoderConfig::preset("encoder-tiny", 13, 3, 9).unwrap();
    e.layer.dropout = 0.0;
    let encoder = e.init(&Device::Cpu, 4).unwrap();
    encoder.save(&path).unwrap();
    let loaded = Encoder::load_on(&path, &Device::Cpu).unwrap();
    assert_eq!(
        loaded.classify(&ids, None).to_vec(),
        encoder.classify(&ids, None).to_vec()
    );

    let mut s = EncoderDecoderConfig::preset("transformer-tiny", 7, 9, 10).unwrap();
    s.layer.dropout = 0.0;
    let seq2seq = s.init(&Device::Cpu, 5).unwrap();
    seq2seq.save(&path).unwrap();
    let loaded = EncoderDecoder::load(&path).unwrap();
    let (src, tgt) = (
        Tensor::from_ids(vec![1, 2, 3], &[1, 3]),
        Tensor::from_ids(vec![4, 5], &[1, 2]),
    );
    assert_eq!(
        loaded.forward(&src, &tgt, None, None).to_vec(),
        seq2seq.forward(&src, &tgt, None, None).to_vec()
    );
    // A file of one model is not another's.
    let err = Gpt::load(&path)
        .err()
        .expect("an encoder-decoder is not a GPT");
    assert!(err.to_string().contains("model_config"), "{err}");
}

#[test]
fn a_trainers_checkpoint_loads_as_its_model() {
    let path = temp_path("ckpt.safetensors");
    let mut config = TrainConfig::nanogpt_cpu(2);
    config.batch_size = 2;
    let mut trainer =
        Trainer::new(tiny_gpt().init(&Device::Cpu, config.seed).unwrap(), config).unwrap();
    let tokens: Vec<i64> = (0..200).map(|i| i % 11).collect();
    trainer.train_step(&tokens).unwrap();
    trainer.save(&path, &[]).unwrap();
    let model = Gpt::load(&path).unwrap();
    let ids = Tensor::from_ids(vec![3, 1, 4], &[1, 3]);
    assert_eq!(
        model.forward(&ids, Default::default()).logits.to_vec(),
        trainer
            .model
            .forward(&ids, Default::default())
            .logits
            .to_vec()
    );
}

#[test]
fn configs_that_do_not_fit_the_file_are_refused_before_building() {
    let path = temp_path("model.safetensors");
    tiny_gpt()
        .init(&Device::Cpu, 0)
        .unwrap()
        .save(&path)
        .unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    for (config, expect) in [
        (
            GptConfig {
                n_layer: 1_000_000_000,
                ..tiny_gpt()
            },
            "describes more parameters than",
        ),
        (
            GptConfig {
                n_embd: 1 << 40,
                n_head: 1,
                ..tiny_gpt()
            },
            "describes more parameters than",
        ),
        (
            GptConfig {
                vocab_size: 10,
                block_size: 9,
                ..tiny_gpt()
            },
            "wte.weight: shape [11, 8] in the file, [10, 8] expected; wpe.weight: shape [8, 8]",
        ),
        (
            GptConfig {
                n_head: 3,
                ..tiny_gpt()
            },
            "not divisible",
        ),
    ] {
        let mut edited = ckpt.clone();
        edited.set_meta("model_config", serde_json::to_string(&config).unwrap());
        edited.save(&path).unwrap();
        let err = Gpt::load(&path).err().expect("refused");
        assert!(err.to_string().contains(expect), "{err}");
    }
    let mut edited = ckpt.clone();
    edited.set_meta("model_config", "{not json");
    edited.save(&path).unwrap();
    assert!(Gpt::load(&path).is_err());
    // Every model is checked the same way.
    let encoder = EncoderConfig::preset("encoder-tiny", 13, 3, 9).unwrap();
    encoder.init(&Device::Cpu, 0).unwrap().save(&path).unwrap();
    let mut ckpt = Checkpoint::load(&path).unwrap();
    let huge = EncoderConfig {
        n_layer: 1_000_000_000,
        ..encoder
    };
    ckpt.set_meta("model_config", serde_json::to_string(&huge).unwrap());
    ckpt.save(&path).unwrap();
    let err = Encoder::load(&path).err().expect("refused").to_string();
    assert!(err.contains("describes more parameters than"), "{err}");
}

#[test]
fn an_encoder_decoder_trains_and_resumes_bit_exactly_with_the_same_trainer() {
    use zeroformer::data::digits::{self, DigitTask};
    let config = || {
        let mut c = EncoderDecoderConfig::preset("transformer-tiny", 12, 12, 8).unwrap();
        c.layer.dropout = 0.1;
        c
    };
    let mut train = TrainConfig::nanogpt_cpu(6);
    train.batch_size = 4;
    train.grad_accum = 2;
    let draw = |rng: &mut zeroformer::rand_chacha::ChaCha8Rng| {
        let b = digits::batch(DigitTask::Reverse, 4, 6, rng);
        (b.source, b.target_in, b.target_out)
    };
    let new = || Trainer::new(config().init(&Device::Cpu, 7).unwrap(), train.clone());
    let mut straight = new().unwrap();
    for _ in 0..4 {
        straight.train_step_with(draw).unwrap();
    }
    let path = temp_path("seq2seq.safetensors");
    let mut first = new().unwrap();
    for _ in 0..2 {
        first.train_step_with(draw).unwrap();
    }
    first.estimate_loss_with(2, draw).unwrap();
    first.save(&path, &[]).unwrap();
    let (mut resumed, _) = Trainer::<EncoderDecoder>::resume(&path, &Device::Cpu).unwrap();
    assert_eq!(resumed.step, 2);
    for _ in 0..2 {
        resumed.train_step_with(draw).unwrap();
    }
    let weights = |t: &Trainer<EncoderDecoder>| -> Vec<Vec<f32>> {
        t.model.parameters().iter().map(Tensor::to_vec).collect()
    };
    assert_eq!(weights(&resumed), weights(&straight));
    // The trained model loads from the trainer's checkpoint as a model.
    let model = EncoderDecoder::load(&path).unwrap();
    assert_eq!(model.num_parameters(), straight.model.num_parameters());
}
