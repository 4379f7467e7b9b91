//! Attacks: the fine-tuning losses' exact gradients, and rank-assisted prefilling.

mod common;
use common::*;

use harm_horizon_core::attack::{default_betas, fine_tune_loss, rank_assisted_logits, FineTune};
use harm_horizon_core::exact::{conditional_harm, on_harmful_prefixes};
use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::objective::base_harmful_prefixes;
use harm_horizon_core::policy::{BasePolicy, TabularPolicy};

#[test]
fn fine_tuning_gradients_match_finite_differences() {
    let m = model(random_spec(17, 3, 1, 5, 5, true, false));
    let h = conditional_harm(&m, &BasePolicy { model: &m });
    let q = base_harmful_prefixes(&m, &h).unwrap();
    let logits = random_logits(&m, 2);
    let aligned = GibbsPolicy::new(&m, 3.0).unwrap();
    let beta = default_betas(m.length());
    for objective in [FineTune::Sft, FineTune::Constrained { aligned: &aligned, beta: &beta }] {
        let at = |l: &[f64]| fine_tune_loss(&m, &TabularPolicy::new(&m, l).unwrap(), &h, &q, &objective).unwrap().loss;
        let value = fine_tune_loss(&m, &TabularPolicy::new(&m, &logits).unwrap(), &h, &q, &objective).unwrap();
        let mut checked = 0;
        for i in (0..logits.len()).step_by(3) {
            let (mut plus, mut minus) = (logits.clone(), logits.clone());
            plus[i] += 1e-6;
            minus[i] -= 1e-6;
            let fd = (at(&plus) - at(&minus)) / 2e-6;
            assert_close(value.gradient[i], fd, 1e-5, 1e-9, &format!("∂loss/∂θ_{i}"));
            checked += (value.gradient[i].abs() > 1e-6) as usize;
        }
        assert!(checked > 10);
        assert_close(value.loss, value.loss_per_position.iter().sum(), 1e-12, 0.0, "loss parts");
    }
}

#[test]
fn rank_assisted_prefilling_is_at_least_as_strong_as_sampling() {
    let m = model(refusal_spec());
    let h = conditional_harm(&m, &BasePolicy { model: &m });
    let aligned = GibbsPolicy::new(&m, 5.0).unwrap();
    let h_aligned = conditional_harm(&m, &aligned);
    let (_, asr) = on_harmful_prefixes(&m, &h, &aligned, &h_aligned);
    let rap_logits = rank_assisted_logits(&m, &aligned, &h, 20).unwrap();
    let rap = TabularPolicy::new(&m, &rap_logits).unwrap();
    let h_rap = conditional_harm(&m, &rap);
    let (_, rap_asr) = on_harmful_prefixes(&m, &h, &rap, &h_rap);
    for k in 0..=m.length() {
        assert!(rap_asr[k] >= asr[k] - 1e-12, "k={k}: RAP {} < prefill {}", rap_asr[k], asr[k]);
        assert!((0.0..=1.0 + 1e-12).contains(&rap_asr[k]));
    }
    // With r capped at V = 5 every token is a candidate: the attacker steers to harm whenever the
    // prefix still allows it, so after one harmful token it always succeeds.
    assert!(rap_asr[1] > 0.999, "{}", rap_asr[1]);
    // With r = 1 the attacker follows the policy's top token.
    let greedy = rank_assisted_logits(&m, &aligned, &h, 1).unwrap();
    assert!(greedy.iter().filter(|l| **l == 0.0).count() >= m.length());
}
