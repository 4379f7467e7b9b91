//! Monte Carlo estimates against the exact engine: every estimate within 4 standard errors of the
//! exact value (fixed seeds), standard errors shrinking as 1/sqrt(N), and reproducibility.

mod common;
use common::*;

use harm_horizon_core::analysis::DEFAULT_HORIZON_TOLERANCE;
use harm_horizon_core::estimate::{estimate_gradient, expected_harm, harm_information, harm_paths, kl_to_base_along, Coefficient, HarmSource, ScoreModel};
use harm_horizon_core::exact::{conditional_harm, harm_profile, kl_on_policy, on_harmful_prefixes};
use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::mlp::{Activation, Mlp, MlpConfig, MlpPolicy};
use harm_horizon_core::model::Model;
use harm_horizon_core::policy::{BasePolicy, Policy, TabularPolicy};
use harm_horizon_core::sampling::{sample, BaseStep, ExactStep, Prefix, SampleRequest, Samples, StepPolicy};
use harm_horizon_core::monte_carlo::{run, HarmChoice, RunReport, RunRequest};
use harm_horizon_core::proposal::{importance_weights, ExactTilt, TokenTilt};
use harm_horizon_core::walk::Track;

fn request(count: usize, seed: u64) -> SampleRequest<'static> {
    SampleRequest { count, seed, prefix: None, first_index: 0 }
}

/// Effective samples (see PositionEstimates::support) below which the SE is not trusted: the CLT has
/// not kicked in (refusal's late positions hinge on events of probability ~1e-4).
const MIN_SUPPORT: u32 = 30;

/// |estimate − exact| ≤ 4·SE (plus rounding, 1e-10 relative, for quantities whose SE vanishes: a
/// position every sample shares, or an innovation that is exactly zero), wherever at least
/// MIN_SUPPORT samples contribute; returns whether the check applied.
fn within_4_se_where_supported(estimate: f64, se: f64, support: u32, exact: f64, what: &str) -> bool {
    if support < MIN_SUPPORT {
        return false;
    }
    within_4_se(estimate, se, exact, what);
    true
}

fn within_4_se(estimate: f64, se: f64, exact: f64, what: &str) {
    let rounding = 1e-10 * exact.abs().max(1e-4);
    assert!(
        (estimate - exact).abs() <= 4.0 * se + rounding,
        "{what}: {estimate} ± {se} vs exact {exact} ({:.1} SE)",
        (estimate - exact).abs() / se
    );
}

fn refusal_mlp() -> (Mlp, Vec<f64>) {
    let mlp = Mlp::new(MlpConfig { vocab: 5, order: 1, length: 16, hidden: vec![8], activation: Activation::Tanh }).unwrap();
    let mut params = mlp.init_params(2);
    harm_horizon_core::fit::fit_base(&mlp, &mut params, &refusal_spec(), 150, 0.05).unwrap();
    (mlp, params)
}

fn models() -> Vec<(&'static str, Model)> {
    vec![("refusal", model(refusal_spec())), ("horizon", model(horizon_spec())), ("random", model(random_spec(41, 4, 1, 8, 6, true, false)))]
}

#[test]
fn sampling_is_reproducible_whatever_the_threads_and_batches() {
    let m = model(random_spec(5, 4, 2, 10, 8, true, false));
    let track = Track::new(&m.spec, Some(&m));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| sample(&track, &BaseStep { spec: &m.spec }, &request(1000, 9)).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.tokens, two.tokens);
    assert_eq!(one.log_probs, two.log_probs);
    // Two batches of 500 with index offsets reproduce the single batch of 1000.
    let second = sample(&track, &BaseStep { spec: &m.spec }, &SampleRequest { count: 500, seed: 9, prefix: None, first_index: 500 }).unwrap();
    assert_eq!(&one.tokens[500 * 10..], &second.tokens[..]);
    // The same responses without the exact model (the base needs none).
    let plain = sample(&Track::new(&m.spec, None), &BaseStep { spec: &m.spec }, &request(1000, 9)).unwrap();
    assert_eq!(plain.tokens, one.tokens);
    assert_eq!(plain.harm, one.harm);
    // Log-probabilities are those of the policy, and the sampled states follow the tokens.
    let states = one.states.as_ref().unwrap();
    for n in 0..20 {
        for t in 0..one.emitted[n] as usize {
            let s = states[n * 11 + t] as usize;
            let a = one.tokens[n * 10 + t] as usize;
            assert_eq!(one.log_probs[n * 10 + t], m.base_row(s)[a].ln());
            assert_eq!(states[n * 11 + t + 1], m.next_row(s)[a]);
        }
    }
}

