//! Activation checkpointing (`nn::checkpoint`, `GptConfig::
//! checkpoint_activations`): the gradients are the bits an unchecked run
//! gives, dropout included, through nesting, repetition, inputs that need
//! no gradient, data-parallel training steps and a resumed run.

#[macro_use]
mod common;

use zeroformer::gradcheck::GradCheck;
use zeroformer::nn::{GptBlock, LinearConfig, Module, checkpoint};
use zeroformer::prelude::*;
use zeroformer::train::{TrainConfig, Trainer};

/// A small GPT with dropout, so that masks are drawn inside every block.
fn config(checkpointed: bool) -> GptConfig {
    GptConfig {
        n_layer: 3,
        block_size: 16,
        dropout: 0.2,
        checkpoint_activations: checkpointed,
        ..GptConfig::preset("cpu-mini", 29).unwrap()
    }
}

fn grads(model: &impl Module) -> Vec<Vec<f32>> {
    model
        .parameters()
        .iter()
        .map(|p| p.grad().unwrap().to_vec())
        .collect()
}

fn gpt_gradients_are_bit_identical_with_dropout(device: &Device) {
    let ids: Vec<i64> = (0..2 * 16).map(|i| (i * 7 + i / 5) % 29).collect();
    let targets: Vec<i64> = ids.iter().map(|&i| (i + 1) % 29).collect();
    let run = |checkpointed: bool| {
        let model = config(checkpointed).init(device, 3).unwrap();
        let ids = Tensor::from_ids_on(ids.clone(), &[2, 16], device).unwrap();
        let targets = Tensor::from_ids_on(targets.clone(), &[2, 16], device).unwrap();
        let mut losses = Vec::new();
        // Two steps' gradients summed: the second's masks come from where
        // the first left the dropout stream.
        for _ in 0..2 {
            let loss = Gpt::loss(&model.forward(&ids, Default::default()).logits, &targets);
            loss.backward();
            losses.push(loss.item());
        }
        (losses, grads(&model), model.dropout_rng().state())
    };
    let (plain, checkpointed) = (run(false), run(true));
    assert_eq!(checkpointed.0, plain.0, "losses");
    assert_eq!(checkpointed.1, plain.1, "gradients");
    assert_eq!(
        checkpointed.2, plain.2,
        "the dropout stream after two steps"
    );
}

test_device!(gpt_gradients_are_bit_identical_with_dropout);

/// The encoder (with padding and rotary positions) and the
/// encoder-decoder (padding on both sides, gradients through the memory
/// into the encoder) checkpoint every layer with the same gradients, bit
/// for bit, dropout on.
fn encoder_and_encoder_decoder_gradients_are_bit_identical(device: &Device) {
    use zeroformer::models::{EncoderConfig, EncoderDecoderConfig};
    use zeroformer::nn::Positional;
    let ids: Vec<i64> = (0..2 * 12).map(|i| 1 + (i * 5 + i / 4) % 28).collect();
    let ids = Tensor::from_ids_on(ids, &[2, 12], device).unwrap();
    let pad: Vec<bool> = (0..2 * 12).map(|i| i >= 12 + 9).collect();
    let pad = Tensor::from_bools(pad, &[2, 12]).to_device(device).unwrap();
    let encoder = |checkpointed: bool| {
        let mut config = EncoderConfig::preset("encoder-tiny", 29, 3, 12).unwrap();
        config.layer.dropout = 0.2;
        config.positional = Positional::Rotary;
        config.checkpoint_activations = checkpointed;
        let model = config.init(device, 4).unwrap();
        model.classify(&ids, Some(&pad)).square().sum().backward();
        grads(&model)
    };
    assert_eq!(encoder(true), encoder(false), "encoder");
    let encoder_decoder = |checkpointed: bool| {
        let mut config = EncoderDecoderConfig::preset("transformer-tiny", 29, 29, 12).unwrap();
        config.checkpoint_activations = checkpointed;
        let model = config.init(device, 5).unwrap();
        let tgt = ids.narrow(1, 0, 10);
        let logits = model.forward(&ids, &tgt, Some(&pad), None);
        logits.square().mean().backward();
        grads(&model)
    };
    assert_eq!(
        encoder_decoder(true),
        encoder_decoder(false),
        "encoder-decoder"
    );
}

