//! Counting a model's parameters without making them (PyTorch builds on
//! its `meta` device for the same reason): inside a counting build, every
//! parameter and buffer the layers make is a placeholder, one element
//! viewed at every position of its shape, and no initial value is drawn.
//! So the count of a config read from a file costs a few bytes per tensor,
//! whatever sizes the config claims, and the count is the built model's by
//! construction: no closed form to keep in step with the layers.

use std::cell::Cell;

use crate::nn::Module;
use crate::{Device, Error, Result, Tensor};

/// The numbers a counting build's parameters hold so far, against the most
/// it may make, and how many placeholders it has made.
#[derive(Clone, Copy)]
struct Counter {
    numbers: u64,
    limit: u64,
    overflowed: bool,
    tensors: u64,
}

/// The most parameter tensors a counting build makes before it refuses
/// the model: far more than any real model has (GPT-2 has 148; a
/// 256-expert model of 61 layers about 50,000), and few enough that a
/// config claiming a billion layers of tiny width is refused after a
/// fraction of a second and a few hundred MB of placeholders, not counted
/// for hours.
const MAX_TENSORS: u64 = 1 << 20;

thread_local! {
    static COUNTING: Cell<Option<Counter>> = const { Cell::new(None) };
}

/// How many numbers the parameters of the model `build` makes hold,
/// counted without making them: the layers built from their configs
/// inside `build` get placeholder tensors (nothing is drawn or
/// allocated at full size), and the model is dropped once counted.
/// Errors are `build`'s own, or a count that overflows.
///
/// Tensors `build` makes itself, other than through the layer configs or
/// [`normal_parameter`](super::normal_parameter), are made in full; they
/// count all the same.
///
/// ```
/// use zeroformer::nn::{LinearConfig, count_parameters};
/// use zeroformer::prelude::*;
/// // A 50,000 x 50,000 layer: 2.5 billion weights, 10 GB, never allocated.
/// let huge = LinearConfig::new(50_000, 50_000);
/// let count = count_parameters(|| huge.init(&Device::Cpu, &mut StdRng::seed_from_u64(0)))?;
/// assert_eq!(count, 50_000 * 50_000 + 50_000);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn count_parameters<M: Module>(build: impl FnOnce() -> Result<M>) -> Result<u64> {
    let model = counting_build(u64::MAX, build)?.ok_or_else(overflow)?;
    total(&model).ok_or_else(overflow)
}

/// Every parameter's dotted name and shape, in
/// [`Module::named_parameters`] order, of the model `build` makes, from a
/// counting build (nothing drawn or allocated at full size). Errors are
/// `build`'s own, or a count that overflows.
///
/// ```
/// use zeroformer::nn::{LinearConfig, parameter_shapes};
/// use zeroformer::prelude::*;
/// let layer = LinearConfig::new(3, 2);
/// let shapes = parameter_shapes(|| layer.init(&Device::Cpu, &mut StdRng::seed_from_u64(0)))?;
/// assert_eq!(shapes, [("weight".to_string(), vec![2, 3]), ("bias".to_string(), vec![2])]);
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn parameter_shapes<M: Module>(
    build: impl FnOnce() -> Result<M>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let model = counting_build(u64::MAX, build)?.ok_or_else(overflow)?;
    total(&model).ok_or_else(overflow)?;
    Ok(shapes(&model))
}

/// [`count_parameters`], stopping as soon as a layer takes the count past
/// `limit`: `None` then.
pub(crate) fn count_within<M: Module>(
    limit: u64,
    build: impl FnOnce() -> Result<M>,
) -> Result<Option<u64>> {
    Ok(counting_build(limit, build)?.and_then(|model| total(&model)))
}

/// The names and shapes of `model`'s parameters.
pub(crate) fn shapes(model: &impl Module) -> Vec<(String, Vec<usize>)> {
    model
        .named_parameters()
        .into_iter()
        .map(|(name, t)| (name, t.shape().to_vec()))
        .collect()
}

