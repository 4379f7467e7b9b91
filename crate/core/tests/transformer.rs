//! The transformer policy: configuration errors, backpropagation against finite differences block
//! by block, the KV cache against the full forward pass, the score-function sum against finite
//! differences of Σ c·log π, thread-count independence, and sampling through `StepPolicy`.

mod common;
use common::*;

use harm_horizon_core::sampling::{sample, SampleRequest};
use harm_horizon_core::transformer::{Transformer, TransformerConfig, TransformerPolicy};
use harm_horizon_core::walk::{Track, NO_TOKEN};

fn config(vocab: usize, length: usize, layers: usize, width: usize, heads: usize, mlp_width: usize) -> TransformerConfig {
    TransformerConfig { vocab, length, layers, width, heads, mlp_width }
}

/// Seeded parameters, perturbed so that no symmetry (LayerNorm gains 1, biases 0) hides a bug.
fn generic_params(model: &Transformer, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    model.init_params(seed).iter().map(|p| p + 0.2 * rng.normal()).collect()
}

fn random_responses(rng: &mut Rng, count: usize, vocab: usize, length: usize) -> Vec<u32> {
    let mut tokens = vec![NO_TOKEN; count * length];
    for n in 0..count {
        // Some responses end early (NO_TOKEN after), as responses with an end token do.
        let len = if n % 3 == 2 { 1 + rng.below(length) } else { length };
        for t in 0..len {
            tokens[n * length + t] = rng.below(vocab) as u32;
        }
    }
    tokens
}

#[test]
fn configurations_are_checked_field_by_field() {
    let message = |c: TransformerConfig| Transformer::new(c).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message(config(4, 5, 1, 6, 4, 8)).contains("transformer.heads"));
    assert!(message(config(4, 5, 0, 6, 2, 8)).contains("transformer.layers"));
    assert!(message(config(4, 5, 1, 6, 2, 0)).contains("transformer.mlpWidth"));
    assert!(message(config(0, 5, 1, 6, 2, 8)).contains("transformer.vocab"));
    assert!(message(config(4, 5, 9, 6, 2, 8)).contains("transformer.layers"));
    let model = Transformer::new(config(4, 5, 2, 6, 2, 8)).unwrap();
    let total: usize = model.blocks().iter().map(|(_, r)| r.len()).sum();
    assert_eq!(total, model.num_params());
    assert!(model.check_params(&vec![0.0; model.num_params() - 1]).is_err());
}

#[test]
fn backward_matches_finite_differences_in_every_block() {
    for (layers, width, heads, mlp) in [(1, 4, 2, 6), (2, 6, 3, 5)] {
        let model = Transformer::new(config(3, 5, layers, width, heads, mlp)).unwrap();
        let (t, v) = (5, 3);
        let params = generic_params(&model, 17 + layers as u64);
        let mut rng = Rng(3);
        let responses = random_responses(&mut rng, 3, v, t);
        let delta: Vec<f64> = (0..3 * t * v).map(|_| rng.normal()).collect();
        let objective = |p: &[f64]| {
            let mut work = model.work(3);
            model.forward_batch(p, &responses, &mut work);
            work.logits.iter().zip(&delta).map(|(l, d)| l * d).sum::<f64>()
        };
        let mut work = model.work(3);
        model.forward_batch(&params, &responses, &mut work);
        let mut grad = vec![0.0; params.len()];
        model.backward_batch(&params, &responses, &mut work, &delta, &mut grad);
        let h = 1e-6;
        for (name, range) in model.blocks() {
            let mut largest: f64 = 0.0;
            for i in range {
                let mut plus = params.clone();
                plus[i] += h;
                let mut minus = params.clone();
                minus[i] -= h;
                let fd = (objective(&plus) - objective(&minus)) / (2.0 * h);
                assert_close(grad[i], fd, 1e-6, 1e-7, &format!("{name}: ∂/∂θ_{i} ({layers} layers)"));
                largest = largest.max(grad[i].abs());
            }
            // Every block but the embeddings of tokens never read gets a gradient.
            assert!(largest > 1e-4, "{name} has no gradient");
        }
    }
}

