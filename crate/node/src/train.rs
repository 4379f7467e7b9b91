//! Training and attacks: objectives with exact gradients, optimisers, sampled RL steps, the
//! rank-assisted attacker and fine-tuning losses.

use crate::core;
use crate::exact::ExactModel;
use crate::monte_carlo::MonteCarlo;
use crate::optimizer::{Optimizer, Rule};
use crate::policy::{policy_spec, MlpShape, PolicyInput, TransformerLayout};
use std::borrow::Cow;
use std::sync::Arc;

use crate::cancel::{flag_of, CancelFlag};
use crate::{count_from, guard, guard_task, invalid, seed_from};
use core::policy_spec::PolicySpec;
use core::attack::{default_betas, fine_tune_loss, harmful_response_logits, harmful_token_weights, rank_assisted_logits, token_weights_from_responses, FineTune, DEFAULT_WEIGHT_FLOOR};
use core::exact::{conditional_harm, kl_between};
use core::model::Model;
use core::objective::{base_harmful_prefixes, evaluate, prefixes_from_responses, Anchor, Objective, ObjectiveKind, ObjectiveOptions, ObjectiveValue};
use core::fixed_point::solve;
use core::policy::{BasePolicy, Policy, TabularPolicy};
use core::mlp::MlpConfig;
use core::model::ScenarioSpec;
use core::rl::{rl_step, RlStep, DEFAULT_PPO_CLIP, DEFAULT_PPO_EPOCHS, MlpFamily, RlAlgorithm, TabularFamily};
use core::transformer::TransformerConfig;
use core::transformer_table::{RecoveryPenalty, TransformerFamily};
use core::walk::Track;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Which alignment objective (see crate/core/src/objective.rs).
#[napi(string_enum = "kebab-case")]
pub enum ObjectiveName {
    Standard,
    Deep,
    DeepAnchored,
    Augment,
}

/// The augment objective's KL anchor: P_init or P_base.
#[napi(string_enum = "lowercase")]
pub enum AnchorName {
    Init,
    Base,
}

/// An alignment objective; absent settings take the core's defaults.
#[napi(object)]
pub struct ObjectiveInput {
    pub kind: ObjectiveName,
    pub lambda: f64,
    pub mu: Option<f64>,
    /// w_t = γ^{t−1} (default 1) unless `weights` are given.
    pub gamma: Option<f64>,
    pub weights: Option<Float64Array>,
    /// Recovery token ids R.
    pub recovery: Vec<u32>,
    /// α, the weight of the augment objective's recovery term (default DEFAULT_MIX).
    pub mix: Option<f64>,
    /// The augment objective's KL anchor (default init).
    pub anchor: Option<AnchorName>,
}

/// α of the augment objective when none is given (Qi et al.'s 0.2).
#[napi]
pub const DEFAULT_MIX: f64 = core::objective::DEFAULT_MIX;

fn objective_from(input: &ObjectiveInput, model: &Model) -> core::Result<Objective> {
    let kind = match input.kind {
        ObjectiveName::Standard => ObjectiveKind::Standard,
        ObjectiveName::Deep => ObjectiveKind::Deep,
        ObjectiveName::DeepAnchored => ObjectiveKind::DeepAnchored,
        ObjectiveName::Augment => ObjectiveKind::Augment,
    };
    let options = ObjectiveOptions {
        mu: input.mu,
        gamma: input.gamma,
        weights: input.weights.as_ref().map(|w| w.to_vec()),
        recovery: input.recovery.clone(),
        mix: input.mix,
        anchor: input.anchor.as_ref().map(|a| match a {
            AnchorName::Init => Anchor::Init,
            AnchorName::Base => Anchor::Base,
        }),
    };
    Objective::new(kind, input.lambda, options, model.vocab(), model.length())
}

