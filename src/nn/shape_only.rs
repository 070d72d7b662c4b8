//! Counting a model's parameters without making them (PyTorch builds on
//! its `meta` device for the same reason): inside a counting build, every
//! parameter and buffer the layers make is a placeholder, one element
//! viewed at every position of its shape, and no initial value is drawn.
//! So the count of a config read from a file costs a few bytes per tensor,
//! whatever sizes the config claims, and the count is the built model's by
//! construction: no closed form to keep in step with the layers.

use std::cell::Cell;

use crate::nn::Module;
use crate::{Error, Result, Tensor};

/// The numbers a counting build's parameters hold so far, against the most
/// it may make.
#[derive(Clone, Copy)]
struct Counter {
    numbers: u64,
    limit: u64,
    overflowed: bool,
}

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
    count_within(u64::MAX, build)?.ok_or_else(overflow)
}

/// [`count_parameters`], stopping as soon as a layer takes the count past
/// `limit` (a file's numbers), so a config that claims far more than its
/// file holds costs no more than the file's own count: `None` then.
pub(crate) fn count_within<M: Module>(
    limit: u64,
    build: impl FnOnce() -> Result<M>,
) -> Result<Option<u64>> {
    let counter = Counter {
        numbers: 0,
        limit,
        overflowed: false,
    };
    let restore = Restore(COUNTING.with(|c| c.replace(Some(counter))));
    let built = build();
    let inner = COUNTING.with(Cell::get).expect("set above");
    drop(restore);
    // Past the limit, or past any number: a build stopped by the count
    // (check_count) or a model too big to sum.
    let too_many = || match limit {
        u64::MAX => Err(overflow()),
        _ => Ok(None),
    };
    let model = match built {
        Ok(model) => model,
        Err(_) if inner.overflowed => return too_many(),
        Err(_) if inner.numbers > limit => return Ok(None),
        Err(e) => return Err(e),
    };
    let total = model
        .parameters()
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.numel() as u64));
    match total {
        Some(total) if total <= limit => Ok(Some(total)),
        Some(_) => Ok(None),
        None => too_many(),
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

/// A parameter of `shape`: `make()` normally, a placeholder (counted) in a
/// counting build.
pub(crate) fn parameter(shape: &[usize], make: impl FnOnce() -> Tensor) -> Tensor {
    let Some(mut counter) = COUNTING.with(Cell::get) else {
        return make();
    };
    let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
    match numel.and_then(|n| counter.numbers.checked_add(n)) {
        Some(numbers) => counter.numbers = numbers,
        None => counter.overflowed = true,
    }
    COUNTING.with(|c| c.set(Some(counter)));
    placeholder(shape, counter.overflowed).requires_grad()
}

/// A buffer of `shape` (a table computed from the config): `make()`
/// normally, a placeholder in a counting build, not counted.
pub(crate) fn buffer(shape: &[usize], make: impl FnOnce() -> Tensor) -> Tensor {
    match COUNTING.with(Cell::get) {
        Some(counter) => placeholder(shape, counter.overflowed),
        None => make(),
    }
}

/// One zero viewed as `shape`; once the count has overflowed, a bare zero
/// (the build is refused at the next layer, and a view whose size
/// overflows cannot be described).
fn placeholder(shape: &[usize], overflowed: bool) -> Tensor {
    let zero = Tensor::zeros(&[1]);
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
        _ => Ok(()),
    }
}
