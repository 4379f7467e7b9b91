//! Attacks: the fine-tuning losses' exact gradients, and rank-assisted prefilling.

mod common;
use common::*;

use harm_horizon_core::attack::{default_betas, fine_tune_loss, harmful_response_logits, harmful_token_weights, rank_assisted_logits, token_weights_from_responses, FineTune};
use harm_horizon_core::exact::{conditional_harm, on_harmful_prefixes};
use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::model::Model;
use harm_horizon_core::objective::base_harmful_prefixes;
use harm_horizon_core::policy::{BasePolicy, Policy, TabularPolicy};
use harm_horizon_core::walk::NO_TOKEN;

/// Non-binary harm, an end token that can come early, order-2 contexts.
fn own_scenario() -> Model {
    model(random_spec(21, 4, 2, 5, 5, true, true))
}

fn exact_weights(m: &Model) -> Vec<f64> {
    let h = conditional_harm(m, &BasePolicy { model: m });
    harmful_token_weights(m, &h, &base_harmful_prefixes(m, &h).unwrap().states).unwrap()
}

/// Every complete response of the base: (probability, tokens, state before each token).
fn responses(m: &Model) -> Vec<(f64, Vec<u32>, Vec<usize>)> {
    fn walk(m: &Model, s: usize, p: f64, tokens: &mut Vec<u32>, states: &mut Vec<usize>, out: &mut Vec<(f64, Vec<u32>, Vec<usize>)>) {
        if !m.live[s] || tokens.len() == m.length() {
            out.push((p, tokens.clone(), states.clone()));
            return;
        }
        for (a, &pa) in m.base_row(s).iter().enumerate().filter(|(_, &pa)| pa > 0.0) {
            tokens.push(a as u32);
            states.push(s);
            walk(m, m.next_row(s)[a] as usize, p * pa, tokens, states, out);
            tokens.pop();
            states.pop();
        }
    }
    let mut out = vec![];
    walk(m, 0, 1.0, &mut vec![], &mut vec![], &mut out);
    out
}

fn final_harm(m: &Model, tokens: &[u32]) -> f64 {
    let s = tokens.iter().fold(0usize, |s, &a| m.next_row(s)[a as usize] as usize);
    m.harm(s)
}

fn row(policy: &dyn Policy, m: &Model, t: usize, s: usize) -> Vec<f64> {
    let mut out = vec![0.0; m.vocab()];
    policy.probs(t, s, &mut out);
    out
}

