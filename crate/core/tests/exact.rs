//! The identities of the theory, checked on the exact engine.

mod common;
use common::*;

use harm_horizon_core::analysis::{analyze, DEFAULT_HORIZON_TOLERANCE};
use harm_horizon_core::exact::{conditional_harm, forward, harm_profile, kl_on_policy, on_harmful_prefixes};
use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::model::{Model, ScenarioSpec};
use harm_horizon_core::policy::{BasePolicy, Policy, TabularPolicy};

fn scenarios() -> Vec<(String, Model)> {
    let mut all = vec![("refusal".to_string(), model(refusal_spec())), ("horizon".to_string(), model(horizon_spec()))];
    for seed in 0..6 {
        let (v, n, t, d) = (2 + seed as usize % 3, 1 + seed as usize % 2, 3 + seed as usize, 3 + seed as usize);
        all.push((format!("random{seed}"), model(random_spec(seed, v, n, t, d, seed % 2 == 0, seed % 3 == 0))));
    }
    all
}

/// Every policy we analyse on a model: the base, a random tabular one and the Gibbs optimum.
fn for_each_policy(m: &Model, mut check: impl FnMut(&str, &dyn Policy)) {
    check("base", &BasePolicy { model: m });
    let logits = random_logits(m, 7);
    check("tabular", &TabularPolicy::new(m, &logits).unwrap());
    check("gibbs", &GibbsPolicy::new(m, 2.0).unwrap());
}

#[test]
fn conditional_harm_is_a_martingale() {
    for (name, m) in scenarios() {
        for_each_policy(&m, |policy_name, policy| {
            let h = conditional_harm(&m, policy);
            let n = m.num_states();
            let mut row = vec![0.0; m.vocab()];
            // E[h_t | y<t] = h_{t−1} at every live state, and h ∈ [0, 1].
            for t in 1..=m.length() {
                for s in (0..n).filter(|&s| m.live[s]) {
                    policy.probs(t, s, &mut row);
                    let mean: f64 = row.iter().zip(m.next_row(s)).map(|(p, &x)| p * h[t * n + x as usize]).sum();
                    assert_close(mean, h[(t - 1) * n + s], 1e-12, 1e-14, &format!("{name}/{policy_name} t={t} s={s}"));
                    assert!((-1e-12..=1.0 + 1e-12).contains(&h[(t - 1) * n + s]));
                }
            }
            // The forward distribution is a probability distribution at every layer.
            let p_final = forward(&m, policy, |t, p| {
                assert_close(p.iter().sum::<f64>(), 1.0, 1e-12, 0.0, &format!("{name}/{policy_name} mass at {t}"))
            });
            assert_close(p_final.iter().sum::<f64>(), 1.0, 1e-12, 0.0, "final mass");
        });
    }
}

#[test]
fn harm_information_sums_to_the_variance() {
    for (name, m) in scenarios() {
        for_each_policy(&m, |policy_name, policy| {
            let h = conditional_harm(&m, policy);
            let profile = harm_profile(&m, policy, &h, DEFAULT_HORIZON_TOLERANCE, None);
            let total: f64 = profile.harm_information.iter().sum();
            assert_close(total, profile.harm_variance, 1e-10, 1e-14, &format!("{name}/{policy_name}"));
            assert!(profile.harm_information.iter().all(|&i| i >= 0.0));
            // ||G_t|| ≤ sqrt(I_t · F̄_t).
            for t in 0..m.length() {
                assert!(profile.grad_norm[t] <= profile.grad_bound[t] * (1.0 + 1e-12) + 1e-300, "{name}/{policy_name} bound at {}", t + 1);
            }
            // Decision times form a distribution with the undecided mass.
            let decided: f64 = profile.decision_time.iter().sum();
            assert_close(decided + profile.undecided, 1.0, 1e-12, 1e-12, "decision times");
        });
    }
}

/// Ridders' extrapolated central difference of f at x (Numerical Recipes' dfridr): value and error estimate.
fn ridders(f: impl Fn(f64) -> f64, x: f64, h0: f64) -> (f64, f64) {
    const CON: f64 = 1.4;
    const N: usize = 10;
    let mut a = [[0.0f64; N]; N];
    let mut h = h0;
    a[0][0] = (f(x + h) - f(x - h)) / (2.0 * h);
    let (mut best, mut err) = (a[0][0], f64::INFINITY);
    for i in 1..N {
        h /= CON;
        a[0][i] = (f(x + h) - f(x - h)) / (2.0 * h);
        let mut fac = CON * CON;
        for j in 1..=i {
            a[j][i] = (a[j - 1][i] * fac - a[j - 1][i - 1]) / (fac - 1.0);
            fac *= CON * CON;
            let e = (a[j][i] - a[j - 1][i]).abs().max((a[j][i] - a[j - 1][i - 1]).abs());
            if e <= err {
                err = e;
                best = a[j][i];
            }
        }
        if (a[i][i] - a[i - 1][i - 1]).abs() >= 2.0 * err {
            break;
        }
    }
    (best, err)
}