#[test]
fn forced_prefixes_are_followed() {
    let m = model(refusal_spec());
    let track = Track::new(&m.spec, Some(&m));
    let prefix = [0u32, 2, 2];
    let s = sample(&track, &BaseStep { spec: &m.spec }, &SampleRequest { count: 50, seed: 1, prefix: Some(Prefix { tokens: &prefix, length: 3 }), first_index: 0 }).unwrap();
    for n in 0..50 {
        assert_eq!(&s.tokens[n * 16..n * 16 + 3], &prefix);
    }
    assert!(s.harm.iter().sum::<f64>() > 45.0, "Sure step step is almost surely harmful");
}

#[test]
fn expected_harm_and_harm_information_match_the_exact_values() {
    // A random tabular policy on refusal leaves almost no harm information for rollouts to see, so
    // the rollout check is counted over all cases rather than per case.
    let mut rollout_checked = 0;
    for (name, m) in models() {
        let track = Track::new(&m.spec, Some(&m));
        let logits = random_logits(&m, 3);
        let tabular = TabularPolicy::new(&m, &logits).unwrap();
        let base = BasePolicy { model: &m };
        let policies: Vec<(&str, &dyn Policy)> = vec![("base", &base), ("tabular", &tabular)];
        for (policy_name, policy) in policies {
            let what = format!("{name}/{policy_name}");
            let step = ExactStep(policy);
            let h = conditional_harm(&m, policy);
            let exact = harm_profile(&m, policy, &h, DEFAULT_HORIZON_TOLERANCE, None);
            let samples = sample(&track, &step, &request(20_000, 11)).unwrap();
            let eh = expected_harm(&samples, None);
            within_4_se(eh.mean, eh.se, exact.expected_harm, &format!("{what} E[H]"));
            // I_t with exact h.
            let paths = harm_paths(&track, &step, &samples, &HarmSource::Exact(&h), 0).unwrap();
            let info = harm_information(&samples, &paths, None);
            let mut checked = 0;
            for t in 0..m.length() {
                checked += within_4_se_where_supported(info.mean[t], info.se[t], info.support[t], exact.harm_information[t], &format!("{what} I_{}", t + 1)) as usize;
            }
            assert!(checked >= exact.horizon.min(4), "{what}: only {checked} positions with enough support");
            // I_t from two independent sets of nested rollouts (unbiased).
            let small = sample(&track, &step, &request(5000, 12)).unwrap();
            let paths = harm_paths(&track, &step, &small, &HarmSource::Rollouts(4), 99).unwrap();
            let info = harm_information(&small, &paths, None);
            let mut checked = 0;
            for t in 0..m.length() {
                checked += within_4_se_where_supported(info.mean[t], info.se[t], info.support[t], exact.harm_information[t], &format!("{what} rollout I_{}", t + 1)) as usize;
            }
            rollout_checked += checked;
        }
    }
    assert!(rollout_checked >= 10, "rollout I_t checked at only {rollout_checked} positions");
}

#[test]
fn standard_errors_shrink_as_one_over_root_n() {
    let m = model(horizon_spec());
    let track = Track::new(&m.spec, Some(&m));
    let step = BaseStep { spec: &m.spec };
    let h = conditional_harm(&m, &BasePolicy { model: &m });
    let se_at = |n: usize| {
        let s = sample(&track, &step, &request(n, 5)).unwrap();
        let paths = harm_paths(&track, &step, &s, &HarmSource::Exact(&h), 0).unwrap();
        (expected_harm(&s, None).se, harm_information(&s, &paths, None).se[1])
    };
    let (small, large) = (se_at(4_000), se_at(64_000));
    for (a, b) in [(small.0, large.0), (small.1, large.1)] {
        let ratio = a / b;
        assert!((ratio / 4.0 - 1.0).abs() < 0.1, "SE ratio for 16× the samples: {ratio}");
    }
}

/// Exact per-position gradients of E[H] in a score model's blocks, and unit directions along them.
fn exact_blocks(m: &Model, policy: &dyn Policy, pull_back: impl Fn(&[f64]) -> Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let h = conditional_harm(m, policy);
    let mut logit_grad = vec![0.0; m.length() * m.num_states() * m.vocab()];
    harm_profile(m, policy, &h, DEFAULT_HORIZON_TOLERANCE, Some(&mut logit_grad));
    let blocks = pull_back(&logit_grad);
    let block = blocks.len() / m.length();
    let mut directions = blocks.clone();
    for (t, u) in directions.chunks_exact_mut(block).enumerate() {
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            u.iter_mut().for_each(|x| *x /= norm);
        } else {
            // Beyond the horizon the exact gradient vanishes: project on a fixed direction.
            u.iter_mut().enumerate().for_each(|(i, x)| *x = (((i + t) * 7 % 5) as f64 - 2.0) / 10.0);
        }
    }
    (blocks, directions)
}

