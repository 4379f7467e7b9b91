//! Sampling into caller-owned outputs gives `sample`'s responses bit for bit, overwriting every
//! entry (the outputs start as garbage, then hold an earlier batch), on the row sampler's path and
//! on the general one; wrong shapes are refused naming the output.

mod common;
use common::*;

use harm_horizon_core::model::Model;
use harm_horizon_core::policy::TabularPolicy;
use harm_horizon_core::sample_into::{sample_into, SamplesMut};
use harm_horizon_core::sampling::{sample, BaseStep, ExactStep, Prefix, SampleRequest, Samples, StepPolicy};
use harm_horizon_core::walk::{Track, NO_TOKEN};

/// Outputs for `count` responses of length `t_max`, filled with values no sample holds.
struct Buffers {
    tokens: Vec<u32>,
    log_probs: Vec<f64>,
    harm: Vec<f64>,
    emitted: Vec<u32>,
    states: Option<Vec<u32>>,
}

impl Buffers {
    fn garbage(count: usize, t_max: usize, with_states: bool) -> Self {
        Buffers {
            tokens: vec![7_777; count * t_max],
            log_probs: vec![123.5; count * t_max],
            harm: vec![-9.0; count],
            emitted: vec![54_321; count],
            states: with_states.then(|| vec![999_999; count * (t_max + 1)]),
        }
    }
    fn as_out(&mut self) -> SamplesMut<'_> {
        SamplesMut { tokens: &mut self.tokens, log_probs: &mut self.log_probs, harm: &mut self.harm, emitted: &mut self.emitted, states: self.states.as_deref_mut() }
    }
    fn assert_holds(&self, s: &Samples) {
        let bits = |x: &[f64]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        same("tokens", &self.tokens, &s.tokens);
        same("log_probs", &bits(&self.log_probs), &bits(&s.log_probs));
        same("harm", &bits(&self.harm), &bits(&s.harm));
        same("emitted", &self.emitted, &s.emitted);
        same("states", self.states.as_deref().unwrap_or(&[]), s.states.as_deref().unwrap_or(&[]));
    }
}

/// Equal, or the first entry that differs (the outputs are too long to print whole).
fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], expected: &[T]) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!("{what}[{i}]: {:?}, expected {:?}", got[i], expected[i]);
    }
}

/// Order-2 contexts, an end token (walks end inside the row sampler's position blocks at T = 40),
/// graded harm, and tokens of probability 0.
fn fixture() -> (Model, Vec<f64>) {
    let m = model(random_spec(33, 5, 2, 40, 12, true, true));
    let mut logits = random_logits(&m, 6);
    for (i, l) in logits.iter_mut().enumerate() {
        if i % 5 == 2 {
            *l = f64::NEG_INFINITY;
        }
    }
    (m, logits)
}

/// Samples into garbage, then into the same outputs again with other requests: each time `sample`'s
/// responses, bit for bit.
fn check_overwrites(track: &Track, policy: &dyn StepPolicy, count: usize) {
    let t_max = track.spec.length;
    let mut buffers = Buffers::garbage(count, t_max, track.model.is_some());
    let prefix: Vec<u32> = (0..count * 3).map(|i| if i % 4 == 1 { NO_TOKEN } else { (i % 4) as u32 }).collect();
    let requests = [
        SampleRequest { count, seed: 17, prefix: None, first_index: 3 },
        SampleRequest { count, seed: 18, prefix: Some(Prefix { tokens: &prefix, length: 3 }), first_index: 0 },
        SampleRequest { count, seed: 19, prefix: None, first_index: 0 },
    ];
    for request in &requests {
        let expected = sample(track, policy, request).unwrap();
        assert!(expected.emitted.iter().any(|&e| (e as usize) < t_max), "some responses end before T");
        sample_into(track, policy, request, buffers.as_out()).unwrap();
        buffers.assert_holds(&expected);
    }
    // Whatever the thread count.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut single = Buffers::garbage(count, t_max, track.model.is_some());
    one.install(|| sample_into(track, policy, &requests[0], single.as_out())).unwrap();
    single.assert_holds(&sample(track, policy, &requests[0]).unwrap());
}

#[test]
fn the_row_sampler_overwrites_caller_outputs_with_the_samples() {
    let (m, logits) = fixture();
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let policy = ExactStep(&tabular);
    assert!(policy.exact_rows().is_some());
    // 2500 responses span several chunks.
    check_overwrites(&Track::new(&m.spec, Some(&m)), &policy, 2500);
}

#[test]
fn the_general_path_overwrites_caller_outputs_with_the_samples() {
    let (m, logits) = fixture();
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let policy = ExactStep(&Uncached(&tabular));
    assert!(policy.exact_rows().is_none());
    check_overwrites(&Track::new(&m.spec, Some(&m)), &policy, 300);
    // Without the exact model: no states.
    check_overwrites(&Track::new(&m.spec, None), &BaseStep { spec: &m.spec }, 300);
}

#[test]
fn wrong_shapes_are_refused_naming_the_output() {
    let (m, logits) = fixture();
    let tabular = TabularPolicy::new(&m, &logits).unwrap();
    let policy = ExactStep(&tabular);
    let exact = Track::new(&m.spec, Some(&m));
    let request = SampleRequest { count: 10, seed: 1, prefix: None, first_index: 0 };
    let message = |track: &Track, buffers: &mut Buffers| sample_into(track, &policy, &request, buffers.as_out()).unwrap_err().to_string();

    let mut short = Buffers::garbage(10, m.length(), true);
    short.log_probs.pop();
    assert!(message(&exact, &mut short).contains("logProbs: 399 entries, expected N·T = 400"), "{}", message(&exact, &mut short));
    let mut emitted = Buffers::garbage(10, m.length(), true);
    emitted.emitted.push(0);
    assert!(message(&exact, &mut emitted).contains("emitted: 11 entries"));
    let mut stateless = Buffers::garbage(10, m.length(), false);
    assert!(message(&exact, &mut stateless).contains("states: missing"));
    let base = Track::new(&m.spec, None);
    let mut stateful = Buffers::garbage(10, m.length(), true);
    let e = sample_into(&base, &BaseStep { spec: &m.spec }, &request, stateful.as_out()).unwrap_err();
    assert!(e.to_string().contains("states: given"), "{e}");
    assert_eq!(e.code(), "HH_INVALID_ARGUMENT");
}
