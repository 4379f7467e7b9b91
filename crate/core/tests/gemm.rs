//! The GEMM wrapper against a plain triple loop, and the batched mlp (forward, backward, score
//! sums over samples) against the one-input-at-a-time network and the covariance kernel, with
//! results independent of the thread count.

mod common;
use common::*;

use harm_horizon_core::estimate::accumulate_scores;
use harm_horizon_core::gemm::{gemm, Mat};
use harm_horizon_core::mlp::{Activation, Mlp, MlpConfig, MlpPolicy};
use harm_horizon_core::rl::{replay_log_probs, Family, MlpFamily, PpoCoefficients, Trainable};
use harm_horizon_core::sampling::{sample, SampleRequest, Samples};
use harm_horizon_core::walk::Track;

fn matrix(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.normal()).collect()
}

#[test]
fn gemm_matches_the_triple_loop_with_and_without_transposes() {
    let mut rng = Rng(5);
    for (m, k, n) in [(1, 1, 1), (3, 7, 5), (17, 33, 9), (64, 65, 31)] {
        let (a, at) = (matrix(&mut rng, m * k), matrix(&mut rng, k * m));
        let (b, bt) = (matrix(&mut rng, k * n), matrix(&mut rng, n * k));
        let c0 = matrix(&mut rng, m * n);
        // A given as m × k or as its transpose (k × m), B likewise.
        for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let a_at = |i: usize, j: usize| if transpose_a { at[j * m + i] } else { a[i * k + j] };
            let b_at = |i: usize, j: usize| if transpose_b { bt[j * k + i] } else { b[i * n + j] };
            let av = if transpose_a { Mat::new(&at, k, m).t() } else { Mat::new(&a, m, k) };
            let bv = if transpose_b { Mat::new(&bt, n, k).t() } else { Mat::new(&b, k, n) };
            let mut c = c0.clone();
            gemm(0.5, av, bv, -2.0, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let expected = 0.5 * (0..k).map(|l| a_at(i, l) * b_at(l, j)).sum::<f64>() - 2.0 * c0[i * n + j];
                    assert_close(c[i * n + j], expected, 1e-12, 1e-12, &format!("C[{i},{j}] of {m}×{k}×{n}"));
                }
            }
            // β = 0 ignores the previous contents, NaN included.
            let mut c = vec![f64::NAN; m * n];
            gemm(1.0, av, bv, 0.0, &mut c);
            assert!(c.iter().all(|x| x.is_finite()));
        }
    }
}

fn networks(vocab: usize, order: usize, length: usize) -> Vec<Mlp> {
    [(vec![7], Activation::Tanh), (vec![6, 5], Activation::Tanh), (vec![9], Activation::Relu), (vec![4, 6], Activation::Relu)]
        .into_iter()
        .map(|(hidden, activation)| Mlp::new(MlpConfig { vocab, order, length, hidden, activation }).unwrap())
        .collect()
}

/// Generic parameters (no ReLU unit exactly at its kink).
fn generic_params(mlp: &Mlp, seed: u64) -> Vec<f64> {
    mlp.init_params(seed).iter().enumerate().map(|(i, p)| p + 0.05 * ((i * 7 % 11) as f64 - 5.0)).collect()
}

#[test]
fn a_batch_equals_its_inputs_one_at_a_time() {
    for mlp in networks(4, 2, 6) {
        let params = generic_params(&mlp, 3);
        let v = mlp.config.vocab;
        let mut rng = Rng(11);
        let mut batched = vec![0.0; params.len()];
        let mut single = vec![0.0; params.len()];
        let mut scratch = vec![0.0; mlp.scratch_len()];
        let mut logits = vec![0.0; v];
        // A batch per position (one shares the position's input unit), accumulated into one gradient.
        for t in [1, 4, 6] {
            let contexts: Vec<usize> = (0..37).map(|_| rng.below(mlp.num_contexts())).collect();
            let delta = matrix(&mut rng, contexts.len() * v);
            let mut work = mlp.batch_work(contexts.len());
            mlp.forward_batch(&params, t, &contexts, &mut work);
            mlp.backward_batch(&params, t, &contexts, &mut work, &delta, &mut batched);
            for (r, &c) in contexts.iter().enumerate() {
                mlp.forward(&params, t, c, &mut logits, &mut scratch);
                for a in 0..v {
                    assert_close(work.logits[r * v + a], logits[a], 1e-13, 1e-13, &format!("logit {a} of input {r} at t = {t}"));
                }
                mlp.backward(&params, t, c, &delta[r * v..(r + 1) * v], Some(&mut single), &mut scratch);
            }
        }
        for i in 0..params.len() {
            assert_close(batched[i], single[i], 1e-12, 1e-12, &format!("{:?} ∂/∂θ_{i}", mlp.config.hidden));
        }
    }
}

