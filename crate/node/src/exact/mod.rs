//! The exact engine: ExactModel and its analyses (its training and attack methods: training.rs).

mod training;

use std::sync::Arc;

use crate::core;
use crate::policy::{policy_spec, MlpShape, PolicyInput};
use core::policy_spec::PolicySpec;
use crate::cancel::CancelFlag;
use crate::job::{spawn, Job, JobTask};
use crate::{guard, invalid, ScenarioInput};
use core::analysis::{analyze, check_tolerance, Analysis, DEFAULT_HORIZON_TOLERANCE};
use core::exact::{conditional_harm, harm_profile, kl_on_policy, on_harmful_prefixes, HarmProfile};
use core::model::{Model, DEFAULT_MEMORY_BUDGET};
use core::policy::BasePolicy;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// The exact state space of a scenario, built once and analysed many times.
#[napi]
pub struct ExactModel {
    pub(crate) inner: Arc<Model>,
}

#[napi]
impl ExactModel {
    /// Builds the reachable state space. Throws HH_INVALID_SPEC or HH_STATE_SPACE_TOO_LARGE.
    #[napi(constructor)]
    pub fn new(spec: ScenarioInput) -> napi::Result<Self, String> {
        guard(|| {
            let budget = match spec.memory_budget {
                None => DEFAULT_MEMORY_BUDGET,
                Some(b) if b.is_finite() && b > 0.0 => b as u64,
                Some(b) => return Err(invalid(format!("memoryBudget must be a positive number of bytes, got {b}"))),
            };
            let model = match spec.prefix_tree {
                Some(true) => core::transformer_table::prefix_tree(spec.to_spec()?, budget)?,
                _ => Model::with_budget(spec.to_spec()?, budget, spec.policy_tables.unwrap_or(false))?,
            };
            Ok(ExactModel { inner: Arc::new(model) })
        })
    }

    /// Number of reachable states S.
    #[napi(getter)]
    pub fn num_states(&self) -> u32 {
        self.inner.num_states() as u32
    }

    /// Context number of every state.
    #[napi]
    pub fn state_contexts(&self) -> Uint32Array {
        Uint32Array::new(self.inner.context.clone())
    }

    /// Automaton state of every state.
    #[napi]
    pub fn state_automaton(&self) -> Uint32Array {
        Uint32Array::new(self.inner.automaton.clone())
    }

    /// 1 for live states (they emit a token), 0 for sinks (ended, or first reached at depth T).
    #[napi]
    pub fn state_live(&self) -> Uint8Array {
        Uint8Array::new(self.inner.live.iter().map(|&l| l as u8).collect())
    }

    /// Successor table next[s·V + a].
    #[napi]
    pub fn state_next(&self) -> Uint32Array {
        Uint32Array::new(self.inner.next.clone())
    }

    /// Harm profile of a policy (synchronous; the tabular logits are read in place).
    #[napi]
    pub fn harm_profile(&self, policy: PolicyInput, options: Option<ProfileOptions>) -> napi::Result<ProfileOutput, String> {
        guard(|| {
            let choice = policy_spec(&policy, &self.inner.spec)?;
            run_profile(&self.inner, &choice, &ProfileRequest::from(options)?)
        })
        .map(ProfileOutput::from)
    }

