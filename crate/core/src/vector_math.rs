//! exp and tanh in plain arithmetic that the compiler vectorises over slices.
//!
//! The C library's tanh cost half of a PPO step's time; these versions have no branches, calls or
//! tables, so loops over them run in SIMD lanes. The slice versions are compiled three times, for
//! the baseline x86-64 (SSE2), for AVX2 with fused multiply-adds and for AVX-512 (with AVX2 and fused
//! multiply-adds), and pick the widest the processor has at run time: results then depend on the
//! machine (by a few ulp, fused multiply-adds or not), never on the thread count. The AVX2 and
//! AVX-512 builds do the same operations on each entry, in wider lanes, so they give the same bits.
//!
//! `widest!` compiles any loop-heavy body three times in the same way (the mlp's batched passes use
//! it): plain arithmetic is never fused by the compiler, so those three builds give the same bits.

const LOG2_E: f64 = std::f64::consts::LOG2_E;
// ln 2 split in two so that k·LN2_HI is exact for the k that occur.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// 1.5·2^52: adding it rounds to an integer held in the low mantissa bits.
const ROUND: f64 = 6_755_399_441_055_744.0;
/// 1/k! for k = 13 down to 0.
const TAYLOR: [f64; 14] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// a·b + c, fused when FUSED (only used where the FMA instruction is known to exist).
#[inline(always)]
fn madd<const FUSED: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// e^z for z ≤ 700 (z below −700 is taken as −700), with fused multiply-adds when FUSED (only
/// where the FMA instruction is known to exist: inside a function compiled for it).
#[inline(always)]
pub(crate) fn exp_kernel<const FUSED: bool>(z: f64) -> f64 {
    let z = z.max(-700.0);
    let shifted = madd::<FUSED>(z, LOG2_E, ROUND);
    let k = shifted - ROUND;
    let r = madd::<FUSED>(-k, LN2_LO, madd::<FUSED>(-k, LN2_HI, z));
    // Taylor series to degree 13: |r| ≤ ln2/2 makes the remainder below 1e-17 relative.
    let mut p = TAYLOR[0];
    for &c in &TAYLOR[1..] {
        p = madd::<FUSED>(p, r, c);
    }
    // Multiply by 2^k by adding k to the exponent bits (k ≥ −1010, so the result is normal).
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    f64::from_bits(p.to_bits().wrapping_add(k_bits << 52))
}

#[inline(always)]
fn tanh_kernel<const FUSED: bool>(x: f64) -> f64 {
    // tanh|x| = (1 − e^{−2|x|}) / (1 + e^{−2|x|}); beyond |x| = 20 it is 1 to double precision.
    let e = exp_kernel::<FUSED>(-2.0 * x.abs().min(20.0));
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// e^z for z ≤ 0 (relative error below 3e-16), with z clamped at −700 (e^−700 ≈ 1e−304 stands in
/// for anything smaller): the activations and softmax only need that range.
pub fn exp_nonpositive(z: f64) -> f64 {
    exp_kernel::<false>(z)
}

/// tanh x with an absolute error below 4e-16 (the activations need no relative accuracy near 0).
pub fn tanh(x: f64) -> f64 {
    tanh_kernel::<false>(x)
}

/// The widest vector instructions of this processor that `widest!` compiles for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    Baseline,
    /// AVX2 with fused multiply-adds.
    Avx2,
    /// AVX-512 (F, DQ, VL) with AVX2 and fused multiply-adds.
    Avx512,
}

/// This processor's `Simd` level (detected once).
pub fn simd() -> Simd {
    static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                return if has!("avx512f") && has!("avx512dq") && has!("avx512vl") { Simd::Avx512 } else { Simd::Avx2 };
            }
        }
        Simd::Baseline
    })
}

/// `widest!((a: A, b: B) => body)`, the whole body of a function returning (), runs `body` (an
/// expression of the arguments, usually a call of an `#[inline(always)]` function) compiled for this
/// processor's `simd()` level. `FUSED` is a const the body may read: true where fused multiply-adds
/// exist.
macro_rules! widest {
    (($($arg:ident: $ty:ty),*) => $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                #[allow(dead_code)]
                const FUSED: bool = true;
                $body
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                #[allow(dead_code)]
                const FUSED: bool = true;
                $body
            }
            match $crate::vector_math::simd() {
                // SAFETY: simd() detected the features these functions are compiled for.
                $crate::vector_math::Simd::Avx512 => return unsafe { avx512($($arg),*) },
                $crate::vector_math::Simd::Avx2 => return unsafe { avx2($($arg),*) },
                $crate::vector_math::Simd::Baseline => {}
            }
        }
        #[allow(dead_code)]
        const FUSED: bool = false;
        $body
    }};
}
pub(crate) use widest;

/// Runs `body::<FUSED>` compiled for the processor's widest `Simd` level.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            widest!(($($arg: $ty),*) => $body::<FUSED>($($arg),*))
        }
    };
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)

/// GELU, tanh form: x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).
#[inline(always)]
fn gelu_slice<const FUSED: bool>(x: &[f64], out: &mut [f64]) {
    out.iter_mut().zip(x).for_each(|(y, &x)| *y = 0.5 * x * (1.0 + tanh_kernel::<FUSED>(GELU_C * (x + 0.044715 * x * x * x))));
}

/// g[i] *= GELU'(x[i]).
#[inline(always)]
fn gelu_backward_slice<const FUSED: bool>(x: &[f64], g: &mut [f64]) {
    g.iter_mut().zip(x).for_each(|(g, &x)| {
        let t = tanh_kernel::<FUSED>(GELU_C * (x + 0.044715 * x * x * x));
        *g *= 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
    });
}

