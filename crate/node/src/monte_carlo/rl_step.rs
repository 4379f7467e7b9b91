//! MonteCarlo's sampled training step (REINFORCE, PPO), sync and async.

use std::sync::Arc;

use crate::core;
use crate::monte_carlo::MonteCarlo;
use crate::optimizer::{Optimizer, Rule};
use crate::policy::{MlpShape, TransformerLayout};
use crate::cancel::{flag_of, CancelFlag};
use crate::training_types::*;
use crate::{count_from, guard, guard_task, invalid, seed_from};
use core::exact::conditional_harm;
use core::model::{Model, DEFAULT_MEMORY_BUDGET};
use core::policy::TabularPolicy;
use core::mlp::MlpConfig;
use core::model::ScenarioSpec;
use core::rl::{rl_step, RlStep, MlpFamily, RlAlgorithm, TabularFamily};
use core::transformer::TransformerConfig;
use core::transformer_table::{RecoveryPenalty, TransformerFamily};
use core::walk::Track;
use napi::bindgen_prelude::*;
use napi_derive::napi;

#[napi]
impl MonteCarlo {
    /// One sampled training step on λ·E[H] + KL for a tabular (needs the exact
    /// model), mlp or transformer policy (its layout last): samples a batch from `params`,
    /// estimates the gradient and updates `params` in place with the optimizer. reinforce-innovation
    /// reads h_t from the exact model when there is one, else from rollouts (`options.harm`).
    #[napi]
    pub fn rl_step(&self, kind: TrainableKind, mlp: Option<MlpShape>, mut params: Float64Array, optimizer: &Optimizer, options: RlOptions, transformer: Option<TransformerLayout>) -> napi::Result<RlStepOutput, String> {
        guard(|| {
            let mut job = self.rl_job(kind, mlp.as_ref(), &params, optimizer, &options, transformer.as_ref())?;
            let step = job.run()?;
            // SAFETY: a synchronous call on the JS thread; nothing else touches the buffer meanwhile.
            job.commit(unsafe { params.as_mut() }, optimizer);
            Ok(step)
        })
        .map(RlStepOutput::from)
    }