    /// Harm profile of a policy on the libuv thread pool (the logits are copied first); a raised
    /// `cancel` flag rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<ProfileOutput>")]
    pub fn harm_profile_async(&self, policy: PolicyInput, options: Option<ProfileOptions>, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<ProfileJob>>, String> {
        guard(|| {
            let choice = policy_spec(&policy, &self.inner.spec)?.into_owned();
            Ok(spawn(ProfileJob { model: self.inner.clone(), policy: choice, request: ProfileRequest::from(options)? }, cancel))
        })
    }

    /// The full exact analysis at λ (synchronous).
    #[napi]
    pub fn analyze(&self, lambda: f64, tolerance: Option<f64>) -> napi::Result<AnalysisOutput, String> {
        guard(|| analyze(&self.inner, lambda, tolerance.unwrap_or(DEFAULT_HORIZON_TOLERANCE))).map(AnalysisOutput::from)
    }

    /// The full exact analysis at λ on the libuv thread pool; a raised `cancel` flag rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<AnalysisOutput>")]
    pub fn analyze_async(&self, lambda: f64, tolerance: Option<f64>, cancel: Option<&CancelFlag>) -> AsyncTask<JobTask<AnalysisJob>> {
        spawn(AnalysisJob { model: self.inner.clone(), lambda, tolerance: tolerance.unwrap_or(DEFAULT_HORIZON_TOLERANCE) }, cancel)
    }

    /// Conditional expected harm table h_t(s), (T+1) × S, under a policy.
    #[napi]
    pub fn conditional_harm(&self, policy: PolicyInput) -> napi::Result<Float64Array, String> {
        guard(|| policy_spec(&policy, &self.inner.spec)?.with(&self.inner, |p| conditional_harm(&self.inner, p))).map(Float64Array::new)
    }

    /// On-policy per-position KL of a policy to the base, length T.
    #[napi]
    pub fn kl_on_policy(&self, policy: PolicyInput) -> napi::Result<Float64Array, String> {
        guard(|| policy_spec(&policy, &self.inner.spec)?.with(&self.inner, |p| kl_on_policy(&self.inner, p))).map(Float64Array::new)
    }

    /// Any policy as tabular logits: log π_t(a|s) at every (position, live state), T × S × V
    /// (−1e300 stands for log 0, 0 at sinks).
    #[napi]
    pub fn policy_logits(&self, policy: PolicyInput) -> napi::Result<Float64Array, String> {
        guard(|| {
            let model = &self.inner;
            policy_spec(&policy, &model.spec)?.with(model, |p| {
                let (n, v) = (model.num_states(), model.vocab());
                let mut logits = core::alloc::table(&[model.length(), n, v], 0.0, "T × S × V logits table")?;
                for (i, row) in logits.chunks_exact_mut(v).enumerate() {
                    let (t, s) = (i / n + 1, i % n);
                    if model.live[s] {
                        p.probs(t, s, row);
                        row.iter_mut().for_each(|x| *x = if *x > 0.0 { x.ln() } else { -1e300 });
                    }
                }
                Ok(logits)
            })?
        })
        .map(Float64Array::new)
    }

    /// The policy's state distribution p_t(s) after t tokens, (T+1) × S.
    #[napi]
    pub fn state_distribution(&self, policy: PolicyInput) -> napi::Result<Float64Array, String> {
        guard(|| {
            let model = &self.inner;
            let n = model.num_states();
            policy_spec(&policy, &model.spec)?.with(model, |p| {
                let mut table = core::alloc::table(&[model.length() + 1, n], 0.0, "(T+1) × S state distribution table")?;
                let last = core::exact::forward(model, p, |t, layer| table[(t - 1) * n..t * n].copy_from_slice(layer));
                table[model.length() * n..].copy_from_slice(&last);
                Ok(table)
            })?
        })
        .map(Float64Array::new)
    }

    /// The base model as tabular logits, log p at every (position, live state): T × S × V.
    #[napi]
    pub fn base_logits(&self) -> napi::Result<Float64Array, String> {
        guard(|| core::policy_spec::base_logits(&self.inner)).map(Float64Array::new)
    }

    /// Logits of an mlp at every (position, live state): its tabular form, T × S × V.
    #[napi]
    pub fn mlp_tabulate(&self, shape: MlpShape, params: Float64Array) -> napi::Result<Float64Array, String> {
        guard(|| core::mlp::Mlp::new(shape.config(self.inner.vocab(), self.inner.length()))?.tabulate(&params, &self.inner)).map(Float64Array::new)
    }

    /// Pulls a gradient with respect to the tabulated logits (T × S × V) back to the mlp's
    /// parameters: their sum (P), or per position (T × P) when `perPosition` is set.
    #[napi]
    pub fn mlp_pull_back(&self, shape: MlpShape, params: Float64Array, logit_gradient: Float64Array, per_position: Option<bool>) -> napi::Result<Float64Array, String> {
        guard(|| {
            let mlp = core::mlp::Mlp::new(shape.config(self.inner.vocab(), self.inner.length()))?;
            if per_position.unwrap_or(false) {
                mlp.pull_back_per_position(&params, &self.inner, &logit_gradient)
            } else {
                mlp.pull_back(&params, &self.inner, &logit_gradient)
            }
        })
        .map(Float64Array::new)
    }

    /// Teacher-forced per-position KL to the base on harmful prefixes (length T) and prefilling
    /// success ASR_k for k = 0..T, for a policy.
    #[napi]
    pub fn on_harmful_prefixes(&self, policy: PolicyInput) -> napi::Result<HarmfulPrefixOutput, String> {
        guard(|| run_harmful_prefixes(&self.inner, &policy_spec(&policy, &self.inner.spec)?)).map(HarmfulPrefixOutput::from)
    }

    /// `onHarmfulPrefixes` on the libuv thread pool (the prefilling attack; the policy is copied
    /// first). A raised `cancel` flag rejects it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<HarmfulPrefixOutput>")]
    pub fn on_harmful_prefixes_async(&self, policy: PolicyInput, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<HarmfulPrefixJob>>, String> {
        guard(|| {
            let policy = policy_spec(&policy, &self.inner.spec)?.into_owned();
            Ok(spawn(HarmfulPrefixJob { model: self.inner.clone(), policy }, cancel))
        })
    }
}

/// Teacher-forced KL and ASR_k of a policy on the base's harmful prefixes.
fn run_harmful_prefixes(model: &Model, choice: &PolicySpec) -> core::Result<(Vec<f64>, Vec<f64>)> {
    let h_base = conditional_harm(model, &BasePolicy { model });
    choice.with(model, |p| {
        let h = conditional_harm(model, p);
        on_harmful_prefixes(model, &h_base, p, &h)
    })
}

/// The prefilling attack on a copied policy.
pub struct HarmfulPrefixJob {
    model: Arc<Model>,
    policy: PolicySpec<'static>,
}

impl Job for HarmfulPrefixJob {
    type Data = (Vec<f64>, Vec<f64>);
    type Js = HarmfulPrefixOutput;
    fn run(&self) -> core::Result<Self::Data> {
        run_harmful_prefixes(&self.model, &self.policy)
    }
    fn to_js(data: Self::Data) -> HarmfulPrefixOutput {
        HarmfulPrefixOutput::from(data)
    }
}

#[napi(object)]
pub struct ProfileOptions {
    /// Relative tolerance of the horizon (default 1e-12 of Var(H)).
    pub tolerance: Option<f64>,
    /// Also return the logit gradient table G_t(s, a), T × S × V.
    pub gradient: Option<bool>,
    /// Also return the conditional harm table h_t(s), (T+1) × S.
    pub conditional_harm: Option<bool>,
}

struct ProfileRequest {
    tolerance: f64,
    gradient: bool,
    conditional_harm: bool,
}

impl ProfileRequest {
    fn from(options: Option<ProfileOptions>) -> core::Result<Self> {
        let o = options.unwrap_or(ProfileOptions { tolerance: None, gradient: None, conditional_harm: None });
        let tolerance = o.tolerance.unwrap_or(DEFAULT_HORIZON_TOLERANCE);
        check_tolerance(tolerance)?;
        Ok(ProfileRequest { tolerance, gradient: o.gradient.unwrap_or(false), conditional_harm: o.conditional_harm.unwrap_or(false) })
    }
}

pub struct ProfileData {
    profile: HarmProfile,
    gradient: Option<Vec<f64>>,
    conditional_harm: Option<Vec<f64>>,
}

fn run_profile(model: &Model, choice: &PolicySpec, request: &ProfileRequest) -> core::Result<ProfileData> {
    let dims = [model.length(), model.num_states(), model.vocab()];
    let mut gradient = match request.gradient {
        true => Some(core::alloc::table(&dims, 0.0, "T × S × V gradient table")?),
        false => None,
    };
    choice.with(model, |policy| {
        let h = conditional_harm(model, policy);
        let profile = harm_profile(model, policy, &h, request.tolerance, gradient.as_deref_mut());
        ProfileData { profile, gradient, conditional_harm: request.conditional_harm.then_some(h) }
    })
}

/// The harm martingale of a policy. Per-position arrays have length T (index t − 1).
#[napi(object)]
pub struct ProfileOutput {
    pub expected_harm: f64,
    pub harm_variance: f64,
    pub harm_information: Float64Array,
    pub grad_norm: Float64Array,
    pub fisher_max: Float64Array,
    pub grad_bound: Float64Array,
    pub horizon: u32,
    /// P(τ = t) for t = 0..T.
    pub decision_time: Float64Array,
    pub undecided: f64,
    pub gradient: Option<Float64Array>,
    pub conditional_harm: Option<Float64Array>,
}

impl From<ProfileData> for ProfileOutput {
    fn from(d: ProfileData) -> Self {
        let p = d.profile;
        ProfileOutput {
            expected_harm: p.expected_harm,
            harm_variance: p.harm_variance,
            harm_information: Float64Array::new(p.harm_information),
            grad_norm: Float64Array::new(p.grad_norm),
            fisher_max: Float64Array::new(p.fisher_max),
            grad_bound: Float64Array::new(p.grad_bound),
            horizon: p.horizon as u32,
            decision_time: Float64Array::new(p.decision_time),
            undecided: p.undecided,
            gradient: d.gradient.map(Float64Array::new),
            conditional_harm: d.conditional_harm.map(Float64Array::new),
        }
    }
}

/// The harm profile of a copied policy.
pub struct ProfileJob {
    model: Arc<Model>,
    policy: PolicySpec<'static>,
    request: ProfileRequest,
}

impl Job for ProfileJob {
    type Data = ProfileData;
    type Js = ProfileOutput;
    fn run(&self) -> core::Result<ProfileData> {
        run_profile(&self.model, &self.policy, &self.request)
    }
    fn to_js(data: ProfileData) -> ProfileOutput {
        ProfileOutput::from(data)
    }
}

#[napi(object)]
pub struct HarmfulPrefixOutput {
    pub kl_teacher_forced: Float64Array,
    pub asr: Float64Array,
}

impl From<(Vec<f64>, Vec<f64>)> for HarmfulPrefixOutput {
    fn from((kl, asr): (Vec<f64>, Vec<f64>)) -> Self {
        HarmfulPrefixOutput { kl_teacher_forced: Float64Array::new(kl), asr: Float64Array::new(asr) }
    }
}

/// The exact analysis at λ: base harm profile, Gibbs-policy KL profiles and prefilling success.
#[napi(object)]
pub struct AnalysisOutput {
    pub lambda: f64,
    pub base: ProfileOutput,
    pub aligned_expected_harm: f64,
    pub kl_on_policy: Float64Array,
    pub kl_teacher_forced: Float64Array,
    pub kl_predicted: Float64Array,
    pub asr_base: Float64Array,
    pub asr_aligned: Float64Array,
}

impl From<Analysis> for AnalysisOutput {
    fn from(a: Analysis) -> Self {
        AnalysisOutput {
            lambda: a.lambda,
            base: ProfileOutput::from(ProfileData { profile: a.base, gradient: None, conditional_harm: None }),
            aligned_expected_harm: a.aligned_expected_harm,
            kl_on_policy: Float64Array::new(a.kl_on_policy),
            kl_teacher_forced: Float64Array::new(a.kl_teacher_forced),
            kl_predicted: Float64Array::new(a.kl_predicted),
            asr_base: Float64Array::new(a.asr_base),
            asr_aligned: Float64Array::new(a.asr_aligned),
        }
    }
}

/// The exact analysis at λ.
pub struct AnalysisJob {
    model: Arc<Model>,
    lambda: f64,
    tolerance: f64,
}

impl Job for AnalysisJob {
    type Data = Analysis;
    type Js = AnalysisOutput;
    fn run(&self) -> core::Result<Analysis> {
        analyze(&self.model, self.lambda, self.tolerance)
    }
    fn to_js(analysis: Analysis) -> AnalysisOutput {
        AnalysisOutput::from(analysis)
    }
}