#[inline(always)]
fn tanh_slice<const FUSED: bool>(x: &[f64], out: &mut [f64]) {
    map_interleaved(x, out, tanh_kernel::<FUSED>);
}

/// Entries that `map_interleaved` takes at a time: four AVX-512 vectors.
const INTERLEAVED: usize = 32;

/// out[i] = f(x[i]), INTERLEAVED entries at a time: the compiler then runs several vectors' long
/// dependency chains (the exponential's polynomial) side by side instead of one after the other.
/// Each entry's result is f of that entry alone, whatever the grouping.
#[inline(always)]
pub(crate) fn map_interleaved(x: &[f64], out: &mut [f64], f: impl Fn(f64) -> f64) {
    let (mut x_blocks, mut out_blocks) = (x.chunks_exact(INTERLEAVED), out.chunks_exact_mut(INTERLEAVED));
    for (x, out) in (&mut x_blocks).zip(&mut out_blocks) {
        let (x, out): (&[f64; INTERLEAVED], &mut [f64; INTERLEAVED]) = (x.try_into().unwrap(), out.try_into().unwrap());
        for i in 0..INTERLEAVED {
            out[i] = f(x[i]);
        }
    }
    out_blocks.into_remainder().iter_mut().zip(x_blocks.remainder()).for_each(|(y, &x)| *y = f(x));
}

/// `map_interleaved` in place: x[i] = f(x[i]).
#[inline(always)]
fn map_interleaved_in_place(x: &mut [f64], f: impl Fn(f64) -> f64) {
    let mut blocks = x.chunks_exact_mut(INTERLEAVED);
    for x in &mut blocks {
        let x: &mut [f64; INTERLEAVED] = x.try_into().unwrap();
        x.iter_mut().for_each(|x| *x = f(*x));
    }
    blocks.into_remainder().iter_mut().for_each(|x| *x = f(*x));
}

#[inline(always)]
fn softmax_slice<const FUSED: bool>(x: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    x.iter_mut().for_each(|v| *v = exp_kernel::<FUSED>(*v - max));
    let sum: f64 = x.iter().sum();
    x.iter_mut().for_each(|v| *v /= sum);
}

#[inline(always)]
fn exp_slice<const FUSED: bool>(x: &mut [f64]) {
    map_interleaved_in_place(x, |v| exp_kernel::<FUSED>(v.min(700.0)));
}

dispatch!(
    /// x[i] = e^{x[i]}, with x[i] clamped to [−700, 700] (relative error below 3e-16 there). Each
    /// entry's result does not depend on the slice's length or its place in it.
    exp_in_place, exp_slice, (x: &mut [f64]));
dispatch!(
    /// out[i] = tanh x[i], as `tanh`.
    tanh_into, tanh_slice, (x: &[f64], out: &mut [f64]));
dispatch!(
    /// Turns logits into probabilities in place (shifted by the max, so every exponent is ≤ 0).
    softmax_in_place, softmax_slice, (x: &mut [f64]));
dispatch!(
    /// out[i] = GELU(x[i]) in its tanh form, x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).
    gelu_into, gelu_slice, (x: &[f64], out: &mut [f64]));
dispatch!(
    /// g[i] *= GELU'(x[i]): the backward pass of `gelu_into`.
    gelu_backward, gelu_backward_slice, (x: &[f64], g: &mut [f64]));

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Every kernel of the AVX2 build, run on one slice (AVX2 + FMA instructions).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernels_avx2(x: &[f64]) -> Vec<Vec<f64>> {
        kernels(x)
    }

    /// The same kernels in the AVX-512 build.
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    unsafe fn kernels_avx512(x: &[f64]) -> Vec<Vec<f64>> {
        kernels(x)
    }

    #[inline(always)]
    fn kernels(x: &[f64]) -> Vec<Vec<f64>> {
        let mut out = vec![vec![0.0; x.len()]; 6];
        tanh_slice::<true>(x, &mut out[0]);
        gelu_slice::<true>(x, &mut out[1]);
        out[2].fill(0.7);
        gelu_backward_slice::<true>(x, &mut out[2]);
        out[3].copy_from_slice(x);
        exp_slice::<true>(&mut out[3]);
        for (row, logits) in out[4].chunks_mut(37).zip(x.chunks(37)) {
            row.copy_from_slice(logits);
            softmax_slice::<true>(row);
        }
        out[5] = x.iter().map(|&z| exp_kernel::<true>(-z.abs())).collect();
        out
    }

    /// The AVX-512 build gives the AVX2 build's bits: the same operations on each entry in wider
    /// lanes, and the same order in the softmax's sums (`simd()` picks the widest, so the mlp's
    /// results do not depend on which of the two a machine has).
    #[test]
    fn the_avx512_build_gives_the_avx2_bits() {
        if simd() != Simd::Avx512 {
            eprintln!("no AVX-512 on this processor: nothing to compare");
            return;
        }
        let x: Vec<f64> = (0..4001).map(|i| (i as f64 - 2000.0) * 0.0137 + ((i * 7919) % 101) as f64 * 1e-3).collect();
        // SAFETY: simd() detected AVX-512 F/DQ/VL, AVX2 and FMA.
        let (narrow, wide) = unsafe { (kernels_avx2(&x), kernels_avx512(&x)) };
        for (k, (a, b)) in narrow.iter().zip(&wide).enumerate() {
            assert!(a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()), "kernel {k} differs between the AVX2 and AVX-512 builds");
        }
    }
}