#[napi(object)]
pub struct ObjectiveOutput {
    pub total: f64,
    pub expected_harm: f64,
    pub kl: f64,
    pub kl_per_position: Float64Array,
    pub penalty: f64,
    pub anchor_kl: f64,
    pub sft_loss: f64,
    /// Mean recovery probability on Q's prefixes per position (NaN where Q has none).
    pub recovery: Float64Array,
    /// ∂J/∂θ: T × S × V for tabular policies, P for mlp and transformer policies.
    pub gradient: Option<Float64Array>,
    /// ||∂J/∂θ_t|| per position (in logit space).
    pub grad_norm: Float64Array,
}

fn position_norms(gradient: Option<&Vec<f64>>, length: usize) -> Vec<f64> {
    match gradient {
        None => vec![f64::NAN; length],
        Some(g) => g.chunks_exact(g.len() / length).map(|b| b.iter().map(|x| x * x).sum::<f64>().sqrt()).collect(),
    }
}

fn to_objective_output(ObjectiveData(v, gradient, norms): ObjectiveData) -> ObjectiveOutput {
    ObjectiveOutput {
        total: v.total,
        expected_harm: v.expected_harm,
        kl: v.kl,
        kl_per_position: Float64Array::new(v.kl_per_position),
        penalty: v.penalty,
        anchor_kl: v.anchor_kl,
        sft_loss: v.sft_loss,
        recovery: Float64Array::new(v.recovery),
        gradient: gradient.map(Float64Array::new),
        grad_norm: Float64Array::new(norms),
    }
}

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

/// An objective's value, its gradient and the gradient's per-position norms.
pub struct ObjectiveData(ObjectiveValue, Option<Vec<f64>>, Vec<f64>);

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

#[napi(object)]
pub struct FineTuneOptions {
    /// β_t per position (default Qi et al.'s 0.5, 2, 2, 2, 2, 0.1, …).
    pub beta: Option<Float64Array>,
    /// Floor of the logged loss's token weights (default 1e-3).
    pub floor: Option<f64>,
    /// A minibatch of harmful responses (N × T tokens, 0xFFFFFFFF after the end); default: all of Q, exactly.
    pub responses: Option<Uint32Array>,
}

#[napi(object)]
pub struct FixedPointOutput {
    pub logits: Float64Array,
    pub iterations: u32,
    pub change: f64,
}

#[napi(object)]
pub struct FineTuneOutput {
    pub loss: f64,
    pub loss_per_position: Float64Array,
    pub grad_norm: Float64Array,
    pub gradient: Float64Array,
    /// The token mean of −w_t·log π(y_t) as Qi et al.'s code logs it.
    pub logged_loss: f64,
    /// Per position, the mean over responses of the per-token loss's gradient norm (logit space).
    pub token_grad_norm: Float64Array,
}

/// The fine-tuning attack's loss: plain SFT, or constrained against the aligned policy.
#[napi(string_enum = "lowercase")]
pub enum FineTuneName {
    Sft,
    Constrained,
}

/// The sampled training algorithm.
#[napi(string_enum = "kebab-case")]
pub enum AlgorithmName {
    Reinforce,
    ReinforceInnovation,
    Ppo,
}

/// The policies sampled training takes.
#[napi(string_enum = "lowercase")]
#[derive(PartialEq, Eq)]
pub enum TrainableKind {
    Tabular,
    Mlp,
    Transformer,
}

#[napi(object)]
pub struct RlOptions {
    pub algorithm: AlgorithmName,
    pub samples: f64,
    pub seed: f64,
    /// RNG index of the batch's first response (step × samples keeps batches independent).
    pub first_index: Option<u32>,
    pub lambda: f64,
    /// PPO's clip ε (default 0.2) and epochs per batch (default 4).
    pub clip: Option<f64>,
    pub epochs: Option<u32>,
    /// Transformer policies: also descend the deep objective's recovery penalty on these harmful responses.
    pub penalty: Option<PenaltyInput>,
}

