//! Alignment objectives and their exact gradients with respect to tabular logits θ_t(s, ·).
//!
//! - standard:      λ·E[H] + KL(P_θ ‖ P_base)
//! - deep:          + μ·E_Q[Σ_t w_t·Fail_t],  Fail_t = 1 − π_t(R | y<t)
//! - deep-anchored: + E_Q[Σ_t KL(π_t(·|y<t) ‖ p(·|y<t))] as well
//! - augment:       α·E_{y∼Q, k}[−log π(R | first k tokens of y)] + (1 − α)·KL(P_θ ‖ P_anchor)
//!                  (Qi et al.'s data augmentation, in expectation). Their prefix-length law: k = 0
//!                  with probability 1/2, else k uniform on 1..min(100, L) for a response of L
//!                  tokens. P_anchor is P_init, the policy training starts from (their likelihood
//!                  anchor keeps the model where it was), or P_base for the base-anchored variant.
//!
//! Q is a distribution of harmful prefixes given as its state distribution q_t(s) (t tokens in);
//! by default the base's harmful responses cut at every depth. The on-policy part is differentiated
//! through its cost-to-go: with per-token cost c_t(s,a) = κ·log(π/p_ref) and terminal cost λ·H,
//! ∂J/∂θ_t(s,a) = p_{t−1}(s)·π(a|s)·(c_t(s,a) + V_t(s·a) − V_{t−1}(s)). The Q-weighted parts are
//! per-state functions of one row and are differentiated directly.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::exact::{forward, harmful_prefixes};
use crate::model::Model;
use crate::parallel::{map_chunks, CHUNK};
use crate::policy::{kl_divergence, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectiveKind {
    Standard,
    Deep,
    DeepAnchored,
    Augment,
}

/// The policy the augment objective's KL keeps the trained policy near.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// P_init, the policy training starts from (Qi et al.: an already aligned model).
    Init,
    /// P_base, the unaligned base (the variant that pulls against refusal).
    Base,
}

/// α of the augment objective, the weight of its recovery term (Qi et al.'s 0.2).
pub const DEFAULT_MIX: f64 = 0.2;

/// Qi et al. cut a harmful response after at most this many tokens.
pub const MAX_AUGMENT_PREFIX: usize = 100;

#[derive(Debug, Clone)]
pub struct Objective {
    pub kind: ObjectiveKind,
    pub lambda: f64,
    pub mu: f64,
    /// w_t for t = 1..T.
    pub weights: Vec<f64>,
    /// Recovery tokens R as a mask over the vocabulary.
    pub recovery: Vec<bool>,
    /// α of the augment objective: the weight of its recovery term.
    pub mix: f64,
    /// The augment objective's KL anchor.
    pub anchor: Anchor,
}

/// μ, the weight of the recovery penalty, when none is given.
pub const DEFAULT_MU: f64 = 10.0;

/// An objective's settings as a caller gives them: each falls back to its default when absent.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveOptions {
    /// Default `DEFAULT_MU`.
    pub mu: Option<f64>,
    /// w_t = γ^{t−1} (default γ = 1) unless `weights` are given.
    pub gamma: Option<f64>,
    pub weights: Option<Vec<f64>>,
    /// Recovery token ids R.
    pub recovery: Vec<u32>,
    /// Default `DEFAULT_MIX`.
    pub mix: Option<f64>,
    /// Default `Anchor::Init`.
    pub anchor: Option<Anchor>,
}

impl Objective {
    /// The objective `kind` at λ on responses of `length` tokens over `vocab`, with `options`'
    /// defaults filled in (γ in (0, 1] and recovery tokens below V checked here, the rest by `check`).
    pub fn new(kind: ObjectiveKind, lambda: f64, options: ObjectiveOptions, vocab: usize, length: usize) -> Result<Objective> {
        let gamma = options.gamma.unwrap_or(1.0);
        if !(gamma > 0.0 && gamma <= 1.0) {
            return Err(Error::InvalidArgument(format!("gamma must be in (0, 1], got {gamma}")));
        }
        let mut recovery = vec![false; vocab];
        for &r in &options.recovery {
            *recovery.get_mut(r as usize).ok_or_else(|| Error::InvalidArgument(format!("recovery token {r} is not below V")))? = true;
        }
        Ok(Objective {
            kind,
            lambda,
            mu: options.mu.unwrap_or(DEFAULT_MU),
            weights: options.weights.unwrap_or_else(|| geometric_weights(gamma, length)),
            recovery,
            mix: options.mix.unwrap_or(DEFAULT_MIX),
            anchor: options.anchor.unwrap_or(Anchor::Init),
        })
    }

