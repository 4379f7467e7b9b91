//! ExactModel's training and attack methods: objectives with exact gradients (the exact training
//! step, sync and async), the fixed point, the rank-assisted attacker and fine-tuning losses.

use std::borrow::Cow;
use std::sync::Arc;

use crate::core;
use crate::exact::ExactModel;
use crate::policy::{policy_spec, PolicyInput};
use crate::cancel::{flag_of, CancelFlag};
use crate::training_types::*;
use crate::{guard, guard_task, invalid};
use core::policy_spec::PolicySpec;
use core::attack::{default_betas, fine_tune_loss, harmful_response_logits, harmful_token_weights, rank_assisted_logits, token_weights_from_responses, FineTune, DEFAULT_WEIGHT_FLOOR};
use core::exact::{conditional_harm, kl_between};
use core::model::Model;
use core::objective::{base_harmful_prefixes, evaluate, prefixes_from_responses, Objective};
use core::fixed_point::solve;
use core::policy::{BasePolicy, Policy};
use napi::bindgen_prelude::*;
use napi_derive::napi;

#[napi]
impl ExactModel {
    /// Q's state distribution, (T+1) × S: the base's harmful responses cut at every depth.
    #[napi]
    pub fn harmful_prefixes(&self) -> napi::Result<Float64Array, String> {
        guard(|| {
            let h = conditional_harm(&self.inner, &BasePolicy { model: &self.inner });
            base_harmful_prefixes(&self.inner, &h)
        })
        .map(|q| Float64Array::new(q.states))
    }

    /// An objective at a policy, with its exact gradient when `gradient` is set (tabular: over the
    /// logits; mlp: over the parameters). `init`: P_init, the policy training started from (the
    /// augment objective's default anchor). `responses`: Q as N harmful responses (N × T tokens,
    /// 0xFFFFFFFF after the end; default: the base's harmful responses, exactly).
    #[napi]
    pub fn objective(&self, policy: PolicyInput, objective: ObjectiveInput, gradient: bool, init: Option<PolicyInput>, responses: Option<Uint32Array>) -> napi::Result<ObjectiveOutput, String> {
        guard(|| self.objective_job(&policy, &objective, gradient, init.as_ref(), responses.as_deref())?.run()).map(to_objective_output)
    }

