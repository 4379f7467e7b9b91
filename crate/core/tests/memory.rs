//! Sizes that follow from the input are checked before anything is allocated: the memory budget
//! counts what the exact engine really builds, and a size beyond the machine is a coded error
//! (HH_OUT_OF_MEMORY), never an abort of the process.

mod common;
use common::*;

use harm_horizon_core::model::{bytes_per_state, Model};
use harm_horizon_core::sampling::{sample, BaseStep, SampleRequest};
use harm_horizon_core::walk::Track;

#[test]
fn the_budget_counts_a_policy_table_when_one_will_be_built() {
    let spec = random_spec(4, 3, 2, 5, 4, true, true);
    let states = model(spec.clone()).num_states() as u64;
    let (t, v) = (spec.length, spec.vocab);
    let with_table = bytes_per_state(t, v, true);
    assert_eq!(with_table - bytes_per_state(t, v, false), (t * v * 8) as u64);
    // Exactly S states' worth fits; one state less is refused, but still fits without the table.
    assert_eq!(Model::with_budget(spec.clone(), states * with_table, true).unwrap().num_states() as u64, states);
    let short = (states - 1) * with_table;
    assert_eq!(Model::with_budget(spec.clone(), short, true).unwrap_err().code(), "HH_STATE_SPACE_TOO_LARGE");
    assert!(short >= states * bytes_per_state(t, v, false));
    assert_eq!(Model::with_budget(spec, short, false).unwrap().num_states() as u64, states);
}

/// A scenario whose T × S × V table needs about 2^51 bytes (T = 2^27, V = 1024, S ≈ 2000): more than
/// any address space, so it is refused even where the kernel overcommits.
fn beyond_any_machine() -> harm_horizon_core::model::ScenarioSpec {
    random_spec(5, 1024, 1, 1 << 27, 2, false, false)
}

#[test]
fn a_budget_beyond_the_machine_is_an_error_not_an_abort() {
    let e = Model::with_budget(beyond_any_machine(), u64::MAX, true).unwrap_err();
    assert_eq!(e.code(), "HH_OUT_OF_MEMORY", "{e}");
    assert!(e.to_string().contains("exact engine's tables"), "{e}");
}

#[test]
fn sample_buffers_are_checked_before_sampling() {
    let spec = beyond_any_machine();
    let request = SampleRequest { count: 1 << 20, seed: 1, prefix: None, first_index: 0 };
    let e = sample(&Track::new(&spec, None), &BaseStep { spec: &spec }, &request).unwrap_err();
    assert_eq!(e.code(), "HH_OUT_OF_MEMORY", "{e}");
    assert!(e.to_string().contains("sample buffers"), "{e}");
}
