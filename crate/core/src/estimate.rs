//! Monte Carlo estimators over sampled responses, each with its standard error.
//!
//! - h_t along each response: exact (from the exact engine's table), by nested rollouts (two
//!   independent sets of M continuations per prefix, so that products of innovations are unbiased),
//!   or not at all.
//! - I_t: the mean of Δ_t² with exact h, or of Δ¹_t·Δ²_t from the two rollout sets (unbiased, unlike
//!   the mean of squares of noisy innovations).
//! - G_t = E[c_t·s_t]: REINFORCE (c = H), leave-one-out baseline (c = H − mean of the others) or
//!   innovation (c = Δ̂_t), accumulated by the covariance kernel: contributions are grouped by
//!   (policy input, token), so each distinct input is differentiated once, never each sample.
//! - Per-position KL between two policies on sampled prefixes, exact over the vocabulary per prefix.
//! - The decision time τ (first t with h_t ∈ {0, 1}) per response, and its histogram with P(τ > T).
//! - Every mean comes with its SE and effective support, plain or self-normalised under weights
//!   (importance sampling, proposal.rs; or teacher forcing on Q = base reweighted by H).
//!
//! Reductions run in response order for each position (positions in parallel), so results do not
//! depend on the thread count.

use rayon::prelude::*;

use crate::covariance::{PositionTotals, ScoreKernel};
use crate::error::{Error, Result};
use crate::exact::SETTLED_TOLERANCE;
use crate::mlp::dot;
use crate::parallel::map_chunks_of;
use crate::policy::{softmax, Policy, TabularPolicy};
use crate::rng::DrawKey;
use crate::sampling::{map_tokens, step, Samples, StepPolicy};
use crate::walk::{Track, Walk, NO_TOKEN};

const RESPONSES_PER_CHUNK: usize = 64;

/// Positions whose columns the covariance kernel gathers in one sweep over the responses.
pub(crate) const POSITIONS_PER_GROUP: usize = 8;

/// (Σc²)² / Σc⁴: how many samples the variance rests on (0 when every term is 0). The c_n are the
/// per-sample deviation terms whose squares make up the SE (x_n − mean, or w_n·(x_n − mean)/Σw for
/// a weighted estimate): a few dominant terms give a small support, and then the SE is not to be
/// trusted (rare events drawn too few times, or not at all).
pub fn effective_support(sum_sq: f64, sum_fourth: f64) -> u32 {
    if sum_fourth > 0.0 {
        (sum_sq * sum_sq / sum_fourth) as u32
    } else {
        0
    }
}

/// Mean and standard error of the mean of n values given their sum and sum of squares.
pub fn mean_and_se(sum: f64, sum_sq: f64, n: usize) -> (f64, f64) {
    let mean = sum / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = ((sum_sq - n as f64 * mean * mean) / (n as f64 - 1.0)).max(0.0);
    (mean, (var / n as f64).sqrt())
}

/// One estimate: mean, standard error and effective support (see `effective_support`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scalar {
    pub mean: f64,
    pub se: f64,
    pub support: u32,
}

/// The estimate of E[x] from per-sample values x(n), n < count, in response order. Unweighted: the
/// sample mean and its SE. Weighted (importance weights, or Q = base reweighted by H): the
/// self-normalised Σw·x/Σw with its delta-method SE sqrt(Σ(w·(x − mean))²)/Σw. When every sample
/// has the same value, that is the estimate exactly, with SE 0 and support 0 (no variation was seen,
/// so the sample cannot tell a constant from a rare event it missed).
pub fn reduce(count: usize, weights: Option<&[f64]>, x: impl Fn(usize) -> f64) -> Scalar {
    let first = x(0);
    if (1..count).all(|n| x(n) == first) {
        let se = if weights.is_none() && count < 2 { f64::NAN } else { 0.0 };
        return Scalar { mean: first, se, support: 0 };
    }
    match weights {
        None => {
            let mean = (0..count).fold(0.0, |s, n| s + x(n)) / count as f64;
            let (s2, s4) = deviations(count, |n| x(n) - mean);
            let se = if count < 2 { f64::NAN } else { (s2 / (count as f64 - 1.0) / count as f64).sqrt() };
            Scalar { mean, se, support: effective_support(s2, s4) }
        }
        Some(w) => {
            let total = w.iter().fold(0.0, |s, w| s + w);
            let mean = (0..count).fold(0.0, |s, n| s + w[n] * x(n)) / total;
            let (s2, s4) = deviations(count, |n| w[n] * (x(n) - mean) / total);
            Scalar { mean, se: s2.sqrt(), support: effective_support(s2, s4) }
        }
    }
}

