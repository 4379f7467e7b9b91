//! Building and initialising mlp policies.

use crate::core;
use crate::policy::MlpShape;
use crate::{guard, seed_from, ScenarioInput};
use core::fit::fit_base;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Number of parameters of an mlp over a vocabulary of `vocab` tokens and responses of `length`.
#[napi]
pub fn mlp_num_params(vocab: u32, length: u32, shape: MlpShape) -> napi::Result<u32, String> {
    guard(|| Ok(shape.build(vocab as usize, length as usize)?.num_params() as u32))
}

/// Seeded initial parameters: weights N(0, 1/fan-in), biases 0.
#[napi]
pub fn mlp_init(vocab: u32, length: u32, shape: MlpShape, seed: f64) -> napi::Result<Float64Array, String> {
    guard(|| Ok(shape.build(vocab as usize, length as usize)?.init_params(seed_from(seed, "seed")?))).map(Float64Array::new)
}

#[napi(object)]
pub struct FitOutput {
    pub params: Float64Array,
    /// KL(P_base ‖ P_mlp) over whole responses after fitting.
    pub sequence_kl: f64,
}

/// Fits an mlp to the scenario's base model (full-batch Adam on the visit-weighted cross-entropy),
/// starting from `params`.
#[napi]
pub fn mlp_fit_base(spec: ScenarioInput, shape: MlpShape, params: Float64Array, steps: u32, learning_rate: f64) -> napi::Result<FitOutput, String> {
    guard(|| {
        let spec = spec.to_spec()?.prepared()?;
        let mlp = shape.build(spec.vocab, spec.length)?;
        let mut fitted = params.to_vec();
        let report = fit_base(&mlp, &mut fitted, &spec, steps as usize, learning_rate)?;
        Ok(FitOutput { params: Float64Array::new(fitted), sequence_kl: report.sequence_kl })
    })
}
