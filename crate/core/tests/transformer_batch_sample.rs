//! The transformer's batched sampler against the per-sample sampler (same draws, same tokens), its
//! thread-count independence, and PPO's clipped-surrogate gradient against finite differences.

mod common;
use common::*;

use harm_horizon_core::sampling::{sample, SampleRequest};
use harm_horizon_core::transformer::{Transformer, TransformerConfig, TransformerPolicy};
use harm_horizon_core::walk::{Track, NO_TOKEN};

fn model_and_params(vocab: usize, length: usize, layers: usize, seed: u64) -> (Transformer, Vec<f64>) {
    let model = Transformer::new(TransformerConfig { vocab, length, layers, width: 12, heads: 3, mlp_width: 20 }).unwrap();
    let mut rng = Rng(seed);
    let params = model.init_params(seed).iter().map(|p| p + 0.3 * rng.normal()).collect();
    (model, params)
}

/// An end token, order-2 contexts, graded harm and exact states: every field of the samples
/// matches the per-sample sampler's, from a first index that is not a chunk boundary.
#[test]
fn batched_sampling_draws_the_per_sample_samplers_tokens() {
    let spec = random_spec(21, 5, 2, 9, 6, true, true);
    let exact = model(spec.clone());
    let track = Track::new(&spec, Some(&exact));
    let (net, params) = model_and_params(5, 9, 2, 3);
    let policy = TransformerPolicy { model: &net, params: &params };
    let (count, seed, first_index) = (300, 11, 17);
    let one = sample(&track, &policy, &SampleRequest { count, seed, prefix: None, first_index }).unwrap();
    let batched = net.sample_batched(&params, &track, count, seed, first_index).unwrap();
    assert!(one.emitted.iter().any(|&e| e < 9) && one.emitted.contains(&9), "some responses end early, some run to T");
    assert_eq!(batched.tokens, one.tokens);
    assert_eq!(batched.emitted, one.emitted);
    assert_eq!(batched.harm, one.harm);
    assert_eq!(batched.states, one.states);
    assert_eq!(batched.first_index, first_index);
    for (i, (a, b)) in batched.log_probs.iter().zip(&one.log_probs).enumerate() {
        assert_close(*a, *b, 1e-12, 1e-12, &format!("log-probability {i}"));
    }
}

#[test]
fn batched_sampling_does_not_depend_on_the_thread_count() {
    let spec = random_spec(22, 6, 1, 12, 4, false, true);
    let track = Track::new(&spec, None);
    let (net, params) = model_and_params(6, 12, 1, 5);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| net.sample_batched(&params, &track, 500, 8, 0).unwrap())
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(one.tokens, two.tokens);
    assert!(one.log_probs.iter().zip(&two.log_probs).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(one.tokens.iter().all(|&a| a != NO_TOKEN), "no end token: every response runs to T");
}

fn log_softmax(logits: &[f64], a: usize) -> f64 {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    logits[a] - max - logits.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// Away from the clip's kinks the surrogate is differentiable: its central differences along random
/// directions equal the gradient, with old log-probabilities from other parameters so that some
/// terms are clipped and some are not.
#[test]
fn the_ppo_gradient_is_the_derivative_of_the_clipped_surrogate() {
    let spec = random_spec(23, 4, 1, 6, 4, true, false);
    let track = Track::new(&spec, None);
    let (net, old) = model_and_params(4, 6, 2, 7);
    let samples = net.sample_batched(&old, &track, 60, 3, 0).unwrap();
    let mut rng = Rng(31);
    let params: Vec<f64> = old.iter().map(|p| p + 0.05 * rng.normal()).collect();
    let advantages: Vec<f64> = (0..samples.tokens.len()).map(|_| rng.normal()).collect();
    let (v, clip) = (4, 0.1);
    let surrogate = |theta: &[f64]| -> (f64, usize) {
        let logits = net.logits(theta, &samples.tokens);
        let (mut total, mut clipped) = (0.0, 0);
        for (at, &y) in samples.tokens.iter().enumerate() {
            if y == NO_TOKEN {
                continue;
            }
            let ratio = (log_softmax(&logits[at * v..(at + 1) * v], y as usize) - samples.log_probs[at]).exp();
            let a = advantages[at];
            let bounded = ratio.clamp(1.0 - clip, 1.0 + clip);
            clipped += ((bounded * a) < ratio * a) as usize;
            total += (ratio * a).min(bounded * a);
        }
        (total / samples.count as f64, clipped)
    };
    let (_, clipped) = surrogate(&params);
    let tokens = samples.tokens.iter().filter(|&&a| a != NO_TOKEN).count();
    assert!(clipped > 0 && clipped < tokens, "{clipped} of {tokens} terms clipped");
    let grad = net.ppo_gradient(&params, &samples, &samples.log_probs, &advantages, clip);
    for _ in 0..3 {
        let u: Vec<f64> = (0..params.len()).map(|_| rng.normal()).collect();
        let h = 1e-6;
        let at = |s: f64| params.iter().zip(&u).map(|(p, d)| p + s * h * d).collect::<Vec<_>>();
        let fd = (surrogate(&at(1.0)).0 - surrogate(&at(-1.0)).0) / (2.0 * h);
        let analytic: f64 = grad.iter().zip(&u).map(|(g, d)| g * d).sum();
        assert_close(analytic, fd, 1e-5, 1e-7, "directional derivative");
    }
}