/// (Σc², Σc⁴) of the deviation terms c(n), n < count, in order.
#[inline]
fn deviations(count: usize, c: impl Fn(usize) -> f64) -> (f64, f64) {
    (0..count).fold((0.0, 0.0), |(s2, s4), n| {
        let c = c(n);
        let c2 = c * c;
        (s2 + c2, s4 + c2 * c2)
    })
}

/// Where h_t along a sampled response comes from.
pub enum HarmSource<'a> {
    /// The exact conditional-harm table of the sampled policy, (T+1) × S (needs sampled states).
    Exact(&'a [f64]),
    /// M continuations from each prefix, in two independent sets.
    Rollouts(usize),
}

/// ĥ_t(n) for t = 0..T, N × (T+1); with rollouts, two independent estimates.
pub struct HarmPaths {
    pub first: Vec<f64>,
    pub second: Option<Vec<f64>>,
}

impl HarmPaths {
    /// The innovation estimate Δ̂_t(n) used as a gradient coefficient (mean of the two sets).
    #[inline]
    pub fn innovation(&self, n: usize, t: usize, stride: usize) -> f64 {
        let d = |h: &[f64]| h[n * stride + t] - h[n * stride + t - 1];
        match &self.second {
            None => d(&self.first),
            Some(second) => 0.5 * (d(&self.first) + d(second)),
        }
    }
}

pub fn harm_paths(track: &Track, policy: &dyn StepPolicy, samples: &Samples, source: &HarmSource, seed: u64) -> Result<HarmPaths> {
    let t_max = samples.length;
    let stride = t_max + 1;
    match *source {
        HarmSource::Exact(table) => {
            let states = samples.states.as_ref().ok_or_else(|| Error::InvalidArgument("exact h needs samples drawn with the exact model".into()))?;
            let s_count = table.len() / stride;
            let mut first = crate::alloc::table(&[samples.count, stride], 0.0, "samples × (T+1) table of h")?;
            first.par_chunks_mut(stride).zip(states.par_chunks(stride)).for_each(|(h, states)| {
                for (t, (h, &s)) in h.iter_mut().zip(states).enumerate() {
                    *h = table[t * s_count + s as usize];
                }
            });
            Ok(HarmPaths { first, second: None })
        }
        HarmSource::Rollouts(m) => {
            if m == 0 {
                return Err(Error::InvalidArgument("rollouts must be at least 1".into()));
            }
            let parts = map_chunks_of(samples.count, RESPONSES_PER_CHUNK, |range| {
                let mut out = [vec![0.0; range.len() * stride], vec![0.0; range.len() * stride]];
                let mut prefix = track.start();
                let mut walk = track.start();
                let mut row = vec![0.0; track.spec.vocab];
                let mut scratch = vec![0.0; policy.scratch_len()];
                for (i, n) in range.enumerate() {
                    track.reset(&mut prefix);
                    for k in 0..=t_max {
                        for (set, values) in out.iter_mut().enumerate() {
                            let mut total = 0.0;
                            for rollout in 0..m {
                                walk.copy_from(&prefix);
                                while !track.finished(&walk) {
                                    let key = DrawKey { index: samples.first_index + n as u32, position: walk.emitted() as u32 + 1, stream: 1 + 2 * k as u32 + set as u32, substream: rollout as u32 };
                                    step(track, policy, &mut walk, key, seed, None, &mut row, &mut scratch);
                                }
                                total += track.harm(&walk);
                            }
                            values[i * stride + k] = total / m as f64;
                        }
                        let token = if k < t_max { samples.tokens[n * t_max + k] } else { NO_TOKEN };
                        if token != NO_TOKEN {
                            track.advance(&mut prefix, token as usize);
                        }
                    }
                }
                out
            });
            let (mut first, mut second) = (Vec::new(), Vec::new());
            for [a, b] in parts {
                first.extend(a);
                second.extend(b);
            }
            Ok(HarmPaths { first, second: Some(second) })
        }
    }
}

/// Per-position estimates with standard errors (arrays of length T, or T+1 for τ = 0..T).
#[derive(Debug, Clone, Default)]
pub struct PositionEstimates {
    pub mean: Vec<f64>,
    pub se: Vec<f64>,
    /// Effective number of samples carrying the variance (see `effective_support`). The SE is only
    /// trustworthy when this is not small: when a few rare samples (a refusal after many harmful
    /// tokens) dominate, or none was drawn, the SE underestimates.
    pub support: Vec<u32>,
}