fn mlp_samples(mlp: &Mlp, params: &[f64], track: &Track, count: usize) -> Samples {
    let policy = MlpPolicy::new(mlp, params);
    sample(track, &policy, &SampleRequest { count, seed: 21, prefix: None, first_index: 0 }).unwrap()
}

/// The batched score sums equal the covariance kernel's (one network pass per distinct input), on
/// a scenario with an end token (responses of different lengths) and order-2 contexts, with a
/// coefficient that reads the current log-probability as PPO's does.
#[test]
fn batched_score_sums_equal_the_covariance_kernel() {
    let spec = random_spec(8, 4, 2, 7, 5, true, true);
    let track = Track::new(&spec, None);
    for mlp in networks(4, 2, 7) {
        let params = generic_params(&mlp, 5);
        let samples = mlp_samples(&mlp, &params, &track, 700);
        assert!(samples.emitted.iter().any(|&e| (e as usize) < spec.length), "some responses end early");
        let t_max = samples.length;
        let coef = |n: usize, t: usize, log_pi: f64| samples.harm[n] - 0.3 * (t as f64) + log_pi.exp();
        let blocks = mlp.score_blocks(&params, &samples, &coef);
        let policy = MlpPolicy::new(&mlp, &params);
        let current = replay_log_probs(&track, &policy, &samples);
        let reference = accumulate_scores(&track, &policy, &samples, &|n, t| coef(n, t, current[n * t_max + t]), None, false).unwrap();
        assert_eq!(blocks.len(), reference.blocks.len());
        for (i, (a, b)) in blocks.iter().zip(&reference.blocks).enumerate() {
            assert_close(*a, *b, 1e-10, 1e-12, &format!("{:?} block entry {i}", mlp.config.hidden));
        }
        // Through the family: the total is the sum of the blocks, the norms theirs.
        let (total, norms) = Family::score_gradient(&MlpFamily(&mlp), &track, &params, &samples, &coef, true).unwrap();
        let reference_total = reference.total(false);
        for i in 0..params.len() {
            assert_close(total[i], reference_total[i], 1e-10, 1e-12, "total gradient");
        }
        for t in 0..t_max {
            assert_close(norms[t], reference.norm[t], 1e-10, 1e-12, "||Ĝ_t||");
        }
    }
}

#[test]
fn batched_score_sums_do_not_depend_on_the_thread_count() {
    let spec = random_spec(9, 30, 2, 6, 6, true, false);
    let track = Track::new(&spec, None);
    let mlp = Mlp::new(MlpConfig { vocab: 30, order: 2, length: 6, hidden: vec![40, 24], activation: Activation::Tanh }).unwrap();
    let params = generic_params(&mlp, 7);
    // More distinct contexts at a position than one chunk of BATCH_ROWS rows.
    let samples = mlp_samples(&mlp, &params, &track, 3000);
    let distinct: std::collections::BTreeSet<(u32, u32)> = (0..samples.count).filter(|&n| samples.tokens[n * 6 + 3] != u32::MAX).map(|n| (samples.tokens[n * 6 + 1], samples.tokens[n * 6 + 2])).collect();
    assert!(distinct.len() > harm_horizon_core::mlp::BATCH_ROWS, "{} distinct contexts at t = 4", distinct.len());
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| (mlp.score_blocks(&params, &samples, &|n, t, lp| samples.harm[n] * lp + t as f64), mlp.probability_table(&params)))
    };
    let one = run(1);
    // Across chunk boundaries the sums still equal the covariance kernel's.
    let policy = MlpPolicy::new(&mlp, &params);
    let current = replay_log_probs(&track, &policy, &samples);
    let reference = accumulate_scores(&track, &policy, &samples, &|n, t| samples.harm[n] * current[n * 6 + t] + t as f64, None, false).unwrap();
    for (i, (a, b)) in one.0.iter().zip(&reference.blocks).enumerate() {
        assert_close(*a, *b, 1e-10, 1e-12, &format!("block entry {i}"));
    }
    for threads in [2, 3, 5] {
        let other = run(threads);
        assert!(one.0.iter().zip(&other.0).all(|(a, b)| a.to_bits() == b.to_bits()), "score sums with {threads} threads");
        assert!(one.1.iter().zip(&other.1).all(|(a, b)| a.to_bits() == b.to_bits()), "probability table with {threads} threads");
    }
}

