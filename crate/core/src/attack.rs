//! Attacks on a policy, exactly over the state space.
//!
//! - Prefilling: ASR_k = E_{prefix ∼ Q_k}[P_π(H = 1 | prefix)] (see exact::on_harmful_prefixes).
//! - Rank-assisted prefilling (Vega & Singh): after the prefix, at every step take, among the
//!   policy's r most probable tokens, the one whose continuation the base finds most harmful
//!   (highest h^base_t(s·a)); a deterministic policy whose prefilling success is exact.
//! - Fine-tuning on harmful responses: supervised fine-tuning (SFT) on Q, and Qi et al.'s token-wise
//!   constrained objective (2/β_t)·softplus(−β_t·log(π_θ/π_aligned)(y_t)) as the defence (their
//!   Eq. 3), over all of Q exactly or over a minibatch of sampled harmful responses.

use rayon::prelude::*;

use crate::alloc::table;
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
    let mut logits = table(&[t_max, n, v], f64::NEG_INFINITY, "attacker's T × S × V logits table")?;
    let flag = crate::cancel::current();
    logits.par_chunks_mut(n * v).enumerate().for_each(|(t0, layer)| {
        crate::cancel::stop_if_cancelled(flag.as_ref());
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

/// AdamW's first-moment decay in Qi et al.'s fine-tuning attacks (their default 0.9 is kept for augmentation).
pub const ADAMW_BETA1: f64 = 0.5;

/// The floor of the token weights in the authors' logged loss (their `torch.clamp(min=1e-3)`).
pub const DEFAULT_WEIGHT_FLOOR: f64 = 1e-3;

pub struct FineTuneValue {
    /// Expected loss per position on harmful responses (Eq. 3 for the constrained objective), and in total.
    pub loss_per_position: Vec<f64>,
    pub loss: f64,
    /// ||∂loss_t/∂θ_t|| per position, and the gradient, T × S × V.
    pub grad_norm: Vec<f64>,
    pub gradient: Vec<f64>,
    /// The loss as Qi et al.'s code logs it: the token mean of −w_t·log π(y_t), w_t = 1 (SFT) or
    /// max(2(1 − σ(β_t·Δ_t)), floor) (constrained), Δ_t = log π_θ(y_t) − log π_aligned(y_t).
    pub logged_loss: f64,
    /// The statistic of their per-token gradient plots: per position, the mean over harmful
    /// responses of ||∇_θ ℓ_t(y)|| for the token's own loss ℓ_t (in logit space).
    pub token_grad_norm: Vec<f64>,
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

/// The harmful responses as token weights W, T × S × V: W_t(s, a) = E_Q[1[state after t − 1 tokens
/// is s and y_t = a]]. Exactly from the base (Q moves by p(a|s)·h^base_t(s·a)/h^base_{t−1}(s)).
pub fn harmful_token_weights(model: &Model, h_base: &[f64], q: &[f64]) -> Result<Vec<f64>> {
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    let mut w = table(&[t_max, n, v], 0.0, "T × S × V token weights table")?;
    let flag = crate::cancel::current();
    w.par_chunks_mut(n * v).enumerate().for_each(|(t0, layer)| {
        crate::cancel::stop_if_cancelled(flag.as_ref());
        let (q_prev, h_prev, h_next) = (&q[t0 * n..(t0 + 1) * n], &h_base[t0 * n..(t0 + 1) * n], &h_base[(t0 + 1) * n..(t0 + 2) * n]);
        for (s, out) in layer.chunks_exact_mut(v).enumerate() {
            if model.live[s] && q_prev[s] > 0.0 && h_prev[s] > 0.0 {
                let p = model.base_row(s);
                for a in 0..v {
                    out[a] = q_prev[s] * p[a] * h_next[model.next_row(s)[a] as usize] / h_prev[s];
                }
            }
        }
    });
    Ok(w)
}

/// Token weights of N given responses (N × T tokens, NO_TOKEN after the end), each weighing 1/N: a minibatch.
pub fn token_weights_from_responses(model: &Model, tokens: &[u32], count: usize) -> Result<Vec<f64>> {
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    if count == 0 || tokens.len() != count * t_max {
        return Err(Error::InvalidArgument(format!("responses: expected N × T = {count} × {t_max} tokens")));
    }
    let mut w = table(&[t_max, n, v], 0.0, "T × S × V token weights table")?;
    for row in tokens.chunks_exact(t_max) {
        let mut s = 0usize;
        for (t0, &a) in row.iter().enumerate() {
            if a == crate::walk::NO_TOKEN || !model.live[s] {
                break;
            }
            if a as usize >= v {
                return Err(Error::InvalidArgument(format!("response token {a} is not below V")));
            }
            w[(t0 * n + s) * v + a as usize] += 1.0 / count as f64;
            s = model.next_row(s)[a as usize] as usize;
        }
    }
    Ok(w)
}

/// Q as a tabular policy: logits log p(a|s) + log h^base_t(s·a), whose responses are the base's
/// harmful ones (weighted by H). Rows Q never reaches keep the base's.
pub fn harmful_response_logits(model: &Model, h_base: &[f64]) -> Result<Vec<f64>> {
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    let mut logits = table(&[t_max, n, v], 0.0, "T × S × V logits table")?;
    let flag = crate::cancel::current();
    logits.par_chunks_mut(n * v).enumerate().for_each(|(t0, layer)| {
        crate::cancel::stop_if_cancelled(flag.as_ref());
        for (s, out) in layer.chunks_exact_mut(v).enumerate() {
            if !model.live[s] {
                continue;
            }
            let p = model.base_row(s);
            let reached = h_base[t0 * n + s] > 0.0;
            for a in 0..v {
                let h = if reached { h_base[(t0 + 1) * n + model.next_row(s)[a] as usize] } else { 1.0 };
                out[a] = (p[a] * h).ln();
            }
        }
    });
    Ok(logits)
}

/// The fine-tuning loss on harmful responses given as token weights W (see harmful_token_weights),
/// its exact gradient with respect to tabular logits, the authors' logged loss with weight floor
/// `floor`, and the per-token gradient-norm statistic.
pub fn fine_tune_loss(model: &Model, policy: &dyn Policy, weights: &[f64], objective: &FineTune, floor: f64) -> Result<FineTuneValue> {
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    if weights.len() != t_max * n * v {
        return Err(Error::InvalidArgument("token weights: T × S × V entries expected".into()));
    }
    if let FineTune::Constrained { beta, .. } = objective {
        if beta.len() != t_max || beta.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
            return Err(Error::InvalidArgument(format!("beta: {t_max} positive values expected (one per position)")));
        }
    }
    if !(floor.is_finite() && floor >= 0.0) {
        return Err(Error::InvalidArgument(format!("the weight floor must be a finite number ≥ 0, got {floor}")));
    }
    let mut gradient = table(&[t_max, n, v], 0.0, "T × S × V gradient table")?;
    let mut loss_per_position = vec![0.0; t_max];
    let mut grad_norm = vec![0.0; t_max];
    let mut token_grad_norm = vec![f64::NAN; t_max];
    let (mut logged, mut tokens) = (0.0, 0.0);
    let flag = crate::cancel::current();
    for t in 1..=t_max {
        let layer = &weights[(t - 1) * n * v..t * n * v];
        let block = &mut gradient[(t - 1) * n * v..t * n * v];
        // Per chunk: loss, squared gradient norm, logged loss, token mass, Σ W·||∇ℓ||.
        let parts: Vec<[f64; 5]> = block
            .par_chunks_mut(CHUNK * v)
            .enumerate()
            .map(|(chunk, out)| {
                crate::cancel::stop_if_cancelled(flag.as_ref());
                let (mut row, mut aligned) = (vec![0.0; v], vec![0.0; v]);
                let mut acc = [0.0; 5];
                for (i, g) in out.chunks_exact_mut(v).enumerate() {
                    let s = chunk * CHUNK + i;
                    let target = &layer[s * v..(s + 1) * v];
                    if !model.live[s] || target.iter().all(|&w| w == 0.0) {
                        continue;
                    }
                    policy.probs(t, s, &mut row);
                    if let FineTune::Constrained { aligned: reference, .. } = objective {
                        reference.probs(t, s, &mut aligned);
                    }
                    let squared: f64 = row.iter().map(|p| p * p).sum();
                    // Each token's loss ℓ(a), the weight c(a) of its gradient c(a)·(π − e_a), and its
                    // weight in the logged loss (c(a) detached and floored).
                    let token = |a: usize| -> (f64, f64, f64) {
                        match objective {
                            FineTune::Sft => (-row[a].ln(), 1.0, 1.0),
                            FineTune::Constrained { beta, .. } => {
                                let b = beta[t - 1];
                                let d = row[a].ln() - aligned[a].ln();
                                let pull = 2.0 * sigmoid(-b * d);
                                (2.0 / b * softplus(-b * d), pull, pull.max(floor))
                            }
                        }
                    };
                    g.fill(0.0);
                    let mut mass = 0.0;
                    for a in (0..v).filter(|&a| target[a] > 0.0) {
                        let (loss, pull, logged_weight) = token(a);
                        acc[0] += target[a] * loss;
                        acc[2] += target[a] * logged_weight * -row[a].ln();
                        mass += target[a];
                        // ||π − e_a||² = Σπ² − 2π_a + 1.
                        acc[4] += target[a] * pull * (squared - 2.0 * row[a] + 1.0).max(0.0).sqrt();
                        for b in 0..v {
                            g[b] += target[a] * pull * row[b];
                        }
                        g[a] -= target[a] * pull;
                    }
                    acc[1] += g.iter().map(|x| x * x).sum::<f64>();
                    acc[3] += mass;
                }
                acc
            })
            .collect();
        let total = |i: usize| parts.iter().map(|p| p[i]).sum::<f64>();
        loss_per_position[t - 1] = total(0);
        grad_norm[t - 1] = total(1).sqrt();
        logged += total(2);
        tokens += total(3);
        if total(3) > 0.0 {
            token_grad_norm[t - 1] = total(4) / total(3);
        }
    }
    Ok(FineTuneValue {
        loss: loss_per_position.iter().sum(),
        loss_per_position,
        grad_norm,
        gradient,
        logged_loss: logged / tokens,
        token_grad_norm,
    })
}

/// The rank-assisted attacker against any samplable policy (a transformer on a scenario too large to
/// tabulate, say): at each step the policy's top r tokens (ties: lower id), of which the one whose
/// next state has the highest base conditional harm (ties: lower id), as `rank_assisted_logits`
/// chooses on exact states. Walks need the scenario's exact model for the states of `h_base`.
pub struct RankAssistedStep<'a> {
    pub policy: &'a dyn crate::sampling::StepPolicy,
    pub model: &'a Model,
    /// h_t(s) under the base, (T+1) × S.
    pub h_base: &'a [f64],
    pub rank: usize,
}

impl crate::sampling::StepPolicy for RankAssistedStep<'_> {
    fn scratch_len(&self) -> usize {
        self.policy.scratch_len()
    }
    fn needs_exact_state(&self) -> bool {
        true
    }
    fn probs(&self, walk: &crate::walk::Walk, out: &mut [f64], scratch: &mut [f64]) {
        self.policy.probs(walk, out, scratch);
        let (n, t, s) = (self.model.num_states(), walk.emitted() + 1, walk.state as usize);
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by(|&a, &b| out[b].total_cmp(&out[a]).then(a.cmp(&b)));
        let harm_of = |a: usize| self.h_base[t * n + self.model.next_row(s)[a] as usize];
        let chosen = order[..self.rank.clamp(1, out.len())].iter().copied().max_by(|&a, &b| harm_of(a).total_cmp(&harm_of(b)).then(b.cmp(&a))).unwrap();
        out.fill(0.0);
        out[chosen] = 1.0;
    }
}
