//! ExactModel's training and attack methods: objectives with exact gradients (the exact training
//! step, sync and async), the fixed point, the rank-assisted attacker and fine-tuning losses.

use std::borrow::Cow;
use std::sync::Arc;

use crate::core;
use crate::exact::ExactModel;
use crate::policy::{policy_spec, PolicyInput};
use crate::cancel::CancelFlag;
use crate::job::{spawn, Job, JobTask};
use crate::training_types::*;
use crate::{guard, invalid};
use core::policy_spec::PolicySpec;
use core::attack::{default_betas, fine_tune_loss, harmful_response_logits, harmful_token_weights, rank_assisted_logits, token_weights_from_responses, FineTune, FineTuneValue, DEFAULT_WEIGHT_FLOOR};
use core::exact::{conditional_harm, kl_between};
use core::model::Model;
use core::objective::{base_harmful_prefixes, evaluate, prefixes_from_responses, Objective};
use core::fixed_point::{solve, FixedPoint};
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
    pub fn objective_async(&self, policy: PolicyInput, objective: ObjectiveInput, gradient: bool, init: Option<PolicyInput>, responses: Option<Uint32Array>, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<ObjectiveJob<'static>>>, String> {
        guard(|| Ok(spawn(self.objective_job(&policy, &objective, gradient, init.as_ref(), responses.as_deref())?.into_owned(), cancel)))
    }

    /// The optimum of the standard or deep-anchored objective by the per-state fixed point: tabular
    /// logits, the iterations used and the last change of a probability.
    #[napi]
    pub fn solve_fixed_point(&self, objective: ObjectiveInput, max_iterations: u32, tolerance: f64) -> napi::Result<FixedPointOutput, String> {
        guard(|| self.fixed_point_job(&objective, max_iterations, tolerance)?.run()).map(FixedPointJob::to_js)
    }

    /// `solveFixedPoint` on the libuv thread pool. A raised `cancel` flag rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<FixedPointOutput>")]
    pub fn solve_fixed_point_async(&self, objective: ObjectiveInput, max_iterations: u32, tolerance: f64, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<FixedPointJob>>, String> {
        guard(|| Ok(spawn(self.fixed_point_job(&objective, max_iterations, tolerance)?, cancel)))
    }

    /// Per-position KL(π_a ‖ π_b) on π_a's prefixes (their sum is the sequence-level KL).
    #[napi]
    pub fn kl_between(&self, a: PolicyInput, b: PolicyInput) -> napi::Result<Float64Array, String> {
        guard(|| self.kl_job(&a, &b)?.run()).map(Float64Array::new)
    }

    /// `klBetween` on the libuv thread pool (the policies are copied first). A raised `cancel` flag
    /// rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<Float64Array>")]
    pub fn kl_between_async(&self, a: PolicyInput, b: PolicyInput, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<KlJob<'static>>>, String> {
        guard(|| Ok(spawn(self.kl_job(&a, &b)?.into_owned(), cancel)))
    }

    /// The rank-assisted attacker against a policy as tabular logits (0 on the chosen token,
    /// −1e300 standing for −∞ elsewhere).
    #[napi]
    pub fn rank_assisted(&self, policy: PolicyInput, rank: u32) -> napi::Result<Float64Array, String> {
        guard(|| self.rank_job(&policy, rank)?.run()).map(RankJob::to_js)
    }

    /// `rankAssisted` on the libuv thread pool (the policy is copied first). A raised `cancel` flag
    /// rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<Float64Array>")]
    pub fn rank_assisted_async(&self, policy: PolicyInput, rank: u32, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<RankJob<'static>>>, String> {
        guard(|| Ok(spawn(self.rank_job(&policy, rank)?.into_owned(), cancel)))
    }

    /// The fine-tuning loss on harmful responses (`kind` sft or constrained, the latter against
    /// the frozen `aligned` policy), its per-position values and gradient norms, its gradient
    /// (tabular: logits; mlp: parameters), the authors' logged loss and per-token gradient norms.
    #[napi]
    pub fn fine_tune_loss(&self, policy: PolicyInput, kind: FineTuneName, aligned: Option<PolicyInput>, options: Option<FineTuneOptions>) -> napi::Result<FineTuneOutput, String> {
        guard(|| self.fine_tune_job(&policy, kind, aligned.as_ref(), options.as_ref())?.run()).map(FineTuneJob::to_js)
    }

    /// `fineTuneLoss` on the libuv thread pool (its inputs are copied first): one step of the
    /// fine-tuning attack. A raised `cancel` flag rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<FineTuneOutput>")]
    pub fn fine_tune_loss_async(&self, policy: PolicyInput, kind: FineTuneName, aligned: Option<PolicyInput>, options: Option<FineTuneOptions>, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<FineTuneJob<'static>>>, String> {
        guard(|| Ok(spawn(self.fine_tune_job(&policy, kind, aligned.as_ref(), options.as_ref())?.into_owned(), cancel)))
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

    fn fixed_point_job(&self, objective: &ObjectiveInput, max_iterations: u32, tolerance: f64) -> core::Result<FixedPointJob> {
        let model = self.inner.clone();
        Ok(FixedPointJob { objective: objective_from(objective, &model)?, model, max_iterations: max_iterations as usize, tolerance })
    }

    fn kl_job<'a>(&self, a: &'a PolicyInput, b: &'a PolicyInput) -> core::Result<KlJob<'a>> {
        let model = self.inner.clone();
        Ok(KlJob { a: policy_spec(a, &model.spec)?, b: policy_spec(b, &model.spec)?, model })
    }

    fn rank_job<'a>(&self, policy: &'a PolicyInput, rank: u32) -> core::Result<RankJob<'a>> {
        let model = self.inner.clone();
        Ok(RankJob { policy: policy_spec(policy, &model.spec)?, model, rank: rank as usize })
    }

    fn fine_tune_job<'a>(&self, policy: &'a PolicyInput, kind: FineTuneName, aligned: Option<&'a PolicyInput>, options: Option<&'a FineTuneOptions>) -> core::Result<FineTuneJob<'a>> {
        let model = self.inner.clone();
        let aligned = match kind {
            FineTuneName::Sft => None,
            FineTuneName::Constrained => {
                let aligned = aligned.ok_or_else(|| invalid("the constrained objective needs the aligned policy".into()))?;
                Some(policy_spec(aligned, &model.spec)?)
            }
        };
        Ok(FineTuneJob {
            policy: policy_spec(policy, &model.spec)?,
            aligned,
            betas: options.and_then(|o| o.beta.as_ref()).map(|b| b.to_vec()).unwrap_or_else(|| default_betas(model.length())),
            floor: options.and_then(|o| o.floor).unwrap_or(DEFAULT_WEIGHT_FLOOR),
            responses: options.and_then(|o| o.responses.as_deref()).map(Cow::Borrowed),
            model,
        })
    }
}

