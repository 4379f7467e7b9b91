//! The machine's f64 GEMM rate, for the benchmarks' FLOP/s fractions.

use crate::core;
use napi_derive::napi;

/// FLOP/s of `repeats` products of two `size × size` f64 matrices on every thread at once, on the
/// kernels the neural policies use.
#[napi]
pub fn gemm_rate(size: u32, repeats: u32) -> napi::Result<f64, String> {
    crate::guard(|| {
        if size == 0 || size > 4096 || repeats == 0 {
            return Err(crate::invalid(format!("gemm rate: size must be in 1..4096 and repeats at least 1, got {size} and {repeats}")));
        }
        Ok(core::gemm::measure_rate(size as usize, repeats as usize))
    })
}
