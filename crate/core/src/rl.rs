//! Sampled policy-gradient training on the standard objective λ·E[H] + KL(P_θ ‖ P_base), with the
//! KL charged per token (as in RLHF practice): cost of a response = λ·H + Σ_t log(π/p)(y_t).
//!
//! - REINFORCE: c_{n,t} = C_{n,t} − (mean of the other responses' C_{·,t}), C the cost-to-go from t.
//! - REINFORCE with innovations: the harm part of C_{n,t} is replaced by λ·(ĥ_t − ĥ_{t−1}) (the
//!   theory's innovation estimator), h from the exact table or from nested rollouts of the current
//!   policy (`HarmSource`). With exact h it is exactly zero beyond the horizon, so those positions
//!   only feel the KL and stay at the base instead of drifting with the noise; with rollouts it is
//!   zero there in expectation.
//! - PPO: the clipped surrogate of the same advantages, several epochs on each batch.

use crate::error::{Error, Result};
use crate::estimate::{accumulate_scores, harm_paths, HarmPaths, HarmSource, ScoreModel};
use crate::mlp::{Mlp, MlpPolicy};
use crate::model::{Model, ScenarioSpec};
use crate::policy::TabularPolicy;
use crate::sampling::{map_tokens, sample, ExactStep, SampleRequest, Samples, StepPolicy};
use crate::walk::{Track, NO_TOKEN};

/// log π(y_{n,t} | y_{n,<t}) of sampled tokens under a policy, N × T (0 after the end).
pub fn replay_log_probs(track: &Track, policy: &dyn StepPolicy, samples: &Samples) -> Vec<f64> {
    let v = track.spec.vocab;
    map_tokens(track, samples, || (vec![0.0; v], vec![0.0; policy.scratch_len()]), |(row, scratch), walk, a| {
        policy.probs(walk, row, scratch);
        row[a].ln()
    })
}

/// The coefficient of a score term: c(n, t, log π_θ(y_{n,t} | y_{n,<t})) under the current parameters.
pub type ScoreCoefficient<'c> = &'c (dyn Fn(usize, usize, f64) -> f64 + Sync);

/// A family of parametric policies: builds the policy for a parameter vector.
pub trait Family: Sync {
    fn with_params<R>(&self, params: &[f64], f: impl FnOnce(&dyn ScoreModel) -> R) -> Result<R>;

    /// `Trainable::sample`; by default `sampling::sample` on the policy.
    fn sample(&self, track: &Track, params: &[f64], request: &SampleRequest) -> Result<Samples> {
        self.with_params(params, |p| sample(track, p, request))?
    }

    /// Ĝ_t = (1/N) Σ_n c_{n,t}·∇log π_θ(y_{n,t} | y_{n,<t}) over the samples: the gradient with
    /// respect to all parameters and ||Ĝ_t|| per position. `uses_log_prob` says whether the
    /// coefficient reads the current log-probability (otherwise it is given NaN). By default, the
    /// covariance kernel on the policy.
    fn score_gradient(&self, track: &Track, params: &[f64], samples: &Samples, coef: ScoreCoefficient, uses_log_prob: bool) -> Result<(Vec<f64>, Vec<f64>)> {
        let t_max = samples.length;
        self.with_params(params, |p| -> Result<_> {
            let current = if uses_log_prob { replay_log_probs(track, p, samples) } else { vec![] };
            let coef = |n: usize, t: usize| coef(n, t, current.get(n * t_max + t).copied().unwrap_or(f64::NAN));
            let g = accumulate_scores(track, p, samples, &coef, None, false)?;
            Ok((g.total(p.blocks_are_positions()), g.norm))
        })?
    }

    /// `Trainable::score_epochs`; by default one `score_gradient` per epoch.
    fn score_epochs(&self, track: &Track, params: &mut [f64], samples: &Samples, coefficients: &PpoCoefficients, epochs: usize, update: &mut dyn FnMut(&mut [f64], &[f64])) -> Result<Vec<f64>> {
        let coef = |n: usize, t: usize, current: f64| coefficients.one(n, t, current);
        epochs_one_by_one(epochs, params, update, |params| Family::score_gradient(self, track, params, samples, &coef, true))
    }
}

