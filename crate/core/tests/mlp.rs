//! The mlp policy: backpropagation, directional derivatives and score norms against finite
//! differences; the exact engine on an mlp; fitting the base.

mod common;
use common::*;

use harm_horizon_core::analysis::DEFAULT_HORIZON_TOLERANCE;
use harm_horizon_core::exact::{conditional_harm, harm_profile, kl_on_policy};
use harm_horizon_core::fit::fit_base;
use harm_horizon_core::mlp::{Activation, Mlp, MlpConfig};
use harm_horizon_core::policy::TabularPolicy;

fn networks() -> Vec<Mlp> {
    let mut all = vec![];
    for (hidden, activation) in [(vec![7], Activation::Tanh), (vec![6, 5], Activation::Tanh), (vec![9], Activation::Relu), (vec![4, 6], Activation::Relu)] {
        all.push(Mlp::new(MlpConfig { vocab: 3, order: 2, length: 5, hidden, activation }).unwrap());
    }
    all
}

fn perturbed(params: &[f64], i: usize, h: f64) -> Vec<f64> {
    let mut p = params.to_vec();
    p[i] += h;
    p
}

#[test]
fn backward_and_jvp_match_finite_differences() {
    for mlp in networks() {
        let params: Vec<f64> = mlp.init_params(4).iter().enumerate().map(|(i, p)| p + 0.05 * ((i * 7 % 11) as f64 - 5.0)).collect();
        let v = mlp.config.vocab;
        let mut scratch = vec![0.0; mlp.scratch_len()];
        let delta = [0.3, -1.1, 0.7];
        let direction: Vec<f64> = (0..params.len()).map(|i| ((i * 13 % 7) as f64 - 3.0) / 3.0).collect();
        for (t, context) in [(1, 15), (3, 5), (5, 0)] {
            let objective = |p: &[f64]| {
                let mut logits = vec![0.0; v];
                let mut s = vec![0.0; mlp.scratch_len()];
                mlp.forward(p, t, context, &mut logits, &mut s);
                logits.iter().zip(delta).map(|(l, d)| l * d).sum::<f64>()
            };
            let mut logits = vec![0.0; v];
            mlp.forward(&params, t, context, &mut logits, &mut scratch);
            let mut grad = vec![0.0; params.len()];
            let squared = mlp.backward(&params, t, context, &delta, Some(&mut grad), &mut scratch);
            let h = 1e-6;
            for i in 0..params.len() {
                let fd = (objective(&perturbed(&params, i, h)) - objective(&perturbed(&params, i, -h))) / (2.0 * h);
                // ReLU kinks are avoided by the generic parameters; tanh is smooth.
                assert_close(grad[i], fd, 1e-6, 1e-8, &format!("∂/∂θ_{i} at t={t}"));
            }
            assert_close(squared, grad.iter().map(|g| g * g).sum(), 1e-12, 1e-14, "score norm");
            // JVP: d/dε logits(θ + εu).
            let mut ju = vec![0.0; v];
            mlp.forward(&params, t, context, &mut logits, &mut scratch);
            mlp.jvp(&params, t, context, &direction, &mut ju, &mut scratch);
            let along = |e: f64| {
                let p: Vec<f64> = params.iter().zip(&direction).map(|(p, u)| p + e * u).collect();
                let mut l = vec![0.0; v];
                let mut s = vec![0.0; mlp.scratch_len()];
                mlp.forward(&p, t, context, &mut l, &mut s);
                l
            };
            let (plus, minus) = (along(h), along(-h));
            for a in 0..v {
                assert_close(ju[a], (plus[a] - minus[a]) / (2.0 * h), 1e-6, 1e-8, &format!("jvp[{a}]"));
            }
        }
    }
}

/// The exact engine on an mlp: tabulate its logits over the exact states, take the exact logit
/// gradient of E[H] and pull it back; it equals finite differences of E[H] in the parameters.
#[test]
fn exact_gradient_through_the_network_matches_finite_differences() {
    let mut spec = random_spec(31, 3, 2, 5, 4, true, false);
    spec.order = 2;
    let m = model(spec);
    for mlp in networks() {
        // Generic parameters: with zero biases a ReLU unit can sit exactly on its kink.
        let params: Vec<f64> = mlp.init_params(9).iter().enumerate().map(|(i, p)| p + 0.05 * ((i * 5 % 11) as f64 - 5.0)).collect();
        let expected_harm = |p: &[f64]| {
            let logits = mlp.tabulate(p, &m).unwrap();
            conditional_harm(&m, &TabularPolicy::new(&m, &logits).unwrap())[0]
        };
        let logits = mlp.tabulate(&params, &m).unwrap();
        let policy = TabularPolicy::new(&m, &logits).unwrap();
        let h = conditional_harm(&m, &policy);
        let mut logit_grad = vec![0.0; logits.len()];
        harm_profile(&m, &policy, &h, DEFAULT_HORIZON_TOLERANCE, Some(&mut logit_grad));
        let grad = mlp.pull_back(&params, &m, &logit_grad).unwrap();
        let step = 1e-5;
        let mut checked = 0;
        for i in (0..params.len()).step_by(3) {
            let fd = (expected_harm(&perturbed(&params, i, step)) - expected_harm(&perturbed(&params, i, -step))) / (2.0 * step);
            if grad[i].abs() > 1e-6 {
                assert_close(grad[i], fd, 1e-5, 1e-9, &format!("{:?} ∂E[H]/∂θ_{i}", mlp.config.hidden));
                checked += 1;
            }
        }
        assert!(checked > 10);
        // The per-position pull-backs sum to the whole gradient.
        let per = mlp.pull_back_per_position(&params, &m, &logit_grad).unwrap();
        for i in 0..params.len() {
            let sum: f64 = per.chunks_exact(params.len()).map(|g| g[i]).sum();
            assert_close(sum, grad[i], 1e-12, 1e-15, "per-position sum");
        }
    }
}

#[test]
fn an_mlp_fitted_to_the_base_reproduces_it() {
    let spec = refusal_spec();
    let m = model(spec.clone());
    let mlp = Mlp::new(MlpConfig { vocab: 5, order: 1, length: 16, hidden: vec![16], activation: Activation::Tanh }).unwrap();
    let mut params = mlp.init_params(1);
    let before = fit_base(&mlp, &mut params.clone(), &spec, 0, 0.05).unwrap().sequence_kl;
    let report = fit_base(&mlp, &mut params, &spec, 400, 0.05).unwrap();
    assert!(report.sequence_kl < 0.02 * before, "KL {before} → {}", report.sequence_kl);
    assert!(report.sequence_kl < 0.05, "KL(base ‖ mlp) = {}", report.sequence_kl);
    // The fitted network's behaviour is close to the base's: E[H] within a few percent.
    let logits = mlp.tabulate(&params, &m).unwrap();
    let fitted = TabularPolicy::new(&m, &logits).unwrap();
    let base_harm = conditional_harm(&m, &harm_horizon_core::policy::BasePolicy { model: &m })[0];
    assert!((conditional_harm(&m, &fitted)[0] - base_harm).abs() < 0.05);
    assert!(kl_on_policy(&m, &fitted).iter().sum::<f64>() < 0.1);
    // An order-1 network cannot represent an order-2 base.
    let mut order2 = random_spec(3, 5, 2, 16, 4, false, false);
    order2.order = 2;
    assert_eq!(fit_base(&mlp, &mut params, &order2, 1, 0.1).err().unwrap().code(), "HH_INVALID_ARGUMENT");
}
