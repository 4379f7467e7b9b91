//! Sampling into outputs the caller owns (and reuses): the same responses as `sampling::sample`,
//! without allocating (and page-faulting) N × T outputs on every call.

use crate::error::{Error, Result};
use crate::sampling::{check_request, sample, SampleRequest, StepPolicy};
use crate::walk::Track;

/// Caller-owned outputs of `sample_into`, laid out as `Samples`' fields.
pub struct SamplesMut<'a> {
    /// N × T.
    pub tokens: &'a mut [u32],
    /// N × T.
    pub log_probs: &'a mut [f64],
    /// N.
    pub harm: &'a mut [f64],
    /// N.
    pub emitted: &'a mut [u32],
    /// N × (T+1): given exactly when the track has the exact model.
    pub states: Option<&'a mut [u32]>,
}

/// `sample` into `out`, every entry overwritten: the responses of `sample(track, policy, request)`,
/// bit for bit.
pub fn sample_into(track: &Track, policy: &dyn StepPolicy, request: &SampleRequest, out: SamplesMut) -> Result<()> {
    check_request(track, policy, request)?;
    check_shapes(track, request.count, &out)?;
    if let (Some(model), Some(rows)) = (track.model, policy.exact_rows()) {
        if track.spec.length > 0 {
            crate::row_sampler::sample_rows_into(model, rows, request, out);
            return Ok(());
        }
    }
    // The other policies draw into per-chunk buffers anyway: copy their samples.
    let samples = sample(track, policy, request)?;
    out.tokens.copy_from_slice(&samples.tokens);
    out.log_probs.copy_from_slice(&samples.log_probs);
    out.harm.copy_from_slice(&samples.harm);
    out.emitted.copy_from_slice(&samples.emitted);
    if let (Some(to), Some(from)) = (out.states, samples.states) {
        to.copy_from_slice(&from);
    }
    Ok(())
}

/// Each output's length, named in the error when it is wrong.
fn check_shapes(track: &Track, count: usize, out: &SamplesMut) -> Result<()> {
    let t_max = track.spec.length;
    let expect = |name: &str, len: usize, wanted: usize, shape: &str| {
        if len == wanted {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!("{name}: {len} entries, expected {shape} = {wanted}")))
        }
    };
    expect("tokens", out.tokens.len(), count * t_max, "N·T")?;
    expect("logProbs", out.log_probs.len(), count * t_max, "N·T")?;
    expect("harm", out.harm.len(), count, "N")?;
    expect("emitted", out.emitted.len(), count, "N")?;
    match (&out.states, track.model.is_some()) {
        (Some(states), true) => expect("states", states.len(), count * (t_max + 1), "N·(T+1)"),
        (None, true) => Err(Error::InvalidArgument("states: missing (N·(T+1) entries are written when the exact model is used)".into())),
        (Some(_), false) => Err(Error::InvalidArgument("states: given, but this sampler has no exact model to write them".into())),
        (None, false) => Ok(()),
    }
}
