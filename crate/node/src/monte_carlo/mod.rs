//! Monte Carlo: sampling responses and estimating the theory's quantities with standard errors
//! (sampling: sample.rs; its sampled training step: rl_step.rs).

mod rl_step;
mod sample;

use std::sync::{Arc, Mutex, OnceLock};

use crate::core;
use crate::exact::ExactModel;
use crate::policy::{policy_spec, PolicyInput};
use core::policy_spec::{CachedTabular, PolicySpec};
use crate::cancel::{flag_of, CancelFlag};
use crate::{count_from, guard, guard_task, invalid, seed_from, ScenarioInput};
use core::estimate::{Coefficient, GradientEstimate, PositionEstimates, Scalar};
use core::exact::conditional_harm;
use core::information::{run_information, InformationSummary};
use core::model::{Model, ScenarioSpec};
use core::policy::TabularTables;
use core::monte_carlo::{run, HarmChoice, RunReport, RunRequest, DEFAULT_ROLLOUTS};
use core::proposal::{check_tilt, with_tilt, TiltMethod, DEFAULT_TILT};
use core::sampling::Samples;
use core::walk::Track;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Sampling and estimation over a scenario, with its exact model when it has one (needed for
/// tabular and Gibbs policies and for exact h_t; the base and mlp policies sample without it).
#[napi]
pub struct MonteCarlo {
    spec: Arc<ScenarioSpec>,
    model: Option<Arc<Model>>,
    /// The tables of the last tabular policy sampled or estimated: a call with the same logits
    /// reuses them (and its h table) instead of copying the logits and rebuilding the rows.
    tabular: Mutex<Option<Arc<CachedTabular>>>,
}

#[napi(object)]
pub struct SampleOptions {
    pub count: f64,
    pub seed: f64,
    /// Forced first tokens: k of them shared by all responses, or N·k (one row per response);
    /// 0xFFFFFFFF entries are not forced.
    pub prefix: Option<Uint32Array>,
    pub prefix_length: Option<u32>,
    /// RNG index of the first response (default 0): batches with offsets reproduce one sample.
    pub first_index: Option<u32>,
    /// Sample the rank-assisted attacker against the policy instead (top r tokens, the most harmful
    /// under the base); needs the exact model.
    pub rank_assisted: Option<u32>,
}

#[napi(object)]
pub struct SamplesOutput {
    pub count: u32,
    pub length: u32,
    pub first_index: u32,
    /// N × T token ids, 0xFFFFFFFF after the end.
    pub tokens: Uint32Array,
    pub log_probs: Float64Array,
    pub harm: Float64Array,
    pub emitted: Uint32Array,
    /// N × (T+1) exact states, when the exact model is used.
    pub states: Option<Uint32Array>,
}

impl From<Samples> for SamplesOutput {
    fn from(s: Samples) -> Self {
        SamplesOutput {
            count: s.count as u32,
            length: s.length as u32,
            first_index: s.first_index,
            tokens: Uint32Array::new(s.tokens),
            log_probs: Float64Array::new(s.log_probs),
            harm: Float64Array::new(s.harm),
            emitted: Uint32Array::new(s.emitted),
            states: s.states.map(Uint32Array::new),
        }
    }
}

/// Where an estimate's h_t comes from.
#[napi(string_enum = "lowercase")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HarmSource {
    /// The exact table (needs the exact model).
    Exact,
    /// M rollouts per prefix and set.
    Rollouts,
}

/// The coefficient of a per-position gradient estimate.
#[napi(string_enum = "kebab-case")]
pub enum GradientEstimator {
    Reinforce,
    LeaveOneOut,
    Innovation,
}

/// Where an estimate's responses are drawn from.
#[napi(string_enum = "lowercase")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProposalName {
    /// The policy itself.
    Policy,
    /// Importance sampling from the policy tilted by e^{κH}, reweighted.
    Tilted,
    /// The defensive mixture of the zero-variance proposals for each I_t (needs the exact model).
    Information,
}

