//! monte_carlo::run for a policy that keeps its rows per (position, exact state) (tabular), with h_t
//! exact or not asked for, read position by position.
//!
//! The responses are sampled by position (row_sampler::ByPosition), so each position's states and
//! tokens are contiguous columns; h_t, the KL and the gradient's keys come from per-position tables
//! indexed by state (a few KB, in cache). Nothing of size N × T is gathered across responses or
//! built besides the columns: no h paths, no log-probabilities. The estimates are those of the
//! general path bit for bit: the same values, reduced in the same (response) order per position.

use rayon::prelude::*;

use crate::covariance::{PositionTotals, ScoreKernel};
use crate::error::{Error, Result};
use crate::estimate::{decision_time_histogram, reduce, settled, PositionEstimates, Scalar, ScoreModel, POSITIONS_PER_GROUP};
use crate::model::Model;
use crate::monte_carlo::{teacher_forced_kl, RunReport, RunRequest};
use crate::policy::RowCache;
use crate::row_sampler::{sample_rows_by_position, ByPosition};
use crate::sampling::{check_request, SampleRequest, StepPolicy};
use crate::walk::{Track, NO_TOKEN};

/// Responses per chunk of the decision-time sweep.
const RESPONSES_PER_CHUNK: usize = 4096;

/// What one position gives: its KL, I_t (with h) and the gradient kernel's totals (with a gradient).
type PositionResult = (Scalar, Option<Scalar>, Option<PositionTotals>);

/// `h`: the exact table h_t(s), (T+1) × S, of the policy, when h is asked for. The caller checked
/// that the run has no proposal, that T ≥ 1 and that the score's keys are exact states.
pub fn run(track: &Track, model: &Model, rows: &RowCache, policy: &dyn StepPolicy, score: Option<&dyn ScoreModel>, h: Option<&[f64]>, request: &RunRequest) -> Result<RunReport> {
    let sample_request = SampleRequest { count: request.samples, seed: request.seed, prefix: None, first_index: 0 };
    check_request(track, policy, &sample_request)?;
    let kernel = match (request.gradient, score) {
        (None, _) => None,
        (Some(_), None) => return Err(Error::InvalidArgument("gradients need a policy with parameters (tabular or mlp)".into())),
        (Some(c), Some(score)) => {
            c.check(request.samples, h.is_some())?;
            Some(ScoreKernel::new(score, model.vocab(), model.length(), request.samples, request.directions, true, Some(model.num_states()))?)
        }
    };
    let samples = sample_rows_by_position(model, rows, &sample_request);
    let (t_max, s_count) = (samples.length, model.num_states());
    let block_len = kernel.as_ref().map_or(0, ScoreKernel::block_len);
    let mut blocks = crate::alloc::table(&[t_max, block_len], 0.0, "positions × gradient block")?;
    let harm_total: f64 = samples.harm.iter().sum();
    let (samples_ref, kernel_ref) = (&samples, kernel.as_ref());
    let groups: Vec<&mut [f64]> = match block_len {
        0 => (0..t_max.div_ceil(POSITIONS_PER_GROUP)).map(|_| &mut [][..]).collect(),
        _ => blocks.chunks_mut(POSITIONS_PER_GROUP * block_len).collect(),
    };
    let per_t: Vec<PositionResult> = groups
        .into_par_iter()
        .enumerate()
        .flat_map_iter(|(group, out)| {
            let positions = group * POSITIONS_PER_GROUP..((group + 1) * POSITIONS_PER_GROUP).min(t_max);
            let (samples, kernel) = (samples_ref, kernel_ref);
            let mut sums = kernel.map(ScoreKernel::sums);
            let (mut delta, mut coefs) = (vec![0.0; samples.count], vec![0.0; samples.count]);
            let mut blocks = out.chunks_mut(block_len.max(1));
            positions.map(move |t| {
                let (tokens, states) = (samples.tokens_at(t), samples.states_at(t));
                let kl_rows = &rows.kl[t * s_count..(t + 1) * s_count];
                let kl = reduce(samples.count, None, |n| if tokens[n] == NO_TOKEN { 0.0 } else { kl_rows[states[n] as usize] });
                let information = h.map(|h| {
                    // Δ_{t+1} = h_{t+1}(s_{t+1}) − h_t(s_t) of every response.
                    let (now, next) = (&h[t * s_count..(t + 1) * s_count], &h[(t + 1) * s_count..(t + 2) * s_count]);
                    for (d, (&s, &s_next)) in delta.iter_mut().zip(states.iter().zip(samples.states_at(t + 1))) {
                        *d = next[s_next as usize] - now[s as usize];
                    }
                    reduce(samples.count, None, |n| delta[n] * delta[n])
                });
                let totals = kernel.zip(request.gradient).map(|(kernel, coefficient)| {
                    for (n, c) in coefs.iter_mut().enumerate() {
                        *c = coefficient.value(&samples.harm, harm_total, n, || delta[n]);
                    }
                    let block = blocks.next().expect("a block per position");
                    kernel.position(t, tokens, states, &coefs, block, sums.as_mut().expect("work space with the kernel"))
                });
                (kl, information, totals)
            })
        })
        .collect();
    let mut kl = Vec::with_capacity(t_max);
    let mut information = Vec::with_capacity(t_max);
    let mut totals = Vec::with_capacity(t_max);
    for (k, i, g) in per_t {
        kl.push(k);
        information.extend(i);
        totals.extend(g);
    }
    Ok(RunReport {
        expected_harm: reduce(samples.count, None, |n| samples.harm[n]),
        decision_time: h.map(|h| decision_time_histogram(&decision_times(&samples, h, s_count), t_max, None)),
        harm_information: h.map(|_| PositionEstimates::from_columns(information)),
        kl_on_policy: PositionEstimates::from_columns(kl),
        kl_teacher_forced: teacher_forced_kl(track, policy, request)?,
        gradient: kernel.map(|kernel| kernel.finish(blocks, totals)),
        effective_sample_size: None,
    })
}

/// τ of each response: the first t with h_t(s_t) settled, else T + 1 (estimate::decision_times on
/// the exact h paths, read by position).
fn decision_times(samples: &ByPosition, h: &[f64], s_count: usize) -> Vec<u32> {
    let undecided = samples.length as u32 + 1;
    let mut times = vec![undecided; samples.count];
    times.par_chunks_mut(RESPONSES_PER_CHUNK).enumerate().for_each(|(chunk, times)| {
        let first = chunk * RESPONSES_PER_CHUNK;
        for t in 0..=samples.length {
            let (states, h) = (&samples.states_at(t)[first..first + times.len()], &h[t * s_count..(t + 1) * s_count]);
            for (time, &s) in times.iter_mut().zip(states) {
                if *time == undecided && settled(h[s as usize]) {
                    *time = t as u32;
                }
            }
        }
    });
    times
}
