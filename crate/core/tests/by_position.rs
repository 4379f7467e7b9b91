//! The position-by-position run of a tabular policy (by_position.rs, responses sampled by
//! position) gives the general path's estimates bit for bit: E[H], τ, I_t, the on-policy and
//! teacher-forced KL and every gradient estimator with its variance and projections, on scenarios
//! with graded harm, order-2 contexts, an end token, an absorbing state reached before T, mass
//! undecided at T, and refusal's rare late events; and whatever the thread count.

mod common;
use common::*;

use harm_horizon_core::estimate::{Coefficient, ScoreModel};
use harm_horizon_core::exact::conditional_harm;
use harm_horizon_core::model::Model;
use harm_horizon_core::monte_carlo::{run, HarmChoice, RunRequest};
use harm_horizon_core::policy::{RowCache, TabularPolicy};
use harm_horizon_core::sampling::{ExactStep, StepPolicy};
use harm_horizon_core::walk::{Track, Walk};

/// The tabular policy without its rows, so that run() takes the general path (a response-major
/// sample replayed walk by walk, h paths, gathered columns).
struct WithoutRows<'a>(ExactStep<'a, TabularPolicy<'a>>);

impl StepPolicy for WithoutRows<'_> {
    fn needs_exact_state(&self) -> bool {
        true
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]) {
        self.0.probs(walk, out, scratch)
    }
    fn kl_to_base(&self, track: &Track, walk: &Walk, row: &mut [f64], scratch: &mut [f64]) -> f64 {
        self.0.kl_to_base(track, walk, row, scratch)
    }
    fn exact_rows(&self) -> Option<&RowCache> {
        None
    }
}

impl ScoreModel for WithoutRows<'_> {
    fn block_len(&self) -> usize {
        self.0.block_len()
    }
    fn blocks_are_positions(&self) -> bool {
        self.0.blocks_are_positions()
    }
    fn input_key(&self, walk: &Walk) -> u64 {
        self.0.input_key(walk)
    }
    fn keys_are_states(&self) -> bool {
        self.0.keys_are_states()
    }
    fn accumulate(&self, t: usize, key: u64, coef: &[f64], block: &mut [f64], want: &[bool], norms: &mut [f64], u: Option<&[f64]>, proj: &mut [f64], scratch: &mut [f64]) {
        self.0.accumulate(t, key, coef, block, want, norms, u, proj, scratch)
    }
}

/// Order-2 contexts, graded harm, an end token; automaton state 4 absorbs with harm 1, so some
/// responses are decided before T (and before the end) and others stay undecided at T.
fn absorbing_graded() -> Model {
    let mut spec = random_spec(41, 4, 2, 5, 5, true, true);
    let v = spec.vocab;
    for a in 0..v {
        spec.transitions[4 * v + a] = 4;
    }
    model(spec)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn the_run_by_position_gives_the_general_paths_estimates_bit_for_bit() {
    let scenarios = [
        ("absorbing, graded, order 2, end token", absorbing_graded()),
        ("refusal (rare late events)", model(refusal_spec())),
        ("random binary, no end token", model(random_spec(7, 5, 1, 12, 9, false, false))),
        ("random graded, order 2, end token", model(random_spec(13, 3, 2, 7, 6, true, true))),
    ];
    for (name, m) in &scenarios {
        let logits = random_logits(m, 5);
        let policy = TabularPolicy::new(m, &logits).unwrap();
        let h = conditional_harm(m, &policy);
        let track = Track::new(&m.spec, Some(m));
        let (rows, general) = (ExactStep(&policy), WithoutRows(ExactStep(&policy)));
        assert!(rows.exact_rows().is_some(), "{name}: the tabular policy keeps its rows");
        let directions: Vec<f64> = random_logits(m, 9);
        let cases: [(&str, Option<HarmChoice>, Option<Coefficient>, Option<&[f64]>, bool); 5] = [
            ("innovation, directions, teacher forced", Some(HarmChoice::Exact(&h)), Some(Coefficient::Innovation), Some(&directions), true),
            ("innovation", Some(HarmChoice::Exact(&h)), Some(Coefficient::Innovation), None, false),
            ("leave-one-out, no h", None, Some(Coefficient::LeaveOneOut), None, false),
            ("reinforce, exact h", Some(HarmChoice::Exact(&h)), Some(Coefficient::Reinforce), None, true),
            ("no gradient", Some(HarmChoice::Exact(&h)), None, None, false),
        ];
        for (case, harm, gradient, directions, teacher_forced) in cases {
            let request = RunRequest { samples: 3000, seed: 17, harm, gradient, directions, teacher_forced, proposal: None };
            let expected = format!("{:?}", run(&track, &general, Some(&general), &request).unwrap());
            for threads in [1, 2, 3] {
                let got = in_pool(threads, || format!("{:?}", run(&track, &rows, Some(&rows), &request).unwrap()));
                assert!(got == expected, "{name}, {case}, {threads} thread(s): the run by position differs from the general path");
            }
        }
        // The same refusal for an innovation gradient without h.
        let request = RunRequest { samples: 10, seed: 1, harm: None, gradient: Some(Coefficient::Innovation), directions: None, teacher_forced: false, proposal: None };
        let (a, b) = (run(&track, &general, Some(&general), &request).unwrap_err(), run(&track, &rows, Some(&rows), &request).unwrap_err());
        assert_eq!(a.to_string(), b.to_string(), "{name}");
    }
}
