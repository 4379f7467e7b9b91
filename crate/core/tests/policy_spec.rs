//! PolicySpec: which policy a computation runs, seen by the exact engine (with the chain rule
//! through a network's tabulated logits) and its checks; the objective's defaults.

mod common;
use common::*;

use std::borrow::Cow;

use harm_horizon_core::analysis::DEFAULT_HORIZON_TOLERANCE;
use harm_horizon_core::exact::{conditional_harm, harm_profile};
use harm_horizon_core::mlp::{Activation, MlpConfig};
use harm_horizon_core::model::Model;
use harm_horizon_core::objective::{Anchor, Objective, ObjectiveKind, ObjectiveOptions, DEFAULT_MIX, DEFAULT_MU};
use harm_horizon_core::policy::Policy;
use harm_horizon_core::policy_spec::{base_logits, PolicySpec};
use harm_horizon_core::Error;

/// E[H] under a policy and its exact gradient over the policy's logits.
fn harm_and_logit_gradient(model: &Model, policy: &dyn Policy) -> harm_horizon_core::Result<(f64, Option<Vec<f64>>)> {
    let h = conditional_harm(model, policy);
    let mut grad = vec![0.0; model.length() * model.num_states() * model.vocab()];
    harm_profile(model, policy, &h, DEFAULT_HORIZON_TOLERANCE, Some(&mut grad));
    Ok((h[0], Some(grad)))
}

fn expected_harm(model: &Model, spec: &PolicySpec) -> f64 {
    spec.with(model, |p| conditional_harm(model, p)[0]).unwrap()
}

/// An order-2 scenario with an end token (decisions before absorption) and graded harm.
fn order2_model() -> Model {
    let mut spec = random_spec(41, 3, 2, 5, 4, true, true);
    spec.order = 2;
    model(spec)
}

#[test]
fn an_mlp_spec_pulls_the_exact_gradient_back_to_its_parameters() {
    let m = order2_model();
    let config = MlpConfig { vocab: 3, order: 2, length: 5, hidden: vec![6], activation: Activation::Tanh };
    // Generic parameters: away from zero biases.
    let params: Vec<f64> = harm_horizon_core::mlp::Mlp::new(config.clone())
        .unwrap()
        .init_params(3)
        .iter()
        .enumerate()
        .map(|(i, p)| p + 0.05 * ((i * 5 % 11) as f64 - 5.0))
        .collect();
    let at = |p: &[f64]| PolicySpec::mlp(config.clone(), Cow::Owned(p.to_vec())).unwrap();
    let (value, grad) = at(&params).with_gradient(&m, |p| harm_and_logit_gradient(&m, p)).unwrap();
    let grad = grad.unwrap();
    assert_eq!(grad.len(), params.len(), "the gradient is over the parameters, not the logits");
    assert_close(value, expected_harm(&m, &at(&params)), 1e-14, 1e-15, "E[H]");
    let step = 1e-5;
    let mut checked = 0;
    for i in (0..params.len()).step_by(2) {
        let (mut up, mut down) = (params.clone(), params.clone());
        up[i] += step;
        down[i] -= step;
        let fd = (expected_harm(&m, &at(&up)) - expected_harm(&m, &at(&down))) / (2.0 * step);
        if grad[i].abs() > 1e-6 {
            assert_close(grad[i], fd, 1e-5, 1e-9, &format!("∂E[H]/∂θ_{i}"));
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} parameters checked");
}

#[test]
fn a_tabular_spec_keeps_the_gradient_over_its_logits() {
    let m = order2_model();
    let logits = random_logits(&m, 5);
    let (_, grad) = PolicySpec::Tabular(Cow::Borrowed(&logits)).with_gradient(&m, |p| harm_and_logit_gradient(&m, p)).unwrap();
    let grad = grad.unwrap();
    assert_eq!(grad.len(), logits.len());
    let step = 1e-6;
    let mut checked = 0;
    for i in (0..logits.len()).step_by(7) {
        let (mut up, mut down) = (logits.clone(), logits.clone());
        up[i] += step;
        down[i] -= step;
        let fd = (expected_harm(&m, &PolicySpec::Tabular(Cow::Owned(up))) - expected_harm(&m, &PolicySpec::Tabular(Cow::Owned(down)))) / (2.0 * step);
        assert_close(grad[i], fd, 1e-4, 1e-9, &format!("∂E[H]/∂logit_{i}"));
        checked += usize::from(grad[i].abs() > 1e-6);
    }
    assert!(checked > 5, "only {checked} nonzero entries checked");
}

#[test]
fn the_base_as_tabular_logits_is_the_base() {
    let m = order2_model();
    let logits = base_logits(&m).unwrap();
    let base = expected_harm(&m, &PolicySpec::Base);
    assert!(base > 0.0 && base < 1.0, "a nontrivial fixture, E[H] = {base}");
    assert_close(expected_harm(&m, &PolicySpec::Tabular(Cow::Owned(logits))), base, 1e-12, 1e-15, "E[H] of log p as logits");
    // The Gibbs policy at λ = 0 is the base too.
    assert_close(expected_harm(&m, &PolicySpec::Gibbs(0.0)), base, 1e-12, 1e-15, "E[H] of the Gibbs policy at λ = 0");
}

#[test]
fn network_specs_refuse_parameters_of_the_wrong_size() {
    let config = MlpConfig { vocab: 3, order: 2, length: 5, hidden: vec![4], activation: Activation::Relu };
    let size = harm_horizon_core::mlp::Mlp::new(config.clone()).unwrap().num_params();
    assert!(PolicySpec::mlp(config.clone(), Cow::Owned(vec![0.0; size])).is_ok());
    assert!(matches!(PolicySpec::mlp(config, Cow::Owned(vec![0.0; size + 1])), Err(Error::InvalidArgument(_))));
}

#[test]
fn an_objective_fills_its_defaults_and_checks_its_settings() {
    let objective = Objective::new(ObjectiveKind::Augment, 2.0, ObjectiveOptions { gamma: Some(0.5), recovery: vec![0, 2], ..Default::default() }, 3, 4).unwrap();
    assert_eq!(objective.weights, vec![1.0, 0.5, 0.25, 0.125], "w_t = γ^(t−1)");
    assert_eq!(objective.recovery, vec![true, false, true]);
    assert_eq!((objective.mu, objective.mix, objective.anchor), (DEFAULT_MU, DEFAULT_MIX, Anchor::Init));
    let given = Objective::new(ObjectiveKind::Deep, 1.0, ObjectiveOptions { mu: Some(3.0), weights: Some(vec![2.0; 4]), mix: Some(0.7), anchor: Some(Anchor::Base), ..Default::default() }, 3, 4).unwrap();
    assert_eq!((given.mu, given.mix, given.anchor, given.weights), (3.0, 0.7, Anchor::Base, vec![2.0; 4]));
    for bad in [ObjectiveOptions { gamma: Some(0.0), ..Default::default() }, ObjectiveOptions { gamma: Some(1.5), ..Default::default() }, ObjectiveOptions { recovery: vec![3], ..Default::default() }] {
        assert!(matches!(Objective::new(ObjectiveKind::Standard, 1.0, bad, 3, 4), Err(Error::InvalidArgument(_))));
    }
}
