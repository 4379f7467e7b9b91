//! The information proposal (information.rs): its components are exact, its weights are p/q of the
//! defensive mixture (bounded by K, mean 1), and its estimates land within 4 SE of the exact values at
//! the late positions of `refusal`, where plain sampling does not see the events.

mod common;
use common::*;

use harm_horizon_core::analysis::DEFAULT_HORIZON_TOLERANCE;
use harm_horizon_core::estimate::Coefficient;
use harm_horizon_core::exact::{conditional_harm, harm_profile};
use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::information::{information_by_position, run_information, InformationComponent};
use harm_horizon_core::model::Model;
use harm_horizon_core::monte_carlo::RunRequest;
use harm_horizon_core::policy::{Policy, TabularPolicy};
use harm_horizon_core::sampling::ExactStep;
use harm_horizon_core::walk::Track;

fn within_4_se(estimate: f64, se: f64, exact: f64, what: &str) {
    let rounding = 1e-10 * exact.abs().max(1e-12);
    assert!((estimate - exact).abs() <= 4.0 * se + rounding, "{what}: {estimate} ± {se} vs exact {exact} ({:.1} SE)", (estimate - exact).abs() / se);
}

fn request(samples: usize, seed: u64, gradient: Option<Coefficient>, directions: Option<&[f64]>) -> RunRequest<'_> {
    RunRequest { samples, seed, harm: None, gradient, directions, teacher_forced: false, proposal: None }
}

/// The base as a tabular policy (log p logits), so that its gradients can be estimated.
fn base_logits(m: &Model) -> Vec<f64> {
    let (n, v) = (m.num_states(), m.vocab());
    (0..m.length() * n * v).map(|i| m.base_row((i / v) % n)[i % v].max(1e-300).ln()).collect()
}

#[test]
fn components_give_the_exact_information_and_normalised_rows() {
    for (name, m) in [("refusal", model(refusal_spec())), ("graded random", model(random_spec(7, 4, 2, 7, 6, true, true)))] {
        let gibbs = GibbsPolicy::new(&m, 2.0).unwrap();
        let h = conditional_harm(&m, &gibbs);
        let profile = harm_profile(&m, &gibbs, &h, DEFAULT_HORIZON_TOLERANCE, None);
        let info = information_by_position(&m, &gibbs, &h);
        for t in 0..m.length() {
            assert_close(info[t], profile.harm_information[t], 1e-9, 1e-300, &format!("{name} I_{}", t + 1));
        }
        // Rows of q_t are distributions (Σ_a p·V(s·a) = V(s); the policy's row where V = 0).
        let t = m.length() / 2;
        let q = InformationComponent::new(&m, &gibbs, &h, t);
        let mut row = vec![0.0; m.vocab()];
        for pos in 1..=m.length() {
            for s in (0..m.num_states()).filter(|&s| m.live[s]) {
                q.probs(pos, s, &mut row);
                let sum: f64 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-9 && row.iter().all(|p| *p >= 0.0), "{name}: row of q_{t} at position {pos}, state {s} sums to {sum}");
            }
        }
    }
}

#[test]
fn refusal_late_information_and_gradients_within_4_se() {
    let m = model(refusal_spec());
    let track = Track::new(&m.spec, Some(&m));
    let logits = base_logits(&m);
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let h = conditional_harm(&m, &tabular);
    let mut exact_gradient = vec![0.0; logits.len()];
    let profile = harm_profile(&m, &tabular, &h, DEFAULT_HORIZON_TOLERANCE, Some(&mut exact_gradient));
    let block = m.num_states() * m.vocab();
    let step = ExactStep(&tabular);
    let (report, summary) = run_information(&track, &step, &tabular, Some(&step), &h, &request(40_000, 3, Some(Coefficient::Innovation), Some(&exact_gradient))).unwrap();
    let info = report.harm_information.unwrap();
    let g = report.gradient.unwrap();
    for t in 9..16 {
        within_4_se(info.mean[t], info.se[t], profile.harm_information[t], &format!("I_{}", t + 1));
        assert!(info.support[t] >= 30, "I_{} support {}", t + 1, info.support[t]);
        // ⟨Ĝ_t, G_t⟩ against ||G_t||².
        let g_t = &exact_gradient[t * block..(t + 1) * block];
        let truth: f64 = g_t.iter().map(|x| x * x).sum();
        within_4_se(g.projection.mean[t], g.projection.se[t], truth, &format!("⟨Ĝ_{0}, G_{0}⟩", t + 1));
        assert!(g.projection.support[t] >= 30);
    }
    within_4_se(report.expected_harm.mean, report.expected_harm.se, profile.expected_harm, "E[H]");
    within_4_se(summary.mean_weight.mean, summary.mean_weight.se, 1.0, "mean w");
    assert_eq!(summary.weight_bound, summary.positions.len() as f64 + 1.0);
    assert!(summary.max_weight <= summary.weight_bound && summary.max_weight > 1.0);
    assert_eq!(summary.counts.iter().sum::<u32>(), 40_000);
}

#[test]
fn the_aligned_policy_too() {
    let m = model(refusal_spec());
    let track = Track::new(&m.spec, Some(&m));
    let gibbs = GibbsPolicy::new(&m, 5.0).unwrap();
    let h = conditional_harm(&m, &gibbs);
    let profile = harm_profile(&m, &gibbs, &h, DEFAULT_HORIZON_TOLERANCE, None);
    let (report, summary) = run_information(&track, &ExactStep(&gibbs), &gibbs, None, &h, &request(40_000, 4, None, None)).unwrap();
    let info = report.harm_information.unwrap();
    for t in 0..16 {
        within_4_se(info.mean[t], info.se[t], profile.harm_information[t], &format!("aligned I_{}", t + 1));
    }
    within_4_se(report.expected_harm.mean, report.expected_harm.se, profile.expected_harm, "aligned E[H]");
    within_4_se(summary.mean_weight.mean, summary.mean_weight.se, 1.0, "aligned mean w");
    // Gradients need a policy with parameters.
    assert!(run_information(&track, &ExactStep(&gibbs), &gibbs, None, &h, &request(10, 4, Some(Coefficient::Reinforce), None)).is_err());
}

#[test]
fn no_exact_model_is_an_error() {
    let m = model(refusal_spec());
    let gibbs = GibbsPolicy::new(&m, 5.0).unwrap();
    let h = conditional_harm(&m, &gibbs);
    let track = Track::new(&m.spec, None);
    let err = run_information(&track, &ExactStep(&gibbs), &gibbs, None, &h, &request(10, 4, None, None)).err().expect("refused");
    assert!(err.to_string().contains("exact engine"), "{err}");
}