    pub fn check(&self, model: &Model) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad(format!("lambda must be a finite number ≥ 0, got {}", self.lambda));
        }
        if !(self.mu >= 0.0 && self.mu.is_finite()) {
            return bad(format!("mu must be a finite number ≥ 0, got {}", self.mu));
        }
        if self.weights.len() != model.length() || self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return bad(format!("weights: {} finite values ≥ 0 expected (one per position)", model.length()));
        }
        if self.recovery.len() != model.vocab() {
            return bad(format!("recovery mask: {} entries expected", model.vocab()));
        }
        if self.kind != ObjectiveKind::Standard && !self.recovery.iter().any(|&r| r) {
            return bad("this objective needs at least one recovery token".into());
        }
        if !(0.0..=1.0).contains(&self.mix) {
            return bad(format!("mix must be in [0, 1], got {}", self.mix));
        }
        Ok(())
    }

    /// Weight of the on-policy KL and of the harm.
    fn on_policy_weights(&self) -> (f64, f64) {
        match self.kind {
            ObjectiveKind::Augment => (1.0 - self.mix, 0.0),
            _ => (1.0, self.lambda),
        }
    }
}

/// w_t = γ^{t−1}.
pub fn geometric_weights(gamma: f64, length: usize) -> Vec<f64> {
    (0..length).map(|t| gamma.powi(t as i32)).collect()
}

/// Q, the harmful responses the penalties are charged on: its state distribution (T+1) × S, and the
/// augmentation's weights T × S, the probability that a response drawn from Q is cut after k tokens
/// in state s (row k = t − 1 feeds position t) under Qi et al.'s prefix-length law.
#[derive(Debug, Clone)]
pub struct HarmfulPrefixes {
    pub states: Vec<f64>,
    pub augment: Vec<f64>,
}

/// Qi et al.'s law for a response of L tokens: P(k = 0) = 1/2, else uniform on 1..min(100, L)
/// (all at k = 0 when L = 0). Returns P(k = 0) and the probability of each k ≥ 1 in the support.
fn prefix_length_law(tokens: usize) -> (f64, f64) {
    match tokens.min(MAX_AUGMENT_PREFIX) {
        0 => (1.0, 0.0),
        m => (0.5, 0.5 / m as f64),
    }
}

/// The length L of a response for the prefix-length law: its tokens before the end token. A scenario
/// has no position T + 1, so a response still running at T counts T − 1 tokens: a recovery after its
/// longest prefix is charged at position T.
fn response_tokens(model: &Model, emitted: usize, ended: bool) -> usize {
    if ended {
        emitted - 1
    } else {
        emitted.min(model.length() - 1)
    }
}

/// Q from the base: its harmful responses (weighted by H) cut at every depth.
pub fn base_harmful_prefixes(model: &Model, h_base: &[f64]) -> Result<HarmfulPrefixes> {
    let (n, t_max) = (model.num_states(), model.length());
    let mut q = vec![0.0; (t_max + 1) * n];
    let defined = harmful_prefixes(model, h_base, |t, layer| q[t * n..(t + 1) * n].copy_from_slice(layer));
    if !defined {
        return Err(Error::InvalidArgument("the base never causes harm here, so there are no harmful prefixes (Q is empty)".into()));
    }
    // u_k(s) = E_Q[P(this k | L) | state s after k tokens] for k ≥ 1, backwards: Q moves by
    // p(a|s)·h_{k+1}(s·a)/h_k(s), and L is known once the end token comes or position T is reached.
    let end = model.spec.end_token;
    let law = |tokens: usize| prefix_length_law(tokens).1;
    let mut augment = vec![0.0; t_max * n];
    let mut u_next = vec![0.0; n];
    for k in (0..t_max).rev() {
        let mut u = vec![0.0; n];
        for s in (0..n).filter(|&s| model.live[s] && h_base[k * n + s] > 0.0) {
            let p = model.base_row(s);
            u[s] = model
                .next_row(s)
                .iter()
                .enumerate()
                .filter(|&(_, &nx)| h_base[(k + 1) * n + nx as usize] > 0.0)
                .map(|(a, &nx)| {
                    let ended = end == Some(a);
                    let value = if ended || k + 1 == t_max { law(response_tokens(model, k + 1, ended)) } else { u_next[nx as usize] };
                    p[a] * h_base[(k + 1) * n + nx as usize] / h_base[k * n + s] * value
                })
                .sum();
        }
        if k == 0 {
            // P(k = 0) is 1/2, or 1 for an empty response (its first token ends it).
            for s in (0..n).filter(|&s| q[s] > 0.0) {
                let p = model.base_row(s);
                let empty: f64 = (0..model.vocab())
                    .filter(|&a| end == Some(a) || t_max == 1)
                    .map(|a| p[a] * h_base[n + model.next_row(s)[a] as usize] / h_base[s])
                    .sum();
                augment[s] = q[s] * (0.5 + 0.5 * empty);
            }
        } else if k <= MAX_AUGMENT_PREFIX {
            for s in 0..n {
                augment[k * n + s] = q[k * n + s] * u[s];
            }
        }
        u_next = u;
    }
    Ok(HarmfulPrefixes { states: q, augment })
}