#[napi(object)]
pub struct EstimateOptions {
    pub samples: f64,
    pub seed: f64,
    /// Where h_t comes from (absent: no I_t).
    pub harm: Option<HarmSource>,
    /// M, the rollouts per prefix and set (default 16).
    pub rollouts: Option<u32>,
    /// Estimate the per-position gradients with this coefficient.
    pub gradient: Option<GradientEstimator>,
    /// Directions (T × block) to project the gradient estimates on, with standard errors.
    pub directions: Option<Float64Array>,
    /// Also estimate the KL on harmful base responses (teacher forcing).
    pub teacher_forced: Option<bool>,
    /// Where responses are drawn from (default: the policy).
    pub proposal: Option<ProposalName>,
    /// κ of the tilted proposal (default DEFAULT_TILT).
    pub tilt: Option<f64>,
}

/// One estimate with its standard error and effective support.
#[napi(object)]
pub struct ScalarEstimate {
    pub mean: f64,
    pub se: f64,
    pub support: u32,
}

impl From<Scalar> for ScalarEstimate {
    fn from(s: Scalar) -> Self {
        ScalarEstimate { mean: s.mean, se: s.se, support: s.support }
    }
}

/// The tilted proposal of a run.
#[napi(object)]
pub struct ImportanceOutput {
    /// "exact" (q ∝ P·e^{κH} through the exact states) or "per-token".
    pub method: String,
    pub tilt: f64,
    /// Kish's effective sample size (Σw)²/Σw² of the likelihood ratios.
    pub effective_sample_size: f64,
}

/// The information proposal of a run (core::information).
#[napi(object)]
pub struct InformationOutput {
    /// The positions S of its components, 1-based.
    pub positions: Vec<u32>,
    /// Responses drawn from each component: the policy first, then q_t for t in S.
    pub counts: Vec<u32>,
    /// The mean of the likelihood ratios w = p/q (1 in expectation), with its SE.
    pub mean_weight: ScalarEstimate,
    pub max_weight: f64,
    /// K = |S| + 1, the bound on w.
    pub weight_bound: f64,
    /// Kish's effective sample size (Σw)²/Σw².
    pub effective_sample_size: f64,
}

impl From<InformationSummary> for InformationOutput {
    fn from(s: InformationSummary) -> Self {
        InformationOutput {
            positions: s.positions,
            counts: s.counts,
            mean_weight: s.mean_weight.into(),
            max_weight: s.max_weight,
            weight_bound: s.weight_bound,
            effective_sample_size: s.effective_sample_size,
        }
    }
}

/// Per-position estimates: mean, standard error, and the effective number of samples behind it.
#[napi(object)]
pub struct EstimateArrays {
    pub mean: Float64Array,
    pub se: Float64Array,
    pub support: Uint32Array,
}

impl From<PositionEstimates> for EstimateArrays {
    fn from(e: PositionEstimates) -> Self {
        EstimateArrays { mean: Float64Array::new(e.mean), se: Float64Array::new(e.se), support: Uint32Array::new(e.support) }
    }
}

#[napi(object)]
pub struct GradientOutput {
    /// Ĝ_t blocks, T × blockLength (tabular: the position's S × V logits; mlp: all parameters).
    pub blocks: Float64Array,
    pub block_length: u32,
    pub norm: Float64Array,
    /// Per-sample variance tr Cov(c·s_t).
    pub variance: Float64Array,
    pub projection: Option<EstimateArrays>,
}

impl From<GradientEstimate> for GradientOutput {
    fn from(g: GradientEstimate) -> Self {
        let has_projection = g.projection.mean.iter().any(|m| !m.is_nan());
        GradientOutput {
            blocks: Float64Array::new(g.blocks),
            block_length: g.block_len as u32,
            norm: Float64Array::new(g.norm),
            variance: Float64Array::new(g.variance),
            projection: has_projection.then(|| g.projection.into()),
        }
    }
}