/// `epochs` rounds of: the gradient at the current parameters, then `update`; returns the last
/// gradient's per-position norms.
fn epochs_one_by_one(epochs: usize, params: &mut [f64], update: &mut dyn FnMut(&mut [f64], &[f64]), mut gradient: impl FnMut(&[f64]) -> Result<(Vec<f64>, Vec<f64>)>) -> Result<Vec<f64>> {
    let mut norms = vec![];
    for _ in 0..epochs {
        crate::cancel::checkpoint();
        let (g, n) = gradient(params)?;
        norms = n;
        update(params, &g);
    }
    Ok(norms)
}

/// What a training step needs of a policy family: sampling, and the score-function gradient as
/// `Family::score_gradient` gives it. Every `Family` is trainable; families without a per-input
/// score model (the transformer, whose scores come from batched passes) implement this directly.
pub trait Trainable: Sync {
    fn sample(&self, track: &Track, params: &[f64], request: &SampleRequest) -> Result<Samples>;
    fn score_gradient(&self, track: &Track, params: &[f64], samples: &Samples, coef: ScoreCoefficient, uses_log_prob: bool) -> Result<(Vec<f64>, Vec<f64>)>;
    /// ĥ_t along the samples under the policy of `params` (`estimate::harm_paths` on it).
    fn harm_paths(&self, track: &Track, params: &[f64], samples: &Samples, source: &HarmSource, seed: u64) -> Result<HarmPaths>;
    /// PPO's epochs on one batch: `epochs` times, the score gradient of the clipped surrogate at the
    /// current parameters (coefficients from `coefficients`), then `update(params, gradient)`.
    /// Returns the last gradient's ||Ĝ_t||. Families that index a batch (the mlp) build the index
    /// once for all epochs and take the coefficients of many responses at once.
    fn score_epochs(&self, track: &Track, params: &mut [f64], samples: &Samples, coefficients: &PpoCoefficients, epochs: usize, update: &mut dyn FnMut(&mut [f64], &[f64])) -> Result<Vec<f64>> {
        let coef = |n: usize, t: usize, current: f64| coefficients.one(n, t, current);
        epochs_one_by_one(epochs, params, update, |params| self.score_gradient(track, params, samples, &coef, true))
    }
}

impl<F: Family> Trainable for F {
    fn sample(&self, track: &Track, params: &[f64], request: &SampleRequest) -> Result<Samples> {
        Family::sample(self, track, params, request)
    }
    fn score_gradient(&self, track: &Track, params: &[f64], samples: &Samples, coef: ScoreCoefficient, uses_log_prob: bool) -> Result<(Vec<f64>, Vec<f64>)> {
        Family::score_gradient(self, track, params, samples, coef, uses_log_prob)
    }
    fn harm_paths(&self, track: &Track, params: &[f64], samples: &Samples, source: &HarmSource, seed: u64) -> Result<HarmPaths> {
        self.with_params(params, |p| harm_paths(track, p, samples, source, seed))?
    }
    fn score_epochs(&self, track: &Track, params: &mut [f64], samples: &Samples, coefficients: &PpoCoefficients, epochs: usize, update: &mut dyn FnMut(&mut [f64], &[f64])) -> Result<Vec<f64>> {
        Family::score_epochs(self, track, params, samples, coefficients, epochs, update)
    }
}

pub struct TabularFamily<'m>(pub &'m Model);

impl Family for TabularFamily<'_> {
    fn with_params<R>(&self, params: &[f64], f: impl FnOnce(&dyn ScoreModel) -> R) -> Result<R> {
        let policy = TabularPolicy::new(self.0, params)?;
        Ok(f(&ExactStep(&policy)))
    }
}