/// How many numbers `model`'s parameters hold, `None` past `u64::MAX`.
pub(crate) fn total(model: &impl Module) -> Option<u64> {
    model
        .parameters()
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.numel() as u64))
}

/// The model `build` makes with placeholder parameters (see
/// [`count_parameters`]), stopping as soon as a layer takes the count past
/// `limit` (a file's numbers), so a config that claims far more than its
/// file holds costs no more than the file's own count: `None` then.
pub(crate) fn counting_build<M: Module>(
    limit: u64,
    build: impl FnOnce() -> Result<M>,
) -> Result<Option<M>> {
    let counter = Counter {
        numbers: 0,
        limit,
        overflowed: false,
        tensors: 0,
    };
    let restore = Restore(COUNTING.with(|c| c.replace(Some(counter))));
    let built = build();
    let inner = COUNTING.with(Cell::get).expect("set above");
    drop(restore);
    // Past the limit, or past any number: a build stopped by the count
    // (check_count) or a model too big to sum.
    match built {
        Ok(model) if total(&model).is_some_and(|t| t <= limit) => Ok(Some(model)),
        Ok(_) => Ok(None),
        Err(_) if inner.overflowed || inner.numbers > limit => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts back the counting state a counting build found, also when `build`
/// panics: a later build on the thread must make real tensors.
struct Restore(Option<Counter>);

impl Drop for Restore {
    fn drop(&mut self) {
        COUNTING.with(|c| c.set(self.0));
    }
}

/// The error that stops a counting build past its limit; the caller
/// answers `None` for it.
fn over_limit() -> Error {
    Error::InvalidConfig("the model holds more parameters than expected".into())
}

fn overflow() -> Error {
    Error::InvalidConfig("the model's parameter count overflows".into())
}

/// Whether this thread is inside a counting build.
pub(crate) fn counting() -> bool {
    COUNTING.with(|c| c.get().is_some())
}

/// A parameter of `shape` on `device`: `make()` normally, a placeholder
/// (counted) in a counting build.
pub(crate) fn parameter(shape: &[usize], device: &Device, make: impl FnOnce() -> Tensor) -> Tensor {
    let Some(mut counter) = COUNTING.with(Cell::get) else {
        return make();
    };
    let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
    match numel.and_then(|n| counter.numbers.checked_add(n)) {
        Some(numbers) => counter.numbers = numbers,
        None => counter.overflowed = true,
    }
    counter.tensors += 1;
    COUNTING.with(|c| c.set(Some(counter)));
    placeholder(shape, counter.overflowed, device).requires_grad()
}

/// A buffer of `shape` on `device` (a table computed from the config):
/// `make()` normally, a placeholder in a counting build, not counted.
pub(crate) fn buffer(shape: &[usize], device: &Device, make: impl FnOnce() -> Tensor) -> Tensor {
    match COUNTING.with(Cell::get) {
        Some(counter) => placeholder(shape, counter.overflowed, device),
        None => make(),
    }
}

/// One zero viewed as `shape`; once the count has overflowed, a bare zero
/// (the build is refused at the next layer, and a view whose size
/// overflows cannot be described).
fn placeholder(shape: &[usize], overflowed: bool, device: &Device) -> Tensor {
    let zero = Tensor::zeros_on(&[1], device).expect("the layer's config checked its device");
    let fits = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .is_some();
    if overflowed || !fits {
        zero
    } else {
        zero.reshape(&vec![1; shape.len()]).broadcast_to(shape)
    }
}

/// Refuses, inside a counting build, a count past its limit or one that
/// overflowed: called as each layer is built from its config.
pub(crate) fn check_count() -> Result<()> {
    match COUNTING.with(Cell::get) {
        Some(c) if c.overflowed => Err(overflow()),
        Some(c) if c.numbers > c.limit => Err(over_limit()),
        Some(c) if c.tensors > MAX_TENSORS => Err(Error::InvalidConfig(format!(
            "the model has more than {MAX_TENSORS} parameter tensors"
        ))),
        _ => Ok(()),
    }
}