test_device!(encoder_and_encoder_decoder_gradients_are_bit_identical);

/// Two checkpointed models with dropout trained at once from two threads
/// give the gradients each gives alone: the pool's workers run one
/// model's jobs while the other's wait, and each job's dropout draws are
/// logged in its own segment's frames, not in those of the segment its
/// thread interrupted.
#[test]
fn concurrent_checkpointed_models_keep_their_own_dropout_replays() {
    let ids: Vec<i64> = (0..2 * 16).map(|i| (i * 7 + i / 5) % 29).collect();
    let targets: Vec<i64> = ids.iter().map(|&i| (i + 1) % 29).collect();
    let run = |seed: u64| {
        let model = config(true).init(&Device::Cpu, seed).unwrap();
        let ids = Tensor::from_ids(ids.clone(), &[2, 16]);
        let targets = Tensor::from_ids(targets.clone(), &[2, 16]);
        for _ in 0..3 {
            Gpt::loss(&model.forward(&ids, Default::default()).logits, &targets).backward();
        }
        grads(&model)
    };
    let alone = [run(11), run(12)];
    for _ in 0..4 {
        let together = std::thread::scope(|s| {
            let a = s.spawn(|| run(11));
            let b = s.spawn(|| run(12));
            [a.join().unwrap(), b.join().unwrap()]
        });
        assert!(
            together == alone,
            "gradients changed when trained side by side"
        );
    }
}

/// A block of the small GPT (with its dropout), and an input for it.
fn block_and_input(seed: u64) -> (GptBlock, Tensor) {
    let model = config(false).init(&Device::Cpu, seed).unwrap();
    let x = Tensor::randn(&[2, 16, 128], &mut StdRng::seed_from_u64(seed));
    (model.blocks[0].clone(), x)
}

#[test]
fn nested_and_repeated_segments_give_the_unchecked_gradients() {
    let run = |checkpointed: bool| {
        let (block, x) = block_and_input(5);
        let x = x.requires_grad();
        let y = if checkpointed {
            // The block twice, the first application a checkpoint inside a
            // checkpoint, then a third time in its own checkpoint.
            let twice = checkpoint(&block, &[&x], |b, xs| {
                let inner = checkpoint(b, &[&xs[0]], |b, ys| b.forward(&ys[0], None, false).x);
                b.forward(&inner, None, false).x
            });
            checkpoint(&block, &[&twice], |b, xs| b.forward(&xs[0], None, false).x)
        } else {
            block
                .forward(
                    &block
                        .forward(&block.forward(&x, None, false).x, None, false)
                        .x,
                    None,
                    false,
                )
                .x
        };
        y.square().mean().backward();
        (x.grad().unwrap().to_vec(), grads(&block))
    };
    let (plain, checkpointed) = (run(false), run(true));
    assert_eq!(checkpointed.0, plain.0, "the input's gradient");
    // Each parameter is used by all three applications, and its three
    // contributions are summed in another order ((3 + (2 + 1)) instead of
    // ((3 + 2) + 1)): equal to f32 rounding, not bit for bit.
    for (i, (a, b)) in checkpointed.1.iter().zip(&plain.1).enumerate() {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-6 * scale,
                "parameter {i}: {x} checkpointed, {y} plain"
            );
        }
    }
}

