//! N-API binding of harm-horizon-core: converts and validates, nothing else.
//!
//! Every export is wrapped by `guard`, which turns domain errors into JavaScript Errors whose `code`
//! is the error's stable code (HH_…) and catches panics (code HH_PANIC) so none crosses N-API.
//! Async exports run on the libuv pool with inputs copied on the JS thread first. A Task's `compute`
//! can only fail with a napi Status, so it returns the coded outcome as its output (`Computed`) and
//! `settle`, back on the JS thread, rejects with a JavaScript Error built there with the same `code`.

mod cancel;
mod exact;
mod log_stats;
mod gemm;
mod job;
mod lazy_tabular;
mod limits;
mod mlp;
mod monte_carlo;
mod optimizer;
mod policy;
mod training_types;
mod transformer;

use std::panic::{catch_unwind, AssertUnwindSafe};

use harm_horizon_core as core;
use core::model::ScenarioSpec;
use napi::bindgen_prelude::*;
use napi_derive::napi;

fn to_js(e: core::Error) -> napi::Error<String> {
    napi::Error::new(e.code().to_string(), e.to_string())
}

/// Runs `f`, mapping domain errors and panics to coded JavaScript errors.
/// (`napi::Result<T, String>` is a Result whose error code is a string, not a napi Status.)
fn guard<T>(f: impl FnOnce() -> core::Result<T>) -> napi::Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(to_js),
        Err(panic) => Err(napi::Error::new("HH_PANIC".to_string(), panic_message(panic))),
    }
}

/// What an async task's `compute` hands back to the JS thread: its value or its coded error.
type Computed<T> = napi::Result<T, String>;

/// `guard` for a Task's `compute` (on the libuv pool): never fails there, the outcome is settled
/// later. A raised `cancel` flag stops the computation with HH_ABORTED.
fn guard_task<T>(cancel: Option<&core::cancel::Cancel>, f: impl FnOnce() -> core::Result<T>) -> napi::Result<Computed<T>> {
    Ok(guard(|| core::cancel::run(cancel, f)))
}

/// On the JS thread: the value, or the JavaScript Error (with its `code`) the promise rejects with.
/// The Error is created here and handed to napi-rs by reference, since a Task's error type is a Status.
fn settle<T>(env: &Env, computed: Computed<T>) -> napi::Result<T> {
    computed.map_err(|coded| match unsafe { ToNapiValue::to_napi_value(env.raw(), coded) } {
        Ok(error) => napi::Error::from(unsafe { Unknown::from_raw_unchecked(env.raw(), error) }),
        Err(failed) => failed,
    })
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error (a bug in harm-horizon, please report it): {text}")
}

fn invalid(message: String) -> core::Error {
    core::Error::InvalidArgument(message)
}

/// A seed from JavaScript: a whole number in [0, 2^53).
fn seed_from(value: f64, field: &str) -> core::Result<u64> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 9_007_199_254_740_992.0 {
        Ok(value as u64)
    } else {
        Err(invalid(format!("{field} must be a whole number in [0, 2^53), got {value}")))
    }
}

/// A count from JavaScript: a whole number ≥ 1 (and below 2^32).
fn count_from(value: f64, field: &str) -> core::Result<usize> {
    if value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value < 4_294_967_296.0 {
        Ok(value as usize)
    } else {
        Err(invalid(format!("{field} must be a whole number ≥ 1, got {value}")))
    }
}

/// A scenario in numeric form (see ts/compiled.ts for the layout).
#[napi(object)]
pub struct ScenarioInput {
    pub vocab: u32,
    pub length: u32,
    /// End token id, or -1 for none.
    pub end_token: i32,
    pub order: u32,
    pub base: Float64Array,
    pub transitions: Uint32Array,
    pub harm: Float64Array,
    pub start: u32,
    /// Memory budget of the exact engine in bytes (default 4 GiB).
    pub memory_budget: Option<f64>,
    /// Exact engine: one state per prefix (for transformer policies) instead of (context, automaton state).
    pub prefix_tree: Option<bool>,
    /// Count one T × S × V table of f64 per state in the memory budget (sampling, training and
    /// attacks build one; default false).
    pub policy_tables: Option<bool>,
}


impl ScenarioInput {
    fn end_token(&self) -> core::Result<Option<usize>> {
        match self.end_token {
            -1 => Ok(None),
            e if e >= 0 => Ok(Some(e as usize)),
            e => Err(core::Error::InvalidSpec(format!("endToken must be a token id or -1, got {e}"))),
        }
    }

    /// The numeric specification, copied out of the JavaScript arrays.
    pub(crate) fn to_spec(&self) -> core::Result<ScenarioSpec> {
        Ok(ScenarioSpec {
            vocab: self.vocab as usize,
            length: self.length as usize,
            end_token: self.end_token()?,
            order: self.order as usize,
            base: self.base.to_vec(),
            transitions: self.transitions.to_vec(),
            harm: self.harm.to_vec(),
            start: self.start as usize,
        })
    }
}

/// Number of threads of the rayon pool used by the core.
#[napi]
pub fn thread_count() -> u32 {
    core::parallel::thread_count() as u32
}
