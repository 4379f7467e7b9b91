//! Initialising an `mlp` as the base model: minimise KL(P_base ‖ P_mlp) over whole responses.
//!
//! KL(P_base ‖ P_mlp) = Σ_t E_{y<t ∼ base}[KL(base(·|y<t) ‖ π_t(·|y<t))]: a cross-entropy to the base
//! conditionals weighted by how often the base visits each (position, context). The mlp must see at
//! least the scenario's context (its order ≥ the scenario's) to be able to represent the base.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::mlp::{axpy, Mlp};
use crate::model::ScenarioSpec;
use crate::optim::Adam;
use crate::policy::{kl_divergence, softmax};

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

pub struct FitReport {
    /// KL(P_base ‖ P_mlp) over whole responses after fitting.
    pub sequence_kl: f64,
    pub steps: usize,
}

/// Fits `params` to the base by full-batch Adam on the visit-weighted cross-entropy.
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
    let c_count = mlp.num_contexts();
    let visits = base_visits(mlp, spec);
    let inputs: Vec<(usize, usize, f64)> = (0..spec.length)
        .flat_map(|t0| (0..c_count).map(move |c| (t0, c)))
        .filter_map(|(t0, c)| {
            let w = visits[t0 * c_count + c];
            (w > 0.0).then_some((t0 + 1, c, w))
        })
        .collect();
    // The visit-weighted KL and its gradient, chunks summed in order.
    let evaluate = |params: &[f64]| {
        let parts: Vec<(Vec<f64>, f64)> = inputs
            .par_chunks(256)
            .map(|chunk| {
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
            })
            .collect();
        let mut grad = vec![0.0; params.len()];
        let mut kl = 0.0;
        for (g, k) in &parts {
            axpy(1.0, g, &mut grad);
            kl += k;
        }
        (grad, kl)
    };
    let mut adam = Adam::new(params.len(), learning_rate);
    for _ in 0..steps {
        let (grad, _) = evaluate(params);
        adam.step(params, &grad);
    }
    Ok(FitReport { sequence_kl: evaluate(params).1, steps })
}