pub struct MlpFamily<'m>(pub &'m Mlp);

impl Family for MlpFamily<'_> {
    fn with_params<R>(&self, params: &[f64], f: impl FnOnce(&dyn ScoreModel) -> R) -> Result<R> {
        self.0.check_params(params)?;
        Ok(f(&MlpPolicy::new(self.0, params)))
    }

    /// Position by position, on the inputs the walks reach (`Mlp::sample`: `sampling::sample`'s results).
    fn sample(&self, track: &Track, params: &[f64], request: &SampleRequest) -> Result<Samples> {
        self.0.check_params(params)?;
        self.0.sample(params, track, request)
    }

    /// Batched forward and backward passes on the GEMM kernels over the distinct inputs of each
    /// position (one of each per chunk of rows), rather than one scalar pass per distinct input.
    fn score_gradient(&self, _track: &Track, params: &[f64], samples: &Samples, coef: ScoreCoefficient, _uses_log_prob: bool) -> Result<(Vec<f64>, Vec<f64>)> {
        self.0.check_params(params)?;
        Ok(self.total_and_norms(&self.0.score_blocks(params, samples, coef)))
    }

    /// The batch grouped by network input once (`Mlp::score_index`), read by every epoch.
    fn score_epochs(&self, _track: &Track, params: &mut [f64], samples: &Samples, coefficients: &PpoCoefficients, epochs: usize, update: &mut dyn FnMut(&mut [f64], &[f64])) -> Result<Vec<f64>> {
        self.0.check_params(params)?;
        let index = self.0.score_index(samples);
        let coef = |t: usize, responses: &[u32], current: &[f64], out: &mut [f64]| coefficients.fill(t, responses, current, out);
        let mut blocks = vec![0.0; samples.length * self.0.num_params()];
        epochs_one_by_one(epochs, params, update, |params| {
            self.0.check_params(params)?;
            self.0.indexed_score_blocks_into(params, &index, &coef, &mut blocks);
            Ok(self.total_and_norms(&blocks))
        })
    }
}

impl MlpFamily<'_> {
    /// The sum of per-position blocks (T × P), positions added in order, and each block's norm
    /// ||Ĝ_t||; in parallel over fixed slices of the parameters and over the blocks.
    fn total_and_norms(&self, blocks: &[f64]) -> (Vec<f64>, Vec<f64>) {
        use rayon::prelude::*;
        const SLICE: usize = 1024;
        let p = self.0.num_params();
        let mut total = vec![0.0; p];
        total.par_chunks_mut(SLICE).enumerate().for_each(|(k, slice)| {
            for block in blocks.chunks_exact(p) {
                crate::mlp::axpy(1.0, &block[k * SLICE..k * SLICE + slice.len()], slice);
            }
        });
        let norms = blocks.par_chunks_exact(p).map(|block| crate::mlp::dot(block, block).sqrt()).collect();
        (total, norms)
    }
}

/// PPO's coefficients of the clipped surrogate of the cost: c_{n,t} = −ρ·gain, with
/// ρ = exp(log π_θ − log π_old)(y_{n,t}) and gain = −advantage, zero where clipped (gain > 0 and
/// ρ > 1 + ε, or gain < 0 and ρ < 1 − ε).
pub struct PpoCoefficients {
    count: usize,
    clip: f64,
    /// The old log-probabilities and the gains, position-major (t·N + n): the score sums take a
    /// position's responses in index order, so every epoch reads them consecutively.
    old: Vec<f64>,
    gains: Vec<f64>,
}