#[test]
fn the_kv_cache_equals_the_full_forward_pass() {
    let model = Transformer::new(config(5, 7, 2, 8, 2, 12)).unwrap();
    let (t, v) = (7, 5);
    let params = generic_params(&model, 5);
    let mut rng = Rng(8);
    let responses = random_responses(&mut rng, 4, v, t);
    let mut work = model.work(4);
    model.forward_batch(&params, &responses, &mut work);
    // One cache shared by all responses in turn, as the sampler shares its scratch: a new response
    // must not reuse the previous one's positions beyond their common prefix.
    let mut cache = vec![0.0; model.cache_len()];
    let mut logits = vec![0.0; v];
    for n in 0..4 {
        let response = &responses[n * t..(n + 1) * t];
        for i in 0..t {
            if i > 0 && response[i - 1] == NO_TOKEN {
                break;
            }
            model.next_logits(&params, &response[..i], &mut cache, &mut logits);
            for a in 0..v {
                assert_close(logits[a], work.logits[(n * t + i) * v + a], 1e-12, 1e-12, &format!("response {n}, position {i}, token {a}"));
            }
        }
    }
    // A shorter prefix after a longer one, and a repeated call, read the cache correctly.
    let response = &responses[..t];
    for i in [5, 2, 2, 6, 0] {
        model.next_logits(&params, &response[..i], &mut cache, &mut logits);
        for a in 0..v {
            assert_close(logits[a], work.logits[i * v + a], 1e-12, 1e-12, &format!("revisited position {i}"));
        }
    }
}

fn log_softmax(logits: &[f64], a: usize) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    logits[a] - max - logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln()
}

/// Samples drawn through `StepPolicy` (KV cache), with log-probabilities that equal the batched
/// forward's, on a scenario with an end token and order-2 contexts.
#[test]
fn sampling_and_the_score_sum_agree_with_the_batched_network() {
    let spec = random_spec(12, 4, 2, 6, 5, true, true);
    let track = Track::new(&spec, None);
    let model = Transformer::new(config(4, 6, 2, 8, 4, 10)).unwrap();
    let params = generic_params(&model, 9);
    let policy = TransformerPolicy { model: &model, params: &params };
    let samples = sample(&track, &policy, &SampleRequest { count: 300, seed: 4, prefix: None, first_index: 0 }).unwrap();
    let (t, v) = (6, 4);
    assert!(samples.emitted.iter().any(|&e| (e as usize) < t), "some responses end early");
    let mut work = model.work(samples.count);
    model.forward_batch(&params, &samples.tokens, &mut work);
    // The parallel batches of `logits` give the one large batch's logits.
    let logits = model.logits(&params, &samples.tokens);
    assert_eq!(logits.len(), samples.count * t * v);
    for (a, b) in logits.iter().zip(&work.logits) {
        assert_close(*a, *b, 1e-12, 1e-12, "logits in batches");
    }
    for n in 0..samples.count {
        for i in 0..t {
            let y = samples.tokens[n * t + i];
            if y != NO_TOKEN {
                let expected = log_softmax(&work.logits[(n * t + i) * v..][..v], y as usize);
                assert_close(samples.log_probs[n * t + i], expected, 1e-11, 1e-12, "sampled log-probability");
            }
        }
    }
    // Σ_n Σ_t c_{n,t}·∇log π(y_{n,t}|…)/N against finite differences of the same sum of c·log π,
    // with c depending on the response and the position (held fixed while differentiating).
    let coef = |n: usize, i: usize| samples.harm[n] + 0.1 * i as f64 - 0.4;
    let gradient = model.score_gradient(&params, &samples, &|n, i, _| coef(n, i));
    let objective = |p: &[f64]| {
        let mut work = model.work(samples.count);
        model.forward_batch(p, &samples.tokens, &mut work);
        let mut total = 0.0;
        for n in 0..samples.count {
            for i in 0..t {
                let y = samples.tokens[n * t + i];
                if y != NO_TOKEN {
                    total += coef(n, i) * log_softmax(&work.logits[(n * t + i) * v..][..v], y as usize);
                }
            }
        }
        total / samples.count as f64
    };
    let h = 1e-6;
    for (name, range) in model.blocks() {
        // A few entries of every block.
        for i in range.clone().step_by((range.len() / 3).max(1)) {
            let mut plus = params.clone();
            plus[i] += h;
            let mut minus = params.clone();
            minus[i] -= h;
            let fd = (objective(&plus) - objective(&minus)) / (2.0 * h);
            assert_close(gradient[i], fd, 1e-5, 1e-8, &format!("{name}: score sum ∂/∂θ_{i}"));
        }
    }
    // The log-probability the coefficient sees is the current one.
    let seen = model.score_gradient(&params, &samples, &|n, i, log_pi| {
        assert_close(log_pi, samples.log_probs[n * t + i], 1e-11, 1e-12, "coefficient's log π");
        0.0
    });
    assert!(seen.iter().all(|g| *g == 0.0));
}

