//! The full exact analysis of a scenario at one λ: the base's harm martingale and gradients, and the
//! Gibbs optimum's per-position KL (on-policy, teacher-forced, predicted) and prefilling success.

use crate::error::{Error, Result};
use crate::exact::{conditional_harm, harm_profile, kl_on_policy, on_harmful_prefixes, HarmProfile};
use crate::gibbs::GibbsPolicy;
use crate::model::Model;
use crate::policy::BasePolicy;

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
    let base = BasePolicy { model };
    let gibbs = GibbsPolicy::new(model, lambda)?;
    let h_base = conditional_harm(model, &base);
    let profile = harm_profile(model, &base, &h_base, tolerance, None);
    let h_gibbs = conditional_harm(model, &gibbs);
    let kl_on = kl_on_policy(model, &gibbs);
    let (kl_teacher_forced, asr_aligned) = on_harmful_prefixes(model, &h_base, &gibbs, &h_gibbs);
    let (_, asr_base) = on_harmful_prefixes(model, &h_base, &base, &h_base);
    Ok(Analysis {
        lambda,
        kl_predicted: profile.harm_information.iter().map(|i| lambda * lambda / 2.0 * i).collect(),
        base: profile,
        aligned_expected_harm: h_gibbs[0],
        kl_on_policy: kl_on,
        kl_teacher_forced,
        asr_base,
        asr_aligned,
    })
}
