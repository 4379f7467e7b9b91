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
    assert_eq!(TabularPolicy::new(&m, &logits).err().unwrap().code(), "HH_INVALID_ARGUMENT");
    for lambda in [-1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(GibbsPolicy::new(&m, lambda).err().unwrap().code(), "HH_INVALID_ARGUMENT");
    }
    assert_eq!(analyze(&m, 1.0, -1.0).unwrap_err().code(), "HH_INVALID_ARGUMENT");
}