impl PositionEstimates {
    pub(crate) fn from_columns(columns: Vec<Scalar>) -> Self {
        PositionEstimates {
            mean: columns.iter().map(|c| c.mean).collect(),
            se: columns.iter().map(|c| c.se).collect(),
            support: columns.iter().map(|c| c.support).collect(),
        }
    }
}

/// Reduces per-(response, column) values (count × width) to per-column estimates, responses in order.
fn per_position(values: &[f64], count: usize, width: usize, weights: Option<&[f64]>) -> PositionEstimates {
    per_position_of(count, width, weights, |n, t| values[n * width + t])
}

/// Per-column estimates of x(n, t), t < width, responses in order. Columns are filled a group of
/// POSITIONS_PER_GROUP at a time in one sweep over the responses (reading x along a response is
/// contiguous, down a column it is not), groups in parallel, then reduced contiguously.
fn per_position_of(count: usize, width: usize, weights: Option<&[f64]>, x: impl Fn(usize, usize) -> f64 + Sync) -> PositionEstimates {
    let columns = (0..width.div_ceil(POSITIONS_PER_GROUP))
        .into_par_iter()
        .flat_map_iter(|group| {
            let positions = group * POSITIONS_PER_GROUP..((group + 1) * POSITIONS_PER_GROUP).min(width);
            let mut columns = vec![0.0; positions.len() * count];
            for n in 0..count {
                for (k, t) in positions.clone().enumerate() {
                    columns[k * count + n] = x(n, t);
                }
            }
            columns.chunks_exact(count.max(1)).map(|column| reduce(count, weights, |n| column[n])).collect::<Vec<_>>()
        })
        .collect();
    PositionEstimates::from_columns(columns)
}

/// E[H] (weighted: self-normalised under importance weights).
pub fn expected_harm(samples: &Samples, weights: Option<&[f64]>) -> Scalar {
    reduce(samples.count, weights, |n| samples.harm[n])
}

/// Whether h is settled: within SETTLED_TOLERANCE of 0 or 1, the exact engine's test.
pub(crate) fn settled(h: f64) -> bool {
    h <= SETTLED_TOLERANCE || h >= 1.0 - SETTLED_TOLERANCE
}

/// The decision time τ of each response, the first t with h_t ∈ {0, 1}, or T + 1 when h never
/// settles (τ > T, possible only for non-binary harm). With rollouts, ĥ_t of both sets must be
/// settled: every one of the 2M continuations from y_≤t has the same harm, 0 or 1. That τ̂ is never
/// later than τ (where h_t is 0 or 1 every continuation agrees) and tends to τ as M grows.
pub fn decision_times(paths: &HarmPaths, count: usize, length: usize) -> Vec<u32> {
    let stride = length + 1;
    let decided = |n: usize, t: usize| {
        let at = n * stride + t;
        settled(paths.first[at]) && paths.second.as_ref().is_none_or(|h| settled(h[at]))
    };
    (0..count).map(|n| (0..=length).find(|&t| decided(n, t)).unwrap_or(stride) as u32).collect()
}

/// P̂(τ = t) for t = 0..T and P̂(τ > T), from the decision times of `decision_times`.
pub fn decision_time_histogram(times: &[u32], length: usize, weights: Option<&[f64]>) -> (PositionEstimates, Scalar) {
    let width = length + 2;
    let columns: Vec<Scalar> = (0..width).into_par_iter().map(|t| reduce(times.len(), weights, |n| if times[n] as usize == t { 1.0 } else { 0.0 })).collect();
    let undecided = columns[length + 1];
    (PositionEstimates::from_columns(columns[..=length].to_vec()), undecided)
}

/// I_t: mean of Δ_t² (exact h) or of Δ¹_t·Δ²_t (two independent rollout sets).
pub fn harm_information(samples: &Samples, paths: &HarmPaths, weights: Option<&[f64]>) -> PositionEstimates {
    let (t_max, stride) = (samples.length, samples.length + 1);
    per_position_of(samples.count, t_max, weights, |n, t| {
        let at = n * stride + t + 1;
        let d1 = paths.first[at] - paths.first[at - 1];
        let d2 = match &paths.second {
            Some(h) => h[at] - h[at - 1],
            None => d1,
        };
        d1 * d2
    })
}