#[test]
fn the_vectorised_tanh_matches_the_library_to_the_last_bits() {
    let mut worst: f64 = 0.0;
    for i in -400_000..=400_000 {
        let x = i as f64 * 6.1e-5 + 1e-9 * (i % 7) as f64;
        { let mut fast = [0.0]; harm_horizon_core::vector_math::tanh_into(&[x], &mut fast); worst = worst.max((harm_horizon_core::vector_math::tanh(x) - x.tanh()).abs()).max((fast[0] - x.tanh()).abs()); }
    }
    for x in [0.0, -0.0, 1e-300, -1e-20, 19.99, 20.0, 25.0, 700.0, -1e300, f64::MAX] {
        { let mut fast = [0.0]; harm_horizon_core::vector_math::tanh_into(&[x], &mut fast); worst = worst.max((harm_horizon_core::vector_math::tanh(x) - x.tanh()).abs()).max((fast[0] - x.tanh()).abs()); }
    }
    assert!(worst <= 4e-16, "largest |error| {worst:e}");
    assert!(harm_horizon_core::vector_math::tanh(-0.0).is_sign_negative());
}

#[test]
fn the_vectorised_exp_matches_the_library_in_relative_terms() {
    let mut worst: f64 = 0.0;
    for i in 0..700_000 {
        let z = -(i as f64) * 1e-3 - 1e-7 * (i % 13) as f64;
        let (fast, exact) = (harm_horizon_core::vector_math::exp_nonpositive(z), z.exp());
        worst = worst.max(((fast - exact) / exact).abs());
    }
    assert!(worst <= 4e-16, "largest relative error {worst:e}");
    let mut row = [0.3, -2.0, 5.0, -800.0];
    harm_horizon_core::vector_math::softmax_in_place(&mut row);
    let mut reference = [0.3, -2.0, 5.0, -800.0];
    harm_horizon_core::policy::softmax_in_place(&mut reference);
    for (a, b) in row.iter().zip(&reference) {
        assert!((a - b).abs() <= 1e-15, "softmax {a} against {b}");
    }
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The mlp's own sampler (walks advancing position by position, one batched pass over the inputs
/// they reach, binary searches on running sums) gives `sampling::sample`'s tokens,
/// log-probabilities, harms and exact states bit for bit, with an end token (responses of
/// different lengths), order-2 contexts, more responses than a chunk, with and without the exact
/// model, for any thread count; a forced prefix goes through the generic path.
#[test]
fn the_position_by_position_sampler_equals_the_generic_sampler() {
    let spec = random_spec(12, 5, 2, 9, 7, true, true);
    let model = model(spec.clone());
    let small = Mlp::new(MlpConfig { vocab: 5, order: 2, length: 9, hidden: vec![6], activation: Activation::Tanh }).unwrap();
    // 31² contexts: more distinct inputs at a position than one batch of BATCH_ROWS rows.
    let wide_spec = random_spec(9, 30, 2, 6, 6, true, false);
    let wide = Mlp::new(MlpConfig { vocab: 30, order: 2, length: 6, hidden: vec![40, 24], activation: Activation::Tanh }).unwrap();
    let cases = [(&small, Track::new(&spec, None)), (&small, Track::new(&spec, Some(&model))), (&wide, Track::new(&wide_spec, None))];
    for (mlp, track) in cases {
        let params = generic_params(mlp, 2);
        let t_max = track.spec.length as u32;
        let policy = MlpPolicy::new(mlp, &params);
        let request = SampleRequest { count: 2500, seed: 5, prefix: None, first_index: 300 };
        let generic = sample(&track, &policy, &request).unwrap();
        assert!(generic.emitted.iter().any(|&e| e < t_max) && generic.emitted.contains(&t_max), "some responses end early, some reach T");
        if mlp.config.vocab == 30 {
            let at_4: std::collections::BTreeSet<(u32, u32)> = (0..2500).filter(|&n| generic.tokens[n * 6 + 4] != u32::MAX).map(|n| (generic.tokens[n * 6 + 2], generic.tokens[n * 6 + 3])).collect();
            assert!(at_4.len() > harm_horizon_core::mlp::BATCH_ROWS, "{} distinct contexts at t = 5", at_4.len());
        }
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let fast = pool.install(|| mlp.sample(&params, &track, &request)).unwrap();
            assert_eq!(fast.tokens, generic.tokens, "tokens with {threads} threads");
            assert!(same_bits(&fast.log_probs, &generic.log_probs), "log-probabilities with {threads} threads");
            assert!(same_bits(&fast.harm, &generic.harm), "harms with {threads} threads");
            assert_eq!(fast.emitted, generic.emitted);
            assert_eq!(fast.states, generic.states);
            assert_eq!((fast.count, fast.first_index, fast.length), (generic.count, generic.first_index, generic.length));
        }
        // Through the family, as a training step samples.
        let trained = Trainable::sample(&MlpFamily(mlp), &track, &params, &request).unwrap();
        assert_eq!(trained.tokens, generic.tokens);
        // A forced prefix: the generic path's result.
        let prefix = [1u32, 3];
        let forced = SampleRequest { count: 40, seed: 5, prefix: Some(harm_horizon_core::sampling::Prefix { tokens: &prefix, length: 2 }), first_index: 0 };
        assert_eq!(mlp.sample(&params, &track, &forced).unwrap().tokens, sample(&track, &policy, &forced).unwrap().tokens);
    }
}