/// One evaluation of an objective: the exact training step.
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
}

impl Job for ObjectiveJob<'_> {
    type Data = ObjectiveData;
    type Js = ObjectiveOutput;
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
    fn to_js(data: ObjectiveData) -> ObjectiveOutput {
        to_objective_output(data)
    }
}

/// The per-state fixed point of the standard or deep-anchored objective.
pub struct FixedPointJob {
    model: Arc<Model>,
    objective: Objective,
    max_iterations: usize,
    tolerance: f64,
}

impl Job for FixedPointJob {
    type Data = FixedPoint;
    type Js = FixedPointOutput;
    fn run(&self) -> core::Result<FixedPoint> {
        let model = &*self.model;
        let q = base_harmful_prefixes(model, &conditional_harm(model, &BasePolicy { model }))?;
        solve(model, &self.objective, &q.states, self.max_iterations, self.tolerance)
    }
    fn to_js(solved: FixedPoint) -> FixedPointOutput {
        FixedPointOutput { logits: Float64Array::new(solved.logits), iterations: solved.iterations as u32, change: solved.change }
    }
}

/// Per-position KL between two policies on the first one's prefixes.
pub struct KlJob<'a> {
    model: Arc<Model>,
    a: PolicySpec<'a>,
    b: PolicySpec<'a>,
}