/// Per-position KL(π(·|prefix) ‖ base(·|prefix)) averaged over the sampled prefixes, optionally
/// weighted per response (importance weights; or teacher forcing on Q = base reweighted by H, with
/// weights H_n).
pub fn kl_to_base_along(track: &Track, policy: &dyn StepPolicy, samples: &Samples, weights: Option<&[f64]>) -> Result<PositionEstimates> {
    let (t_max, v) = (samples.length, track.spec.vocab);
    if let Some(w) = weights {
        if !(w.iter().sum::<f64>() > 0.0) {
            return Err(Error::InvalidArgument("the weights of the prefixes sum to 0 (no harmful sample)".into()));
        }
    }
    if let (Some(rows), Some(states), Some(model)) = (policy.exact_rows(), samples.states.as_ref(), track.model) {
        // The rows' KL by the stored states, no replay.
        let (stride, s_count) = (t_max + 1, model.num_states());
        let kl = |n: usize, t: usize| if samples.tokens[n * t_max + t] == NO_TOKEN { 0.0 } else { rows.kl[t * s_count + states[n * stride + t] as usize] };
        return Ok(per_position_of(samples.count, t_max, weights, kl));
    }
    let scratch = || (vec![0.0; v], vec![0.0; policy.scratch_len()]);
    let values = map_tokens(track, samples, scratch, |(row, s), walk, _| policy.kl_to_base(track, walk, row, s));
    Ok(per_position(&values, samples.count, t_max, weights))
}

/// A policy whose score function the covariance kernel can accumulate.
pub trait ScoreModel: StepPolicy {
    /// Length of position t's gradient block (tabular: S·V, the position's logits; mlp: all P).
    fn block_len(&self) -> usize;
    /// Whether the blocks are disjoint slices of the parameters, one per position (tabular), rather
    /// than gradients of one shared parameter vector (mlp).
    fn blocks_are_positions(&self) -> bool;
    /// Identifies the policy's input at a walk: equal keys at a position have equal scores.
    fn input_key(&self, walk: &Walk) -> u64;
    /// Whether the input key is the walk's exact state (then the stored states give the keys, and
    /// `accumulate` at a state adds to that state's row of the block only).
    fn keys_are_states(&self) -> bool {
        false
    }
    /// π_t(· | s) of every state at position t (S × V), for a policy whose keys are states and whose
    /// score at (t, s, a) is e_a − π_t(· | s) on its own logits of (t, s) (tabular): the kernel then
    /// applies that closed form itself instead of calling `accumulate` state by state.
    fn softmax_rows(&self, _t: usize) -> Option<&[f64]> {
        None
    }
    /// At (position t, input key): adds Σ_a coef[a]·∇log π(a | input) to `block`; for every token a
    /// with want[a] writes ||∇log π(a|input)||² into norms[a] and, when a direction u (a block) is
    /// given, ⟨∇log π(a|input), u⟩ into proj[a].
    #[allow(clippy::too_many_arguments)]
    fn accumulate(&self, t: usize, key: u64, coef: &[f64], block: &mut [f64], want: &[bool], norms: &mut [f64], u: Option<&[f64]>, proj: &mut [f64], scratch: &mut [f64]);
}

/// How the gradient coefficient c_{n,t} is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coefficient {
    /// c = H (REINFORCE).
    Reinforce,
    /// c = H − mean of the other responses' H.
    LeaveOneOut,
    /// c = Δ̂_t = ĥ_t − ĥ_{t−1}.
    Innovation,
}

#[derive(Debug, Clone)]
pub struct GradientEstimate {
    /// Ĝ_t blocks, T × block_len.
    pub blocks: Vec<f64>,
    pub block_len: usize,
    /// ||Ĝ_t||.
    pub norm: Vec<f64>,
    /// Per-sample variance tr Cov(c·s_t) (the SE of Ĝ_t's entries is this over N, summed).
    pub variance: Vec<f64>,
    /// ⟨Ĝ_t, u_t⟩ and its SE, when directions u are given.
    pub projection: PositionEstimates,
}

impl GradientEstimate {
    /// The gradient with respect to all parameters: the blocks laid end to end (tabular) or summed
    /// over positions (a shared parameter vector).
    pub fn total(&self, blocks_are_positions: bool) -> Vec<f64> {
        if blocks_are_positions {
            return self.blocks.clone();
        }
        let mut total = vec![0.0; self.block_len];
        for block in self.blocks.chunks_exact(self.block_len) {
            crate::mlp::axpy(1.0, block, &mut total);
        }
        total
    }
}

