//! The information proposal: importance sampling aimed at the innovations Δ_t = h_t − h_{t−1} that
//! carry the harm information I_t = E_p[Δ_t²], where plain sampling rarely sees them (a late flip
//! of h on `refusal`).
//!
//! With the exact engine (h_t exact on the exact states), component t of the proposal is the
//! zero-variance proposal for I_t, q_t(y) = p(y)·Δ_t(y)²/I_t. It is sampled exactly through the
//! exact states with V_u(s) = E_p[Δ_t² | state s after u tokens] for u < t, by backward induction
//! from V_{t−1}(s) = Σ_a p(a|s)·(h_t(s·a) − h_{t−1}(s))²: rows q(a|s) = p(a|s)·V_{u+1}(s·a)/V_u(s) at
//! positions u + 1 < t, p(a|s)·(h_t(s·a) − h_{t−1}(s))²/V_{t−1}(s) at position t, p after t. And
//! V_0(start) = I_t.
//!
//! The proposal is the defensive mixture q = (p + Σ_{t∈S} q_t)/K, K = |S| + 1, over the positions S
//! with I_t > HORIZON_FLOOR. The number of responses from each component is multinomial, from one
//! keyed uniform per response index, and the responses are grouped by component: a sample of N
//! independent draws from q, the same whatever the thread count. The likelihood ratio is known in
//! closed form from the exact h along the response, w = p/q = K/(1 + Σ_{t∈S} Δ_t²/I_t) ≤ K, so the
//! weights are bounded and the standard errors honest.
//!
//! E[H], I_t, τ and the KL are self-normalised (Σw·x/Σw, as for the tilted proposal); gradients are
//! the unnormalised (1/N)·Σ w·c·s (q is normalised, so E_q[w] = 1), whose SE is the plain one.
//! I_t itself is known exactly wherever this proposal can be built: its use is the quantities that
//! rest on the same rare events (late per-position gradients and KL, E[H]) and checking that the
//! estimators and their SEs are right where plain sampling cannot see the events.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::estimate::{accumulate_scores, decision_time_histogram, decision_times, expected_harm, harm_information, kl_to_base_along, reduce, Coefficient, HarmPaths, Scalar, ScoreModel};
use crate::exact::HORIZON_FLOOR;
use crate::model::Model;
use crate::monte_carlo::{RunReport, RunRequest, TEACHER_FORCED_SEED_MIX};
use crate::parallel::CHUNK;
use crate::policy::Policy;
use crate::proposal::effective_sample_size;
use crate::rng::{uniforms, DrawKey};
use crate::sampling::{sample, BaseStep, ExactStep, SampleRequest, StepPolicy};
use crate::walk::Track;

/// Component t of the information proposal: q_t ∝ p·Δ_t².
pub struct InformationComponent<'a> {
    model: &'a Model,
    policy: &'a dyn Policy,
    /// h_u(s) of the policy, (T+1) × S.
    h: &'a [f64],
    /// The position t whose innovation the component targets.
    position: usize,
    /// V_u(s) = E_p[Δ_t² | s after u tokens] at index u·S + s, u = 0..t−1.
    v: Vec<f64>,
}

impl<'a> InformationComponent<'a> {
    pub fn new(model: &'a Model, policy: &'a dyn Policy, h: &'a [f64], position: usize) -> Self {
        let (n, v_len) = (model.num_states(), model.vocab());
        let t = position;
        let mut v = vec![0.0; t * n];
        // V_{u}(s) from row u + 1 (V_t is replaced by the squared innovation at u = t − 1).
        for u in (0..t).rev() {
            let (before, after) = v.split_at_mut((u + 1) * n);
            let later = &after[..after.len().min(n)];
            before[u * n..].par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
                let mut row = vec![0.0; v_len];
                for (i, value) in out.iter_mut().enumerate() {
                    let s = chunk * CHUNK + i;
                    let next = |nx: usize| if u + 1 == t { (h[t * n + nx] - h[(t - 1) * n + s]).powi(2) } else { later[nx] };
                    *value = if model.live[s] {
                        policy.probs(u + 1, s, &mut row);
                        row.iter().zip(model.next_row(s)).map(|(p, &nx)| p * next(nx as usize)).sum()
                    } else {
                        next(s)
                    };
                }
            });
        }
        InformationComponent { model, policy, h, position, v }
    }

    /// I_t = V_0 at the start state.
    pub fn information(&self) -> f64 {
        self.v[0]
    }
}

impl Policy for InformationComponent<'_> {
    fn probs(&self, pos: usize, s: usize, out: &mut [f64]) {
        self.policy.probs(pos, s, out);
        let (n, t) = (self.model.num_states(), self.position);
        let here = if pos <= t { self.v[(pos - 1) * n + s] } else { 0.0 };
        // After t, or at a state q never reaches (V = 0): the policy itself.
        if here <= 0.0 {
            return;
        }
        for (o, &nx) in out.iter_mut().zip(self.model.next_row(s)) {
            let next = if pos == t { (self.h[t * n + nx as usize] - self.h[(t - 1) * n + s]).powi(2) } else { self.v[pos * n + nx as usize] };
            *o *= next / here;
        }
    }
}

/// I_t of the policy for t = 1..T, each from its component's backward pass.
pub fn information_by_position(model: &Model, policy: &dyn Policy, h: &[f64]) -> Vec<f64> {
    (1..=model.length()).map(|t| InformationComponent::new(model, policy, h, t).information()).collect()
}

/// The uniform stream of the component draws (at position 0, which token draws never use).
const COMPONENT_STREAM: u32 = 0x1F0;

