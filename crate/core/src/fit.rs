//! Initialising an `mlp` as the base model: minimise KL(P_base ‖ P_mlp) over whole responses.
//!
//! KL(P_base ‖ P_mlp) = Σ_t E_{y<t ∼ base}[KL(base(·|y<t) ‖ π_t(·|y<t))]: a cross-entropy to the base
//! conditionals weighted by how often the base visits each (position, context). The mlp must see at
//! least the scenario's context (its order ≥ the scenario's) to be able to represent the base.
//!
//! The visit weights are exact while the (position, context) cells are few (EXACT_FIT_MAX_CELLS).
//! Beyond, a step costs the whole table (10^7 cells and more on large scenarios: minutes per step),
//! so each step fits fresh base responses instead (about FIT_TOKENS_PER_STEP tokens, an unbiased
//! estimate of the weights), and the KL is reported on held-out base responses.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::mlp::{axpy, Mlp};
use crate::model::ScenarioSpec;
use crate::optim::Adam;
use crate::parallel::map_chunks_of;
use crate::policy::{kl_divergence, softmax};
use crate::sampling::{map_tokens, sample, BaseStep, SampleRequest};
use crate::walk::{Track, NO_TOKEN};

/// Largest T × (mlp contexts) for which the visit weights are computed exactly.
pub const EXACT_FIT_MAX_CELLS: usize = 1 << 18;
/// Sampled fit: base tokens per step (responses per step: this over T, at least FIT_MIN_RESPONSES).
pub const FIT_TOKENS_PER_STEP: usize = 8192;
const FIT_MIN_RESPONSES: usize = 8;
/// Sampled fit: held-out base responses the reported KL is estimated on.
pub const FIT_REPORT_RESPONSES: usize = 1024;
/// Seed of the sampled fit's base responses (the fit is reproducible).
const FIT_SEED: u64 = 0x05ee_df17;

/// Base visitation of (position t, mlp context): weight[t0·C + c] for t0 = t − 1 tokens emitted.
fn base_visits(mlp: &Mlp, spec: &ScenarioSpec) -> Vec<f64> {
    let (c_count, v, t_max) = (mlp.num_contexts(), spec.vocab, spec.length);
    let scenario_contexts = spec.num_contexts();
    let ended = |c: usize| spec.end_token == Some(c % (v + 1)) && c != c_count - 1;
    let mut visits = vec![0.0; t_max * c_count];
    let mut p = vec![0.0; c_count];
    p[c_count - 1] = 1.0;
    for t0 in 0..t_max {
        visits[t0 * c_count..(t0 + 1) * c_count].copy_from_slice(&p);
        let mut next = vec![0.0; c_count];
        for c in (0..c_count).filter(|&c| p[c] > 0.0 && !ended(c)) {
            let row = spec.base_row(c % scenario_contexts);
            for a in 0..v {
                next[(c * (v + 1) + a) % c_count] += p[c] * row[a];
            }
        }
        p = next;
    }
    visits
}

/// Inputs (position t, mlp context) visited by `count` base responses from RNG index `first`, each
/// weighted by its visits / count, in (t, context) order.
fn sampled_visits(mlp: &Mlp, spec: &ScenarioSpec, count: usize, first: u32) -> Result<Vec<(usize, usize, f64)>> {
    let track = Track::new(spec, None);
    let request = SampleRequest { count, seed: FIT_SEED, prefix: None, first_index: first };
    let samples = sample(&track, &BaseStep { spec }, &request)?;
    let inputs = map_tokens(&track, &samples, || (), |_, walk, _| (walk.emitted() + 1, mlp.context_of(&walk.tokens)));
    let mut visits: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for (input, _) in inputs.into_iter().zip(&samples.tokens).filter(|(_, &a)| a != NO_TOKEN) {
        *visits.entry(input).or_insert(0.0) += 1.0;
    }
    Ok(visits.into_iter().map(|((t, c), n)| (t, c, n / count as f64)).collect())
}

pub struct FitReport {
    /// KL(P_base ‖ P_mlp) over whole responses after fitting (exact, or estimated on
    /// FIT_REPORT_RESPONSES held-out base responses when `sampled`).
    pub sequence_kl: f64,
    pub steps: usize,
    /// Whether each step fitted fresh base responses (the scenario has too many cells to weigh exactly).
    pub sampled: bool,
}

/// Inputs (position t, mlp context) with their exact base visit weights, in (t, context) order.
fn exact_visits(mlp: &Mlp, spec: &ScenarioSpec) -> Vec<(usize, usize, f64)> {
    let c_count = mlp.num_contexts();
    let visits = base_visits(mlp, spec);
    (0..spec.length)
        .flat_map(|t0| (0..c_count).map(move |c| (t0, c)))
        .filter_map(|(t0, c)| {
            let w = visits[t0 * c_count + c];
            (w > 0.0).then_some((t0 + 1, c, w))
        })
        .collect()
}