/// The covariance kernel for E[H]: Ĝ_t = (1/N) Σ_n c_{n,t}·∇log π(y_{n,t} | y_{n,<t}) with the
/// coefficient of the chosen estimator.
pub fn estimate_gradient(
    track: &Track,
    policy: &dyn ScoreModel,
    samples: &Samples,
    coefficient: Coefficient,
    paths: Option<&HarmPaths>,
    directions: Option<&[f64]>,
) -> Result<GradientEstimate> {
    coefficient.check(samples.count, paths.is_some())?;
    let harm_total: f64 = samples.harm.iter().sum();
    let t_max = samples.length;
    let coef = |n: usize, t: usize| coefficient.value(&samples.harm, harm_total, n, || paths.unwrap().innovation(n, t + 1, t_max + 1));
    accumulate_scores(track, policy, samples, &coef, directions, true)
}

impl Coefficient {
    /// Whether this estimator applies to `count` samples, with or without h_t.
    pub(crate) fn check(self, count: usize, with_h: bool) -> Result<()> {
        if self == Coefficient::Innovation && !with_h {
            return Err(Error::InvalidArgument("the innovation estimator needs h_t (exact or rollouts)".into()));
        }
        if self == Coefficient::LeaveOneOut && count < 2 {
            return Err(Error::InvalidArgument("the leave-one-out baseline needs at least 2 samples".into()));
        }
        Ok(())
    }

    /// c_{n,t} from the responses' harms (and their sum) and response n's innovation Δ̂_{t+1}.
    #[inline]
    pub(crate) fn value(self, harm: &[f64], harm_total: f64, n: usize, innovation: impl FnOnce() -> f64) -> f64 {
        match self {
            Coefficient::Reinforce => harm[n],
            Coefficient::LeaveOneOut => harm[n] - (harm_total - harm[n]) / (harm.len() as f64 - 1.0),
            Coefficient::Innovation => innovation(),
        }
    }
}

/// The covariance kernel: Ĝ_t = (1/N) Σ_n c(n, t − 1)·∇log π(y_{n,t} | y_{n,<t}) for any coefficients,
/// grouped by (policy input, token) so that each distinct input is differentiated once. The
/// per-sample variance needs one score norm per distinct (input, token); training skips it
/// (`with_variance` false, the variance is then reported as NaN).
pub fn accumulate_scores(
    track: &Track,
    policy: &dyn ScoreModel,
    samples: &Samples,
    coef: &(dyn Fn(usize, usize) -> f64 + Sync),
    directions: Option<&[f64]>,
    with_variance: bool,
) -> Result<GradientEstimate> {
    let (count, t_max) = (samples.count, samples.length);
    // With exact states stored and keys that are those states (tabular), the stored states are the keys.
    let state_keys = match (policy.keys_are_states(), samples.states.as_ref(), track.model) {
        (true, Some(states), Some(model)) => Some((states, model.num_states())),
        _ => None,
    };
    let kernel = ScoreKernel::new(policy, track.spec.vocab, t_max, count, directions, with_variance, state_keys.map(|(_, s_count)| s_count))?;
    let block_len = kernel.block_len();
    // Otherwise, input keys along each response.
    let keys: Vec<u64> = if state_keys.is_some() { Vec::new() } else { map_tokens(track, samples, || (), |_, walk, _| policy.input_key(walk)) };
    // The blocks are written in place, a group of positions per task. A group's columns are read
    // off the responses in one sweep (one cache line of each response per array), not with a
    // stride of T per position.
    let mut blocks = crate::alloc::table(&[t_max, block_len], 0.0, "positions × gradient block")?;
    let per_t: Vec<PositionTotals> = blocks
        .par_chunks_mut((POSITIONS_PER_GROUP * block_len).max(1))
        .enumerate()
        .flat_map_iter(|(group, out)| {
            let positions = group * POSITIONS_PER_GROUP..((group + 1) * POSITIONS_PER_GROUP).min(t_max);
            let width = positions.len();
            let mut tokens = vec![NO_TOKEN; width * count];
            let mut keys_at = vec![0u64; width * count];
            let mut coefs = vec![0.0; width * count];
            for n in 0..count {
                for (k, t) in positions.clone().enumerate() {
                    let a = samples.tokens[n * t_max + t];
                    tokens[k * count + n] = a;
                    if a != NO_TOKEN {
                        keys_at[k * count + n] = match state_keys {
                            Some((states, _)) => states[n * (t_max + 1) + t] as u64,
                            None => keys[n * t_max + t],
                        };
                        coefs[k * count + n] = coef(n, t);
                    }
                }
            }
            let column = |k: usize| k * count..(k + 1) * count;
            let mut sums = kernel.sums();
            let blocks = out.chunks_mut(block_len.max(1));
            positions.zip(blocks).enumerate().map(|(k, (t, block))| kernel.position(t, &tokens[column(k)], &keys_at[column(k)], &coefs[column(k)], block, &mut sums)).collect::<Vec<_>>()
        })
        .collect();
    Ok(kernel.finish(blocks, per_t))
}