    /// `rlStep` on the libuv thread pool: it steps copies of `params` and of the optimizer's state
    /// and writes both back when the promise resolves; a raised `cancel` flag rejects it with
    /// HH_ABORTED and leaves both unchanged. Do not step the same parameters meanwhile.
    #[napi(ts_return_type = "Promise<RlStepOutput>")]
    pub fn rl_step_async(&self, kind: TrainableKind, mlp: Option<MlpShape>, params: Float64Array, optimizer: &Optimizer, options: RlOptions, transformer: Option<TransformerLayout>, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<RlStepTask>, String> {
        guard(|| {
            let job = self.rl_job(kind, mlp.as_ref(), &params, optimizer, &options, transformer.as_ref())?;
            Ok(AsyncTask::new(RlStepTask { job, params, optimizer: optimizer.rule.clone(), cancel: flag_of(cancel) }))
        })
    }
}

impl MonteCarlo {
    /// A sampled training step with its inputs checked and copied.
    fn rl_job(&self, kind: TrainableKind, mlp: Option<&MlpShape>, params: &[f64], optimizer: &Optimizer, options: &RlOptions, transformer: Option<&TransformerLayout>) -> core::Result<RlJob> {
        let algorithm = options.checked_algorithm()?;
        let (spec, model) = self.shared();
        let rule = optimizer.lock().clone();
        if let Some(adam) = &rule.adam {
            if adam.len() != params.len() {
                return Err(invalid(format!("the optimizer was made for {} parameters, the policy has {}", adam.len(), params.len())));
            }
        }
        if options.penalty.is_some() && kind != TrainableKind::Transformer {
            return Err(invalid("a sampled recovery penalty is for transformer policies only".into()));
        }
        let family = match kind {
            TrainableKind::Tabular => Family::Tabular,
            TrainableKind::Mlp => Family::Mlp(mlp.ok_or_else(|| invalid("an mlp policy needs its shape".into()))?.config(spec.vocab, spec.length)),
            TrainableKind::Transformer => Family::Transformer(transformer.ok_or_else(|| invalid("a transformer policy needs its layout".into()))?.config(spec.vocab, spec.length)),
        };
        let count = count_from(options.samples, "samples")?;
        let innovation = options.innovation_harm(model.is_some(), count, spec.length, DEFAULT_MEMORY_BUDGET)?;
        let penalty = match &options.penalty {
            Some(q) => {
                if !(q.mu.is_finite() && q.mu >= 0.0) || q.recovery.iter().any(|&r| r as usize >= spec.vocab) {
                    return Err(invalid("penalty: mu must be finite and ≥ 0, recovery tokens below V".into()));
                }
                let mut recovery = vec![false; spec.vocab];
                q.recovery.iter().for_each(|&r| recovery[r as usize] = true);
                Some(Penalty { responses: q.responses.to_vec(), weights: q.weights.to_vec(), mu: q.mu, position_weights: q.position_weights.to_vec(), recovery })
            }
            None => None,
        };
        Ok(RlJob {
            spec,
            model,
            family,
            params: params.to_vec(),
            rule,
            algorithm,
            count,
            innovation,
            seed: seed_from(options.seed, "seed")?,
            first: options.first_index.unwrap_or(0),
            lambda: options.lambda,
            penalty,
        })
    }
}

/// The policy family a sampled step trains, with its network's configuration.
enum Family {
    Tabular,
    Mlp(MlpConfig),
    Transformer(TransformerConfig),
}

/// The deep objective's recovery penalty, owned (see PenaltyInput).
struct Penalty {
    responses: Vec<u32>,
    weights: Vec<f64>,
    mu: f64,
    position_weights: Vec<f64>,
    recovery: Vec<bool>,
}

/// One sampled training step on copies of the parameters and of the optimizer's state, run alike
/// by `rlStep` (on the JS thread) and `rlStepAsync` (on the pool); `commit` hands both back.
pub struct RlJob {
    spec: Arc<ScenarioSpec>,
    model: Option<Arc<Model>>,
    family: Family,
    params: Vec<f64>,
    rule: Rule,
    algorithm: RlAlgorithm,
    /// reinforce-innovation's h source (None for the other algorithms).
    innovation: Option<InnovationHarm>,
    count: usize,
    seed: u64,
    first: u32,
    lambda: f64,
    penalty: Option<Penalty>,
}

impl RlJob {
    fn run(&mut self) -> core::Result<RlStep> {
        let (spec, model, algorithm) = (&*self.spec, self.model.as_deref(), self.algorithm);
        let track = Track::new(spec, model);
        let params = &mut self.params;
        let rule = &mut self.rule;
        // Lengths were checked when the job was made, so the update cannot fail.
        let mut update = |p: &mut [f64], g: &[f64]| {
            let _ = rule.apply(p, g);
        };
        let (count, seed, first, lambda) = (self.count, self.seed, self.first, self.lambda);
        // The exact h table, built only when the innovation variant reads it (InnovationHarm::Exact
        // was only chosen with the exact model).
        let exact = matches!(self.innovation, Some(InnovationHarm::Exact));
        match &self.family {
            Family::Tabular => {
                let model = model.ok_or_else(|| invalid("a tabular policy needs the exact model".into()))?;
                let h = if exact { Some(conditional_harm(model, &TabularPolicy::new(model, params)?)) } else { None };
                rl_step(&track, &TabularFamily(model), params, &mut update, count, seed, first, lambda, algorithm, harm_source(self.innovation, h.as_deref()).as_ref())
            }
            Family::Mlp(config) => {
                let net = core::mlp::Mlp::new(config.clone())?;
                let h = match model.filter(|_| exact) {
                    Some(model) => Some(conditional_harm(model, &TabularPolicy::new(model, &net.tabulate(params, model)?)?)),
                    None => None,
                };
                rl_step(&track, &MlpFamily(&net), params, &mut update, count, seed, first, lambda, algorithm, harm_source(self.innovation, h.as_deref()).as_ref())
            }
            Family::Transformer(config) => {
                let net = core::transformer::Transformer::new(config.clone())?;
                let h = match model.filter(|_| exact) {
                    Some(model) => Some(conditional_harm(model, &TabularPolicy::new(model, &core::transformer_table::tabulate(&net, params, model)?)?)),
                    None => None,
                };
                let penalty = self.penalty.as_ref().map(|q| RecoveryPenalty { responses: &q.responses, weights: &q.weights, mu: q.mu, position_weights: &q.position_weights, recovery: &q.recovery });
                rl_step(&track, &TransformerFamily { net: &net, penalty }, params, &mut update, count, seed, first, lambda, algorithm, harm_source(self.innovation, h.as_deref()).as_ref())
            }
        }
    }

    /// Writes the stepped parameters and optimizer state back (on the JS thread).
    fn commit(&self, params: &mut [f64], optimizer: &Optimizer) {
        params.copy_from_slice(&self.params);
        *optimizer.lock() = self.rule.clone();
    }
}


pub struct RlStepTask {
    job: RlJob,
    /// The caller's parameters, written when the step resolves.
    params: Float64Array,
    optimizer: Arc<std::sync::Mutex<Rule>>,
    cancel: Option<core::cancel::Cancel>,
}

impl Task for RlStepTask {
    type Output = crate::Computed<RlStep>;
    type JsValue = RlStepOutput;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard_task(self.cancel.as_ref(), || self.job.run())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        let step = crate::settle(&env, output)?;
        // SAFETY: on the JS thread, as a synchronous call.
        unsafe { self.params.as_mut() }.copy_from_slice(&self.job.params);
        *self.optimizer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = self.job.rule.clone();
        Ok(step.into())
    }
}