/// Σ w·KL(base ‖ π) over weighted inputs and its gradient, chunks summed in order.
fn weighted_kl(mlp: &Mlp, spec: &ScenarioSpec, params: &[f64], inputs: &[(usize, usize, f64)]) -> (Vec<f64>, f64) {
    let parts: Vec<(Vec<f64>, f64)> = map_chunks_of(inputs.len(), 256, |range| {
        let chunk = &inputs[range];
        let v = spec.vocab;
        let mut grad = vec![0.0; params.len()];
        let mut scratch = vec![0.0; mlp.scratch_len()];
        let (mut logits, mut pi, mut delta) = (vec![0.0; v], vec![0.0; v], vec![0.0; v]);
        let mut kl = 0.0;
        for &(t, c, w) in chunk {
            let base = spec.base_row(c % spec.num_contexts());
            mlp.forward(params, t, c, &mut logits, &mut scratch);
            softmax(&logits, &mut pi);
            kl += w * kl_divergence(base, &pi);
            for a in 0..v {
                delta[a] = w * (pi[a] - base[a]);
            }
            mlp.backward(params, t, c, &delta, Some(&mut grad), &mut scratch);
        }
        (grad, kl)
    });
    let mut grad = vec![0.0; params.len()];
    let mut kl = 0.0;
    for (g, k) in &parts {
        axpy(1.0, g, &mut grad);
        kl += k;
    }
    (grad, kl)
}

/// Fits `params` to the base by Adam on the visit-weighted cross-entropy: full-batch with exact
/// weights, or on fresh base responses each step beyond EXACT_FIT_MAX_CELLS cells.
pub fn fit_base(mlp: &Mlp, params: &mut [f64], spec: &ScenarioSpec, steps: usize, learning_rate: f64) -> Result<FitReport> {
    mlp.check_params(params)?;
    if spec.vocab != mlp.config.vocab || spec.length != mlp.config.length {
        return Err(Error::InvalidArgument("mlp and scenario differ in V or T".into()));
    }
    if mlp.config.order < spec.order {
        return Err(Error::InvalidArgument(format!(
            "an mlp of order {} cannot represent a base model of context order {}",
            mlp.config.order, spec.order
        )));
    }
    let sampled = spec.length.checked_mul(mlp.num_contexts()).is_none_or(|cells| cells > EXACT_FIT_MAX_CELLS);
    let mut adam = Adam::new(params.len(), learning_rate);
    if !sampled {
        let inputs = exact_visits(mlp, spec);
        for _ in 0..steps {
            adam.step(params, &weighted_kl(mlp, spec, params, &inputs).0);
        }
        return Ok(FitReport { sequence_kl: weighted_kl(mlp, spec, params, &inputs).1, steps, sampled });
    }
    let batch = (FIT_TOKENS_PER_STEP / spec.length.max(1)).max(FIT_MIN_RESPONSES);
    let index = |responses: usize| u32::try_from(responses).map_err(|_| Error::InvalidArgument(format!("{steps} fit steps of {batch} responses exceed the RNG's response index")));
    for step in 0..steps {
        let inputs = sampled_visits(mlp, spec, batch, index(step * batch)?)?;
        adam.step(params, &weighted_kl(mlp, spec, params, &inputs).0);
    }
    let held_out = sampled_visits(mlp, spec, FIT_REPORT_RESPONSES, index(steps * batch)?)?;
    Ok(FitReport { sequence_kl: weighted_kl(mlp, spec, params, &held_out).1, steps, sampled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::{Activation, MlpConfig};

    /// Order 3 over V = 12 with T = 160: 160 · 13³ ≈ 3.5·10^5 cells, beyond EXACT_FIT_MAX_CELLS.
    fn large_spec() -> ScenarioSpec {
        let (vocab, order) = (12, 3);
        let contexts = (vocab + 1usize).pow(order as u32);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut base = vec![0.0; contexts * vocab];
        for row in base.chunks_exact_mut(vocab) {
            for p in row.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *p = (2.0 * (x >> 11) as f64 / (1u64 << 53) as f64).exp();
            }
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|p| *p /= sum);
        }
        let transitions = (0..2 * vocab).map(|i| (i % 3 == 0) as u32).collect();
        ScenarioSpec { vocab, length: 160, end_token: Some(vocab - 1), order, base, transitions, harm: vec![0.0, 1.0], start: 0 }
    }

    /// The sampled fit lowers the exact KL(P_base ‖ P_mlp), and its held-out estimate is close to it.
    #[test]
    fn the_sampled_fit_lowers_the_exact_kl() {
        let spec = large_spec();
        let mlp = Mlp::new(MlpConfig { vocab: spec.vocab, order: spec.order, length: spec.length, hidden: vec![16], activation: Activation::Tanh }).unwrap();
        assert!(spec.length * mlp.num_contexts() > EXACT_FIT_MAX_CELLS);
        let mut params = mlp.init_params(3);
        let exact = exact_visits(&mlp, &spec);
        let before = weighted_kl(&mlp, &spec, &params, &exact).1;
        let report = fit_base(&mlp, &mut params, &spec, 150, 0.05).unwrap();
        assert!(report.sampled);
        let after = weighted_kl(&mlp, &spec, &params, &exact).1;
        // Measured: 4.43 → 1.59 (full-batch Adam on the exact weights: 1.47 in as many steps), estimate 1.42.
        assert!(after < 0.5 * before, "exact KL {before} → {after}");
        assert!((report.sequence_kl - after).abs() < 0.2 * after, "held-out estimate {} vs exact {after}", report.sequence_kl);
        // Reproducible: the same fit gives the same parameters.
        let mut again = mlp.init_params(3);
        fit_base(&mlp, &mut again, &spec, 150, 0.05).unwrap();
        assert_eq!(again, params);
    }
}