impl ScoreModel for crate::sampling::ExactStep<'_, TabularPolicy<'_>> {
    fn block_len(&self) -> usize {
        self.0.model.num_states() * self.0.model.vocab()
    }
    fn blocks_are_positions(&self) -> bool {
        true
    }
    fn input_key(&self, walk: &Walk) -> u64 {
        walk.state as u64
    }
    fn keys_are_states(&self) -> bool {
        true
    }
    fn softmax_rows(&self, t: usize) -> Option<&[f64]> {
        let size = self.0.model.num_states() * self.0.model.vocab();
        self.0.row_cache().and_then(|rows| rows.probs.get((t - 1) * size..t * size))
    }
    fn accumulate(&self, t: usize, key: u64, coef: &[f64], block: &mut [f64], want: &[bool], norms: &mut [f64], u: Option<&[f64]>, proj: &mut [f64], _scratch: &mut [f64]) {
        let v = coef.len();
        let s = key as usize;
        let mut own = Vec::new();
        let pi: &[f64] = match self.0.row_cache() {
            Some(rows) => {
                let row = (t - 1) * self.0.model.num_states() + s;
                &rows.probs[row * v..(row + 1) * v]
            }
            None => {
                own.resize(v, 0.0);
                self.0.probs(t, s, &mut own);
                &own
            }
        };
        let total: f64 = coef.iter().sum();
        let row = &mut block[s * v..(s + 1) * v];
        for a in 0..v {
            row[a] += coef[a] - total * pi[a];
        }
        // ∇log π(a) = e_a − π on this state's logits.
        let purity: f64 = pi.iter().map(|p| p * p).sum();
        let mean_u = u.map(|u| dot(&pi, &u[s * v..(s + 1) * v]));
        for a in (0..v).filter(|&a| want[a]) {
            norms[a] = 1.0 - 2.0 * pi[a] + purity;
            if let (Some(u), Some(mean_u)) = (u, mean_u) {
                proj[a] = u[s * v + a] - mean_u;
            }
        }
    }
}

impl ScoreModel for crate::mlp::MlpPolicy<'_> {
    fn block_len(&self) -> usize {
        self.mlp.num_params()
    }
    fn blocks_are_positions(&self) -> bool {
        false
    }
    fn input_key(&self, walk: &Walk) -> u64 {
        self.mlp.context_of(&walk.tokens) as u64
    }
    fn accumulate(&self, t: usize, key: u64, coef: &[f64], block: &mut [f64], want: &[bool], norms: &mut [f64], u: Option<&[f64]>, proj: &mut [f64], scratch: &mut [f64]) {
        let v = coef.len();
        let context = key as usize;
        let mut logits = vec![0.0; v];
        let mut pi = vec![0.0; v];
        self.mlp.forward(self.params, t, context, &mut logits, scratch);
        softmax(&logits, &mut pi);
        let total: f64 = coef.iter().sum();
        let delta: Vec<f64> = (0..v).map(|a| coef[a] - total * pi[a]).collect();
        self.mlp.backward(self.params, t, context, &delta, Some(block), scratch);
        if let Some(u) = u {
            let mut ju = vec![0.0; v];
            self.mlp.jvp(self.params, t, context, u, &mut ju, scratch);
            let mean = dot(&pi, &ju);
            for a in (0..v).filter(|&a| want[a]) {
                proj[a] = ju[a] - mean;
            }
        }
        let mut unit = vec![0.0; v];
        for a in (0..v).filter(|&a| want[a]) {
            unit.iter_mut().zip(&pi).for_each(|(d, p)| *d = -p);
            unit[a] += 1.0;
            norms[a] = self.mlp.backward(self.params, t, context, &unit, None, scratch);
        }
    }
}