fn check_gradients(name: &str, m: &Model, policy: &dyn Policy, score: &dyn ScoreModel, exact: &[f64], directions: &[f64], n: usize) {
    let track = Track::new(&m.spec, Some(m));
    let samples = sample(&track, score, &request(n, 21)).unwrap();
    let h = conditional_harm(m, policy);
    let exact_paths = harm_paths(&track, score, &samples, &HarmSource::Exact(&h), 0).unwrap();
    let small = sample(&track, score, &request(n / 4, 22)).unwrap();
    let rollout_paths = harm_paths(&track, score, &small, &HarmSource::Rollouts(4), 5).unwrap();
    let block = exact.len() / m.length();
    let runs: Vec<(&str, &Samples, Coefficient, Option<&_>)> = vec![
        ("reinforce", &samples, Coefficient::Reinforce, None),
        ("leave-one-out", &samples, Coefficient::LeaveOneOut, None),
        ("innovation (exact h)", &samples, Coefficient::Innovation, Some(&exact_paths)),
        ("innovation (rollouts)", &small, Coefficient::Innovation, Some(&rollout_paths)),
    ];
    let mut variances = vec![];
    for (estimator, s, coefficient, paths) in runs {
        let g = estimate_gradient(&track, score, s, coefficient, paths, Some(directions)).unwrap();
        let mut checked = 0;
        for t in 0..m.length() {
            let u = &directions[t * block..(t + 1) * block];
            let truth: f64 = exact[t * block..(t + 1) * block].iter().zip(u).map(|(a, b)| a * b).sum();
            let p = &g.projection;
            checked += within_4_se_where_supported(p.mean[t], p.se[t], p.support[t], truth, &format!("{name} {estimator} ⟨G_{}, u⟩", t + 1)) as usize;
        }
        assert!(checked >= 1, "{name} {estimator}: no position with enough support");
        variances.push(g);
    }
    // Beyond the horizon the exact-h innovation estimate is exactly zero; REINFORCE's is noise.
    let profile = harm_profile(m, policy, &h, DEFAULT_HORIZON_TOLERANCE, None);
    for t in profile.horizon..m.length() {
        // Zero up to the DP's rounding of h (h_t and h_{t−1} agree to ~1e-16 there).
        assert!(variances[2].norm[t] <= 1e-12 && variances[2].variance[t] <= 1e-24, "{name}: innovation at {} is {}", t + 1, variances[2].norm[t]);
        if samples.emitted.iter().any(|&e| e as usize > t) {
            assert!(variances[0].variance[t] > 0.0, "{name}: REINFORCE variance at {}", t + 1);
        }
    }
}

#[test]
fn gradient_estimators_match_the_exact_gradient_tabular() {
    for (name, m) in models() {
        let logits = random_logits(&m, 8);
        let policy = TabularPolicy::new(&m, &logits).unwrap();
        let score = ExactStep(&policy);
        let (exact, directions) = exact_blocks(&m, &policy, |g| g.to_vec());
        check_gradients(name, &m, &policy, &score, &exact, &directions, 20_000);
    }
}

#[test]
fn gradient_estimators_match_the_exact_gradient_mlp() {
    let m = model(refusal_spec());
    let (mlp, params) = refusal_mlp();
    let logits = mlp.tabulate(&params, &m).unwrap();
    let policy = TabularPolicy::new(&m, &logits).unwrap();
    let score = MlpPolicy::new(&mlp, &params);
    let (exact, directions) = exact_blocks(&m, &policy, |g| mlp.pull_back_per_position(&params, &m, g).unwrap());
    check_gradients("refusal/mlp", &m, &policy, &score, &exact, &directions, 20_000);
    // The mlp samples exactly as its tabulation does (same draws, same tokens).
    let track = Track::new(&m.spec, Some(&m));
    let a = sample(&track, &score, &request(300, 4)).unwrap();
    let b = sample(&track, &ExactStep(&policy), &request(300, 4)).unwrap();
    assert_eq!(a.tokens, b.tokens);
}

