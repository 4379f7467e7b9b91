//! Alignment objectives: exact gradients against finite differences, and their optima.

mod common;
use common::*;

use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::exact::conditional_harm;
use harm_horizon_core::model::Model;
use harm_horizon_core::objective::{base_harmful_prefixes, evaluate, geometric_weights, prefixes_from_responses, Anchor, HarmfulPrefixes, Objective, ObjectiveKind, MAX_AUGMENT_PREFIX};
use harm_horizon_core::walk::NO_TOKEN;
use harm_horizon_core::policy::{BasePolicy, Policy, TabularPolicy};

fn objective(m: &Model, kind: ObjectiveKind) -> Objective {
    let mut recovery = vec![false; m.vocab()];
    recovery[1] = true;
    Objective { kind, lambda: 2.0, mu: 3.0, weights: geometric_weights(0.8, m.length()), recovery, mix: 0.3, anchor: Anchor::Init }
}

/// Non-binary harm, an end token that can come early, order-2 contexts.
fn own_scenario() -> Model {
    model(random_spec(21, 4, 2, 5, 5, true, true))
}

#[test]
fn objective_gradients_match_finite_differences() {
    let fixtures = [model(random_spec(7, 3, 1, 4, 5, true, false)), model(random_spec(8, 3, 2, 4, 4, false, true)), own_scenario()];
    for m in &fixtures {
        let h_base = conditional_harm(m, &BasePolicy { model: m });
        let q = base_harmful_prefixes(m, &h_base).unwrap();
        let logits = random_logits(m, 4);
        let init_logits = random_logits(m, 5);
        let init = TabularPolicy::new(m, &init_logits).unwrap();
        let cases = [(ObjectiveKind::Standard, Anchor::Init), (ObjectiveKind::Deep, Anchor::Init), (ObjectiveKind::DeepAnchored, Anchor::Init), (ObjectiveKind::Augment, Anchor::Init), (ObjectiveKind::Augment, Anchor::Base)];
        for (kind, anchor) in cases {
            let o = Objective { anchor, ..objective(m, kind) };
            let at = |l: &[f64]| evaluate(m, &TabularPolicy::new(m, l).unwrap(), &o, &q, Some(&init), false).unwrap().total;
            let value = evaluate(m, &TabularPolicy::new(m, &logits).unwrap(), &o, &q, Some(&init), true).unwrap();
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
                ObjectiveKind::Augment => o.mix * value.sft_loss + (1.0 - o.mix) * value.anchor_kl,
            };
            assert_close(value.total, parts, 1e-12, 1e-14, "parts");
            if kind == ObjectiveKind::Augment {
                // The anchor is KL(P_θ ‖ P_init) by default, KL(P_θ ‖ P_base) for the base-anchored variant.
                let reference: &dyn Policy = if anchor == Anchor::Init { &init } else { &BasePolicy { model: m } };
                let expected: f64 = harm_horizon_core::exact::kl_between(m, &TabularPolicy::new(m, &logits).unwrap(), reference).iter().sum();
                assert_close(value.anchor_kl, expected, 1e-10, 1e-13, "anchor KL");
            }
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
        let value = evaluate(&m, &gibbs, &o, &q, None, true).unwrap();
        assert_close(value.total, gibbs.values[0], 1e-10, 1e-12, "J(P*)");
        let max = value.gradient.unwrap().iter().fold(0.0f64, |a, g| a.max(g.abs()));
        assert!(max < 1e-10, "max |∂J/∂θ| at the Gibbs policy: {max}");
        let base = evaluate(&m, &BasePolicy { model: &m }, &o, &q, None, true).unwrap();
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
            let solved = solve(&m, &o, &q.states, 500, 1e-14).unwrap();
            let policy = TabularPolicy::new(&m, &solved.logits).unwrap();
            let at_optimum = evaluate(&m, &policy, &o, &q, None, true).unwrap();
            let at_base = evaluate(&m, &BasePolicy { model: &m }, &o, &q, None, true).unwrap();
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
        let err = harm_horizon_core::fixed_point::solve(&m, &objective(&m, kind), &q.states, 10, 1e-12).err().unwrap();
        assert_eq!(err.code(), "HH_INVALID_ARGUMENT");
    }
}

/// Every complete response of the base from state 0: (probability, tokens, state after each token).
fn responses(m: &Model) -> Vec<(f64, Vec<u32>, Vec<usize>)> {
    fn walk(m: &Model, s: usize, p: f64, tokens: &mut Vec<u32>, states: &mut Vec<usize>, out: &mut Vec<(f64, Vec<u32>, Vec<usize>)>) {
        if !m.live[s] || tokens.len() == m.length() {
            out.push((p, tokens.clone(), states.clone()));
            return;
        }
        for (a, &pa) in m.base_row(s).iter().enumerate().filter(|(_, &pa)| pa > 0.0) {
            let next = m.next_row(s)[a] as usize;
            tokens.push(a as u32);
            states.push(next);
            walk(m, next, p * pa, tokens, states, out);
            tokens.pop();
            states.pop();
        }
    }
    let mut out = vec![];
    walk(m, 0, 1.0, &mut vec![], &mut vec![0], &mut out);
    out
}

/// Qi et al.'s prefix-length law by brute force over weighted responses: P(k = 0) = 1/2, else k
/// uniform on 1..min(100, L), L = tokens before the end token (T − 1 for a response still running at T).
fn law_by_enumeration(m: &Model, weighted: &[(f64, &[u32], &[usize])]) -> Vec<f64> {
    let n = m.num_states();
    let mut w = vec![0.0; m.length() * n];
    for &(weight, tokens, states) in weighted {
        let ended = tokens.last().map(|&a| Some(a as usize) == m.spec.end_token).unwrap_or(false);
        let l = if ended { tokens.len() - 1 } else { tokens.len().min(m.length() - 1) };
        let top = l.min(MAX_AUGMENT_PREFIX);
        w[0] += weight * if top == 0 { 1.0 } else { 0.5 };
        for k in 1..=top {
            w[k * n + states[k]] += weight * 0.5 / top as f64;
        }
    }
    w
}

