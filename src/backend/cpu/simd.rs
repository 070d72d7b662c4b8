//! Runtime choice of the widest vector instructions the CPU has.
//!
//! The crate builds for baseline x86-64 (SSE2, 4 lanes) so that one binary
//! runs anywhere; `multiversion!` compiles a hot loop again with AVX2+FMA
//! and with AVX-512 enabled and picks one at run time. Rust never contracts
//! `a * b + c` into an FMA on its own, so every version computes the same
//! bits: only the speed depends on the CPU.

/// The vector instructions the running CPU has, widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512F with VL (and AVX2, FMA).
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Whatever the build targets (SSE2 on x86-64).
    Baseline,
}

/// The widest [`Level`] the running CPU supports (the checks are cached by
/// `std`, so this is cheap).
#[inline]
pub fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            return Level::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Evaluates the block `$body` compiled for the widest vector instructions
/// the CPU has (AVX-512F, else AVX2+FMA, else baseline), chosen at run time.
/// The block may use the variables around it, as a closure would.
///
/// Each version wraps the block in a closure of its own, called from one
/// place, which LLVM inlines into that version's `#[target_feature]`
/// function. (A function taking one closure and calling it from all three
/// versions left large loops uninlined and at baseline width: the AdamW
/// update and `map3` ran SSE2 code on an AVX-512 CPU.) The block must not
/// hand its work to other threads: they would run the baseline code.
macro_rules! widest {
    ($body:block) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match $crate::backend::cpu::simd::level() {
            #[cfg(target_arch = "x86_64")]
            $crate::backend::cpu::simd::Level::Avx512 => {
                let f = || $body;
                // SAFETY: the CPU has the features `avx512` is compiled for.
                unsafe { avx512(f) }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::backend::cpu::simd::Level::Avx2 => {
                let f = || $body;
                // SAFETY: the CPU has the features `avx2` is compiled for.
                unsafe { avx2(f) }
            }
            _ => $body,
        }
    }};
}

pub(crate) use widest;

/// Defines `fn $name(args) -> ret` whose body is compiled three times
/// (baseline, AVX2+FMA, AVX-512F) and dispatched on the running CPU. Each
/// version is a `#[target_feature]` function calling the body, which is
/// `#[inline(always)]`, so the body is compiled at every width however large
/// it is. The body should be loops that vectorise: lane-wise work,
/// reductions kept in explicit lane arrays so that their order is the same
/// in every version, and `mul_add` for FMAs (one instruction from AVX2 up,
/// a slow but exact library call at baseline).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::backend::cpu::simd::Level;
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                match $crate::backend::cpu::simd::level() {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            imp($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// Lanes of the explicit reduction accumulators: one AVX-512 register.
pub const LANES: usize = 16;

/// The largest element of `x` (-inf for an empty slice), in a fixed order.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let mut m = rest.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for l in lanes {
        m = m.max(l);
    }
    m
}

/// `x[i] = exp(x[i] - shift)` for every element.
#[inline(always)]
pub fn exp_shifted(x: &mut [f32], shift: f32) {
    for v in x {
        *v = super::math::fast_exp(*v - shift);
    }
}

/// `x[i] = exp(x[i] - shift)` for every element; returns their sum, added in
/// a fixed order.
#[inline(always)]
pub fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    use super::math::fast_exp;
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c.iter_mut()) {
            *v = fast_exp(*v - shift);
            *l += *v;
        }
    }
    let mut sum = 0.0;
    for v in chunks.into_remainder() {
        *v = fast_exp(*v - shift);
        sum += *v;
    }
    sum + lanes.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        pub fn dispatched(x: &mut [f32], shift: f32) -> (f32, f32) {
            let m = max(x);
            (m, exp_shifted_sum(x, shift))
        }
    }

    #[test]
    fn every_version_computes_the_same_bits_as_scalar_code() {
        // 37 elements: two full lane groups and a remainder.
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 13.0 - 4.0)
            .collect();
        let mut vector = x.clone();
        let (m, sum) = dispatched(&mut vector, 1.5);
        assert_eq!(m, x.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        // The same lane order, one element at a time.
        let scalar: Vec<f32> = x
            .iter()
            .map(|&v| super::super::math::fast_exp(v - 1.5))
            .collect();
        let mut lanes = [0.0f32; LANES];
        for (i, &e) in scalar[..32].iter().enumerate() {
            lanes[i % LANES] += e;
        }
        let expected = scalar[32..].iter().sum::<f32>() + lanes.iter().sum::<f32>();
        assert_eq!(vector, scalar);
        assert_eq!(sum.to_bits(), expected.to_bits());
        let exact: f64 = x.iter().map(|&v| (v as f64 - 1.5).exp()).sum();
        assert!((sum as f64 - exact).abs() < 1e-6 * exact);
    }

    #[test]
    fn widest_runs_a_closure_with_the_same_bits_as_scalar_code() {
        use super::super::math::{fast_exp, fast_tanh};
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 37.0).collect();
        let f = |v: f32| 0.5 * v * (1.0 + fast_tanh(0.8 * v)) + fast_exp(-v * v) / (1.0 + v * v);
        let mut vector = vec![0.0f32; x.len()];
        widest!({
            for (o, &v) in vector.iter_mut().zip(&x) {
                *o = f(v);
            }
        });
        for (i, (&got, &v)) in vector.iter().zip(&x).enumerate() {
            let scalar = std::hint::black_box(f)(v);
            assert_eq!(got.to_bits(), scalar.to_bits(), "element {i} (x = {v})");
        }
    }
}