#[test]
fn gradient_equals_finite_differences() {
    let fixtures = vec![
        model(horizon_spec()),
        model(random_spec(14, 3, 1, 5, 6, true, false)),
        model(random_spec(12, 2, 2, 5, 3, false, true)),
    ];
    for m in fixtures {
        let logits = random_logits(&m, 3);
        let policy = TabularPolicy::new(&m, &logits).unwrap();
        let h = conditional_harm(&m, &policy);
        let mut grad = vec![0.0; logits.len()];
        harm_profile(&m, &policy, &h, DEFAULT_HORIZON_TOLERANCE, Some(&mut grad));
        let mut checked = 0;
        for (i, &g) in grad.iter().enumerate() {
            if g.abs() <= 1e-8 {
                continue;
            }
            let expected_harm = |x: f64| {
                let mut perturbed = logits.clone();
                perturbed[i] = x;
                conditional_harm(&m, &TabularPolicy::new(&m, &perturbed).unwrap())[0]
            };
            let (fd, _) = ridders(expected_harm, logits[i], 0.1);
            assert_close(g, fd, 1e-6, 0.0, &format!("gradient entry {i}"));
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} entries checked");
    }
}

#[test]
fn nothing_moves_beyond_the_horizon() {
    let m = model(horizon_spec());
    let base = BasePolicy { model: &m };
    let h = conditional_harm(&m, &base);
    let mut grad = vec![0.0; m.length() * m.num_states() * m.vocab()];
    let profile = harm_profile(&m, &base, &h, DEFAULT_HORIZON_TOLERANCE, Some(&mut grad));
    assert_eq!(profile.horizon, 4);
    assert!(profile.harm_information[3] > 1e-3, "I_4 = {}", profile.harm_information[3]);
    let block = m.num_states() * m.vocab();
    for t in 5..=m.length() {
        assert!(profile.harm_information[t - 1] <= 1e-12, "I_{t} = {}", profile.harm_information[t - 1]);
        assert!(profile.grad_norm[t - 1] <= 1e-12);
        assert!(grad[(t - 1) * block..t * block].iter().all(|g| g.abs() <= 1e-12));
    }
    for lambda in [0.1, 1.0, 5.0] {
        let analysis = analyze(&m, lambda, DEFAULT_HORIZON_TOLERANCE).unwrap();
        assert_eq!(analysis.base.horizon, 4);
        assert!(analysis.kl_on_policy[3] > 1e-6 * lambda * lambda);
        for t in 5..=m.length() {
            assert!(analysis.kl_on_policy[t - 1].abs() <= 1e-12, "λ={lambda} D_{t} = {}", analysis.kl_on_policy[t - 1]);
            assert!(analysis.kl_teacher_forced[t - 1].abs() <= 1e-12);
        }
    }
}

#[test]
fn equilibrium_kl_is_lambda_squared_over_two_times_harm_information() {
    for m in [model(refusal_spec()), model(horizon_spec())] {
        let analysis = analyze(&m, 0.01, DEFAULT_HORIZON_TOLERANCE).unwrap();
        let mut compared = 0;
        for t in 0..m.length() {
            if analysis.base.harm_information[t] > 1e-9 {
                let ratio = analysis.kl_on_policy[t] / analysis.kl_predicted[t];
                assert!((ratio - 1.0).abs() <= 0.02, "t={} ratio {ratio}", t + 1);
                compared += 1;
            }
        }
        assert!(compared >= 4);
        // The ratio tends to 1 as λ → 0: closer at λ = 0.001 than at λ = 0.1 where I_t is largest.
        let t_max = (0..m.length()).max_by(|&a, &b| analysis.base.harm_information[a].total_cmp(&analysis.base.harm_information[b])).unwrap();
        let gap = |lambda: f64| {
            let a = analyze(&m, lambda, DEFAULT_HORIZON_TOLERANCE).unwrap();
            (a.kl_on_policy[t_max] / a.kl_predicted[t_max] - 1.0).abs()
        };
        assert!(gap(0.001) < gap(0.1));
    }
}