/// What an information-proposal run adds to the estimates.
#[derive(Debug, Clone)]
pub struct InformationSummary {
    /// The positions S of the mixture's components (1-based).
    pub positions: Vec<u32>,
    /// Responses drawn from each component: the policy first, then q_t for t in S.
    pub counts: Vec<u32>,
    /// The mean of w = p/q with its SE: 1 in expectation.
    pub mean_weight: Scalar,
    pub max_weight: f64,
    /// K = |S| + 1, the bound on w.
    pub weight_bound: f64,
    pub effective_sample_size: f64,
}

/// One Monte Carlo run from the information proposal of `exact` (the sampled policy's exact-state
/// view, with `h` its conditional-harm table). `request.harm` is ignored: h_t is exact here.
pub fn run_information(track: &Track, policy: &dyn StepPolicy, exact: &dyn Policy, score: Option<&dyn ScoreModel>, h: &[f64], request: &RunRequest) -> Result<(RunReport, InformationSummary)> {
    let model = track.model.ok_or_else(|| Error::InvalidArgument("proposal \"information\" needs the exact engine (the scenario is over the memory budget)".into()))?;
    if request.samples == 0 {
        return Err(Error::InvalidArgument("the number of samples must be at least 1".into()));
    }
    if request.samples > u32::MAX as usize {
        return Err(Error::InvalidArgument("at most 2^32 − 1 responses per seed".into()));
    }
    let (n_states, t_max) = (model.num_states(), model.length());
    let information = information_by_position(model, exact, h);
    let positions: Vec<usize> = (1..=t_max).filter(|&t| information[t - 1] > HORIZON_FLOOR).collect();
    let k = positions.len() + 1;

    // Multinomial component counts from one keyed uniform per response index.
    let mut counts = vec![0usize; k];
    for n in 0..request.samples {
        let u = uniforms(request.seed, DrawKey { index: n as u32, position: 0, stream: COMPONENT_STREAM, substream: 0 })[0];
        counts[((u * k as f64) as usize).min(k - 1)] += 1;
    }
    let mut parts = Vec::with_capacity(k);
    let mut first_index = 0u32;
    for (c, &count) in counts.iter().enumerate().filter(|(_, &count)| count > 0) {
        let request = SampleRequest { count, seed: request.seed, prefix: None, first_index };
        parts.push(if c == 0 {
            sample(track, policy, &request)?
        } else {
            let component = InformationComponent::new(model, exact, h, positions[c - 1]);
            sample(track, &ExactStep(&component), &request)?
        });
        first_index += count as u32;
    }
    let samples = crate::sampling::concat(parts, t_max);

    // h along each response, and w = K/(1 + Σ_{t∈S} Δ_t²/I_t).
    let stride = t_max + 1;
    let states = samples.states.as_ref().expect("sampled with the exact model");
    let path: Vec<f64> = (0..samples.count * stride).map(|i| h[(i % stride) * n_states + states[i] as usize]).collect();
    let weights: Vec<f64> = (0..samples.count)
        .map(|n| {
            let ratio: f64 = positions.iter().map(|&t| (path[n * stride + t] - path[n * stride + t - 1]).powi(2) / information[t - 1]).sum();
            k as f64 / (1.0 + ratio)
        })
        .collect();
    let paths = HarmPaths { first: path, second: None };
    let ess = effective_sample_size(&weights);
    let w = Some(weights.as_slice());

    let kl_teacher_forced = if request.teacher_forced {
        let base = BaseStep { spec: track.spec };
        let harmful = sample(track, &base, &SampleRequest { count: request.samples, seed: request.seed ^ TEACHER_FORCED_SEED_MIX, prefix: None, first_index: 0 })?;
        Some(kl_to_base_along(track, policy, &harmful, Some(&harmful.harm))?)
    } else {
        None
    };
    let gradient = match (request.gradient, score) {
        (None, _) => None,
        (Some(_), None) => return Err(Error::InvalidArgument("gradients need a policy with parameters (tabular or mlp)".into())),
        (Some(coefficient), Some(score)) => {
            let (count, total) = (samples.count, samples.harm.iter().sum::<f64>());
            if coefficient == Coefficient::LeaveOneOut && count < 2 {
                return Err(Error::InvalidArgument("the leave-one-out baseline needs at least 2 samples".into()));
            }
            let coef = |n: usize, t: usize| {
                weights[n]
                    * match coefficient {
                        Coefficient::Reinforce => samples.harm[n],
                        Coefficient::LeaveOneOut => samples.harm[n] - (total - samples.harm[n]) / (count as f64 - 1.0),
                        Coefficient::Innovation => paths.innovation(n, t + 1, stride),
                    }
            };
            Some(accumulate_scores(track, score, &samples, &coef, request.directions, true)?)
        }
    };
    let report = RunReport {
        expected_harm: expected_harm(&samples, w),
        decision_time: Some(decision_time_histogram(&decision_times(&paths, samples.count, t_max), t_max, w)),
        harm_information: Some(harm_information(&samples, &paths, w)),
        kl_on_policy: kl_to_base_along(track, policy, &samples, w)?,
        kl_teacher_forced,
        gradient,
        effective_sample_size: Some(ess),
    };
    let summary = InformationSummary {
        positions: positions.iter().map(|&t| t as u32).collect(),
        counts: counts.iter().map(|&c| c as u32).collect(),
        mean_weight: reduce(samples.count, None, |n| weights[n]),
        max_weight: weights.iter().copied().fold(0.0, f64::max),
        weight_bound: k as f64,
        effective_sample_size: ess,
    };
    Ok((report, summary))
}