#[napi(object)]
pub struct EstimateOutput {
    pub samples: u32,
    pub expected_harm: ScalarEstimate,
    /// P̂(τ = t), t = 0..T, τ the first t with h_t ∈ {0, 1} (when h_t is estimated).
    pub decision_time: Option<EstimateArrays>,
    /// P̂(τ > T).
    pub undecided: Option<ScalarEstimate>,
    pub harm_information: Option<EstimateArrays>,
    pub kl_on_policy: EstimateArrays,
    pub kl_teacher_forced: Option<EstimateArrays>,
    pub gradient: Option<GradientOutput>,
    pub importance: Option<ImportanceOutput>,
    pub information: Option<InformationOutput>,
}

/// What a run returns: the estimates, and the proposal used beyond the policy itself.
type RunOutput = (RunReport, Option<TiltMethod>, Option<InformationSummary>);

fn to_output(job: &EstimateJob, (r, method, information): RunOutput) -> EstimateOutput {
    let (decision_time, undecided) = r.decision_time.map(|(d, u)| (d.into(), u.into())).unzip();
    EstimateOutput {
        samples: job.samples as u32,
        expected_harm: r.expected_harm.into(),
        decision_time,
        undecided,
        importance: method.zip(job.tilt).zip(r.effective_sample_size).map(|((m, tilt), ess)| ImportanceOutput { method: m.name().into(), tilt, effective_sample_size: ess }),
        information: information.map(Into::into),
        harm_information: r.harm_information.map(Into::into),
        kl_on_policy: r.kl_on_policy.into(),
        kl_teacher_forced: r.kl_teacher_forced.map(Into::into),
        gradient: r.gradient.map(Into::into),
    }
}

/// Everything a run needs, owned (so it can move to the thread pool).
pub struct EstimateJob {
    spec: Arc<ScenarioSpec>,
    model: Option<Arc<Model>>,
    policy: PolicySpec<'static>,
    samples: usize,
    seed: u64,
    harm: Option<HarmSource>,
    rollouts: usize,
    gradient: Option<Coefficient>,
    directions: Option<Vec<f64>>,
    teacher_forced: bool,
    /// κ of the tilted proposal, when importance sampling.
    tilt: Option<f64>,
    /// Whether to sample from the information proposal.
    information: bool,
}

impl EstimateJob {
    fn run(&self) -> core::Result<RunOutput> {
        let track = Track::new(&self.spec, self.model.as_deref());
        self.policy.with_sampler(&self.spec, self.model.as_deref(), |step, score, exact| {
            let table;
            let harm = match self.harm {
                None => None,
                Some(HarmSource::Rollouts) => Some(HarmChoice::Rollouts(self.rollouts)),
                Some(HarmSource::Exact) => {
                    let (model, exact) = self.model.as_deref().zip(exact).ok_or_else(|| invalid("harm: \"exact\" needs the exact model".into()))?;
                    let kept = match &self.policy {
                        PolicySpec::Cached(c) => c.harm.get_or_init(|| conditional_harm(model, exact)),
                        _ => {
                            table = conditional_harm(model, exact);
                            &table
                        }
                    };
                    Some(HarmChoice::Exact(kept))
                }
            };
            let request = RunRequest {
                samples: self.samples,
                seed: self.seed,
                harm,
                gradient: self.gradient,
                directions: self.directions.as_deref(),
                teacher_forced: self.teacher_forced,
                proposal: None,
            };
            if self.information {
                let (model, exact) = self.model.as_deref().zip(exact).ok_or_else(|| invalid(INFORMATION_NEEDS_EXACT.into()))?;
                let own;
                let table = match &request.harm {
                    Some(HarmChoice::Exact(table)) => *table,
                    Some(HarmChoice::Rollouts(_)) => return Err(invalid("proposal \"information\" uses the exact h_t: rollouts do not apply".into())),
                    None => {
                        own = conditional_harm(model, exact);
                        &own
                    }
                };
                let (report, summary) = run_information(&track, step, exact, score, table, &request)?;
                return Ok((report, None, Some(summary)));
            }
            match self.tilt {
                None => Ok((run(&track, step, score, &request)?, None, None)),
                Some(kappa) => with_tilt(&track, step, exact, kappa, |proposal, method| {
                    Ok((run(&track, step, score, &RunRequest { proposal: Some(proposal), ..request })?, Some(method), None))
                }),
            }
        })
    }
}