impl KlJob<'_> {
    fn into_owned(self) -> KlJob<'static> {
        KlJob { model: self.model, a: self.a.into_owned(), b: self.b.into_owned() }
    }

}

impl Job for KlJob<'_> {
    type Data = Vec<f64>;
    type Js = Float64Array;
    fn run(&self) -> core::Result<Vec<f64>> {
        let model = &*self.model;
        self.a.with(model, |pa| self.b.with(model, |pb| kl_between(model, pa, pb)))?
    }
    fn to_js(kl: Vec<f64>) -> Float64Array {
        Float64Array::new(kl)
    }
}

/// The rank-assisted attacker's logits against a policy.
pub struct RankJob<'a> {
    model: Arc<Model>,
    policy: PolicySpec<'a>,
    rank: usize,
}

impl RankJob<'_> {
    fn into_owned(self) -> RankJob<'static> {
        RankJob { model: self.model, policy: self.policy.into_owned(), rank: self.rank }
    }

}

impl Job for RankJob<'_> {
    type Data = Vec<f64>;
    type Js = Float64Array;
    fn run(&self) -> core::Result<Vec<f64>> {
        let model = &*self.model;
        let h = conditional_harm(model, &BasePolicy { model });
        self.policy.with(model, |p| rank_assisted_logits(model, p, &h, self.rank))?
    }
    /// −∞ crosses as −1e300 (a Float64Array holds it, but JSON policy files could not).
    fn to_js(logits: Vec<f64>) -> Float64Array {
        Float64Array::new(logits.into_iter().map(|x| if x.is_infinite() { -1e300 } else { x }).collect())
    }
}

/// One evaluation of the fine-tuning loss (sft, or constrained against `aligned`) with its gradient.
pub struct FineTuneJob<'a> {
    model: Arc<Model>,
    policy: PolicySpec<'a>,
    /// The frozen aligned policy: set for the constrained objective only.
    aligned: Option<PolicySpec<'a>>,
    betas: Vec<f64>,
    floor: f64,
    /// A minibatch of responses (default: all of Q, exactly).
    responses: Option<Cow<'a, [u32]>>,
}

impl FineTuneJob<'_> {
    fn into_owned(self) -> FineTuneJob<'static> {
        FineTuneJob {
            model: self.model,
            policy: self.policy.into_owned(),
            aligned: self.aligned.map(PolicySpec::into_owned),
            betas: self.betas,
            floor: self.floor,
            responses: self.responses.map(|r| Cow::Owned(r.into_owned())),
        }
    }
}

impl Job for FineTuneJob<'_> {
    type Data = (FineTuneValue, Vec<f64>);
    type Js = FineTuneOutput;
    fn run(&self) -> core::Result<Self::Data> {
        let model = &*self.model;
        let weights = match &self.responses {
            Some(tokens) => token_weights_from_responses(model, tokens, tokens.len() / model.length().max(1))?,
            None => {
                let h = conditional_harm(model, &BasePolicy { model });
                harmful_token_weights(model, &h, &base_harmful_prefixes(model, &h)?.states)?
            }
        };
        let run = |objective: &FineTune| {
            self.policy.with_gradient(model, |p| {
                let mut v = fine_tune_loss(model, p, &weights, objective, self.floor)?;
                let g = std::mem::take(&mut v.gradient);
                Ok((v, Some(g)))
            })
        };
        let (value, gradient) = match &self.aligned {
            None => run(&FineTune::Sft)?,
            Some(aligned) => aligned.with(model, |r| run(&FineTune::Constrained { aligned: r, beta: &self.betas }))??,
        };
        Ok((value, gradient.unwrap_or_default()))
    }
    fn to_js((value, gradient): Self::Data) -> FineTuneOutput {
        FineTuneOutput {
            loss: value.loss,
            loss_per_position: Float64Array::new(value.loss_per_position),
            grad_norm: Float64Array::new(value.grad_norm),
            gradient: Float64Array::new(gradient),
            logged_loss: value.logged_loss,
            token_grad_norm: Float64Array::new(value.token_grad_norm),
        }
    }
}