/// Q from given responses (N × T tokens, NO_TOKEN after the end), equally weighted.
pub fn prefixes_from_responses(model: &Model, tokens: &[u32], count: usize) -> Result<HarmfulPrefixes> {
    let (n, t_max) = (model.num_states(), model.length());
    if count == 0 || tokens.len() != count * t_max {
        return Err(Error::InvalidArgument(format!("prefix responses: expected N × T = {count} × {t_max} tokens")));
    }
    let weight = 1.0 / count as f64;
    let mut q = vec![0.0; (t_max + 1) * n];
    let mut augment = vec![0.0; t_max * n];
    let mut path = vec![0usize; t_max + 1];
    for row in tokens.chunks_exact(t_max) {
        let (mut s, mut emitted, mut ended) = (0usize, 0usize, false);
        q[s] += weight;
        for t in 1..=t_max {
            let a = row[t - 1];
            if a != crate::walk::NO_TOKEN && model.live[s] {
                if a as usize >= model.vocab() {
                    return Err(Error::InvalidArgument(format!("prefix token {a} is not below V")));
                }
                s = model.next_row(s)[a as usize] as usize;
                emitted += 1;
                ended = model.spec.end_token == Some(a as usize);
            }
            path[t] = s;
            q[t * n + s] += weight;
        }
        let (at_zero, each) = prefix_length_law(response_tokens(model, emitted, ended));
        augment[0] += weight * at_zero;
        for k in 1..=response_tokens(model, emitted, ended).min(MAX_AUGMENT_PREFIX) {
            augment[k * n + path[k]] += weight * each;
        }
    }
    Ok(HarmfulPrefixes { states: q, augment })
}

#[derive(Debug, Clone, Default)]
pub struct ObjectiveValue {
    pub total: f64,
    pub expected_harm: f64,
    /// KL(P_θ ‖ P_base) over whole responses, and per position.
    pub kl: f64,
    pub kl_per_position: Vec<f64>,
    /// μ·E_Q[Σ_t w_t Fail_t] (deep objectives).
    pub penalty: f64,
    /// E_Q[Σ_t KL_t] (deep-anchored), or KL(P_θ ‖ P_anchor) (augment).
    pub anchor_kl: f64,
    /// E[−log π(R | prefix)] (augment).
    pub sft_loss: f64,
    /// Recovery probability π_t(R | y<t) averaged over Q's live prefixes, per position (NaN where Q has none).
    pub recovery: Vec<f64>,
    /// ∂J/∂θ, T × S × V (when asked for).
    pub gradient: Option<Vec<f64>>,
}