impl MonteCarlo {
    /// The scenario and its exact model, shared with a job that runs on the pool.
    pub(crate) fn shared(&self) -> (Arc<ScenarioSpec>, Option<Arc<Model>>) {
        (self.spec.clone(), self.model.clone())
    }

    /// A tabular policy through the kept tables: the same logits reuse them, others replace them.
    fn cached<'a>(&self, choice: PolicySpec<'a>) -> core::Result<PolicySpec<'a>> {
        let (PolicySpec::Tabular(logits), Some(model)) = (&choice, self.model.as_deref()) else {
            return Ok(choice);
        };
        let mut kept = self.tabular.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = kept.as_ref().filter(|c| c.tables.holds(logits)) {
            return Ok(PolicySpec::Cached(c.clone()));
        }
        let c = Arc::new(CachedTabular { tables: TabularTables::new(model, logits.to_vec())?, harm: OnceLock::new() });
        *kept = Some(c.clone());
        Ok(PolicySpec::Cached(c))
    }
}

#[napi]
impl MonteCarlo {
    /// `exact`: the scenario's ExactModel, if it has one.
    #[napi(constructor)]
    pub fn new(spec: ScenarioInput, exact: Option<&ExactModel>) -> napi::Result<Self, String> {
        guard(|| match exact {
            Some(e) => Ok(MonteCarlo { spec: Arc::new(e.inner.spec.clone()), model: Some(e.inner.clone()), tabular: Mutex::new(None) }),
            None => Ok(MonteCarlo { spec: Arc::new(spec.to_spec()?.prepared()?), model: None, tabular: Mutex::new(None) }),
        })
    }

    /// log π(y_t | y_<t) of given responses (N × T tokens, 0xFFFFFFFF after the end) under a
    /// policy, N × T (0 after the end).
    #[napi]
    pub fn replay_log_probs(&self, policy: PolicyInput, tokens: Uint32Array, count: u32) -> napi::Result<Float64Array, String> {
        guard(|| {
            let samples = given_responses(&self.spec, &tokens, count)?;
            let track = Track::new(&self.spec, self.model.as_deref());
            policy_spec(&policy, &self.spec)?.with_sampler(&self.spec, self.model.as_deref(), |step, _, _| Ok(core::rl::replay_log_probs(&track, step, &samples)))
        })
        .map(Float64Array::new)
    }

    /// The covariance kernel on given responses: Ĝ_t = (1/N) Σ_n c_{n,t}·∇θ log π(y_{n,t} | y_{n,<t})
    /// for coefficients c (N × T), without materialising per-sample scores; also ||Ĝ_t|| and the
    /// per-sample variance. Tabular and mlp policies (the base as log p logits with the exact model).
    #[napi]
    pub fn accumulate_scores(&self, policy: PolicyInput, tokens: Uint32Array, count: u32, coefficients: Float64Array) -> napi::Result<GradientOutput, String> {
        guard(|| {
            let samples = given_responses(&self.spec, &tokens, count)?;
            if coefficients.len() != tokens.len() {
                return Err(invalid(format!("coefficients: {} entries, expected N × T = {}", coefficients.len(), tokens.len())));
            }
            let t_max = self.spec.length;
            let track = Track::new(&self.spec, self.model.as_deref());
            policy_spec(&policy, &self.spec)?.with_sampler(&self.spec, self.model.as_deref(), |_, score, _| {
                let score = score.ok_or_else(|| invalid("scores need a policy with parameters (tabular or mlp)".into()))?;
                core::estimate::accumulate_scores(&track, score, &samples, &|n, t| coefficients[n * t_max + t], None, true)
            })
        })
        .map(GradientOutput::from)
    }