/// PPO's epochs on one score index (built once), with the coefficients of a chunk's responses
/// taken at once, update the parameters exactly as one `score_gradient` per epoch with one
/// coefficient at a time does (the family's default).
#[test]
fn epochs_on_one_index_equal_one_gradient_per_epoch() {
    let spec = random_spec(8, 4, 2, 7, 5, true, true);
    let track = Track::new(&spec, None);
    let mlp = Mlp::new(MlpConfig { vocab: 4, order: 2, length: 7, hidden: vec![6, 5], activation: Activation::Tanh }).unwrap();
    let start = generic_params(&mlp, 5);
    let samples = mlp_samples(&mlp, &start, &track, 600);
    let advantage: Vec<f64> = (0..600 * 7).map(|i| samples.harm[i / 7] - 0.5 + 0.01 * (i % 7) as f64).collect();
    let coefficients = PpoCoefficients::new(&samples, &advantage, 0.2);
    let step = |p: &mut [f64], g: &[f64]| p.iter_mut().zip(g).for_each(|(p, g)| *p -= 3.0 * g);
    let mut indexed = start.clone();
    let norms = Trainable::score_epochs(&MlpFamily(&mlp), &track, &mut indexed, &samples, &coefficients, 3, &mut |p, g| step(p, g)).unwrap();
    let mut one_by_one = start.clone();
    let mut last = vec![];
    let coef = |n: usize, t: usize, current: f64| coefficients.one(n, t, current);
    let mut clipped = 0;
    for _ in 0..3 {
        let (g, n) = Family::score_gradient(&MlpFamily(&mlp), &track, &one_by_one, &samples, &coef, true).unwrap();
        step(&mut one_by_one, &g);
        last = n;
        let policy = MlpPolicy::new(&mlp, &one_by_one);
        let current = replay_log_probs(&track, &policy, &samples);
        clipped += (0..600 * 7).filter(|&i| samples.tokens[i] != u32::MAX && coefficients.one(i / 7, i % 7, current[i]) == 0.0).count();
    }
    assert!(clipped > 0, "some terms are clipped after the first epoch");
    assert!(!same_bits(&indexed, &start), "the epochs moved the parameters");
    assert!(same_bits(&indexed, &one_by_one), "parameters after 3 epochs");
    assert!(same_bits(&norms, &last), "last gradient's norms");
}

/// The vectorised exponential over [−700, 700], relative to the library's, and an entry's result
/// does not depend on the slice it is computed in.
#[test]
fn the_vectorised_exp_of_a_slice_matches_the_library() {
    let x: Vec<f64> = (0..140_001).map(|i| -700.0 + i as f64 * 0.01 + 1e-9 * (i % 7) as f64).collect();
    let mut fast = x.clone();
    harm_horizon_core::vector_math::exp_in_place(&mut fast);
    for (i, (&z, &e)) in x.iter().zip(&fast).enumerate() {
        assert!(((e - z.exp()) / z.exp()).abs() < 4e-16, "e^{z}: {e} against {}", z.exp());
        if i % 997 == 0 {
            let mut one = [z];
            harm_horizon_core::vector_math::exp_in_place(&mut one);
            assert_eq!(one[0].to_bits(), e.to_bits(), "e^{z} alone and in a slice");
        }
    }
}