#[test]
fn the_score_sum_does_not_depend_on_the_thread_count() {
    let spec = random_spec(13, 5, 1, 8, 6, true, false);
    let track = Track::new(&spec, None);
    let model = Transformer::new(config(5, 8, 1, 8, 2, 16)).unwrap();
    let params = generic_params(&model, 2);
    let policy = TransformerPolicy { model: &model, params: &params };
    let samples = sample(&track, &policy, &SampleRequest { count: 700, seed: 6, prefix: None, first_index: 0 }).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| model.score_gradient(&params, &samples, &|n, i, log_pi| samples.harm[n] * log_pi - i as f64))
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(one.iter().zip(run(threads)).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads");
    }
}

/// Ĝ_t position by position: they sum to the whole gradient, and Ĝ_t is the derivative of the
/// position-t terms alone (with shared parameters, an early position's gradient moves later ones).
#[test]
fn per_position_gradients_sum_to_the_whole_and_match_finite_differences() {
    let spec = random_spec(14, 3, 2, 5, 4, true, false);
    let track = Track::new(&spec, None);
    let model = Transformer::new(config(3, 5, 1, 4, 2, 6)).unwrap();
    let params = generic_params(&model, 21);
    let policy = TransformerPolicy { model: &model, params: &params };
    let samples = sample(&track, &policy, &SampleRequest { count: 40, seed: 2, prefix: None, first_index: 0 }).unwrap();
    let (t, v, p) = (5, 3, model.num_params());
    let coef = |n: usize, i: usize| 1.0 + samples.harm[n] - 0.3 * i as f64;
    let blocks = model.score_gradient_per_position(&params, &samples, &|n, i, _| coef(n, i));
    let total = model.score_gradient(&params, &samples, &|n, i, _| coef(n, i));
    for j in 0..p {
        let sum: f64 = (0..t).map(|i| blocks[i * p + j]).sum();
        assert_close(sum, total[j], 1e-12, 1e-14, "Σ_t Ĝ_t");
    }
    let position_objective = |q: &[f64], i: usize| {
        let mut work = model.work(samples.count);
        model.forward_batch(q, &samples.tokens, &mut work);
        let mut sum = 0.0;
        for n in 0..samples.count {
            let y = samples.tokens[n * t + i];
            if y != NO_TOKEN {
                sum += coef(n, i) * log_softmax(&work.logits[(n * t + i) * v..][..v], y as usize);
            }
        }
        sum / samples.count as f64
    };
    let h = 1e-6;
    for i in 0..t {
        for j in (0..p).step_by(11) {
            let mut plus = params.clone();
            plus[j] += h;
            let mut minus = params.clone();
            minus[j] -= h;
            let fd = (position_objective(&plus, i) - position_objective(&minus, i)) / (2.0 * h);
            assert_close(blocks[i * p + j], fd, 1e-5, 1e-8, &format!("Ĝ_{i}[{j}]"));
        }
    }
}
