//! Attacks on a policy, exactly over the state space.
//!
//! - Prefilling: ASR_k = E_{prefix ∼ Q_k}[P_π(H = 1 | prefix)] (see exact::on_harmful_prefixes).
//! - Rank-assisted prefilling (Vega & Singh): after the prefix, at every step take, among the
//!   policy's r most probable tokens, the one whose continuation the base finds most harmful
//!   (highest h^base_t(s·a)); a deterministic policy whose prefilling success is exact.
//! - Fine-tuning on harmful responses: supervised fine-tuning (SFT) on Q, and Qi et al.'s token-wise
//!   constrained objective (2/β_t)·softplus(−β_t·log(π_θ/π_aligned)(y_t)) as the defence.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::parallel::CHUNK;
use crate::policy::Policy;

/// The rank-assisted attacker as tabular logits (0 for the chosen token, −∞ elsewhere).
pub fn rank_assisted_logits(model: &Model, policy: &dyn Policy, h_base: &[f64], rank: usize) -> Result<Vec<f64>> {
    if rank == 0 {
        return Err(Error::InvalidArgument("rank must be at least 1".into()));
    }
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    let rank = rank.min(v);
    let mut logits = vec![f64::NEG_INFINITY; t_max * n * v];
    logits.par_chunks_mut(n * v).enumerate().for_each(|(t0, layer)| {
        let t = t0 + 1;
        let mut row = vec![0.0; v];
        let mut order: Vec<usize> = (0..v).collect();
        for (s, out) in layer.chunks_exact_mut(v).enumerate() {
            if !model.live[s] {
                out.fill(0.0);
                continue;
            }
            policy.probs(t, s, &mut row);
            // Rank by probability (ties: lower token id), keep the top r, pick the most harmful.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let harm_of = |a: usize| h_base[t * n + model.next_row(s)[a] as usize];
            let chosen = order[..rank].iter().copied().max_by(|&a, &b| harm_of(a).total_cmp(&harm_of(b)).then(b.cmp(&a))).unwrap();
            out[chosen] = 0.0;
        }
    });
    Ok(logits)
}

/// Which fine-tuning objective.
#[derive(Clone)]
pub enum FineTune<'a> {
    /// −log π_θ(y_t | y<t) on harmful responses.
    Sft,
    /// (2/β_t)·softplus(−β_t·(log π_θ − log π_aligned)(y_t)), with the aligned policy frozen.
    Constrained { aligned: &'a dyn Policy, beta: &'a [f64] },
}

/// Qi et al.'s default β_t: 0.5 at the first position, 2 at positions 2–5, 0.1 after.
pub fn default_betas(length: usize) -> Vec<f64> {
    (1..=length).map(|t| if t == 1 { 0.5 } else if t <= 5 { 2.0 } else { 0.1 }).collect()
}

pub struct FineTuneValue {
    /// Expected loss per position on harmful responses, and in total.
    pub loss_per_position: Vec<f64>,
    pub loss: f64,
    /// ||∂loss_t/∂θ_t|| per position, and the gradient, T × S × V.
    pub grad_norm: Vec<f64>,
    pub gradient: Vec<f64>,
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The fine-tuning loss on Q (the base's harmful responses: prefixes q_t and next tokens
/// p(a|s)·h^base_t(s·a)/h^base_{t−1}(s)) and its exact gradient with respect to tabular logits.
pub fn fine_tune_loss(model: &Model, policy: &dyn Policy, h_base: &[f64], q: &[f64], objective: &FineTune) -> Result<FineTuneValue> {
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    if let FineTune::Constrained { beta, .. } = objective {
        if beta.len() != t_max || beta.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
            return Err(Error::InvalidArgument(format!("beta: {t_max} positive values expected (one per position)")));
        }
    }
    let mut gradient = vec![0.0; t_max * n * v];
    let mut loss_per_position = vec![0.0; t_max];
    let mut grad_norm = vec![0.0; t_max];
    for t in 1..=t_max {
        let (q_prev, h_prev, h_next) = (&q[(t - 1) * n..t * n], &h_base[(t - 1) * n..t * n], &h_base[t * n..(t + 1) * n]);
        let block = &mut gradient[(t - 1) * n * v..t * n * v];
        let losses: Vec<(f64, f64)> = block
            .par_chunks_mut(CHUNK * v)
            .enumerate()
            .map(|(chunk, out)| {
                let (mut row, mut aligned, mut target) = (vec![0.0; v], vec![0.0; v], vec![0.0; v]);
                let (mut loss, mut norm_sq) = (0.0, 0.0);
                for (i, g) in out.chunks_exact_mut(v).enumerate() {
                    let s = chunk * CHUNK + i;
                    if !model.live[s] || q_prev[s] == 0.0 || h_prev[s] <= 0.0 {
                        continue;
                    }
                    policy.probs(t, s, &mut row);
                    let p = model.base_row(s);
                    for a in 0..v {
                        target[a] = p[a] * h_next[model.next_row(s)[a] as usize] / h_prev[s];
                    }
                    match objective {
                        FineTune::Sft => {
                            for a in 0..v {
                                if target[a] > 0.0 {
                                    loss += q_prev[s] * target[a] * -row[a].ln();
                                }
                                g[a] = q_prev[s] * (row[a] - target[a]);
                            }
                        }
                        FineTune::Constrained { aligned: reference, beta } => {
                            reference.probs(t, s, &mut aligned);
                            let b = beta[t - 1];
                            let mut pull = 0.0;
                            for a in (0..v).filter(|&a| target[a] > 0.0) {
                                let d = row[a].ln() - aligned[a].ln();
                                loss += q_prev[s] * target[a] * 2.0 / b * softplus(-b * d);
                                pull += 2.0 * target[a] * sigmoid(-b * d);
                            }
                            for a in 0..v {
                                let own = if target[a] > 0.0 { 2.0 * target[a] * sigmoid(-b * (row[a].ln() - aligned[a].ln())) } else { 0.0 };
                                g[a] = q_prev[s] * (row[a] * pull - own);
                            }
                        }
                    }
                    norm_sq += g.iter().map(|x| x * x).sum::<f64>();
                }
                (loss, norm_sq)
            })
            .collect();
        loss_per_position[t - 1] = losses.iter().map(|l| l.0).sum();
        grad_norm[t - 1] = losses.iter().map(|l| l.1).sum::<f64>().sqrt();
    }
    Ok(FineTuneValue { loss: loss_per_position.iter().sum(), loss_per_position, grad_norm, gradient })
}