    fn job(&self, policy: &PolicyInput, options: EstimateOptions) -> core::Result<EstimateJob> {
        let gradient = options.gradient.map(|g| match g {
            GradientEstimator::Reinforce => Coefficient::Reinforce,
            GradientEstimator::LeaveOneOut => Coefficient::LeaveOneOut,
            GradientEstimator::Innovation => Coefficient::Innovation,
        });
        let information = options.proposal == Some(ProposalName::Information);
        if information && self.model.is_none() {
            return Err(invalid(INFORMATION_NEEDS_EXACT.into()));
        }
        let tilt = match options.proposal {
            None | Some(ProposalName::Policy) | Some(ProposalName::Information) => None,
            Some(ProposalName::Tilted) => {
                let kappa = options.tilt.unwrap_or(DEFAULT_TILT);
                check_tilt(kappa)?;
                Some(kappa)
            }
        };
        Ok(EstimateJob {
            spec: self.spec.clone(),
            model: self.model.clone(),
            policy: self.cached(policy_spec(policy, &self.spec)?)?.into_owned(),
            samples: count_from(options.samples, "samples")?,
            seed: seed_from(options.seed, "seed")?,
            harm: options.harm,
            rollouts: options.rollouts.map_or(DEFAULT_ROLLOUTS, |m| m as usize),
            gradient,
            directions: options.directions.map(|d| d.to_vec()),
            teacher_forced: options.teacher_forced.unwrap_or(false),
            tilt,
            information,
        })
    }

    /// Estimates E[H], I_t, per-position KL and gradients from sampled responses (synchronous).
    #[napi]
    pub fn estimate(&self, policy: PolicyInput, options: EstimateOptions) -> napi::Result<EstimateOutput, String> {
        guard(|| {
            let job = self.job(&policy, options)?;
            let report = job.run()?;
            Ok(to_output(&job, report))
        })
    }

    /// `estimate` on the libuv thread pool (inputs are copied first); a raised `cancel` flag rejects
    /// it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<EstimateOutput>")]
    pub fn estimate_async(&self, policy: PolicyInput, options: EstimateOptions, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<EstimateTask>, String> {
        guard(|| Ok(AsyncTask::new(EstimateTask(self.job(&policy, options)?, flag_of(cancel)))))
    }
}

pub struct EstimateTask(EstimateJob, Option<core::cancel::Cancel>);

const INFORMATION_NEEDS_EXACT: &str = "proposal \"information\" needs the exact engine (h_t exact on the exact states), and this scenario has no exact model (over the memory budget)";

#[napi]
impl Task for EstimateTask {
    type Output = crate::Computed<RunOutput>;
    type JsValue = EstimateOutput;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard_task(self.1.as_ref(), || self.0.run())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        crate::settle(&env, output).map(|output| to_output(&self.0, output))
    }
}

/// Responses given as tokens, for replaying (only the tokens are read).
fn given_responses(spec: &ScenarioSpec, tokens: &[u32], count: u32) -> core::Result<Samples> {
    let (n, t_max) = (count as usize, spec.length);
    if n == 0 || tokens.len() != n * t_max {
        return Err(invalid(format!("tokens: {} entries, expected N × T = {n} × {t_max}", tokens.len())));
    }
    if let Some(&a) = tokens.iter().find(|&&a| a != core::walk::NO_TOKEN && a as usize >= spec.vocab) {
        return Err(invalid(format!("token {a} is not below V = {}", spec.vocab)));
    }
    Ok(Samples {
        count: n,
        first_index: 0,
        length: t_max,
        tokens: tokens.to_vec(),
        log_probs: vec![],
        harm: vec![],
        emitted: vec![],
        states: None,
    })
}