#[test]
fn a_segment_whose_input_needs_no_gradient_still_trains_its_parameters() {
    let run = |checkpointed: bool| {
        let (block, x) = block_and_input(6);
        let y = if checkpointed {
            checkpoint(&block, &[&x], |b, xs| b.forward(&xs[0], None, false).x)
        } else {
            block.forward(&x, None, false).x
        };
        y.sum().backward();
        grads(&block)
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn without_a_graph_it_is_the_plain_call() {
    let (block, x) = block_and_input(7);
    let x = x.requires_grad();
    let y = no_grad(|| checkpoint(&block, &[&x], |b, xs| b.forward(&xs[0], None, false).x));
    assert!(!y.is_tracked());
    let plain = eval_mode(|| block.forward(&x, None, false).x).to_vec();
    assert_eq!(
        eval_mode(|| checkpoint(&block, &[&x], |b, xs| b.forward(&xs[0], None, false).x)).to_vec(),
        plain
    );
}

#[test]
#[should_panic(expected = "neither its inputs nor its module's parameters")]
fn a_tensor_needing_a_gradient_from_outside_the_segment_is_refused() {
    let layer = LinearConfig::new(3, 3)
        .init(&Device::Cpu, &mut StdRng::seed_from_u64(0))
        .unwrap();
    let x = Tensor::ones(&[2, 3]).requires_grad();
    let outside = Tensor::ones(&[3]).requires_grad();
    let captured = outside.clone();
    let y = checkpoint(&layer, &[&x], move |l, xs| l.forward(&xs[0]).add(&captured));
    y.sum().backward();
}

#[test]
fn the_checkpoint_passes_a_gradient_check() {
    let layer = LinearConfig::new(4, 3)
        .init(&Device::Cpu, &mut StdRng::seed_from_u64(1))
        .unwrap();
    let x = Tensor::randn(&[2, 4], &mut StdRng::seed_from_u64(2));
    GradCheck::default()
        .check(
            |xs| checkpoint(&layer, &[&xs[0]], |l, ys| l.forward(&ys[0]).tanh()),
            &[x],
        )
        .unwrap();
}

/// Without dropout a step runs its batch in shards side by side, each
/// checkpointing its own blocks on its own pool thread: each shard records
/// in frames of its own, and the weights are the plain run's.
#[test]
fn side_by_side_shards_checkpoint_independently() {
    let data: Vec<i64> = (0..3000).map(|i| (i * 7 + i / 13) % 29).collect();
    let no_dropout = |checkpointed: bool| GptConfig {
        dropout: 0.0,
        ..config(checkpointed)
    };
    let train = TrainConfig {
        batch_size: 8,
        ..TrainConfig::nanogpt_cpu(10)
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    pool.install(|| {
        let mut plain = common::gpt_trainer(&no_dropout(false), train.clone()).unwrap();
        let mut checkpointed = common::gpt_trainer(&no_dropout(true), train.clone()).unwrap();
        for _ in 0..4 {
            plain.train_step(&data).unwrap();
            checkpointed.train_step(&data).unwrap();
        }
        let weights = |t: &Trainer<Gpt>| -> Vec<Vec<f32>> {
            t.model.parameters().iter().map(Tensor::to_vec).collect()
        };
        assert_eq!(weights(&checkpointed), weights(&plain));
    });
}

#[test]
fn data_parallel_training_and_resume_are_bit_identical_with_checkpointing() {
    let data: Vec<i64> = (0..3000).map(|i| (i * 7 + i / 13) % 29).collect();
    let train = TrainConfig {
        batch_size: 4,
        ..TrainConfig::nanogpt_cpu(10)
    };
    let weights = |t: &Trainer<Gpt>| -> Vec<Vec<f32>> {
        t.model.parameters().iter().map(Tensor::to_vec).collect()
    };
    let mut plain = common::gpt_trainer(&config(false), train.clone()).unwrap();
    let mut checkpointed = common::gpt_trainer(&config(true), train).unwrap();
    for _ in 0..3 {
        plain.train_step(&data).unwrap();
        checkpointed.train_step(&data).unwrap();
    }
    assert_eq!(weights(&checkpointed), weights(&plain));
    // Saved and resumed, the checkpointed run goes on as the plain one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    checkpointed.save(&path, &[]).unwrap();
    let (mut resumed, _) = Trainer::<Gpt>::resume(&path, &Device::Cpu).unwrap();
    assert!(resumed.model.config.checkpoint_activations);
    for _ in 0..2 {
        plain.train_step(&data).unwrap();
        resumed.train_step(&data).unwrap();
    }
    assert_eq!(weights(&resumed), weights(&plain));
}