#[test]
fn kl_estimates_match_the_exact_profiles() {
    for (name, m) in models() {
        let track = Track::new(&m.spec, Some(&m));
        let gibbs = GibbsPolicy::new(&m, 3.0).unwrap();
        let step = ExactStep(&gibbs);
        let base = BaseStep { spec: &m.spec };
        let exact_on = kl_on_policy(&m, &gibbs);
        let samples = sample(&track, &step, &request(20_000, 31)).unwrap();
        let on = kl_to_base_along(&track, &step, &samples, None).unwrap();
        // Teacher forcing on harmful base responses: base samples weighted by H.
        let h_base = conditional_harm(&m, &BasePolicy { model: &m });
        let h_gibbs = conditional_harm(&m, &gibbs);
        let (exact_tf, _) = on_harmful_prefixes(&m, &h_base, &gibbs, &h_gibbs);
        let base_samples = sample(&track, &base, &request(20_000, 32)).unwrap();
        let tf = kl_to_base_along(&track, &step, &base_samples, Some(&base_samples.harm)).unwrap();
        let mut checked = 0;
        for t in 0..m.length() {
            checked += within_4_se_where_supported(on.mean[t], on.se[t], on.support[t], exact_on[t], &format!("{name} on-policy KL_{}", t + 1)) as usize;
            checked += within_4_se_where_supported(tf.mean[t], tf.se[t], tf.support[t], exact_tf[t], &format!("{name} teacher-forced KL_{}", t + 1)) as usize;
        }
        assert!(checked >= m.length() / 2, "{name}: only {checked} KL positions with enough support");
        // The base against itself: exactly zero.
        let zero = kl_to_base_along(&track, &base, &base_samples, None).unwrap();
        assert!(zero.mean.iter().all(|&k| k == 0.0));
    }
}

#[test]
fn sampling_needs_the_exact_model_only_for_exact_policies() {
    let m = model(horizon_spec());
    let logits = random_logits(&m, 1);
    let policy = TabularPolicy::new(&m, &logits).unwrap();
    let err = sample(&Track::new(&m.spec, None), &ExactStep(&policy), &request(10, 1)).unwrap_err();
    assert_eq!(err.code(), "HH_INVALID_ARGUMENT");
    let _ = BaseStep { spec: &m.spec }.scratch_len();
}

/// A non-binary scenario: order-2 contexts, an end token, harm values in [0, 1], undecided mass at T.
fn graded_model() -> Model {
    model(random_spec(17, 4, 2, 7, 6, true, true))
}

fn exact_run<'a>(track: &Track<'a>, policy: &dyn StepPolicy, table: &'a [f64], proposal: Option<&'a dyn StepPolicy>, count: usize, seed: u64) -> RunReport {
    let request = RunRequest { samples: count, seed, harm: Some(HarmChoice::Exact(table)), gradient: None, directions: None, teacher_forced: false, proposal };
    run(track, policy, None, &request).unwrap()
}

#[test]
fn decision_times_follow_h_and_leave_undecided_mass_out() {
    for (name, m) in [("horizon", model(horizon_spec())), ("graded", graded_model())] {
        let track = Track::new(&m.spec, Some(&m));
        let base = BasePolicy { model: &m };
        let h = conditional_harm(&m, &base);
        let exact = harm_profile(&m, &base, &h, DEFAULT_HORIZON_TOLERANCE, None);
        let report = exact_run(&track, &BaseStep { spec: &m.spec }, &h, None, 40_000, 3);
        let (histogram, undecided) = report.decision_time.unwrap();
        for t in 0..=m.length() {
            within_4_se(histogram.mean[t], histogram.se[t], exact.decision_time[t], &format!("{name} P(τ = {t})"));
        }
        within_4_se(undecided.mean, undecided.se, exact.undecided, &format!("{name} P(τ > T)"));
        let total: f64 = histogram.mean.iter().sum::<f64>() + undecided.mean;
        assert!((total - 1.0).abs() < 1e-12, "{name}: histogram and undecided sum to {total}");
    }
    // The graded scenario leaves mass undecided at T, so the histogram alone does not sum to 1.
    let m = graded_model();
    let h = conditional_harm(&m, &BasePolicy { model: &m });
    assert!(harm_profile(&m, &BasePolicy { model: &m }, &h, DEFAULT_HORIZON_TOLERANCE, None).undecided > 0.05);
}

