//! One Monte Carlo run: sample, then every estimate the run asks for, with standard errors.
//!
//! Responses come from the policy itself, or from a proposal (importance sampling, proposal.rs):
//! then every estimate is self-normalised with the likelihood ratios P/q of the whole responses.

use crate::error::{Error, Result};
use crate::estimate::{
    decision_time_histogram, decision_times, estimate_gradient, expected_harm, harm_information, harm_paths, kl_to_base_along, Coefficient, GradientEstimate, HarmSource,
    PositionEstimates, Scalar, ScoreModel,
};
use crate::proposal::{effective_sample_size, importance_weights};
use crate::sampling::{sample, BaseStep, SampleRequest, StepPolicy};
use crate::walk::Track;

/// Teacher-forced prefixes are base responses drawn with the run's seed XOR this constant.
pub const TEACHER_FORCED_SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// M, the rollouts per prefix and set, when none is given.
pub const DEFAULT_ROLLOUTS: usize = 16;

pub enum HarmChoice<'a> {
    /// h_t from the exact engine's table of the sampled policy.
    Exact(&'a [f64]),
    /// Nested rollouts, M per prefix and set.
    Rollouts(usize),
}

pub struct RunRequest<'a> {
    pub samples: usize,
    pub seed: u64,
    pub harm: Option<HarmChoice<'a>>,
    pub gradient: Option<Coefficient>,
    pub directions: Option<&'a [f64]>,
    pub teacher_forced: bool,
    /// Draw the responses from this proposal instead of the policy, and reweight.
    pub proposal: Option<&'a dyn StepPolicy>,
}

#[derive(Debug)]
pub struct RunReport {
    pub expected_harm: Scalar,
    /// P̂(τ = t) for t = 0..T and P̂(τ > T), τ the first t with h_t ∈ {0, 1} (when h_t is known).
    pub decision_time: Option<(PositionEstimates, Scalar)>,
    pub harm_information: Option<PositionEstimates>,
    pub kl_on_policy: PositionEstimates,
    pub kl_teacher_forced: Option<PositionEstimates>,
    pub gradient: Option<GradientEstimate>,
    /// Kish's effective sample size of the importance weights, with a proposal.
    pub effective_sample_size: Option<f64>,
}

/// `score` is the policy's differentiable view (tabular or mlp), needed for gradients.
pub fn run(track: &Track, policy: &dyn StepPolicy, score: Option<&dyn ScoreModel>, request: &RunRequest) -> Result<RunReport> {
    if request.proposal.is_some() && request.gradient.is_some() {
        return Err(Error::InvalidArgument("gradients are estimated on the policy's own samples: ask for them without a proposal".into()));
    }
    if let (None, Some(model), Some(rows), true) = (request.proposal, track.model, policy.exact_rows(), track.spec.length > 0) {
        // Rows per exact state, and h exact or not asked for: read position by position.
        let h = match request.harm {
            None => Some(None),
            Some(HarmChoice::Exact(table)) => Some(Some(table)),
            Some(HarmChoice::Rollouts(_)) => None,
        };
        if let (Some(h), true) = (h, score.is_none_or(|s| s.keys_are_states())) {
            return crate::by_position::run(track, model, rows, policy, score, h, request);
        }
    }
    let sampler = request.proposal.unwrap_or(policy);
    let samples = sample(track, sampler, &SampleRequest { count: request.samples, seed: request.seed, prefix: None, first_index: 0 })?;
    let weights = request.proposal.map(|_| importance_weights(track, policy, &samples));
    let w = weights.as_deref();
    let paths = match &request.harm {
        None => None,
        Some(HarmChoice::Exact(table)) => Some(harm_paths(track, policy, &samples, &HarmSource::Exact(table), request.seed)?),
        Some(HarmChoice::Rollouts(m)) => Some(harm_paths(track, policy, &samples, &HarmSource::Rollouts(*m), request.seed)?),
    };
    let kl_on_policy = kl_to_base_along(track, policy, &samples, w)?;
    let kl_teacher_forced = teacher_forced_kl(track, policy, request)?;
    let gradient = match (request.gradient, score) {
        (None, _) => None,
        (Some(_), None) => return Err(Error::InvalidArgument("gradients need a policy with parameters (tabular or mlp)".into())),
        (Some(c), Some(score)) => Some(estimate_gradient(track, score, &samples, c, paths.as_ref(), request.directions)?),
    };
    Ok(RunReport {
        expected_harm: expected_harm(&samples, w),
        decision_time: paths.as_ref().map(|p| decision_time_histogram(&decision_times(p, samples.count, samples.length), samples.length, w)),
        harm_information: paths.as_ref().map(|p| harm_information(&samples, p, w)),
        kl_on_policy,
        kl_teacher_forced,
        gradient,
        effective_sample_size: w.map(effective_sample_size),
    })
}

/// The per-position KL on teacher-forced prefixes (base responses reweighted by their harm), when
/// the run asks for it.
pub(crate) fn teacher_forced_kl(track: &Track, policy: &dyn StepPolicy, request: &RunRequest) -> Result<Option<PositionEstimates>> {
    if !request.teacher_forced {
        return Ok(None);
    }
    let seed = request.seed ^ TEACHER_FORCED_SEED_MIX;
    let harmful = sample(track, &BaseStep { spec: track.spec }, &SampleRequest { count: request.samples, seed, prefix: None, first_index: 0 })?;
    Ok(Some(kl_to_base_along(track, policy, &harmful, Some(&harmful.harm))?))
}