impl PpoCoefficients {
    pub fn new(samples: &Samples, advantage: &[f64], clip: f64) -> PpoCoefficients {
        use rayon::prelude::*;
        let (count, t_max) = (samples.count, samples.length);
        // Blocks of POSITIONS rows in parallel: each response's POSITIONS entries are one cache line.
        const POSITIONS: usize = 8;
        let position_major = |x: &[f64], sign: f64| -> Vec<f64> {
            let mut out = vec![0.0; t_max * count];
            if count > 0 {
                out.par_chunks_mut(POSITIONS * count).enumerate().for_each(|(k, rows)| {
                    let first = k * POSITIONS;
                    for (n, x) in x.chunks_exact(t_max).enumerate() {
                        for (j, &x) in x[first..first + rows.len() / count].iter().enumerate() {
                            rows[j * count + n] = sign * x;
                        }
                    }
                });
            }
            out
        };
        PpoCoefficients { count, clip, old: position_major(&samples.log_probs, 1.0), gains: position_major(advantage, -1.0) }
    }

    /// The coefficients of responses `responses` at position t (0-based) given their current
    /// log-probabilities, into `out`; the ratios by one vectorised exponential
    /// (`vector_math::exp_in_place`, whose result per entry does not depend on the batch).
    pub fn fill(&self, t: usize, responses: &[u32], current: &[f64], out: &mut [f64]) {
        let ppo = self;
        crate::vector_math::widest!((ppo: &PpoCoefficients, t: usize, responses: &[u32], current: &[f64], out: &mut [f64]) => ppo.fill_body(t, responses, current, out))
    }

    /// `fill`, compiled for the widest vectors the processor has.
    #[inline(always)]
    fn fill_body(&self, t: usize, responses: &[u32], current: &[f64], out: &mut [f64]) {
        let at = |n: u32| t * self.count + n as usize;
        out.iter_mut().zip(responses).zip(current).for_each(|((r, &n), &c)| *r = c - self.old[at(n)]);
        crate::vector_math::exp_in_place(out);
        let (high, low) = (1.0 + self.clip, 1.0 - self.clip);
        for (c, &n) in out.iter_mut().zip(responses) {
            let (ratio, gain) = (*c, self.gains[at(n)]);
            // `&` and `|`, not `&&` and `||`: no jumps on comparisons the predictor cannot guess.
            let clipped = ((gain > 0.0) & (ratio > high)) | ((gain < 0.0) & (ratio < low));
            *c = if clipped { 0.0 } else { -ratio * gain };
        }
    }

    /// `fill` for one response.
    pub fn one(&self, n: usize, t: usize, current: f64) -> f64 {
        let mut out = [0.0];
        self.fill(t, &[n as u32], &[current], &mut out);
        out[0]
    }
}

/// PPO's clipping range ε and epochs per batch when none are given.
pub const DEFAULT_PPO_CLIP: f64 = 0.2;
pub const DEFAULT_PPO_EPOCHS: usize = 4;

/// M, the rollouts per prefix and set of reinforce-innovation's h_t when none is given: each ĥ_t is
/// the mean of 2M continuations. Fewer than `estimate`'s 16 because a training step runs N·(T+1)·2M
/// continuations and the batch averages the rollout noise anyway (M sets its variance, not its mean).
pub const DEFAULT_TRAINING_ROLLOUTS: usize = 4;

/// Bytes of the rollout buffers of a batch: the two sets of ĥ_t, N × (T+1) f64 each. The M
/// continuations from a prefix run one after the other and are averaged on the fly, so M adds no memory.
pub fn rollout_bytes(count: usize, length: usize) -> f64 {
    2.0 * count as f64 * (length as f64 + 1.0) * std::mem::size_of::<f64>() as f64
}

