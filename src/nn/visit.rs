//! How `#[derive(Module)]` reaches each field: [`Visit`], implemented for
//! tensors (parameters), every [`Module`], `Vec`s and `Option`s of those,
//! and the plain values a layer keeps beside them (numbers, booleans,
//! strings), which take no part.

use super::{Module, SharedRng, join};
use crate::Tensor;

/// A field of a derived [`Module`]: what it contributes under the field's
/// `name` (after the parent's `prefix`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tensor, a Module, or a Vec or Option of them",
    label = "#[derive(Module)] does not know how to visit this field",
    note = "mark the field `#[module(skip)]` if it holds no parameters"
)]
pub trait Visit {
    /// Calls `f` for every parameter, named `prefix + name` (+ `.` and the
    /// names inside, for a module).
    fn visit_parameters(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor));

    /// Calls `f` for every buffer inside (a module's; a tensor is none).
    fn visit_buffers(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor));

    /// Whether anything inside draws randomly ([`Module::draws_randomly`]).
    fn draws_randomly(&self) -> bool;
}

/// A tensor field is a parameter.
impl Visit for Tensor {
    fn visit_parameters(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, name), self);
    }

    fn visit_buffers(&self, _: &str, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}

    fn draws_randomly(&self) -> bool {
        false
    }
}

/// A module field is visited with the field's name as a prefix.
impl<M: Module> Visit for M {
    fn visit_parameters(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        Module::visit_parameters(self, &format!("{prefix}{name}."), f);
    }

    fn visit_buffers(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        Module::visit_buffers(self, &format!("{prefix}{name}."), f);
    }

    fn draws_randomly(&self) -> bool {
        Module::draws_randomly(self)
    }
}

/// Items are named by their index: `layers.0.`, `layers.1.`, ...
impl<T: Visit> Visit for Vec<T> {
    fn visit_parameters(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let prefix = format!("{prefix}{name}.");
        for (i, item) in self.iter().enumerate() {
            item.visit_parameters(&prefix, &i.to_string(), f);
        }
    }

    fn visit_buffers(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let prefix = format!("{prefix}{name}.");
        for (i, item) in self.iter().enumerate() {
            item.visit_buffers(&prefix, &i.to_string(), f);
        }
    }

    fn draws_randomly(&self) -> bool {
        self.iter().any(Visit::draws_randomly)
    }
}

/// Present or not: an optional bias, an optional head.
impl<T: Visit> Visit for Option<T> {
    fn visit_parameters(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if let Some(item) = self {
            item.visit_parameters(prefix, name, f);
        }
    }

    fn visit_buffers(&self, prefix: &str, name: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if let Some(item) = self {
            item.visit_buffers(prefix, name, f);
        }
    }

    fn draws_randomly(&self) -> bool {
        self.as_ref().is_some_and(Visit::draws_randomly)
    }
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        /// A plain value: no parameters, no buffers, no mode.
        impl Visit for $t {
            fn visit_parameters(&self, _: &str, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}
            fn visit_buffers(&self, _: &str, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}
            fn draws_randomly(&self) -> bool {
                false
            }
        }
    )*};
}

plain!(
    bool, u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64, String, SharedRng
);
