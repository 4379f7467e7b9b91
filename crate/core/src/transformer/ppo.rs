//! PPO's clipped-surrogate gradient for a transformer over sampled responses.

use super::Transformer;
use crate::sampling::Samples;

impl Transformer {
    /// Gradient of the clipped surrogate (1/N) Σ_{n,t} min(ρ·A, clip(ρ, 1 ± ε)·A), with
    /// ρ = π_θ(y_{n,t} | …) / exp(old_log_probs[n,t]) and A = advantages[n,t] (N × T): ρ·A·∇log π
    /// where the clip is inactive, 0 where it binds. One batched forward and backward per batch.
    pub fn ppo_gradient(&self, params: &[f64], samples: &Samples, old_log_probs: &[f64], advantages: &[f64], clip: f64) -> Vec<f64> {
        let t = samples.length;
        let coef = |n: usize, i: usize, current: f64| {
            let at = n * t + i;
            let (ratio, gain) = ((current - old_log_probs[at]).exp(), advantages[at]);
            let clipped = (gain > 0.0 && ratio > 1.0 + clip) || (gain < 0.0 && ratio < 1.0 - clip);
            if clipped {
                0.0
            } else {
                ratio * gain
            }
        };
        self.score_gradient(params, samples, &coef)
    }
}