    /// `objective` on the libuv thread pool (its inputs are copied first): the exact training step.
    /// A raised `cancel` flag rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<ObjectiveOutput>")]
    pub fn objective_async(&self, policy: PolicyInput, objective: ObjectiveInput, gradient: bool, init: Option<PolicyInput>, responses: Option<Uint32Array>, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<ObjectiveTask>, String> {
        guard(|| {
            let job = self.objective_job(&policy, &objective, gradient, init.as_ref(), responses.as_deref())?.into_owned();
            Ok(AsyncTask::new(ObjectiveTask { job, cancel: flag_of(cancel) }))
        })
    }

    /// The optimum of the standard or deep-anchored objective by the per-state fixed point: tabular
    /// logits, the iterations used and the last change of a probability.
    #[napi]
    pub fn solve_fixed_point(&self, objective: ObjectiveInput, max_iterations: u32, tolerance: f64) -> napi::Result<FixedPointOutput, String> {
        guard(|| {
            let model = &self.inner;
            let objective = objective_from(&objective, model)?;
            let q = base_harmful_prefixes(model, &conditional_harm(model, &BasePolicy { model }))?;
            let solved = solve(model, &objective, &q.states, max_iterations as usize, tolerance)?;
            Ok(FixedPointOutput { logits: Float64Array::new(solved.logits), iterations: solved.iterations as u32, change: solved.change })
        })
    }

    /// Per-position KL(π_a ‖ π_b) on π_a's prefixes (their sum is the sequence-level KL).
    #[napi]
    pub fn kl_between(&self, a: PolicyInput, b: PolicyInput) -> napi::Result<Float64Array, String> {
        guard(|| {
            let model = &self.inner;
            let (ca, cb) = (policy_spec(&a, &model.spec)?, policy_spec(&b, &model.spec)?);
            ca.with(model, |pa| cb.with(model, |pb| kl_between(model, pa, pb)))?
        })
        .map(Float64Array::new)
    }

    /// The rank-assisted attacker against a policy as tabular logits (0 on the chosen token, −∞ elsewhere).
    #[napi]
    pub fn rank_assisted(&self, policy: PolicyInput, rank: u32) -> napi::Result<Float64Array, String> {
        guard(|| {
            let model = &self.inner;
            let h = conditional_harm(model, &BasePolicy { model });
            policy_spec(&policy, &model.spec)?.with(model, |p| rank_assisted_logits(model, p, &h, rank as usize))?
        })
        .map(|l| Float64Array::new(l.into_iter().map(|x| if x.is_infinite() { -1e300 } else { x }).collect()))
    }

    /// The fine-tuning loss on harmful responses (`kind` sft or constrained, the latter against
    /// the frozen `aligned` policy), its per-position values and gradient norms, its gradient
    /// (tabular: logits; mlp: parameters), the authors' logged loss and per-token gradient norms.
    #[napi]
    pub fn fine_tune_loss(&self, policy: PolicyInput, kind: FineTuneName, aligned: Option<PolicyInput>, options: Option<FineTuneOptions>) -> napi::Result<FineTuneOutput, String> {
        guard(|| {
            let model = &self.inner;
            let options = options.unwrap_or(FineTuneOptions { beta: None, floor: None, responses: None });
            let weights = match &options.responses {
                Some(tokens) => token_weights_from_responses(model, tokens, tokens.len() / model.length().max(1))?,
                None => {
                    let h = conditional_harm(model, &BasePolicy { model });
                    harmful_token_weights(model, &h, &base_harmful_prefixes(model, &h)?.states)?
                }
            };
            let choice = policy_spec(&policy, &model.spec)?;
            let betas = options.beta.as_ref().map(|b| b.to_vec()).unwrap_or_else(|| default_betas(model.length()));
            let floor = options.floor.unwrap_or(DEFAULT_WEIGHT_FLOOR);
            let run = |objective: &FineTune| {
                choice.with_gradient(model, |p| {
                    let mut v = fine_tune_loss(model, p, &weights, objective, floor)?;
                    let g = std::mem::take(&mut v.gradient);
                    Ok((v, Some(g)))
                })
            };
            let (value, grad) = match kind {
                FineTuneName::Sft => run(&FineTune::Sft)?,
                FineTuneName::Constrained => {
                    let aligned = aligned.as_ref().ok_or_else(|| invalid("the constrained objective needs the aligned policy".into()))?;
                    let reference = policy_spec(aligned, &model.spec)?;
                    reference.with(model, |r| run(&FineTune::Constrained { aligned: r, beta: &betas }))??
                }
            };
            Ok(FineTuneOutput {
                loss: value.loss,
                loss_per_position: Float64Array::new(value.loss_per_position),
                grad_norm: Float64Array::new(value.grad_norm),
                gradient: Float64Array::new(grad.unwrap_or_default()),
                logged_loss: value.logged_loss,
                token_grad_norm: Float64Array::new(value.token_grad_norm),
            })
        })
    }

    /// Q, the base's harmful responses, as a tabular policy (sample it for minibatches of harmful responses).
    #[napi]
    pub fn harmful_response_policy(&self) -> napi::Result<Float64Array, String> {
        guard(|| {
            let model = &self.inner;
            harmful_response_logits(model, &conditional_harm(model, &BasePolicy { model }))
        })
        .map(Float64Array::new)
    }
}

impl ExactModel {
    /// An objective evaluation with its inputs read (borrowed from JavaScript until `into_owned`).
    fn objective_job<'a>(&self, policy: &'a PolicyInput, objective: &ObjectiveInput, gradient: bool, init: Option<&'a PolicyInput>, responses: Option<&'a [u32]>) -> core::Result<ObjectiveJob<'a>> {
        let model = &self.inner;
        Ok(ObjectiveJob {
            model: model.clone(),
            objective: objective_from(objective, model)?,
            policy: policy_spec(policy, &model.spec)?,
            init: init.map(|p| policy_spec(p, &model.spec)).transpose()?,
            gradient,
            responses: responses.map(Cow::Borrowed),
        })
    }
}

/// One evaluation of an objective: the exact training step, run alike by `objective` (on the JS
/// thread) and `objectiveAsync` (on the pool, owning copies of its inputs).
pub struct ObjectiveJob<'a> {
    model: Arc<Model>,
    objective: Objective,
    policy: PolicySpec<'a>,
    init: Option<PolicySpec<'a>>,
    gradient: bool,
    responses: Option<Cow<'a, [u32]>>,
}


impl ObjectiveJob<'_> {
    fn into_owned(self) -> ObjectiveJob<'static> {
        ObjectiveJob {
            model: self.model,
            objective: self.objective,
            policy: self.policy.into_owned(),
            init: self.init.map(PolicySpec::into_owned),
            gradient: self.gradient,
            responses: self.responses.map(|r| Cow::Owned(r.into_owned())),
        }
    }

    fn run(&self) -> core::Result<ObjectiveData> {
        let model = &*self.model;
        let prefixes = match &self.responses {
            Some(tokens) => prefixes_from_responses(model, tokens, tokens.len() / model.length().max(1))?,
            None => base_harmful_prefixes(model, &conditional_harm(model, &BasePolicy { model }))?,
        };
        let mut norms = vec![];
        let mut run = |reference: Option<&dyn Policy>| {
            self.policy.with_gradient(model, |p| {
                let mut v = evaluate(model, p, &self.objective, &prefixes, reference, self.gradient)?;
                norms = position_norms(v.gradient.as_ref(), model.length());
                let g = v.gradient.take();
                Ok((v, g))
            })
        };
        let (value, grad) = match &self.init {
            Some(init) => init.with(model, |r| run(Some(r)))??,
            None => run(None)?,
        };
        Ok(ObjectiveData(value, grad, norms))
    }
}

pub struct ObjectiveTask {
    job: ObjectiveJob<'static>,
    cancel: Option<core::cancel::Cancel>,
}

impl Task for ObjectiveTask {
    type Output = crate::Computed<ObjectiveData>;
    type JsValue = ObjectiveOutput;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard_task(self.cancel.as_ref(), || self.job.run())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        crate::settle(&env, output).map(to_objective_output)
    }
}