#[test]
fn the_augmentation_law_matches_enumeration_of_harmful_responses() {
    for m in [own_scenario(), model(random_spec(8, 3, 2, 4, 4, false, true)), model(refusal_spec_short())] {
        let h_base = conditional_harm(&m, &BasePolicy { model: &m });
        let all = responses(&m);
        let mass: f64 = all.iter().map(|(p, _, s)| p * m.harm(*s.last().unwrap())).sum();
        let weighted: Vec<(f64, &[u32], &[usize])> = all.iter().map(|(p, t, s)| (p * m.harm(*s.last().unwrap()) / mass, &t[..], &s[..])).collect();
        let expected = law_by_enumeration(&m, &weighted);
        let q = base_harmful_prefixes(&m, &h_base).unwrap();
        for (i, (a, b)) in q.augment.iter().zip(&expected).enumerate() {
            assert_close(*a, *b, 1e-10, 1e-14, &format!("augmentation weight {i}"));
        }
        // The same law from a handful of responses given as tokens, equally weighted.
        let some: Vec<&(f64, Vec<u32>, Vec<usize>)> = all.iter().step_by(7).collect();
        let mut tokens = vec![NO_TOKEN; some.len() * m.length()];
        for (i, (_, t, _)) in some.iter().enumerate() {
            tokens[i * m.length()..i * m.length() + t.len()].copy_from_slice(t);
        }
        let equal: Vec<(f64, &[u32], &[usize])> = some.iter().map(|(_, t, s)| (1.0 / some.len() as f64, &t[..], &s[..])).collect();
        let given = prefixes_from_responses(&m, &tokens, some.len()).unwrap();
        for (i, (a, b)) in given.augment.iter().zip(&law_by_enumeration(&m, &equal)).enumerate() {
            assert_close(*a, *b, 1e-12, 1e-15, &format!("augmentation weight {i} from responses"));
        }
    }
}

/// refusal cut to T = 6, small enough to enumerate.
fn refusal_spec_short() -> harm_horizon_core::model::ScenarioSpec {
    harm_horizon_core::model::ScenarioSpec { length: 6, ..refusal_spec() }
}

fn weight_beyond_zero(q: &HarmfulPrefixes, n: usize) -> f64 {
    q.augment[n..].iter().sum()
}

/// P(k ≥ 1) is exactly 1/2 (the old law left out k = L and put 0.5·(T − 1)/T there), and no prefix
/// is longer than 100 tokens.
#[test]
fn the_augmentation_puts_half_its_weight_on_harmful_prefixes() {
    for m in [own_scenario(), model(refusal_spec()), model(horizon_spec()), model(random_spec(5, 2, 1, 130, 3, false, true))] {
        let n = m.num_states();
        let q = base_harmful_prefixes(&m, &conditional_harm(&m, &BasePolicy { model: &m })).unwrap();
        assert_close(q.augment[..n].iter().sum(), 0.5, 1e-12, 0.0, "P(k = 0)");
        assert_close(weight_beyond_zero(&q, n), 0.5, 1e-12, 0.0, "P(k ≥ 1)");
        if m.length() > MAX_AUGMENT_PREFIX + 1 {
            assert!(q.augment[(MAX_AUGMENT_PREFIX + 1) * n..].iter().all(|&w| w == 0.0), "no prefix beyond 100 tokens");
        }
        // Behaviourally: a policy with recovery probability c everywhere has recovery loss −log c.
        let c: f64 = 0.3;
        let v = m.vocab();
        let mut logits = vec![0.0; m.length() * n * v];
        for row in logits.chunks_exact_mut(v) {
            row.fill(((1.0 - c) / (v - 1) as f64).ln());
            row[1] = c.ln();
        }
        let o = Objective { anchor: Anchor::Base, ..objective(&m, ObjectiveKind::Augment) };
        let value = evaluate(&m, &TabularPolicy::new(&m, &logits).unwrap(), &o, &q, None, false).unwrap();
        assert_close(value.sft_loss, -c.ln(), 1e-12, 0.0, "recovery loss at constant π(R)");
    }
}

/// Anchored at P_init, the augment objective starts at its anchor: no KL there, and its gradient is
/// α times the recovery term's alone.
#[test]
fn the_augment_anchor_vanishes_at_the_initial_policy() {
    let m = own_scenario();
    let q = base_harmful_prefixes(&m, &conditional_harm(&m, &BasePolicy { model: &m })).unwrap();
    let gibbs = GibbsPolicy::new(&m, 2.0).unwrap();
    let o = objective(&m, ObjectiveKind::Augment);
    let value = evaluate(&m, &gibbs, &o, &q, Some(&gibbs), true).unwrap();
    assert!(value.anchor_kl.abs() < 1e-12, "{}", value.anchor_kl);
    assert_close(value.total, o.mix * value.sft_loss, 1e-12, 1e-15, "J at P_init");
    let only_recovery = evaluate(&m, &gibbs, &Objective { mix: 1.0, ..o.clone() }, &q, Some(&gibbs), true).unwrap();
    for (a, b) in value.gradient.unwrap().iter().zip(only_recovery.gradient.unwrap()) {
        assert_close(*a, o.mix * b, 1e-9, 1e-12, "gradient at P_init");
    }
    let err = evaluate(&m, &gibbs, &o, &q, None, false).err().unwrap();
    assert_eq!(err.code(), "HH_INVALID_ARGUMENT");
}