#[test]
fn fine_tuning_gradients_match_finite_differences() {
    for m in [model(random_spec(17, 3, 1, 5, 5, true, false)), own_scenario()] {
        let logits = random_logits(&m, 2);
        let aligned = GibbsPolicy::new(&m, 3.0).unwrap();
        let beta = default_betas(m.length());
        // All of Q exactly, and a minibatch of a few of its responses.
        let some: Vec<Vec<u32>> = responses(&m).into_iter().filter(|(_, t, _)| final_harm(&m, t) > 0.0).step_by(5).map(|r| r.1).collect();
        let mut tokens = vec![NO_TOKEN; some.len() * m.length()];
        for (i, t) in some.iter().enumerate() {
            tokens[i * m.length()..i * m.length() + t.len()].copy_from_slice(t);
        }
        for weights in [exact_weights(&m), token_weights_from_responses(&m, &tokens, some.len()).unwrap()] {
            for objective in [FineTune::Sft, FineTune::Constrained { aligned: &aligned, beta: &beta }] {
                let at = |l: &[f64]| fine_tune_loss(&m, &TabularPolicy::new(&m, l).unwrap(), &weights, &objective, 1e-3).unwrap().loss;
                let value = fine_tune_loss(&m, &TabularPolicy::new(&m, &logits).unwrap(), &weights, &objective, 1e-3).unwrap();
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
    }
}

/// The authors descend along −w_t·∇log π with w_t = 2(1 − σ(β_t·Δ_t)) held fixed (detached): the
/// finite differences of that surrogate, weights frozen at the current policy, are Eq. 3's gradient.
#[test]
fn the_constrained_gradient_is_the_detached_weight_gradient() {
    let m = own_scenario();
    let logits = random_logits(&m, 3);
    let aligned = GibbsPolicy::new(&m, 3.0).unwrap();
    let beta = default_betas(m.length());
    let weights = exact_weights(&m);
    let (n, v) = (m.num_states(), m.vocab());
    let now = TabularPolicy::new(&m, &logits).unwrap();
    // w_t(s, a) at the current policy, then frozen.
    let frozen: Vec<f64> = (0..weights.len())
        .map(|i| {
            let (t, s, a) = (i / (n * v) + 1, (i / v) % n, i % v);
            if weights[i] == 0.0 || !m.live[s] {
                return 0.0;
            }
            let delta = row(&now, &m, t, s)[a].ln() - row(&aligned, &m, t, s)[a].ln();
            2.0 * (1.0 - 1.0 / (1.0 + (-beta[t - 1] * delta).exp()))
        })
        .collect();
    // θ_i moves one row only: sum the surrogate over that row's tokens.
    let surrogate = |l: &[f64], i: usize| {
        let p = TabularPolicy::new(&m, l).unwrap();
        let first = i - i % v;
        (first..first + v).filter(|&j| frozen[j] > 0.0).map(|j| weights[j] * frozen[j] * -row(&p, &m, j / (n * v) + 1, (j / v) % n)[j % v].ln()).sum::<f64>()
    };
    let value = fine_tune_loss(&m, &now, &weights, &FineTune::Constrained { aligned: &aligned, beta: &beta }, 1e-3).unwrap();
    let mut checked = 0;
    for i in (0..logits.len()).step_by(2) {
        let (mut plus, mut minus) = (logits.clone(), logits.clone());
        plus[i] += 1e-6;
        minus[i] -= 1e-6;
        let fd = (surrogate(&plus, i) - surrogate(&minus, i)) / 2e-6;
        assert_close(value.gradient[i], fd, 1e-5, 1e-9, &format!("detached ∂/∂θ_{i}"));
        checked += (fd.abs() > 1e-6) as usize;
    }
    assert!(checked > 10);
}

/// The logged loss and the per-token gradient norms against an enumeration of the harmful responses:
/// token means over Q(y) ∝ P_base(y)·H(y).
#[test]
fn the_logged_loss_and_token_gradient_norms_match_enumeration() {
    let m = own_scenario();
    let logits = random_logits(&m, 4);
    let policy = TabularPolicy::new(&m, &logits).unwrap();
    let aligned = GibbsPolicy::new(&m, 3.0).unwrap();
    let beta = default_betas(m.length());
    let weights = exact_weights(&m);
    let all = responses(&m);
    let mass: f64 = all.iter().map(|(p, t, _)| p * final_harm(&m, t)).sum();
    for (objective, floor) in [(FineTune::Sft, 1e-3), (FineTune::Constrained { aligned: &aligned, beta: &beta }, 1e-3), (FineTune::Constrained { aligned: &aligned, beta: &beta }, 0.7)] {
        let (mut loss, mut count) = (0.0, 0.0);
        let (mut norm, mut at) = (vec![0.0; m.length()], vec![0.0; m.length()]);
        for (p, tokens, states) in &all {
            let q = p * final_harm(&m, tokens) / mass;
            for (t0, (&a, &s)) in tokens.iter().zip(states).enumerate() {
                let pi = row(&policy, &m, t0 + 1, s);
                let w = match objective {
                    FineTune::Sft => 1.0,
                    FineTune::Constrained { .. } => 2.0 * (1.0 - 1.0 / (1.0 + (-beta[t0] * (pi[a as usize].ln() - row(&aligned, &m, t0 + 1, s)[a as usize].ln())).exp())),
                };
                loss += q * w.max(floor) * -pi[a as usize].ln();
                count += q;
                let grad: f64 = pi.iter().enumerate().map(|(b, &x)| (x - (b == a as usize) as u8 as f64).powi(2)).sum::<f64>().sqrt();
                norm[t0] += q * w * grad;
                at[t0] += q;
            }
        }
        let value = fine_tune_loss(&m, &policy, &weights, &objective, floor).unwrap();
        assert_close(value.logged_loss, loss / count, 1e-12, 0.0, "logged loss");
        for t in 0..m.length() {
            assert_close(value.token_grad_norm[t], norm[t] / at[t], 1e-12, 0.0, &format!("token gradient norm at {}", t + 1));
        }
    }
    // At the aligned policy itself every weight is 1: the constrained logged loss is SFT's.
    let sft = fine_tune_loss(&m, &aligned, &weights, &FineTune::Sft, 1e-3).unwrap();
    let constrained = fine_tune_loss(&m, &aligned, &weights, &FineTune::Constrained { aligned: &aligned, beta: &beta }, 1e-3).unwrap();
    assert_close(constrained.logged_loss, sft.logged_loss, 1e-12, 0.0, "logged loss at the aligned policy");
}

/// Sampling Q as a policy gives each response the probability P_base(y)·H(y)/E_base[H].
#[test]
fn the_harmful_response_policy_is_q() {
    let m = own_scenario();
    let h = conditional_harm(&m, &BasePolicy { model: &m });
    let logits = harmful_response_logits(&m, &h).unwrap();
    let q = TabularPolicy::new(&m, &logits).unwrap();
    let mut total = 0.0;
    for (p, tokens, states) in responses(&m) {
        let under_q: f64 = tokens.iter().zip(&states).enumerate().map(|(t0, (&a, &s))| row(&q, &m, t0 + 1, s)[a as usize]).product();
        assert_close(under_q, p * final_harm(&m, &tokens) / h[0], 1e-10, 1e-15, "Q(y)");
        total += under_q;
    }
    assert_close(total, 1.0, 1e-12, 0.0, "Q sums to 1");
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
