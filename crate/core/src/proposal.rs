//! Importance sampling toward harm: proposals tilted by e^{κH}, and the weights that undo the tilt.
//!
//! - Exact tilt (with the exact model): q(y) = P(y)·e^{κH(y)} / Z, sampled through per-position rows
//!   q_t(a|s) = π_t(a|s)·Z_t(s·a) / Z_{t−1}(s), with Z_t(s) = E_π[e^{κH} | state s after t tokens] by
//!   backward induction. This is the Gibbs construction of gibbs.rs with λ = −κ, over any policy π
//!   rather than the base only.
//! - Per-token tilt (without the exact model, where Z is out of reach): q(a | prefix) ∝
//!   π(a | prefix)·e^{κ·g(a)}, with g(a) the harm value of the automaton state the token leads to (the
//!   harm the response would have if it stopped there). Cruder: the tilt compounds over positions, so
//!   its weights spread more than the exact tilt's at the same κ; but it needs nothing but the walk.
//!
//! Either way responses are reweighted by the likelihood ratio of the whole response,
//! w = P(y)/q(y) (for the exact tilt ∝ e^{−κH(y)}), and estimates are self-normalised:
//! E_P[f] = E_q[w·f] / E_q[w]. The Kish effective sample size (Σw)²/Σw² tells how many plain samples
//! the weighted ones are worth.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{Model, ScenarioSpec};
use crate::parallel::CHUNK;
use crate::policy::Policy;
use crate::rl::replay_log_probs;
use crate::sampling::{ExactStep, Samples, StepPolicy};
use crate::walk::{Track, Walk};

/// Default κ of `estimate --proposal tilted`: e^κ ≈ 20, so a harmful response is about twenty times
/// as likely under the proposal as under the policy, relative to a harmless one.
pub const DEFAULT_TILT: f64 = 3.0;

/// Largest |κ|: Z stays within [e^{−700}, e^{700}], inside the normal range of f64.
pub const MAX_TILT: f64 = 700.0;

pub fn check_tilt(kappa: f64) -> Result<()> {
    if kappa.is_finite() && kappa.abs() <= MAX_TILT {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("tilt must be a finite number with |κ| ≤ {MAX_TILT}, got {kappa}")))
    }
}

/// The exact tilt of a policy on the exact states: q ∝ P_π·e^{κH}.
pub struct ExactTilt<'a> {
    model: &'a Model,
    policy: &'a dyn Policy,
    /// Z_t(s) = E_π[e^{κH} | s at t] at index t·S + s.
    z: Vec<f64>,
}

impl<'a> ExactTilt<'a> {
    pub fn new(model: &'a Model, policy: &'a dyn Policy, kappa: f64) -> Result<Self> {
        check_tilt(kappa)?;
        let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
        let mut z = vec![0.0; (t_max + 1) * n];
        for s in 0..n {
            z[t_max * n + s] = (kappa * model.harm(s)).exp();
        }
        for t in (1..=t_max).rev() {
            let (before, after) = z.split_at_mut(t * n);
            let later = &after[..n];
            before[(t - 1) * n..].par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
                let mut row = vec![0.0; v];
                for (i, z_prev) in out.iter_mut().enumerate() {
                    let s = chunk * CHUNK + i;
                    *z_prev = if model.live[s] {
                        policy.probs(t, s, &mut row);
                        row.iter().zip(model.next_row(s)).map(|(p, &nx)| p * later[nx as usize]).sum()
                    } else {
                        later[s]
                    };
                }
            });
        }
        Ok(ExactTilt { model, policy, z })
    }
}

impl Policy for ExactTilt<'_> {
    fn probs(&self, t: usize, s: usize, out: &mut [f64]) {
        let n = self.model.num_states();
        self.policy.probs(t, s, out);
        let z_prev = self.z[(t - 1) * n + s];
        for (o, &nx) in out.iter_mut().zip(self.model.next_row(s)) {
            // The ratio first: Z itself may be as small as e^{−700}.
            *o *= self.z[t * n + nx as usize] / z_prev;
        }
    }
}

/// The per-token tilt of any sampled policy: q(a | prefix) ∝ π(a | prefix)·e^{κ·g(a)}.
pub struct TokenTilt<'a> {
    spec: &'a ScenarioSpec,
    policy: &'a dyn StepPolicy,
    /// e^{κ·g(a)} for each (automaton state, token), D × V.
    factor: Vec<f64>,
}

impl<'a> TokenTilt<'a> {
    pub fn new(spec: &'a ScenarioSpec, policy: &'a dyn StepPolicy, kappa: f64) -> Result<Self> {
        check_tilt(kappa)?;
        let factor = spec.transitions.iter().map(|&d| (kappa * spec.harm[d as usize]).exp()).collect();
        Ok(TokenTilt { spec, policy, factor })
    }
}

impl StepPolicy for TokenTilt<'_> {
    fn scratch_len(&self) -> usize {
        self.policy.scratch_len()
    }
    fn needs_exact_state(&self) -> bool {
        self.policy.needs_exact_state()
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]) {
        self.policy.probs(walk, out, scratch);
        let v = self.spec.vocab;
        let factor = &self.factor[walk.automaton * v..(walk.automaton + 1) * v];
        let mut total = 0.0;
        for (o, f) in out.iter_mut().zip(factor) {
            *o *= f;
            total += *o;
        }
        out.iter_mut().for_each(|o| *o /= total);
    }
}

/// How a tilted proposal was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiltMethod {
    Exact,
    PerToken,
}

impl TiltMethod {
    pub fn name(self) -> &'static str {
        match self {
            TiltMethod::Exact => "exact",
            TiltMethod::PerToken => "per-token",
        }
    }
}

/// Calls `f` with the tilted proposal of `policy`: exact when its exact-state view is given (the
/// model is then on the track), per token otherwise.
pub fn with_tilt<R>(
    track: &Track,
    policy: &dyn StepPolicy,
    exact: Option<&dyn Policy>,
    kappa: f64,
    f: impl FnOnce(&dyn StepPolicy, TiltMethod) -> Result<R>,
) -> Result<R> {
    match track.model.zip(exact) {
        Some((model, exact)) => {
            let tilt = ExactTilt::new(model, exact, kappa)?;
            f(&ExactStep(&tilt), TiltMethod::Exact)
        }
        None => f(&TokenTilt::new(track.spec, policy, kappa)?, TiltMethod::PerToken),
    }
}

/// Likelihood ratios w_n ∝ P(y_n)/q(y_n) of responses sampled from a proposal q (their log q is the
/// samples' log_probs), scaled so that the largest is 1. log P comes from replaying `target`.
pub fn importance_weights(track: &Track, target: &dyn StepPolicy, samples: &Samples) -> Vec<f64> {
    let t_max = samples.length;
    let log_p = replay_log_probs(track, target, samples);
    let log_w: Vec<f64> = (0..samples.count)
        .map(|n| (n * t_max..(n + 1) * t_max).fold(0.0, |acc, i| acc + (log_p[i] - samples.log_probs[i])))
        .collect();
    let top = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    log_w.iter().map(|l| (l - top).exp()).collect()
}

/// Kish's effective sample size (Σw)²/Σw².
pub fn effective_sample_size(weights: &[f64]) -> f64 {
    let (s, s2) = weights.iter().fold((0.0, 0.0), |(s, s2), w| (s + w, s2 + w * w));
    s * s / s2
}
