//! The fast paths over a policy's precomputed rows (position-major sampling by binary search in the
//! running sums, KL and gradient keys read off the stored states, scatter-add of the gradient's
//! coefficients) give bit for bit what the general paths give: per-walk sampling with draw_index,
//! replayed walks, and the sort by input key.

mod common;
use common::*;

use harm_horizon_core::estimate::{estimate_gradient, harm_paths, kl_to_base_along, Coefficient, HarmSource, ScoreModel};
use harm_horizon_core::exact::conditional_harm;
use harm_horizon_core::model::Model;
use harm_horizon_core::policy::TabularPolicy;
use harm_horizon_core::sampling::{sample, ExactStep, Prefix, SampleRequest, Samples, StepPolicy};
use harm_horizon_core::walk::{Track, Walk, NO_TOKEN};

/// The same score model with keys that are not declared to be states: the gradient sorts by key.
struct SortedKeys<'a>(ExactStep<'a, TabularPolicy<'a>>);

impl StepPolicy for SortedKeys<'_> {
    fn needs_exact_state(&self) -> bool {
        true
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]) {
        self.0.probs(walk, out, scratch)
    }
}

impl ScoreModel for SortedKeys<'_> {
    fn block_len(&self) -> usize {
        self.0.block_len()
    }
    fn blocks_are_positions(&self) -> bool {
        true
    }
    fn input_key(&self, walk: &Walk) -> u64 {
        self.0.input_key(walk)
    }
    fn accumulate(&self, t: usize, key: u64, coef: &[f64], block: &mut [f64], want: &[bool], norms: &mut [f64], u: Option<&[f64]>, proj: &mut [f64], scratch: &mut [f64]) {
        self.0.accumulate(t, key, coef, block, want, norms, u, proj, scratch)
    }
}

fn assert_same_samples(a: &Samples, b: &Samples) {
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.log_probs.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.log_probs.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    assert_eq!(a.harm, b.harm);
    assert_eq!(a.emitted, b.emitted);
    assert_eq!(a.states, b.states);
}

/// Order-2 contexts, an end token, graded harm; some tokens of probability 0 (−∞ logits).
fn fixture() -> (Model, Vec<f64>) {
    fixture_of_length(9)
}

fn fixture_of_length(length: usize) -> (Model, Vec<f64>) {
    let m = model(random_spec(21, 5, 2, length, 12, true, true));
    let mut logits = random_logits(&m, 4);
    for (i, l) in logits.iter_mut().enumerate() {
        if i % 7 == 3 {
            *l = f64::NEG_INFINITY;
        }
    }
    (m, logits)
}

#[test]
fn sampling_from_rows_equals_per_walk_sampling() {
    // T = 40 spans several of the row sampler's position blocks, with walks ending inside each.
    for length in [9, 40] {
        sampling_from_rows_equals_per_walk_sampling_at(length);
    }
}

fn sampling_from_rows_equals_per_walk_sampling_at(length: usize) {
    let (m, logits) = fixture_of_length(length);
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let plain = Uncached(&tabular);
    let track = Track::new(&m.spec, Some(&m));
    let (fast, slow) = (ExactStep(&tabular), ExactStep(&plain));
    assert!(fast.exact_rows().is_some() && slow.exact_rows().is_none());
    // 3000 responses span several chunks of the row sampler; some end early (end token).
    let request = SampleRequest { count: 3000, seed: 17, prefix: None, first_index: 11 };
    let a = sample(&track, &fast, &request).unwrap();
    assert!(a.emitted.iter().any(|&e| (e as usize) < m.length()), "some responses end before T");
    assert_same_samples(&a, &sample(&track, &slow, &request).unwrap());
    // Forced prefixes, one per response, with unforced holes.
    let prefix: Vec<u32> = (0..3000 * 3).map(|i| if i % 4 == 1 { NO_TOKEN } else { (i % 4) as u32 }).collect();
    let forced = SampleRequest { count: 3000, seed: 5, prefix: Some(Prefix { tokens: &prefix, length: 3 }), first_index: 0 };
    assert_same_samples(&sample(&track, &fast, &forced).unwrap(), &sample(&track, &slow, &forced).unwrap());
    // Fewer walks than before: the staging arrays kept from the larger calls are reused.
    let fewer = SampleRequest { count: 1100, seed: 23, prefix: None, first_index: 0 };
    assert_same_samples(&sample(&track, &fast, &fewer).unwrap(), &sample(&track, &slow, &fewer).unwrap());
    // Whatever the thread count.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| sample(&track, &fast, &request).unwrap());
    assert_same_samples(&a, &one);
}

#[test]
fn the_row_sampler_handles_vocabularies_of_one_and_two_tokens() {
    // V = 1 once indexed a row at −1 when it prefetched the row's middle (a panic, HH_PANIC).
    for vocab in [1, 2] {
        let m = model(random_spec(5, vocab, 1, 20, 4, false, true));
        let logits = random_logits(&m, 8);
        let tabular = TabularPolicy::new(&m, &logits).unwrap();
        let plain = Uncached(&tabular);
        let track = Track::new(&m.spec, Some(&m));
        let request = SampleRequest { count: 2500, seed: 3, prefix: None, first_index: 0 };
        let a = sample(&track, &ExactStep(&tabular), &request).unwrap();
        assert_same_samples(&a, &sample(&track, &ExactStep(&plain), &request).unwrap());
        if vocab == 1 {
            assert!(a.tokens.iter().all(|&token| token == 0) && a.log_probs.iter().all(|&l| l == 0.0));
        }
    }
}

#[test]
fn kl_and_gradient_from_stored_states_equal_the_replayed_ones() {
    let (m, logits) = fixture();
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let plain = Uncached(&tabular);
    let track = Track::new(&m.spec, Some(&m));
    let fast = ExactStep(&tabular);
    let samples = sample(&track, &fast, &SampleRequest { count: 2000, seed: 3, prefix: None, first_index: 0 }).unwrap();
    let kl_fast = kl_to_base_along(&track, &fast, &samples, None).unwrap();
    let kl_slow = kl_to_base_along(&track, &ExactStep(&plain), &samples, None).unwrap();
    assert_eq!(kl_fast.mean, kl_slow.mean);
    assert_eq!(kl_fast.se, kl_slow.se);
    assert_eq!(kl_fast.support, kl_slow.support);

    let table = conditional_harm(&m, &tabular);
    let paths = harm_paths(&track, &fast, &samples, &HarmSource::Exact(&table), 3).unwrap();
    let sorted = SortedKeys(ExactStep(&tabular));
    let block = m.num_states() * m.vocab();
    let mut rng = Rng(8);
    let directions: Vec<f64> = (0..m.length() * block).map(|_| rng.normal()).collect();
    for coefficient in [Coefficient::Innovation, Coefficient::LeaveOneOut] {
        for u in [None, Some(&directions[..])] {
            let g = estimate_gradient(&track, &fast, &samples, coefficient, Some(&paths), u).unwrap();
            let h = estimate_gradient(&track, &sorted, &samples, coefficient, Some(&paths), u).unwrap();
            assert!(g.norm.iter().any(|&x| x > 0.0));
            assert_eq!(g.blocks, h.blocks);
            assert_eq!(g.norm, h.norm);
            assert_eq!(g.variance, h.variance);
            if u.is_some() {
                assert_eq!(g.projection.mean, h.projection.mean);
                assert_eq!(g.projection.se, h.projection.se);
                assert_eq!(g.projection.support, h.projection.support);
            }
        }
    }
}