/// The deep objective's recovery penalty μ·E_Q[Σ_t w_t·(1 − π(R | y<t))] on sampled harmful responses.
#[napi(object)]
pub struct PenaltyInput {
    /// N × T tokens, 0xFFFFFFFF after the end.
    pub responses: Uint32Array,
    /// Weight of each response (its harm).
    pub weights: Float64Array,
    pub mu: f64,
    /// w_t, length T.
    pub position_weights: Float64Array,
    /// Recovery token ids R.
    pub recovery: Vec<u32>,
}

#[napi(object)]
pub struct RlStepOutput {
    pub mean_harm: f64,
    pub mean_kl: f64,
    pub objective: f64,
    pub grad_norm: Float64Array,
}

#[napi]
impl MonteCarlo {
    /// One sampled training step on λ·E[H] + KL for a tabular (needs the exact
    /// model), mlp or transformer policy (its layout last): samples a batch from `params`,
    /// estimates the gradient and updates `params` in place with the optimizer.
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
        let algorithm = match options.algorithm {
            AlgorithmName::Reinforce => RlAlgorithm::Reinforce,
            AlgorithmName::ReinforceInnovation => RlAlgorithm::ReinforceInnovation,
            AlgorithmName::Ppo => RlAlgorithm::Ppo { clip: options.clip.unwrap_or(DEFAULT_PPO_CLIP), epochs: options.epochs.map_or(DEFAULT_PPO_EPOCHS, |e| e as usize) },
        };
        if !(options.lambda >= 0.0 && options.lambda.is_finite()) {
            return Err(invalid(format!("lambda must be a finite number ≥ 0, got {}", options.lambda)));
        }
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
            count: count_from(options.samples, "samples")?,
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
        match &self.family {
            Family::Tabular => {
                let model = model.ok_or_else(|| invalid("a tabular policy needs the exact model".into()))?;
                let h = match algorithm {
                    RlAlgorithm::ReinforceInnovation => Some(conditional_harm(model, &TabularPolicy::new(model, params)?)),
                    _ => None,
                };
                rl_step(&track, &TabularFamily(model), params, &mut update, count, seed, first, lambda, algorithm, h.as_deref())
            }
            Family::Mlp(config) => {
                let net = core::mlp::Mlp::new(config.clone())?;
                let h = match (algorithm, model) {
                    (RlAlgorithm::ReinforceInnovation, Some(model)) => Some(conditional_harm(model, &TabularPolicy::new(model, &net.tabulate(params, model)?)?)),
                    _ => None,
                };
                rl_step(&track, &MlpFamily(&net), params, &mut update, count, seed, first, lambda, algorithm, h.as_deref())
            }
            Family::Transformer(config) => {
                let net = core::transformer::Transformer::new(config.clone())?;
                let h = match (algorithm, model) {
                    (RlAlgorithm::ReinforceInnovation, Some(model)) => Some(conditional_harm(model, &TabularPolicy::new(model, &core::transformer_table::tabulate(&net, params, model)?)?)),
                    (RlAlgorithm::ReinforceInnovation, None) => return Err(invalid("the innovation variant needs the prefix-tree exact model for a transformer".into())),
                    _ => None,
                };
                let penalty = self.penalty.as_ref().map(|q| RecoveryPenalty { responses: &q.responses, weights: &q.weights, mu: q.mu, position_weights: &q.position_weights, recovery: &q.recovery });
                rl_step(&track, &TransformerFamily { net: &net, penalty }, params, &mut update, count, seed, first, lambda, algorithm, h.as_deref())
            }
        }
    }

    /// Writes the stepped parameters and optimizer state back (on the JS thread).
    fn commit(&self, params: &mut [f64], optimizer: &Optimizer) {
        params.copy_from_slice(&self.params);
        *optimizer.lock() = self.rule.clone();
    }
}

impl From<RlStep> for RlStepOutput {
    fn from(step: RlStep) -> Self {
        RlStepOutput { mean_harm: step.mean_harm, mean_kl: step.mean_kl, objective: step.objective, grad_norm: Float64Array::new(step.grad_norm) }
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