#[test]
fn the_exact_tilt_is_the_gibbs_construction_and_its_weights_undo_it() {
    let m = graded_model();
    let base = BasePolicy { model: &m };
    // The tilt of the base by e^{κH} with κ = −λ is the Gibbs optimum at λ, row for row.
    let (tilt, gibbs) = (ExactTilt::new(&m, &base, -2.5).unwrap(), GibbsPolicy::new(&m, 2.5).unwrap());
    let (mut a, mut b) = (vec![0.0; m.vocab()], vec![0.0; m.vocab()]);
    for t in 1..=m.length() {
        for s in (0..m.num_states()).filter(|&s| m.live[s]) {
            tilt.probs(t, s, &mut a);
            gibbs.probs(t, s, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert_close(*x, *y, 1e-12, 1e-15, &format!("row ({t}, {s})"));
            }
        }
    }
    // The likelihood ratio of a whole response is Z_0·e^{−κH}: w_n·e^{κH_n} is the same for all n.
    let kappa = 2.0;
    let track = Track::new(&m.spec, Some(&m));
    let tilted = ExactTilt::new(&m, &base, kappa).unwrap();
    let samples = sample(&track, &ExactStep(&tilted), &request(2000, 4)).unwrap();
    let w = importance_weights(&track, &BaseStep { spec: &m.spec }, &samples);
    let constant = w[0] * (kappa * samples.harm[0]).exp();
    for n in 0..samples.count {
        assert_close(w[n] * (kappa * samples.harm[n]).exp(), constant, 1e-10, 0.0, &format!("weight {n}"));
    }
    // Bad tilts are refused.
    assert_eq!(ExactTilt::new(&m, &base, f64::NAN).err().unwrap().code(), "HH_INVALID_ARGUMENT");
    assert_eq!(ExactTilt::new(&m, &base, 800.0).err().unwrap().code(), "HH_INVALID_ARGUMENT");
}

#[test]
fn tilted_estimates_match_the_exact_values() {
    let m = graded_model();
    let track = Track::new(&m.spec, Some(&m));
    let logits = random_logits(&m, 8);
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let step = ExactStep(&tabular);
    let h = conditional_harm(&m, &tabular);
    let exact = harm_profile(&m, &tabular, &h, DEFAULT_HORIZON_TOLERANCE, None);
    let exact_kl = kl_on_policy(&m, &tabular);
    let exact_tilt = ExactTilt::new(&m, &tabular, 3.0).unwrap();
    let exact_step = ExactStep(&exact_tilt);
    // The per-token tilt compounds over positions: a milder κ keeps its weights as spread as the exact one's.
    let token_tilt = TokenTilt::new(&m.spec, &step, 1.0).unwrap();
    let proposals: [(&str, &dyn StepPolicy); 2] = [("exact tilt", &exact_step), ("per-token tilt", &token_tilt)];
    for (name, proposal) in proposals {
        let report = exact_run(&track, &step, &h, Some(proposal), 40_000, 21);
        let ess = report.effective_sample_size.unwrap();
        assert!(ess > 1000.0 && ess < 40_000.0, "{name}: Kish ESS {ess}");
        within_4_se(report.expected_harm.mean, report.expected_harm.se, exact.expected_harm, &format!("{name} E[H]"));
        let (info, kl) = (report.harm_information.unwrap(), report.kl_on_policy);
        let mut checked = 0;
        for t in 0..m.length() {
            checked += within_4_se_where_supported(info.mean[t], info.se[t], info.support[t], exact.harm_information[t], &format!("{name} I_{}", t + 1)) as usize;
            checked += within_4_se_where_supported(kl.mean[t], kl.se[t], kl.support[t], exact_kl[t], &format!("{name} KL_{}", t + 1)) as usize;
        }
        assert!(checked >= m.length(), "{name}: only {checked} checks with enough support");
        let (histogram, undecided) = report.decision_time.unwrap();
        for t in 0..=m.length() {
            within_4_se(histogram.mean[t], histogram.se[t], exact.decision_time[t], &format!("{name} P(τ = {t})"));
        }
        within_4_se(undecided.mean, undecided.se, exact.undecided, &format!("{name} P(τ > T)"));
    }
}

#[test]
fn tilted_runs_are_identical_whatever_the_threads() {
    let m = graded_model();
    let track = Track::new(&m.spec, Some(&m));
    let base = BasePolicy { model: &m };
    let h = conditional_harm(&m, &base);
    let tilt = ExactTilt::new(&m, &base, 2.0).unwrap();
    let proposal = ExactStep(&tilt);
    let step = BaseStep { spec: &m.spec };
    let at = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let r = exact_run(&track, &step, &h, Some(&proposal), 5000, 6);
            let (d, u) = r.decision_time.unwrap();
            let info = r.harm_information.unwrap();
            (r.expected_harm, d.mean, d.se, u, info.mean, info.se, info.support, r.kl_on_policy.mean, r.effective_sample_size)
        })
    };
    assert_eq!(at(1), at(2));
}
