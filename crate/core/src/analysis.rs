//! The full exact analysis of a scenario at one λ: the base's harm martingale and gradients, and the
//! Gibbs optimum's per-position KL (on-policy, teacher-forced, predicted) and prefilling success.
//!
//! It computes what `exact::conditional_harm`, `exact::harm_profile`, `gibbs::GibbsPolicy`,
//! `exact::kl_on_policy` and `exact::on_harmful_prefixes` would give for the base and the Gibbs
//! policy, but with the passes fused (see `fused.rs`): one backward pass and one forward pass.

use crate::error::{Error, Result};
use crate::exact::HarmProfile;
use crate::model::Model;

/// Default relative tolerance of the harm horizon: I_t ≤ 1e-12·Var(H) counts as zero.
pub const DEFAULT_HORIZON_TOLERANCE: f64 = 1e-12;

#[derive(Debug, Clone)]
pub struct Analysis {
    pub lambda: f64,
    /// Harm profile of the base policy (gradients are taken at the base).
    pub base: HarmProfile,
    /// E[H] under the Gibbs optimum at λ.
    pub aligned_expected_harm: f64,
    /// D_t: KL of the Gibbs policy to the base on its own prefixes.
    pub kl_on_policy: Vec<f64>,
    /// KL of the Gibbs policy to the base on harmful prefixes of the base (NaN if E_base[H] = 0).
    pub kl_teacher_forced: Vec<f64>,
    /// (λ²/2)·I_t with I_t under the base.
    pub kl_predicted: Vec<f64>,
    /// Prefilling-attack success for k = 0..T against the base and the Gibbs policy.
    pub asr_base: Vec<f64>,
    pub asr_aligned: Vec<f64>,
}

pub fn check_tolerance(tolerance: f64) -> Result<()> {
    if tolerance.is_finite() && tolerance >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("tolerance must be a finite number ≥ 0, got {tolerance}")))
    }
}

pub fn analyze(model: &Model, lambda: f64, tolerance: f64) -> Result<Analysis> {
    check_tolerance(tolerance)?;
    crate::gibbs::check_lambda(lambda)?;
    let fused = crate::fused::analyze(model, lambda, tolerance);
    Ok(Analysis {
        lambda,
        kl_predicted: fused.profile.harm_information.iter().map(|i| lambda * lambda / 2.0 * i).collect(),
        base: fused.profile,
        aligned_expected_harm: fused.aligned_expected_harm,
        kl_on_policy: fused.kl_on_policy,
        kl_teacher_forced: fused.kl_teacher_forced,
        asr_base: fused.asr_base,
        asr_aligned: fused.asr_aligned,
    })
}
