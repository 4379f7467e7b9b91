//! One Monte Carlo run: sample, then every estimate the run asks for, with standard errors.

use crate::error::Result;
use crate::estimate::{estimate_gradient, expected_harm, harm_information, harm_paths, kl_to_base_along, Coefficient, GradientEstimate, HarmSource, PositionEstimates, ScoreModel};
use crate::sampling::{sample, BaseStep, SampleRequest, StepPolicy};
use crate::walk::Track;

/// Teacher-forced prefixes are base responses drawn with the run's seed XOR this constant.
pub const TEACHER_FORCED_SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

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
}

pub struct RunReport {
    pub expected_harm: (f64, f64),
    /// P̂(τ = t) for t = 0..T (structural decision time, see sampling.rs).
    pub decision_time: Vec<f64>,
    pub harm_information: Option<PositionEstimates>,
    pub kl_on_policy: PositionEstimates,
    pub kl_teacher_forced: Option<PositionEstimates>,
    pub gradient: Option<GradientEstimate>,
}

/// `score` is the policy's differentiable view (tabular or mlp), needed for gradients.
pub fn run(track: &Track, policy: &dyn StepPolicy, score: Option<&dyn ScoreModel>, request: &RunRequest) -> Result<RunReport> {
    let samples = sample(track, policy, &SampleRequest { count: request.samples, seed: request.seed, prefix: None, first_index: 0 })?;
    let paths = match &request.harm {
        None => None,
        Some(HarmChoice::Exact(table)) => Some(harm_paths(track, policy, &samples, &HarmSource::Exact(table), request.seed)?),
        Some(HarmChoice::Rollouts(m)) => Some(harm_paths(track, policy, &samples, &HarmSource::Rollouts(*m), request.seed)?),
    };
    let base = BaseStep { spec: track.spec };
    let kl_on_policy = kl_to_base_along(track, policy, &samples, None)?;
    let kl_teacher_forced = if request.teacher_forced {
        let seed = request.seed ^ TEACHER_FORCED_SEED_MIX;
        let harmful = sample(track, &base, &SampleRequest { count: request.samples, seed, prefix: None, first_index: 0 })?;
        Some(kl_to_base_along(track, policy, &harmful, Some(&harmful.harm))?)
    } else {
        None
    };
    let gradient = match (request.gradient, score) {
        (None, _) => None,
        (Some(_), None) => return Err(crate::Error::InvalidArgument("gradients need a policy with parameters (tabular or mlp)".into())),
        (Some(c), Some(score)) => Some(estimate_gradient(track, score, &samples, c, paths.as_ref(), request.directions)?),
    };
    let mut decision_time = vec![0.0; samples.length + 1];
    for &t in &samples.decision_time {
        decision_time[t as usize] += 1.0 / samples.count as f64;
    }
    Ok(RunReport {
        expected_harm: expected_harm(&samples),
        decision_time,
        harm_information: paths.as_ref().map(|p| harm_information(&samples, p)),
        kl_on_policy,
        kl_teacher_forced,
        gradient,
    })
}
