//! Alignment objectives: exact gradients against finite differences, and their optima.

mod common;
use common::*;

use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::exact::conditional_harm;
use harm_horizon_core::model::Model;
use harm_horizon_core::objective::{base_harmful_prefixes, evaluate, geometric_weights, Objective, ObjectiveKind};
use harm_horizon_core::policy::{BasePolicy, Policy, TabularPolicy};

fn objective(m: &Model, kind: ObjectiveKind) -> Objective {
    let mut recovery = vec![false; m.vocab()];
    recovery[1] = true;
    Objective { kind, lambda: 2.0, mu: 3.0, weights: geometric_weights(0.8, m.length()), recovery, mix: 0.3 }
}

#[test]
fn objective_gradients_match_finite_differences() {
    let fixtures = [model(random_spec(7, 3, 1, 4, 5, true, false)), model(random_spec(8, 3, 2, 4, 4, false, true))];
    for m in &fixtures {
        let h_base = conditional_harm(m, &BasePolicy { model: m });
        let q = base_harmful_prefixes(m, &h_base).unwrap();
        let logits = random_logits(m, 4);
        for kind in [ObjectiveKind::Standard, ObjectiveKind::Deep, ObjectiveKind::DeepAnchored, ObjectiveKind::Augment] {
            let o = objective(m, kind);
            let at = |l: &[f64]| evaluate(m, &TabularPolicy::new(m, l).unwrap(), &o, &q, false).unwrap().total;
            let value = evaluate(m, &TabularPolicy::new(m, &logits).unwrap(), &o, &q, true).unwrap();
            let g = value.gradient.unwrap();
            let step = 1e-6;
            let mut checked = 0;
            for i in (0..logits.len()).step_by(2) {
                let mut plus = logits.clone();
                plus[i] += step;
                let mut minus = logits.clone();
                minus[i] -= step;
                let fd = (at(&plus) - at(&minus)) / (2.0 * step);
                assert_close(g[i], fd, 1e-5, 1e-8, &format!("{kind:?} ∂J/∂θ_{i}"));
                checked += (g[i].abs() > 1e-6) as usize;
            }
            assert!(checked > 10, "{kind:?}: {checked}");
            // The parts add up.
            let parts = match kind {
                ObjectiveKind::Standard => o.lambda * value.expected_harm + value.kl,
                ObjectiveKind::Deep => o.lambda * value.expected_harm + value.kl + value.penalty,
                ObjectiveKind::DeepAnchored => o.lambda * value.expected_harm + value.kl + value.penalty + value.anchor_kl,
                ObjectiveKind::Augment => (1.0 - o.mix) * value.sft_loss + o.mix * value.kl,
            };
            assert_close(value.total, parts, 1e-12, 1e-14, "parts");
        }
    }
}

/// The Gibbs policy is the standard objective's stationary point and its value is −log E[e^{−λH}].
#[test]
fn the_gibbs_policy_is_stationary_for_the_standard_objective() {
    for m in [model(refusal_spec()), model(horizon_spec())] {
        let h_base = conditional_harm(&m, &BasePolicy { model: &m });
        let q = base_harmful_prefixes(&m, &h_base).unwrap();
        let o = objective(&m, ObjectiveKind::Standard);
        let gibbs = GibbsPolicy::new(&m, o.lambda).unwrap();
        let value = evaluate(&m, &gibbs, &o, &q, true).unwrap();
        assert_close(value.total, gibbs.values[0], 1e-10, 1e-12, "J(P*)");
        let max = value.gradient.unwrap().iter().fold(0.0f64, |a, g| a.max(g.abs()));
        assert!(max < 1e-10, "max |∂J/∂θ| at the Gibbs policy: {max}");
        let base = evaluate(&m, &BasePolicy { model: &m }, &o, &q, true).unwrap();
        assert!(base.gradient.unwrap().iter().fold(0.0f64, |a, g| a.max(g.abs())) > 1e-3);
        let _: &dyn Policy = &gibbs;
    }
}

/// The per-state fixed point reaches the optimum: the Gibbs policy for the standard objective, and
/// a point where the exact gradient vanishes (≤ 1e-8 of the gradient at the base) for deep-anchored.
#[test]
fn the_fixed_point_reaches_the_optimum() {
    use harm_horizon_core::exact::kl_between;
    use harm_horizon_core::fixed_point::solve;
    for m in [model(refusal_spec()), model(horizon_spec()), model(random_spec(9, 3, 1, 6, 5, true, false))] {
        let h_base = conditional_harm(&m, &BasePolicy { model: &m });
        let q = base_harmful_prefixes(&m, &h_base).unwrap();
        for kind in [ObjectiveKind::Standard, ObjectiveKind::DeepAnchored] {
            let o = objective(&m, kind);
            let solved = solve(&m, &o, &q, 500, 1e-14).unwrap();
            let policy = TabularPolicy::new(&m, &solved.logits).unwrap();
            let at_optimum = evaluate(&m, &policy, &o, &q, true).unwrap();
            let at_base = evaluate(&m, &BasePolicy { model: &m }, &o, &q, true).unwrap();
            let norm = |g: &[f64]| g.iter().map(|x| x * x).sum::<f64>().sqrt();
            let ratio = norm(at_optimum.gradient.as_ref().unwrap()) / norm(at_base.gradient.as_ref().unwrap());
            assert!(ratio <= 1e-8, "{kind:?}: gradient ratio {ratio} after {} iterations (change {})", solved.iterations, solved.change);
            assert!(at_optimum.total <= at_base.total);
            if kind == ObjectiveKind::Standard {
                let gibbs = GibbsPolicy::new(&m, o.lambda).unwrap();
                assert!(kl_between(&m, &policy, &gibbs).iter().sum::<f64>() <= 1e-12);
            }
        }
    }
}

#[test]
fn the_fixed_point_refuses_objectives_without_one() {
    let m = model(horizon_spec());
    let q = base_harmful_prefixes(&m, &conditional_harm(&m, &BasePolicy { model: &m })).unwrap();
    for kind in [ObjectiveKind::Deep, ObjectiveKind::Augment] {
        let err = harm_horizon_core::fixed_point::solve(&m, &objective(&m, kind), &q, 10, 1e-12).err().unwrap();
        assert_eq!(err.code(), "HH_INVALID_ARGUMENT");
    }
}
