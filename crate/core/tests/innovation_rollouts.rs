//! reinforce-innovation with h_t from nested rollouts of the policy being trained (no exact model
//! needed): its step is unbiased for the exact gradient of J = λ·E[H] + KL and agrees in
//! expectation with the exact-h step, gives the same bits on any thread count and for the dense and
//! the lazy tabular policy, trains the lazy tabular, mlp and transformer policies without the exact
//! model, and its buffers are checked against the memory budget.

mod common;
use common::*;

use harm_horizon_core::estimate::HarmSource;
use harm_horizon_core::exact::conditional_harm;
use harm_horizon_core::lazy_tabular::LazyTabular;
use harm_horizon_core::mlp::{Activation, Mlp, MlpConfig};
use harm_horizon_core::model::Model;
use harm_horizon_core::objective::{base_harmful_prefixes, evaluate, Anchor, Objective, ObjectiveKind};
use harm_horizon_core::optim::Adam;
use harm_horizon_core::policy::{BasePolicy, TabularPolicy};
use harm_horizon_core::rl::{check_rollout_budget, rl_step, rollout_bytes, MlpFamily, RlAlgorithm, RlStep, TabularFamily};
use harm_horizon_core::sampling::SampleRequest;
use harm_horizon_core::transformer::{Transformer, TransformerConfig};
use harm_horizon_core::transformer_table::TransformerFamily;
use harm_horizon_core::walk::Track;

const LAMBDA: f64 = 2.0;
const INNOVATION: RlAlgorithm = RlAlgorithm::ReinforceInnovation;

