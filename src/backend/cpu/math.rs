//! Scalar math written so that loops over it vectorise: branch-free, no
//! library calls.

/// tanh as a rational function (the form Eigen and XNNPACK use: odd degree-13
/// numerator over even degree-6 denominator, inputs clamped to ±7.9053).
/// Against f64 tanh its largest error is 4.3e-7 absolute on a 1e-4 grid of
/// [-12, 12] (the unit test below measures it; about 6 ulp, near
/// saturation). From |x| = 9, where f32 tanh rounds to ±1, it is exactly
/// ±1, so that `0.5·x·(1 + tanh)` is exactly 0 or x far out. std's `tanh`
/// is a libm call that blocks vectorisation and costs several times more;
/// `Tensor::tanh` keeps it, this serves GELU.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    const SATURATED: f32 = 9.0;
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    // Explicit FMAs, as in `fast_exp`.
    let mut p = A[6];
    p = p.mul_add(x2, A[5]);
    p = p.mul_add(x2, A[4]);
    p = p.mul_add(x2, A[3]);
    p = p.mul_add(x2, A[2]);
    p = p.mul_add(x2, A[1]);
    p = p.mul_add(x2, A[0]);
    p *= xc;
    let mut q = B[3];
    q = q.mul_add(x2, B[2]);
    q = q.mul_add(x2, B[1]);
    q = q.mul_add(x2, B[0]);
    if x.abs() < 4e-4 {
        x
    } else if x.abs() >= SATURATED {
        1.0f32.copysign(x)
    } else {
        p / q
    }
}

/// tanh(x) and its derivative sech²(x) = 1 - tanh²(x) together, from one
/// exponential e = e^(-2|x|): tanh = ±(1 - e)/(1 + e), sech² = 4e/(1 + e)².
/// sech² is accurate relative to its value everywhere, where 1 - t² of a
/// rounded t is not: near saturation t rounds to within an ulp of 1 and
/// 1 - t² keeps only that rounding error, which GELU's backward multiplies
/// by a term growing as x³. sech² is exactly 0 from |x| = 43.7, as f32
/// sech² underflows; tanh is within 1.2e-7 of the exact value.
#[inline(always)]
pub fn fast_tanh_sech2(x: f32) -> (f32, f32) {
    let e = fast_exp(-2.0 * x.abs());
    let r = 1.0 / (1.0 + e);
    (((1.0 - e) * r).copysign(x), 4.0 * e * r * r)
}

/// exp(x) as Cephes' `expf` computes it, written branch-free so that loops
/// over it vectorise: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7
/// polynomial, 2^n by building the float's exponent bits. Within 1 ulp of
/// f64 exp on the normal range (0.7 measured by the unit test); inputs below
/// -87.3 (where e^x leaves the normal range), -inf included, give 0, which
/// is what masked softmax entries need. Not for inputs above 88.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOW: f32 = -87.3;
    const HIGH: f32 = 88.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5·2^23 rounds to the nearest integer
    // without a call to `round` (which SSE2 has no instruction for).
    const ROUND: f32 = 12_582_912.0;
    // Explicit FMAs (`mul_add`): one instruction each under AVX2 and
    // AVX-512, where the exponentials were a quarter of a d = 32 attention
    // call, and the same bits at every width (a correctly rounded libm call
    // at baseline, where only CPUs without FMA run).
    let xc = x.clamp(LOW, HIGH);
    let shifted = xc.mul_add(LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let e_r = p.mul_add(r * r, r) + 1.0;
    // 2^n from the bits of `shifted` = 1.5·2^23 + n, whose low mantissa bits
    // hold 2^22 + n: adding the bias and shifting left by 23 leaves exactly
    // (n + 127) << 23, the exponent field of 2^n. (`n as i32` would do, but
    // Rust's saturating float-to-int cast does not vectorise.)
    let two_n = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    if x < LOW { 0.0 } else { e_r * two_n }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_exp_is_within_1_ulp_of_exp() {
        let mut worst = 0.0f64;
        for i in -873_000..=880_000 {
            let x = i as f32 * 1e-4;
            let exact = (x as f64).exp();
            let ulp = f32::EPSILON as f64 * (exact as f32).abs() as f64;
            let err = (super::fast_exp(x) as f64 - exact).abs() / ulp;
            worst = worst.max(err);
        }
        assert!(worst < 1.0, "worst error {worst} ulp");
        assert_eq!(super::fast_exp(0.0), 1.0);
        assert_eq!(super::fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::fast_exp(-100.0), 0.0);
    }

    #[test]
    fn fast_tanh_is_within_5e_7_of_tanh() {
        let mut worst = 0.0f64;
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            let err = (super::fast_tanh(x) as f64 - (x as f64).tanh()).abs();
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "worst error {worst}");
        assert_eq!(super::fast_tanh(-0.0), -0.0);
        for x in [9.0, 20.0, 1e30, f32::INFINITY] {
            assert_eq!(super::fast_tanh(x), 1.0);
            assert_eq!(super::fast_tanh(-x), -1.0);
        }
    }

    #[test]
    fn fast_tanh_sech2_is_accurate_and_saturates() {
        let (mut worst_tanh, mut worst_sech2) = (0.0f64, 0.0f64);
        for i in -430_000..=430_000 {
            let x = i as f32 * 1e-4;
            let (t, s) = super::fast_tanh_sech2(x);
            worst_tanh = worst_tanh.max((t as f64 - (x as f64).tanh()).abs());
            let exact = 1.0 / (x as f64).cosh().powi(2);
            let ulp = f32::EPSILON as f64 * (exact as f32).abs() as f64;
            worst_sech2 = worst_sech2.max((s as f64 - exact).abs() / ulp);
        }
        assert!(worst_tanh < 1.2e-7, "tanh: worst error {worst_tanh}");
        assert!(worst_sech2 < 4.0, "sech²: worst error {worst_sech2} ulp");
        assert_eq!(super::fast_tanh_sech2(0.0), (0.0, 1.0));
        assert_eq!(super::fast_tanh_sech2(44.0), (1.0, 0.0));
        assert_eq!(super::fast_tanh_sech2(-44.0), (-1.0, 0.0));
        assert_eq!(super::fast_tanh_sech2(f32::NEG_INFINITY), (-1.0, 0.0));
    }
}
