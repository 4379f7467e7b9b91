//! Bad input is refused with a typed error, never a panic.

mod common;
use common::*;

use harm_horizon_core::analysis::analyze;
use harm_horizon_core::gibbs::GibbsPolicy;
use harm_horizon_core::model::Model;
use harm_horizon_core::policy::TabularPolicy;
use harm_horizon_core::Error;

fn code_of(spec: harm_horizon_core::model::ScenarioSpec) -> &'static str {
    Model::new(spec, 1 << 30).expect_err("must be refused").code()
}

#[test]
fn malformed_specs_are_refused() {
    let mut s = refusal_spec();
    s.base.pop();
    assert_eq!(code_of(s), "HH_INVALID_SPEC");
    let mut s = refusal_spec();
    s.transitions[3] = 99;
    assert_eq!(code_of(s), "HH_INVALID_SPEC");
    let mut s = refusal_spec();
    s.harm[4] = 1.5;
    assert_eq!(code_of(s), "HH_INVALID_SPEC");
    let mut s = refusal_spec();
    s.end_token = Some(7);
    assert_eq!(code_of(s), "HH_INVALID_SPEC");
    let mut s = refusal_spec();
    s.length = 0;
    assert_eq!(code_of(s), "HH_INVALID_SPEC");
    // A reached row that does not sum to 1, or holds a negative or NaN entry.
    for bad in [0.5, -0.1, f64::NAN] {
        let mut s = horizon_spec();
        s.base[0] = bad;
        let err = Model::new(s, 1 << 30).unwrap_err();
        assert_eq!(err.code(), "HH_INVALID_SPEC");
        assert!(err.to_string().contains("context 0"), "{err}");
    }
}

#[test]
fn oversized_state_spaces_are_refused() {
    let spec = random_spec(1, 8, 3, 64, 50, false, false);
    match Model::new(spec, 1 << 20) {
        Err(e @ Error::StateSpaceTooLarge { .. }) => assert!(e.to_string().contains("memory budget"), "{e}"),
        other => panic!("expected StateSpaceTooLarge, got {other:?}"),
    }
}

#[test]
fn bad_arguments_are_refused() {
    let m = model(horizon_spec());
    assert_eq!(TabularPolicy::new(&m, &[0.0; 3]).err().unwrap().code(), "HH_INVALID_ARGUMENT");
    let mut logits = random_logits(&m, 1);
    logits[5] = f64::NAN;
    assert_eq!(TabularPolicy::new(&m, &logits).err().unwrap().code(), "HH_POLICY_INVALID");
    for lambda in [-1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(GibbsPolicy::new(&m, lambda).err().unwrap().code(), "HH_INVALID_ARGUMENT");
    }
    assert_eq!(analyze(&m, 1.0, -1.0).unwrap_err().code(), "HH_INVALID_ARGUMENT");
}

#[test]
fn policies_without_a_distribution_are_refused_naming_the_row() {
    // Order-2 contexts and an end token: some states are sinks, whose rows are never read.
    let m = model(random_spec(4, 5, 2, 6, 7, true, true));
    let (n, v) = (m.num_states(), m.vocab());
    let live_row = (0..m.length() * n).find(|row| m.live[row % n] && row / n == 2).expect("a live state at t = 3");
    for bad in [f64::NEG_INFINITY, f64::NAN] {
        let mut logits = random_logits(&m, 1);
        logits[live_row * v..(live_row + 1) * v].iter_mut().for_each(|x| *x = bad);
        let err = TabularPolicy::new(&m, &logits).err().expect("must be refused");
        assert_eq!(err.code(), "HH_POLICY_INVALID", "{err}");
        if bad == f64::NEG_INFINITY {
            assert!(err.to_string().contains(&format!("t = 3, state s = {}", live_row % n)), "{err}");
        }
    }
    // A sink's row is never read: all −∞ there is allowed, and one finite logit makes a row valid.
    let mut logits = random_logits(&m, 1);
    if let Some(sink) = (0..n).find(|&s| !m.live[s]) {
        logits[sink * v..(sink + 1) * v].iter_mut().for_each(|x| *x = f64::NEG_INFINITY);
    }
    logits[live_row * v..(live_row + 1) * v].iter_mut().for_each(|x| *x = f64::NEG_INFINITY);
    logits[live_row * v + 2] = 0.0;
    assert!(TabularPolicy::new(&m, &logits).is_ok());
}