/// The objective at a policy, and its gradient with respect to tabular logits when `with_gradient`.
/// `init` is P_init, needed by the augment objective anchored there.
pub fn evaluate(model: &Model, policy: &dyn Policy, objective: &Objective, prefixes: &HarmfulPrefixes, init: Option<&dyn Policy>, with_gradient: bool) -> Result<ObjectiveValue> {
    objective.check(model)?;
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    let (q, augment) = (&prefixes.states[..], &prefixes.augment[..]);
    if q.len() != (t_max + 1) * n || augment.len() != t_max * n {
        return Err(Error::InvalidArgument("harmful prefixes: (T+1) × S states and T × S augmentation weights expected".into()));
    }
    // The on-policy KL's reference: P_init for the augment objective anchored there, else the base.
    let reference: Option<&dyn Policy> = match (objective.kind, objective.anchor) {
        (ObjectiveKind::Augment, Anchor::Init) => Some(init.ok_or_else(|| Error::InvalidArgument("the augment objective anchored at P_init needs the initial policy".into()))?),
        _ => None,
    };
    let reference_row = |t: usize, s: usize, out: &mut [f64]| match reference {
        Some(r) => r.probs(t, s, out),
        None => out.copy_from_slice(model.base_row(s)),
    };
    let (kl_weight, harm_weight) = objective.on_policy_weights();

    // Cost-to-go under π: V_T = λ·H, V_{t−1}(s) = Σ_a π (κ log(π/p) + V_t(s·a)); E[H] alongside.
    let mut value = vec![0.0; (t_max + 1) * n];
    let mut harm = vec![0.0; (t_max + 1) * n];
    for s in 0..n {
        value[t_max * n + s] = harm_weight * model.harm(s);
        harm[t_max * n + s] = model.harm(s);
    }
    for t in (1..=t_max).rev() {
        crate::cancel::checkpoint();
        let (v_before, v_after) = value.split_at_mut(t * n);
        let (h_before, h_after) = harm.split_at_mut(t * n);
        let (v_next, h_next) = (&v_after[..n], &h_after[..n]);
        v_before[(t - 1) * n..].par_chunks_mut(CHUNK).zip(h_before[(t - 1) * n..].par_chunks_mut(CHUNK)).enumerate().for_each(|(chunk, (vs, hs))| {
            let (mut row, mut p) = (vec![0.0; v], vec![0.0; v]);
            for i in 0..vs.len() {
                let s = chunk * CHUNK + i;
                if !model.live[s] {
                    vs[i] = v_next[s];
                    hs[i] = h_next[s];
                    continue;
                }
                policy.probs(t, s, &mut row);
                reference_row(t, s, &mut p);
                let (mut val, mut h) = (0.0, 0.0);
                for (a, &nx) in model.next_row(s).iter().enumerate() {
                    if row[a] > 0.0 {
                        val += row[a] * (kl_weight * (row[a] / p[a]).ln() + v_next[nx as usize]);
                        h += row[a] * h_next[nx as usize];
                    }
                }
                vs[i] = val;
                hs[i] = h;
            }
        });
    }

    let mut gradient = match with_gradient {
        true => Some(crate::alloc::table(&[t_max, n, v], 0.0, "T × S × V gradient table")?),
        false => None,
    };
    let mut kl_per_position = vec![0.0; t_max];
    let mut reference_kl = 0.0;
    // On-policy gradient and per-position KL, layer by layer along the forward pass.
    forward(model, policy, |t, p_prev| {
        let v_prev = &value[(t - 1) * n..t * n];
        let v_next = &value[t * n..(t + 1) * n];
        let parts = map_chunks(n, |range| {
            let (mut row, mut p) = (vec![0.0; v], vec![0.0; v]);
            let (mut kl, mut kl_ref) = (0.0, 0.0);
            for s in range.filter(|&s| model.live[s] && p_prev[s] > 0.0) {
                policy.probs(t, s, &mut row);
                kl += p_prev[s] * kl_divergence(&row, model.base_row(s));
                if reference.is_some() {
                    reference_row(t, s, &mut p);
                    kl_ref += p_prev[s] * kl_divergence(&row, &p);
                }
            }
            (kl, kl_ref)
        });
        kl_per_position[t - 1] = parts.iter().map(|x| x.0).sum();
        reference_kl += parts.iter().map(|x| x.1).sum::<f64>();
        if let Some(g) = gradient.as_deref_mut() {
            g[(t - 1) * n * v..t * n * v].par_chunks_mut(CHUNK * v).enumerate().for_each(|(chunk, out)| {
                let (mut row, mut p) = (vec![0.0; v], vec![0.0; v]);
                for (i, gs) in out.chunks_exact_mut(v).enumerate() {
                    let s = chunk * CHUNK + i;
                    if !model.live[s] || p_prev[s] == 0.0 {
                        continue;
                    }
                    policy.probs(t, s, &mut row);
                    reference_row(t, s, &mut p);
                    for (a, &nx) in model.next_row(s).iter().enumerate() {
                        if row[a] > 0.0 {
                            let q_value = kl_weight * (row[a] / p[a]).ln() + v_next[nx as usize];
                            gs[a] += p_prev[s] * row[a] * (q_value - v_prev[s]);
                        }
                    }
                }
            });
        }
    });

    // Q-weighted parts, per position and live state.
    let mut penalty = 0.0;
    let mut anchor_kl = 0.0;
    let mut sft_loss = 0.0;
    let mut recovery = vec![f64::NAN; t_max];
    let r = &objective.recovery;
    for t in 1..=t_max {
        let q_prev = &q[(t - 1) * n..t * n];
        // P(cut after t − 1 tokens, in state s) under the augmentation's prefix-length law.
        let cut = &augment[(t - 1) * n..t * n];
        let w = objective.weights[t - 1];
        let parts = map_chunks(n, |range| {
            let mut row = vec![0.0; v];
            let (mut pen, mut anc, mut sft, mut rec, mut mass) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for s in range.filter(|&s| model.live[s] && q_prev[s] > 0.0) {
                policy.probs(t, s, &mut row);
                let p_r: f64 = row.iter().zip(r).filter(|(_, &r)| r).map(|(p, _)| p).sum();
                rec += q_prev[s] * p_r;
                mass += q_prev[s];
                match objective.kind {
                    ObjectiveKind::Deep | ObjectiveKind::DeepAnchored => {
                        pen += q_prev[s] * objective.mu * w * (1.0 - p_r);
                        if objective.kind == ObjectiveKind::DeepAnchored {
                            anc += q_prev[s] * kl_divergence(&row, model.base_row(s));
                        }
                    }
                    ObjectiveKind::Augment if cut[s] > 0.0 => sft += cut[s] * -p_r.ln(),
                    ObjectiveKind::Augment => {}
                    ObjectiveKind::Standard => {}
                }
            }
            (pen, anc, sft, rec, mass)
        });
        let (mut rec, mut mass) = (0.0, 0.0);
        for (pen, anc, sft, rc, m) in parts {
            penalty += pen;
            anchor_kl += anc;
            sft_loss += sft;
            rec += rc;
            mass += m;
        }
        if mass > 0.0 {
            recovery[t - 1] = rec / mass;
        }
        if let (Some(g), true) = (gradient.as_deref_mut(), objective.kind != ObjectiveKind::Standard) {
            let kind = objective.kind;
            let (mu, mix) = (objective.mu, objective.mix);
            g[(t - 1) * n * v..t * n * v].par_chunks_mut(CHUNK * v).enumerate().for_each(|(chunk, out)| {
                let mut row = vec![0.0; v];
                for (i, gs) in out.chunks_exact_mut(v).enumerate() {
                    let s = chunk * CHUNK + i;
                    if !model.live[s] || q_prev[s] == 0.0 {
                        continue;
                    }
                    policy.probs(t, s, &mut row);
                    let p_r: f64 = row.iter().zip(r).filter(|(_, &r)| r).map(|(p, _)| p).sum();
                    let in_r = |a: usize| r[a] as u8 as f64;
                    match kind {
                        ObjectiveKind::Deep | ObjectiveKind::DeepAnchored => {
                            // ∂(1 − π(R))/∂θ_a = −π_a (1[a∈R] − π(R)).
                            for a in 0..v {
                                gs[a] -= q_prev[s] * mu * w * row[a] * (in_r(a) - p_r);
                            }
                            if kind == ObjectiveKind::DeepAnchored {
                                let p = model.base_row(s);
                                let kl = kl_divergence(&row, p);
                                for a in (0..v).filter(|&a| row[a] > 0.0) {
                                    gs[a] += q_prev[s] * row[a] * ((row[a] / p[a]).ln() - kl);
                                }
                            }
                        }
                        ObjectiveKind::Augment if cut[s] > 0.0 => {
                            // ∂(−log π(R))/∂θ_a = π_a − 1[a∈R]·π_a/π(R).
                            for a in 0..v {
                                gs[a] += mix * cut[s] * (row[a] - in_r(a) * row[a] / p_r);
                            }
                        }
                        ObjectiveKind::Augment | ObjectiveKind::Standard => {}
                    }
                }
            });
        }
    }
    let kl: f64 = kl_per_position.iter().sum();
    if objective.kind == ObjectiveKind::Augment {
        anchor_kl = if reference.is_some() { reference_kl } else { kl };
    }
    let expected_harm = harm[0];
    let total = match objective.kind {
        ObjectiveKind::Standard => objective.lambda * expected_harm + kl,
        ObjectiveKind::Deep => objective.lambda * expected_harm + kl + penalty,
        ObjectiveKind::DeepAnchored => objective.lambda * expected_harm + kl + penalty + anchor_kl,
        ObjectiveKind::Augment => objective.mix * sft_loss + (1.0 - objective.mix) * anchor_kl,
    };
    Ok(ObjectiveValue { total, expected_harm, kl, kl_per_position, penalty, anchor_kl, sft_loss, recovery, gradient })
}