/// Order-2 contexts, graded harm in (0, 1), an end token, T = 5; automaton state 4 absorbs with harm
/// 1, so some responses are decided before T (before the end) and others stay undecided at T.
fn fixture() -> Model {
    let mut spec = random_spec(41, 4, 2, 5, 5, true, true);
    let (v, absorbing) = (spec.vocab, 4);
    for a in 0..v {
        spec.transitions[absorbing * v + a] = absorbing as u32;
    }
    model(spec)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// The gradient one reinforce-innovation step of the tabular policy `logits` would apply (the
/// parameters are left as they are).
fn step_gradient(model: &Model, logits: &[f64], count: usize, first_index: u32, harm: &HarmSource) -> Vec<f64> {
    let track = Track::new(&model.spec, Some(model));
    let mut params = logits.to_vec();
    let mut gradient = Vec::new();
    let mut keep = |_: &mut [f64], g: &[f64]| gradient = g.to_vec();
    rl_step(&track, &TabularFamily(model), &mut params, &mut keep, count, 17, first_index, LAMBDA, INNOVATION, Some(harm)).unwrap();
    gradient
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mean and standard error of a sample.
fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn the_rollout_h_step_is_unbiased_for_the_exact_gradient_and_agrees_with_the_exact_h_step() {
    let model = fixture();
    let logits = random_logits(&model, 3);
    let policy = TabularPolicy::new(&model, &logits).unwrap();
    let table = conditional_harm(&model, &policy);
    // ∇J of the standard objective λ·E[H] + KL(P_θ ‖ P_base), exact, over the T × S × V logits.
    let objective = Objective { kind: ObjectiveKind::Standard, lambda: LAMBDA, mu: 0.0, weights: vec![1.0; model.length()], recovery: vec![false; model.vocab()], mix: 0.0, anchor: Anchor::Init };
    let q = base_harmful_prefixes(&model, &conditional_harm(&model, &BasePolicy { model: &model })).unwrap();
    let exact = evaluate(&model, &policy, &objective, &q, None, true).unwrap().gradient.unwrap();
    // Directions: the exact gradient and three random ones.
    let mut rng = Rng(9);
    let mut directions = vec![exact.clone()];
    directions.extend((0..3).map(|_| (0..exact.len()).map(|_| rng.normal()).collect::<Vec<f64>>()));

    // The wrong h (the base policy's, not the trained one's): a biased step the test must catch.
    let base_table = conditional_harm(&model, &BasePolicy { model: &model });
    let (batches, count) = (200, 128);
    let mut rollout_proj = vec![Vec::new(); directions.len()];
    let mut paired_diff = vec![Vec::new(); directions.len()];
    let mut wrong_h = Vec::new();
    for k in 0..batches {
        let first = (k * count) as u32;
        let with_rollouts = step_gradient(&model, &logits, count, first, &HarmSource::Rollouts(2));
        let with_exact = step_gradient(&model, &logits, count, first, &HarmSource::Exact(&table));
        for (d, u) in directions.iter().enumerate() {
            rollout_proj[d].push(dot(&with_rollouts, u));
            paired_diff[d].push(dot(&with_rollouts, u) - dot(&with_exact, u));
        }
        wrong_h.push(dot(&step_gradient(&model, &logits, count, first, &HarmSource::Exact(&base_table)), &exact));
    }
    for (d, u) in directions.iter().enumerate() {
        let want = dot(&exact, u);
        let (mean, se) = mean_se(&rollout_proj[d]);
        assert!((mean - want).abs() <= 4.0 * se, "direction {d}: rollout-h step {mean} ± {se}, exact ∇J {want}");
        // Same batches, only h differs: the rollout noise has mean zero.
        let (diff, diff_se) = mean_se(&paired_diff[d]);
        assert!(diff.abs() <= 4.0 * diff_se, "direction {d}: rollout-h − exact-h step {diff} ± {diff_se}");
        assert!(diff_se > 0.0, "the rollouts add noise");
    }
    // The test has power: along ∇J the estimate is far from zero compared with its error.
    let (mean, se) = mean_se(&rollout_proj[0]);
    assert!(mean > 10.0 * se, "along ∇J: {mean} ± {se}");
    let (biased, biased_se) = mean_se(&wrong_h);
    let want = dot(&exact, &exact);
    assert!((biased - want).abs() > 4.0 * biased_se, "h of the wrong policy: {biased} ± {biased_se} vs {want}");
}

/// `steps` rollout-h steps of the dense tabular policy (exact model) from `logits`, Adam.
fn dense_run(model: &Model, logits: &[f64], steps: usize) -> (Vec<f64>, Vec<RlStep>) {
    let track = Track::new(&model.spec, Some(model));
    let mut params = logits.to_vec();
    let mut adam = Adam::new(params.len(), 0.1);
    let records = (0..steps)
        .map(|k| {
            let mut update = |p: &mut [f64], g: &[f64]| adam.step(p, g);
            rl_step(&track, &TabularFamily(model), &mut params, &mut update, 96, 5, (k * 96) as u32, LAMBDA, INNOVATION, Some(&HarmSource::Rollouts(2))).unwrap()
        })
        .collect();
    (params, records)
}

/// The same run with the lazy tabular policy from the base, without the exact model.
fn lazy_run(model: &Model, steps: usize) -> (LazyTabular, Vec<RlStep>) {
    let track = Track::new(&model.spec, None);
    let mut lazy = LazyTabular::new(&model.spec, u64::MAX);
    let mut adam = Adam::new(0, 0.1);
    let records = (0..steps)
        .map(|k| {
            let request = SampleRequest { count: 96, seed: 5, prefix: None, first_index: (k * 96) as u32 };
            let mut update = |p: &mut [f64], g: &[f64]| {
                adam.grow_to(p.len());
                adam.step(p, g)
            };
            lazy.rl_step(&track, &mut update, &request, LAMBDA, INNOVATION, Some(&HarmSource::Rollouts(2))).unwrap()
        })
        .collect();
    (lazy, records)
}

#[test]
fn rollout_h_steps_are_the_same_bits_on_any_thread_count_and_for_the_lazy_policy_without_the_model() {
    let model = fixture();
    let base = harm_horizon_core::policy_spec::base_logits(&model).unwrap();
    let (want, want_steps) = in_pool(2, || dense_run(&model, &base, 3));
    assert!(want != base, "the dense run moved");
    for threads in [1, 2] {
        let (again, _) = in_pool(threads, || dense_run(&model, &base, 3));
        assert_eq!(bits(&again), bits(&want), "dense, {threads} threads");
        // The lazy policy stands for the same tabular policy; its rollouts walk without exact states.
        let (lazy, steps) = in_pool(threads, || lazy_run(&model, 3));
        assert_eq!(bits(&lazy.dense(&model).unwrap()), bits(&want), "lazy, {threads} threads");
        for (a, b) in steps.iter().zip(&want_steps) {
            assert_eq!([a.mean_harm.to_bits(), a.mean_kl.to_bits()], [b.mean_harm.to_bits(), b.mean_kl.to_bits()]);
        }
    }
}

#[test]
fn an_mlp_trains_with_rollout_h_without_the_exact_model_and_the_same_bits_on_any_thread_count() {
    let model = fixture();
    let spec = &model.spec;
    let net = Mlp::new(MlpConfig { vocab: spec.vocab, order: 2, length: spec.length, hidden: vec![8], activation: Activation::Tanh }).unwrap();
    let init = net.init_params(3);
    let run = || {
        let track = Track::new(spec, None);
        let mut params = init.clone();
        let mut adam = Adam::new(params.len(), 0.05);
        let steps: Vec<RlStep> = (0..3)
            .map(|k| {
                let mut update = |p: &mut [f64], g: &[f64]| adam.step(p, g);
                rl_step(&track, &MlpFamily(&net), &mut params, &mut update, 64, 8, (k * 64) as u32, LAMBDA, INNOVATION, Some(&HarmSource::Rollouts(2))).unwrap()
            })
            .collect();
        (params, steps)
    };
    let (one, steps) = in_pool(1, run);
    let (two, _) = in_pool(2, run);
    assert_eq!(bits(&one), bits(&two));
    assert!(one.iter().zip(&init).any(|(a, b)| a != b), "the parameters moved");
    assert!(steps.iter().all(|s| s.grad_norm.iter().all(|g| g.is_finite())) && steps[0].grad_norm.iter().any(|&g| g > 0.0));
}

#[test]
fn a_transformer_trains_with_rollout_h_without_the_prefix_tree_and_the_same_bits_on_any_thread_count() {
    let model = fixture();
    let spec = &model.spec;
    let net = Transformer::new(TransformerConfig { vocab: spec.vocab, length: spec.length, layers: 1, width: 8, heads: 2, mlp_width: 8 }).unwrap();
    let init = net.init_params(2);
    let run = || {
        let track = Track::new(spec, None);
        let mut params = init.clone();
        let mut adam = Adam::new(params.len(), 0.05);
        let mut update = |p: &mut [f64], g: &[f64]| adam.step(p, g);
        let family = TransformerFamily { net: &net, penalty: None };
        rl_step(&track, &family, &mut params, &mut update, 16, 8, 0, LAMBDA, INNOVATION, Some(&HarmSource::Rollouts(1))).unwrap();
        params
    };
    let one = in_pool(1, run);
    assert_eq!(bits(&one), bits(&in_pool(2, run)));
    assert!(one.iter().zip(&init).any(|(a, b)| a != b), "the parameters moved");
}

#[test]
fn the_innovation_variant_refuses_to_run_without_h() {
    let model = fixture();
    let track = Track::new(&model.spec, None);
    let mut lazy = LazyTabular::new(&model.spec, u64::MAX);
    let request = SampleRequest { count: 8, seed: 1, prefix: None, first_index: 0 };
    let e = lazy.rl_step(&track, &mut |_, _| {}, &request, LAMBDA, INNOVATION, None).unwrap_err();
    assert_eq!(e.code(), "HH_INVALID_ARGUMENT");
    let e = lazy.rl_step(&track, &mut |_, _| {}, &request, LAMBDA, INNOVATION, Some(&HarmSource::Rollouts(0))).unwrap_err();
    assert_eq!(e.code(), "HH_INVALID_ARGUMENT");
}

#[test]
fn rollout_buffers_are_checked_against_the_budget() {
    // Two sets of ĥ_t, N × (T+1) f64 each, whatever M.
    assert_eq!(rollout_bytes(1000, 63), 2.0 * 1000.0 * 64.0 * 8.0);
    let bytes = rollout_bytes(1000, 63) as u64;
    assert!(check_rollout_budget(1000, 63, bytes).is_ok());
    let e = check_rollout_budget(1000, 63, bytes - 1).unwrap_err();
    assert_eq!(e.code(), "HH_OUT_OF_MEMORY");
    assert!(e.to_string().contains("rollout buffers"), "{e}");
    // Sizes that overflow the machine are refused, not wrapped.
    assert_eq!(check_rollout_budget(usize::MAX, usize::MAX, u64::MAX).unwrap_err().code(), "HH_OUT_OF_MEMORY");
}
