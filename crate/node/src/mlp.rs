//! Building and initialising mlp policies.

use crate::cancel::CancelFlag;
use crate::core;
use crate::job::{spawn, Job, JobTask};
use crate::policy::MlpShape;
use crate::{guard, seed_from, ScenarioInput};
use core::fit::fit_base;
use core::model::ScenarioSpec;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Number of parameters of an mlp over a vocabulary of `vocab` tokens and responses of `length`.
#[napi]
pub fn mlp_num_params(vocab: u32, length: u32, shape: MlpShape) -> napi::Result<u32, String> {
    guard(|| Ok(core::mlp::Mlp::new(shape.config(vocab as usize, length as usize))?.num_params() as u32))
}

/// Seeded initial parameters: weights N(0, 1/fan-in), biases 0.
#[napi]
pub fn mlp_init(vocab: u32, length: u32, shape: MlpShape, seed: f64) -> napi::Result<Float64Array, String> {
    guard(|| Ok(core::mlp::Mlp::new(shape.config(vocab as usize, length as usize))?.init_params(seed_from(seed, "seed")?))).map(Float64Array::new)
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
    guard(|| MlpFitJob::new(&spec, &shape, &params, steps, learning_rate)?.run()).map(MlpFitJob::to_js)
}

/// `mlpFitBase` on the libuv thread pool. A raised `cancel` flag rejects it with HH_ABORTED.
#[napi(ts_return_type = "Promise<FitOutput>")]
pub fn mlp_fit_base_async(spec: ScenarioInput, shape: MlpShape, params: Float64Array, steps: u32, learning_rate: f64, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<MlpFitJob>>, String> {
    guard(|| Ok(spawn(MlpFitJob::new(&spec, &shape, &params, steps, learning_rate)?, cancel)))
}

/// The fit of an mlp to a base, with its inputs copied.
pub struct MlpFitJob {
    spec: ScenarioSpec,
    mlp: core::mlp::Mlp,
    params: Vec<f64>,
    steps: usize,
    learning_rate: f64,
}

impl MlpFitJob {
    fn new(spec: &ScenarioInput, shape: &MlpShape, params: &[f64], steps: u32, learning_rate: f64) -> core::Result<Self> {
        let spec = spec.to_spec()?.prepared()?;
        let mlp = core::mlp::Mlp::new(shape.config(spec.vocab, spec.length))?;
        Ok(MlpFitJob { spec, mlp, params: params.to_vec(), steps: steps as usize, learning_rate })
    }
}

impl Job for MlpFitJob {
    type Data = (Vec<f64>, f64);
    type Js = FitOutput;
    fn run(&self) -> core::Result<(Vec<f64>, f64)> {
        let mut fitted = self.params.clone();
        let report = fit_base(&self.mlp, &mut fitted, &self.spec, self.steps, self.learning_rate)?;
        Ok((fitted, report.sequence_kl))
    }
    fn to_js((params, sequence_kl): (Vec<f64>, f64)) -> FitOutput {
        FitOutput { params: Float64Array::new(params), sequence_kl }
    }
}

/// Logits of an mlp for a batch of inputs: positions t (1..T) and contexts (the last `order` tokens
/// in base V+1, oldest first, V = "<bos>"), B × V.
#[napi]
pub fn mlp_logits(vocab: u32, length: u32, shape: MlpShape, params: Float64Array, positions: Uint32Array, contexts: Uint32Array) -> napi::Result<Float64Array, String> {
    guard(|| {
        let mlp = core::mlp::Mlp::new(shape.config(vocab as usize, length as usize))?;
        mlp.check_params(&params)?;
        if positions.len() != contexts.len() {
            return Err(crate::invalid(format!("positions ({}) and contexts ({}) differ in length", positions.len(), contexts.len())));
        }
        let v = vocab as usize;
        let mut out = vec![0.0; positions.len() * v];
        let mut scratch = vec![0.0; mlp.scratch_len()];
        for (i, (&t, &c)) in positions.iter().zip(contexts.iter()).enumerate() {
            if t == 0 || t > length || c as usize >= mlp.num_contexts() {
                return Err(crate::invalid(format!("input {i}: position {t} must be in 1..{length} and context {c} below (V+1)^order")));
            }
            mlp.forward(&params, t as usize, c as usize, &mut out[i * v..(i + 1) * v], &mut scratch);
        }
        Ok(out)
    })
    .map(Float64Array::new)
}
