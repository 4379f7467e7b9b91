//! This machine's Philox draw rate and random-lookup rate, for the benchmarks' fractions.

use crate::core;
use napi_derive::napi;

/// Philox4x32-10 blocks per second on every thread, one block per token as the sampler draws them.
#[napi]
pub fn philox_rate(count: u32) -> napi::Result<f64, String> {
    crate::guard(|| {
        if count == 0 {
            return Err(crate::invalid("philox rate: count must be at least 1".into()));
        }
        Ok(core::limits::philox_rate(count))
    })
}

/// Random 8-byte reads per second on every thread from a table of `bytes` bytes (at most 4 GiB).
#[napi]
pub fn lookup_rate(bytes: f64, count: u32) -> napi::Result<f64, String> {
    crate::guard(|| {
        if !(bytes >= 8.0 && bytes <= (4u64 << 30) as f64) || count == 0 {
            return Err(crate::invalid(format!("lookup rate: bytes must be in 8..4 GiB and count at least 1, got {bytes} and {count}")));
        }
        Ok(core::limits::lookup_rate(bytes as usize, count as usize))
    })
}