/// Refuses (HH_OUT_OF_MEMORY) a batch whose rollout buffers would exceed `budget` bytes.
pub fn check_rollout_budget(count: usize, length: usize, budget: u64) -> Result<()> {
    let bytes = rollout_bytes(count, length);
    if bytes > budget as f64 {
        return Err(Error::OutOfMemory {
            what: format!("rollout buffers of a batch of {count} responses (2 × N × (T+1) = 2 × {count} × {} f64, over the memory budget of {budget} bytes)", length as u128 + 1),
            bytes,
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum RlAlgorithm {
    Reinforce,
    /// REINFORCE whose harm part uses innovations λ·Δ̂_t (h from the `HarmSource` given to the step).
    ReinforceInnovation,
    Ppo { clip: f64, epochs: usize },
}

#[derive(Debug, Clone)]
pub struct RlStep {
    /// Mean harm and mean total per-token KL of the batch, and their sum λH + KL (the objective's estimate).
    pub mean_harm: f64,
    pub mean_kl: f64,
    pub objective: f64,
    /// ||ĝ_t|| per position of the (last) gradient.
    pub grad_norm: Vec<f64>,
}

/// Responses per parallel chunk of the per-token passes below: a fixed split, so sums combined
/// chunk by chunk in chunk order do not depend on the thread count.
const RESPONSES_PER_CHUNK: usize = 64;

/// The KL part of the cost-to-go, Σ_{s ≥ t} log(π/p)(y_s) per response and position (N × T, 0 after
/// the end), and the batch's total KL. One pass per chunk of responses (in parallel): log p_base
/// read at each token's context, the sum from the last position back.
fn kl_to_go(spec: &ScenarioSpec, samples: &Samples) -> (Vec<f64>, f64) {
    use rayon::prelude::*;
    let t_max = samples.length;
    let mut to_go = vec![0.0; samples.count * t_max];
    if t_max == 0 {
        return (to_go, 0.0);
    }
    let chunk = RESPONSES_PER_CHUNK * t_max;
    let totals: Vec<f64> = to_go
        .par_chunks_mut(chunk)
        .zip(samples.tokens.par_chunks(chunk).zip(samples.log_probs.par_chunks(chunk)))
        .map(|(to_go, (tokens, log_probs))| {
            let mut total = 0.0;
            for ((to_go, tokens), log_probs) in to_go.chunks_exact_mut(t_max).zip(tokens.chunks_exact(t_max)).zip(log_probs.chunks_exact(t_max)) {
                let mut context = spec.start_context();
                for (t, &a) in tokens.iter().enumerate().take_while(|&(_, &a)| a != NO_TOKEN) {
                    to_go[t] = log_probs[t] - spec.base_row(context)[a as usize].ln();
                    context = spec.next_context(context, a as usize);
                }
                let mut sum = 0.0;
                for x in to_go.iter_mut().rev() {
                    sum += *x;
                    *x = sum;
                }
                total += sum;
            }
            total
        })
        .collect();
    (to_go, totals.iter().sum())
}

/// x − mean of the other responses' x at the same position (only responses with a token there
/// count), in place. The totals per position are summed chunk by chunk of responses (in parallel),
/// then over the chunks in order.
fn leave_one_out(values: &mut [f64], samples: &Samples) {
    use rayon::prelude::*;
    let t_max = samples.length;
    if t_max == 0 {
        return;
    }
    let chunk = RESPONSES_PER_CHUNK * t_max;
    let live = |tokens: &[u32]| tokens.iter().take_while(|&&a| a != NO_TOKEN).count();
    let partial: Vec<(Vec<f64>, Vec<usize>)> = values
        .par_chunks(chunk)
        .zip(samples.tokens.par_chunks(chunk))
        .map(|(values, tokens)| {
            let (mut totals, mut alive) = (vec![0.0; t_max], vec![0usize; t_max]);
            for (values, tokens) in values.chunks_exact(t_max).zip(tokens.chunks_exact(t_max)) {
                let emitted = live(tokens);
                totals[..emitted].iter_mut().zip(&values[..emitted]).for_each(|(s, &x)| *s += x);
                alive[..emitted].iter_mut().for_each(|k| *k += 1);
            }
            (totals, alive)
        })
        .collect();
    let (mut totals, mut alive) = (vec![0.0; t_max], vec![0usize; t_max]);
    for (chunk_totals, chunk_alive) in &partial {
        totals.iter_mut().zip(chunk_totals).for_each(|(s, &x)| *s += x);
        alive.iter_mut().zip(chunk_alive).for_each(|(k, &x)| *k += x);
    }
    values.par_chunks_mut(chunk).zip(samples.tokens.par_chunks(chunk)).for_each(|(values, tokens)| {
        for (values, tokens) in values.chunks_exact_mut(t_max).zip(tokens.chunks_exact(t_max)) {
            for (t, x) in values[..live(tokens)].iter_mut().enumerate().filter(|&(t, _)| alive[t] >= 2) {
                *x -= (totals[t] - *x) / (alive[t] - 1) as f64;
            }
        }
    });
}

/// One training step: samples N responses from the current parameters, estimates the gradient of
/// λ·E[H] + KL, and applies `update(params, gradient)` (once, or once per PPO epoch).
#[allow(clippy::too_many_arguments)]
pub fn rl_step<F: Trainable>(
    track: &Track,
    family: &F,
    params: &mut [f64],
    update: &mut dyn FnMut(&mut [f64], &[f64]),
    count: usize,
    seed: u64,
    first_index: u32,
    lambda: f64,
    algorithm: RlAlgorithm,
    harm: Option<&HarmSource>,
) -> Result<RlStep> {
    if count < 2 {
        return Err(Error::InvalidArgument("a training batch needs at least 2 responses".into()));
    }
    let request = SampleRequest { count, seed, prefix: None, first_index };
    let samples = family.sample(track, params, &request)?;
    rl_update(track, family, params, update, samples, seed, lambda, algorithm, harm)
}

/// The update half of `rl_step`, on a batch already sampled from `params` with `seed`. `harm`: where
/// reinforce-innovation reads h_t (the exact table of the policy of `params`, or rollouts of it,
/// keyed by `seed` and the responses' indices, so any thread count gives the same bits).
#[allow(clippy::too_many_arguments)]
pub fn rl_update<F: Trainable>(
    track: &Track,
    family: &F,
    params: &mut [f64],
    update: &mut dyn FnMut(&mut [f64], &[f64]),
    samples: Samples,
    seed: u64,
    lambda: f64,
    algorithm: RlAlgorithm,
    harm: Option<&HarmSource>,
) -> Result<RlStep> {
    let count = samples.count;
    if count < 2 {
        return Err(Error::InvalidArgument("a training batch needs at least 2 responses".into()));
    }
    let t_max = samples.length;
    // The KL part of the cost-to-go C_{n,t} (the harm part is λ·H_n at every position); the
    // advantages are formed from it in place.
    let (mut advantage, total_kl) = kl_to_go(track.spec, &samples);
    let mean_harm = samples.harm.iter().sum::<f64>() / count as f64;
    let mean_kl = total_kl / count as f64;
    match algorithm {
        RlAlgorithm::ReinforceInnovation => {
            // The innovations already have mean zero given the prefix: only the KL part needs a baseline.
            let source = harm.ok_or_else(|| Error::InvalidArgument("the innovation variant needs h_t: the exact table or rollouts".into()))?;
            let paths = family.harm_paths(track, params, &samples, source, seed)?;
            leave_one_out(&mut advantage, &samples);
            add_innovations(&mut advantage, &paths, &samples, lambda);
        }
        _ => {
            if t_max > 0 {
                advantage.chunks_exact_mut(t_max).zip(&samples.harm).for_each(|(row, &h)| row.iter_mut().for_each(|x| *x += lambda * h));
            }
            leave_one_out(&mut advantage, &samples);
        }
    }

    let mut grad_norm = vec![0.0; t_max];
    match algorithm {
        RlAlgorithm::Reinforce | RlAlgorithm::ReinforceInnovation => {
            let (gradient, norms) = family.score_gradient(track, params, &samples, &|n, t, _| advantage[n * t_max + t], false)?;
            grad_norm = norms;
            update(params, &gradient);
        }
        RlAlgorithm::Ppo { clip, epochs } => {
            // Minimising the clipped surrogate of the cost: −ρ·A with A = −advantage, zero where clipped.
            let coefficients = PpoCoefficients::new(&samples, &advantage, clip);
            grad_norm = family.score_epochs(track, params, &samples, &coefficients, epochs.max(1), update)?;
        }
    }
    Ok(RlStep { mean_harm, mean_kl, objective: lambda * mean_harm + mean_kl, grad_norm })
}

/// Adds λ·(ĥ_t − ĥ_{t−1}) per response and position to `values`. With rollouts this stays an
/// unbiased coefficient of the score s_t = ∇log π(y_t | y_<t): ĥ_t's continuations start after y_≤t
/// and are independent of everything else given it, so E[ĥ_t·s_t] = E[h_t·s_t] = E[H·s_t];
/// ĥ_{t−1}'s continuations start after y_<t and do not read y_t, so it is a baseline:
/// E[ĥ_{t−1}·s_t | y_<t, its rollouts] = ĥ_{t−1}·E[s_t | y_<t] = 0. Hence
/// E[(ĥ_t − ĥ_{t−1})·s_t] = E[Δ_t·s_t] = G_t (THEORY.md, Gradients). The rollouts must follow the
/// policy being trained: h_t is E[H | y_≤t] under it.
fn add_innovations(values: &mut [f64], paths: &HarmPaths, samples: &Samples, lambda: f64) {
    let t_max = samples.length;
    for n in 0..samples.count {
        for t in 0..t_max {
            values[n * t_max + t] += lambda * paths.innovation(n, t + 1, t_max + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::BaseStep;

    /// The chunked passes give the direct sums: each response's KL to go, the batch's total, and x
    /// minus the mean of the other live responses at each position (responses of several lengths,
    /// over more than one chunk).
    #[test]
    fn kl_to_go_and_leave_one_out_equal_the_direct_sums() {
        let spec = ScenarioSpec { vocab: 3, length: 5, end_token: Some(2), order: 1, base: vec![0.5, 0.3, 0.2, 0.1, 0.6, 0.3, 0.2, 0.2, 0.6, 0.4, 0.4, 0.2], transitions: vec![0; 3], harm: vec![0.0], start: 0 };
        let track = Track::new(&spec, None);
        let samples = sample(&track, &BaseStep { spec: &spec }, &SampleRequest { count: 150, seed: 3, prefix: None, first_index: 0 }).unwrap();
        let (n, t_max) = (samples.count, samples.length);
        assert!(samples.emitted.iter().any(|&e| (e as usize) < t_max), "some responses end early");
        let (to_go, total) = kl_to_go(&spec, &samples);
        let (mut expected_total, mut values) = (0.0, vec![0.0; n * t_max]);
        for r in 0..n {
            let mut context = spec.start_context();
            let live = samples.emitted[r] as usize;
            for t in 0..live {
                let a = samples.tokens[r * t_max + t] as usize;
                let kl = samples.log_probs[r * t_max + t] - spec.base_row(context)[a].ln();
                (0..=t).for_each(|s| values[r * t_max + s] += kl);
                expected_total += kl;
                context = spec.next_context(context, a);
            }
            for t in 0..t_max {
                let (got, want) = (to_go[r * t_max + t], values[r * t_max + t]);
                assert!((got - want).abs() <= 1e-12, "response {r}, position {t}: {got} vs {want}");
            }
        }
        assert!((total - expected_total).abs() <= 1e-10 * expected_total.abs().max(1.0));
        let mut out = to_go.clone();
        leave_one_out(&mut out, &samples);
        for t in 0..t_max {
            let live: Vec<usize> = (0..n).filter(|&r| (samples.emitted[r] as usize) > t).collect();
            let sum: f64 = live.iter().map(|&r| to_go[r * t_max + t]).sum();
            for r in 0..n {
                let x = to_go[r * t_max + t];
                let want = if live.contains(&r) && live.len() >= 2 { x - (sum - x) / (live.len() - 1) as f64 } else { x };
                assert!((out[r * t_max + t] - want).abs() <= 1e-12, "response {r}, position {t}");
            }
        }
    }
}