/// J_λ(P*) = λ·E*[H] + KL(P* ‖ P_base) = −log E_base[exp(−λH)], and every other policy does worse.
#[test]
fn gibbs_policy_is_the_optimum() {
    for (name, m) in scenarios() {
        let lambda = 1.5;
        let gibbs = GibbsPolicy::new(&m, lambda).unwrap();
        let objective = |p: &dyn Policy| lambda * conditional_harm(&m, p)[0] + kl_on_policy(&m, p).iter().sum::<f64>();
        let optimum = objective(&gibbs);
        assert_close(optimum, gibbs.values[0], 1e-10, 1e-13, &format!("{name}: J(P*) = W_0"));
        // Perturb the Gibbs policy as tabular logits: the objective only grows.
        let (n, v) = (m.num_states(), m.vocab());
        let mut logits = vec![0.0; m.length() * n * v];
        let mut row = vec![0.0; v];
        for t in 1..=m.length() {
            for s in (0..n).filter(|&s| m.live[s]) {
                gibbs.probs(t, s, &mut row);
                for a in 0..v {
                    logits[((t - 1) * n + s) * v + a] = row[a].ln();
                }
            }
        }
        let same = objective(&TabularPolicy::new(&m, &logits).unwrap());
        assert_close(same, optimum, 1e-9, 1e-12, &format!("{name}: Gibbs as tabular"));
        let noise = random_logits(&m, 5);
        for scale in [1e-3, 1e-1] {
            let perturbed: Vec<f64> = logits.iter().zip(&noise).map(|(l, e)| l + scale * e).collect();
            assert!(objective(&TabularPolicy::new(&m, &perturbed).unwrap()) > optimum, "{name}: perturbation {scale} improves J");
        }
    }
}

#[test]
fn prefilling_success_runs_from_expected_harm_to_one() {
    for (name, m) in scenarios() {
        let base = BasePolicy { model: &m };
        let h = conditional_harm(&m, &base);
        if h[0] == 0.0 {
            continue;
        }
        let binary = m.spec.harm.iter().all(|&x| x == 0.0 || x == 1.0);
        for_each_policy(&m, |policy_name, policy| {
            let h_policy = conditional_harm(&m, policy);
            let (_, asr) = on_harmful_prefixes(&m, &h, policy, &h_policy);
            assert_close(asr[0], h_policy[0], 1e-12, 1e-14, &format!("{name}/{policy_name} ASR_0"));
            if binary {
                assert_close(asr[m.length()], 1.0, 1e-12, 0.0, &format!("{name}/{policy_name} ASR_T"));
            }
        });
    }
}

#[test]
fn gibbs_at_lambda_zero_is_the_base() {
    let m = model(refusal_spec());
    let a = analyze(&m, 0.0, DEFAULT_HORIZON_TOLERANCE).unwrap();
    assert_eq!(a.aligned_expected_harm, a.base.expected_harm);
    assert!(a.kl_on_policy.iter().all(|&k| k.abs() <= 1e-15));
    assert_eq!(a.asr_base, a.asr_aligned);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // Over 512 states, so that several chunks run in parallel.
    let m = model(random_spec(21, 6, 2, 12, 200, false, false));
    assert!(m.num_states() > 2000, "{} states", m.num_states());
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| analyze(&m, 3.0, DEFAULT_HORIZON_TOLERANCE).unwrap())
    };
    let (one, two, three) = (run(1), run(2), run(3));
    for other in [&two, &three] {
        assert_eq!(one.base.harm_information, other.base.harm_information);
        assert_eq!(one.base.grad_norm, other.base.grad_norm);
        assert_eq!(one.kl_on_policy, other.kl_on_policy);
        assert_eq!(one.kl_teacher_forced, other.kl_teacher_forced);
        assert_eq!(one.asr_aligned, other.asr_aligned);
        assert_eq!(one.base.harm_variance.to_bits(), other.base.harm_variance.to_bits());
    }
}

#[test]
fn refusal_is_shallow() {
    // The refusal scenario's harm is decided early: most harm information sits in the first positions.
    let m = model(refusal_spec());
    let a = analyze(&m, 5.0, DEFAULT_HORIZON_TOLERANCE).unwrap();
    let info = &a.base.harm_information;
    let total: f64 = info.iter().sum();
    assert!(info[..5].iter().sum::<f64>() > 0.95 * total, "{info:?}");
    assert!(a.aligned_expected_harm < a.base.expected_harm);
    // Qi et al.'s observation: the teacher-forced KL is front-loaded.
    assert!(a.kl_teacher_forced[0] > 10.0 * a.kl_teacher_forced[10]);
    let _ = ScenarioSpec::clone(&m.spec);
}

