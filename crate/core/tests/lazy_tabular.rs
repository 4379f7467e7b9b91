//! The lazily keyed tabular policy is the tabular policy without the exact state index: on a
//! scenario the exact engine enumerates, with the same logits, it must give the same samples,
//! estimates and training steps bit for bit, for 1 and 2 threads, with or without the exact model.

mod common;
use common::*;

use harm_horizon_core::estimate::HarmSource;
use harm_horizon_core::exact::conditional_harm;
use harm_horizon_core::lazy_tabular::{bytes_per_row, LazyTabular, RowKey};
use harm_horizon_core::model::Model;
use harm_horizon_core::monte_carlo::{run, HarmChoice, RunRequest};
use harm_horizon_core::optim::Adam;
use harm_horizon_core::policy::TabularPolicy;
use harm_horizon_core::policy_spec::base_logits;
use harm_horizon_core::rl::{rl_step, RlAlgorithm, RlStep, TabularFamily};
use harm_horizon_core::sampling::{sample, ExactStep, SampleRequest, Samples};
use harm_horizon_core::walk::Track;

/// Order 2, graded harm, an end token, T = 6 with undecided mass at T (harm strictly inside (0, 1)).
fn fixture() -> Model {
    model(random_spec(31, 4, 2, 6, 5, true, true))
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// A lazy policy with rows visited by a base sample, their logits perturbed (so it is not the base).
fn perturbed_lazy(model: &Model) -> LazyTabular {
    let track = Track::new(&model.spec, None);
    let mut lazy = LazyTabular::new(&model.spec, u64::MAX);
    let request = SampleRequest { count: 300, seed: 5, prefix: None, first_index: 0 };
    let batch = sample(&track, &lazy.view(&model.spec), &request).unwrap();
    assert!(lazy.visit(&track, &batch).unwrap() > 10);
    let (keys, logits) = lazy.rows();
    let mut rng_logits = logits.clone();
    for (i, l) in rng_logits.iter_mut().enumerate() {
        *l += ((i * 7919) % 13) as f64 / 6.0 - 1.0;
    }
    LazyTabular::from_rows(&model.spec, u64::MAX, &keys, &rng_logits).unwrap()
}

fn same_samples(a: &Samples, b: &Samples) {
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(bits(&a.log_probs), bits(&b.log_probs));
    assert_eq!(bits(&a.harm), bits(&b.harm));
    assert_eq!(a.emitted, b.emitted);
}

#[test]
fn samples_and_estimates_equal_the_tabular_policys() {
    let model = fixture();
    let lazy = perturbed_lazy(&model);
    let dense = lazy.dense(&model).unwrap();
    let tabular = TabularPolicy::new(&model, &dense).unwrap();
    let h = conditional_harm(&model, &tabular);
    let request = SampleRequest { count: 2000, seed: 11, prefix: None, first_index: 3 };
    for threads in [1, 2] {
        in_pool(threads, || {
            let exact_track = Track::new(&model.spec, Some(&model));
            let want = sample(&exact_track, &ExactStep(&tabular), &request).unwrap();
            for track in [exact_track, Track::new(&model.spec, None)] {
                same_samples(&sample(&track, &lazy.view(&model.spec), &request).unwrap(), &want);
            }
            // Estimates with h from rollouts (beyond the budget there is no other), and exact h
            // (which reads the exact states of the samples).
            for (harm, lazy_track) in [(HarmChoice::Rollouts(4), Track::new(&model.spec, None)), (HarmChoice::Exact(&h), exact_track)] {
                let request = RunRequest { samples: 1500, seed: 9, harm: Some(harm), gradient: None, directions: None, teacher_forced: true, proposal: None };
                let a = run(&exact_track, &ExactStep(&tabular), None, &request).unwrap();
                let b = run(&lazy_track, &lazy.view(&model.spec), None, &request).unwrap();
                assert_eq!(a.expected_harm.mean.to_bits(), b.expected_harm.mean.to_bits());
                assert_eq!(a.expected_harm.se.to_bits(), b.expected_harm.se.to_bits());
                assert_eq!(bits(&a.kl_on_policy.mean), bits(&b.kl_on_policy.mean));
                assert_eq!(bits(&a.kl_teacher_forced.unwrap().mean), bits(&b.kl_teacher_forced.unwrap().mean));
                assert_eq!(bits(&a.harm_information.unwrap().mean), bits(&b.harm_information.unwrap().mean));
            }
        });
    }
}

/// `steps` training steps of the dense tabular policy from the base (Adam over T × S × V).
fn dense_run(model: &Model, algorithm: RlAlgorithm, steps: usize) -> (Vec<f64>, Vec<RlStep>) {
    let track = Track::new(&model.spec, Some(model));
    let mut params = base_logits(model).unwrap();
    let mut adam = Adam::new(params.len(), 0.1);
    let records = (0..steps)
        .map(|k| {
            let h = matches!(algorithm, RlAlgorithm::ReinforceInnovation).then(|| conditional_harm(model, &TabularPolicy::new(model, &params).unwrap()));
            let mut update = |p: &mut [f64], g: &[f64]| adam.step(p, g);
            rl_step(&track, &TabularFamily(model), &mut params, &mut update, 256, 21, (k * 256) as u32, 2.0, algorithm, h.as_deref().map(HarmSource::Exact).as_ref()).unwrap()
        })
        .collect();
    (params, records)
}

/// The same run with the lazy policy (Adam over the stored rows, grown as rows are visited).
fn lazy_run(model: &Model, with_model: bool, algorithm: RlAlgorithm, steps: usize) -> (LazyTabular, Vec<RlStep>) {
    let track = Track::new(&model.spec, with_model.then_some(model));
    let mut lazy = LazyTabular::new(&model.spec, u64::MAX);
    let mut adam = Adam::new(0, 0.1);
    let records = (0..steps)
        .map(|k| {
            let h = matches!(algorithm, RlAlgorithm::ReinforceInnovation).then(|| conditional_harm(model, &TabularPolicy::new(model, &lazy.dense(model).unwrap()).unwrap()));
            let request = SampleRequest { count: 256, seed: 21, prefix: None, first_index: (k * 256) as u32 };
            let mut update = |p: &mut [f64], g: &[f64]| {
                adam.grow_to(p.len());
                adam.step(p, g)
            };
            lazy.rl_step(&track, &mut update, &request, 2.0, algorithm, h.as_deref().map(HarmSource::Exact).as_ref()).unwrap()
        })
        .collect();
    (lazy, records)
}

#[test]
fn training_steps_equal_the_tabular_policys() {
    let model = fixture();
    for algorithm in [RlAlgorithm::Reinforce, RlAlgorithm::ReinforceInnovation, RlAlgorithm::Ppo { clip: 0.2, epochs: 3 }] {
        let (want, want_steps) = in_pool(2, || dense_run(&model, algorithm, 4));
        assert!(want != base_logits(&model).unwrap(), "the dense run moved");
        for threads in [1, 2] {
            // The innovation variant reads exact h at the samples' exact states.
            let innovation = matches!(algorithm, RlAlgorithm::ReinforceInnovation);
            for with_model in [true, false].into_iter().filter(|&m| m || !innovation) {
                let (lazy, steps) = in_pool(threads, || lazy_run(&model, with_model, algorithm, 4));
                assert_eq!(bits(&lazy.dense(&model).unwrap()), bits(&want), "{algorithm:?}, {threads} threads, model {with_model}");
                for (a, b) in steps.iter().zip(&want_steps) {
                    assert_eq!([a.mean_harm.to_bits(), a.mean_kl.to_bits(), a.objective.to_bits()], [b.mean_harm.to_bits(), b.mean_kl.to_bits(), b.objective.to_bits()]);
                    for (x, y) in a.grad_norm.iter().zip(&b.grad_norm) {
                        assert_close(*x, *y, 1e-12, 1e-15, "per-position gradient norm");
                    }
                }
            }
        }
    }
}

#[test]
fn only_visited_rows_are_stored_and_the_budget_is_enforced() {
    let model = fixture();
    let track = Track::new(&model.spec, None);
    let request = SampleRequest { count: 64, seed: 2, prefix: None, first_index: 0 };
    let mut lazy = LazyTabular::new(&model.spec, u64::MAX);
    let batch = sample(&track, &lazy.view(&model.spec), &request).unwrap();
    let added = lazy.visit(&track, &batch).unwrap();
    // Exactly the distinct (position, context, automaton state) keys of the batch's tokens.
    let mut distinct = std::collections::BTreeSet::new();
    for n in 0..batch.count {
        let mut walk = track.start();
        for t in 0..batch.length {
            let a = batch.tokens[n * batch.length + t];
            if a == u32::MAX {
                break;
            }
            distinct.insert(RowKey::of(&walk));
            track.advance(&mut walk, a as usize);
        }
    }
    assert_eq!(added, distinct.len());
    assert_eq!(lazy.rows().0, distinct.into_iter().collect::<Vec<_>>());
    assert_eq!(lazy.visit(&track, &batch).unwrap(), 0, "a second visit adds nothing");
    // A budget one row short of the batch's keys refuses them with a coded error, adding nothing.
    let mut small = LazyTabular::new(&model.spec, (added as u64 - 1) * bytes_per_row(model.vocab()));
    let e = small.visit(&track, &batch).unwrap_err();
    assert_eq!(e.code(), "HH_OUT_OF_MEMORY", "{e}");
    assert_eq!(small.num_rows(), 0);
}

#[test]
fn imported_rows_are_checked() {
    let model = fixture();
    let v = model.vocab();
    let key = RowKey { position: 1, context: model.spec.start_context() as u64, automaton: 0 };
    let ok = LazyTabular::from_rows(&model.spec, u64::MAX, &[key], &vec![0.5; v]).unwrap();
    assert_eq!(ok.num_rows(), 1);
    let bad_position = RowKey { position: model.length() as u32 + 1, ..key };
    assert_eq!(LazyTabular::from_rows(&model.spec, u64::MAX, &[bad_position], &vec![0.0; v]).unwrap_err().code(), "HH_POLICY_INVALID");
    assert_eq!(LazyTabular::from_rows(&model.spec, u64::MAX, &[key, key], &vec![0.0; 2 * v]).unwrap_err().code(), "HH_POLICY_INVALID");
    assert_eq!(LazyTabular::from_rows(&model.spec, u64::MAX, &[key], &vec![f64::NEG_INFINITY; v]).unwrap_err().code(), "HH_POLICY_INVALID");
    assert_eq!(LazyTabular::from_rows(&model.spec, u64::MAX, &[key], &[0.0]).unwrap_err().code(), "HH_POLICY_INVALID");
}
