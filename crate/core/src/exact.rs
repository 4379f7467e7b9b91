//! The exact engine: dynamic programming over the layered state space, O(T·S·V) time.
//!
//! Tables indexed by position hold (T+1) × S values at t·S + s. Per-position outputs have length T,
//! index t − 1 for position t.

use rayon::prelude::*;

use crate::model::Model;
use crate::parallel::{dot, map_chunks, sum_chunks, CHUNK};
use crate::policy::Policy;

/// I_t at or below this counts as zero whatever Var(H): rounding noise of the DP on the [0, 1] harm
/// scale is far below it, so a constant harm has horizon 0.
pub const HORIZON_FLOOR: f64 = 1e-30;

/// h is settled (the response's harm is decided) when within this distance of 0 or 1.
pub const SETTLED_TOLERANCE: f64 = 1e-12;

/// Conditional expected harm h_t(s) = E[H | state s after t tokens], by backward induction.
pub fn conditional_harm<P: Policy + ?Sized>(model: &Model, policy: &P) -> Vec<f64> {
    let n = model.num_states();
    let v = model.vocab();
    let t_max = model.length();
    let mut h = vec![0.0; (t_max + 1) * n];
    for s in 0..n {
        h[t_max * n + s] = model.harm(s);
    }
    for t in (1..=t_max).rev() {
        crate::cancel::checkpoint();
        let (before, after) = h.split_at_mut(t * n);
        let later = &after[..n];
        before[(t - 1) * n..].par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
            let mut row = vec![0.0; v];
            for (i, h_prev) in out.iter_mut().enumerate() {
                let s = chunk * CHUNK + i;
                *h_prev = if model.live[s] {
                    policy.probs(t, s, &mut row);
                    row.iter().zip(model.next_row(s)).map(|(pi, &nx)| pi * later[nx as usize]).sum()
                } else {
                    later[s]
                };
            }
        });
    }
    h
}

/// Runs the forward pass of `policy`: for t = 1..T calls `visit(t, p_{t−1})`, then moves the state
/// distribution one token on. Returns p_T.
pub fn forward<P: Policy + ?Sized>(model: &Model, policy: &P, mut visit: impl FnMut(usize, &[f64])) -> Vec<f64> {
    let n = model.num_states();
    let v = model.vocab();
    let mut p = vec![0.0; n];
    p[0] = 1.0;
    let mut flow = vec![0.0; n * v];
    let mut next_p = vec![0.0; n];
    for t in 1..=model.length() {
        crate::cancel::checkpoint();
        visit(t, &p);
        // flow[s·V + a] = p_{t−1}(s)·π_t(a|s) on live states.
        flow.par_chunks_mut(CHUNK * v).enumerate().for_each(|(chunk, out)| {
            for (i, row) in out.chunks_exact_mut(v).enumerate() {
                let s = chunk * CHUNK + i;
                if model.live[s] && p[s] > 0.0 {
                    policy.probs(t, s, row);
                    row.iter_mut().for_each(|f| *f *= p[s]);
                } else {
                    row.fill(0.0);
                }
            }
        });
        // Gather: p_t(s) = [s is a sink]·p_{t−1}(s) + Σ incoming flow, in a fixed edge order.
        next_p.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
            for (i, q) in out.iter_mut().enumerate() {
                let s = chunk * CHUNK + i;
                let stay = if model.live[s] { 0.0 } else { p[s] };
                *q = model.incoming_of(s).iter().fold(stay, |acc, &e| acc + flow[e as usize]);
            }
        });
        std::mem::swap(&mut p, &mut next_p);
    }
    p
}

/// The harm martingale of a policy, position by position.
#[derive(Debug, Clone)]
pub struct HarmProfile {
    pub expected_harm: f64,
    pub harm_variance: f64,
    /// I_t = E[(h_t − h_{t−1})²].
    pub harm_information: Vec<f64>,
    /// ||G_t||, G_t = gradient of E[H] with respect to position t's per-state softmax logits.
    pub grad_norm: Vec<f64>,
    /// F̄_t = max over reachable live states of tr F_t(s) = 1 − Σ_a π_t(a|s)².
    pub fisher_max: Vec<f64>,
    /// sqrt(I_t · F̄_t) ≥ ||G_t||.
    pub grad_bound: Vec<f64>,
    /// Smallest k with I_t ≤ tolerance·Var(H) + HORIZON_FLOOR for all t > k.
    pub horizon: usize,
    /// P(τ = t) for t = 0..T, τ = first t with h_t ∈ {0, 1}.
    pub decision_time: Vec<f64>,
    /// P(τ > T): harm never settles (only for non-binary harm).
    pub undecided: f64,
}

/// Computes the harm profile of `policy` given its conditional-harm table `h`. When `gradient` is
/// given (length T·S·V) it receives G_t(s, a) = p_{t−1}(s)·π_t(a|s)·(h_t(s·a) − h_{t−1}(s)).
pub fn harm_profile<P: Policy + ?Sized>(
    model: &Model,
    policy: &P,
    h: &[f64],
    tolerance: f64,
    mut gradient: Option<&mut [f64]>,
) -> HarmProfile {
    let n = model.num_states();
    let v = model.vocab();
    let t_max = model.length();
    let mut information = vec![0.0; t_max];
    let mut grad_sq = vec![0.0; t_max];
    let mut fisher_max = vec![0.0f64; t_max];
    let mut settled = vec![0.0; t_max + 1];
    let settled_mass = |t: usize, p: &[f64]| {
        let layer = &h[t * n..(t + 1) * n];
        sum_chunks::<1, _>(n, |r| [r.filter(|&s| is_settled(layer[s])).map(|s| p[s]).sum()])[0]
    };

    let p_final = forward(model, policy, |t, p| {
        settled[t - 1] = settled_mass(t - 1, p);
        let h_prev = &h[(t - 1) * n..t * n];
        let h_next = &h[t * n..(t + 1) * n];
        let parts = map_chunks(n, |range| {
            let mut row = vec![0.0; v];
            let (mut info, mut g2, mut fmax) = (0.0, 0.0, 0.0f64);
            for s in range {
                if !model.live[s] || p[s] == 0.0 {
                    continue;
                }
                policy.probs(t, s, &mut row);
                let (mut var, mut sq, mut purity) = (0.0, 0.0, 0.0);
                for (pi, &nx) in row.iter().zip(model.next_row(s)) {
                    let delta = h_next[nx as usize] - h_prev[s];
                    var += pi * delta * delta;
                    sq += pi * pi * delta * delta;
                    purity += pi * pi;
                }
                info += p[s] * var;
                g2 += p[s] * p[s] * sq;
                fmax = fmax.max(1.0 - purity);
            }
            (info, g2, fmax)
        });
        for (info, g2, fmax) in parts {
            information[t - 1] += info;
            grad_sq[t - 1] += g2;
            fisher_max[t - 1] = fisher_max[t - 1].max(fmax);
        }
        if let Some(g) = gradient.as_deref_mut() {
            let block = &mut g[(t - 1) * n * v..t * n * v];
            block.par_chunks_mut(CHUNK * v).enumerate().for_each(|(chunk, out)| {
                for (i, row) in out.chunks_exact_mut(v).enumerate() {
                    let s = chunk * CHUNK + i;
                    if !model.live[s] {
                        row.fill(0.0);
                        continue;
                    }
                    policy.probs(t, s, row);
                    for (a, g) in row.iter_mut().enumerate() {
                        *g *= p[s] * (h_next[model.next_row(s)[a] as usize] - h_prev[s]);
                    }
                }
            });
        }
    });
    settled[t_max] = settled_mass(t_max, &p_final);

    let expected_harm = h[0];
    let final_harm: Vec<f64> = (0..n).map(|s| (model.harm(s) - expected_harm).powi(2)).collect();
    let harm_variance = dot(&p_final, &final_harm);
    let threshold = tolerance * harm_variance + HORIZON_FLOOR;
    let horizon = (0..t_max).rev().find(|&i| information[i] > threshold).map_or(0, |i| i + 1);
    let decision_time = (0..=t_max).map(|t| settled[t] - if t == 0 { 0.0 } else { settled[t - 1] }).collect();
    HarmProfile {
        expected_harm,
        harm_variance,
        grad_norm: grad_sq.iter().map(|g| g.sqrt()).collect(),
        grad_bound: information.iter().zip(&fisher_max).map(|(i, f)| (i * f).sqrt()).collect(),
        harm_information: information,
        fisher_max,
        horizon,
        decision_time,
        undecided: 1.0 - settled[t_max],
    }
}

fn is_settled(h: f64) -> bool {
    h <= SETTLED_TOLERANCE || h >= 1.0 - SETTLED_TOLERANCE
}

/// Σ_s w(s)·KL(π_t(·|s) ‖ base(·|s)) over live states: the per-position KL under weights w.
pub fn weighted_kl<P: Policy + ?Sized>(model: &Model, policy: &P, t: usize, w: &[f64]) -> f64 {
    let v = model.vocab();
    sum_chunks::<1, _>(model.num_states(), |range| {
        let mut scratch = vec![0.0; v];
        [range.filter(|&s| model.live[s] && w[s] > 0.0).map(|s| w[s] * policy.kl_to_base(model, t, s, &mut scratch)).sum()]
    })[0]
}

/// On-policy per-position KL to the base: D_t = E_{y<t ∼ π}[KL(π_t(·|y<t) ‖ base)].
pub fn kl_on_policy<P: Policy + ?Sized>(model: &Model, policy: &P) -> Vec<f64> {
    let mut kl = vec![0.0; model.length()];
    forward(model, policy, |t, p| kl[t - 1] = weighted_kl(model, policy, t, p));
    kl
}

/// Walks Q, the distribution of harmful responses (the base conditioned on H = 1, or reweighted by H
/// when harm is not binary), layer by layer: visit(t, q_t) for t = 0..T with
/// q_t(s) = p^base_t(s)·h^base_t(s) / E_base[H]. Q is undefined when E_base[H] = 0: nothing is visited
/// and false is returned.
pub fn harmful_prefixes(model: &Model, h_base: &[f64], mut visit: impl FnMut(usize, &[f64])) -> bool {
    let n = model.num_states();
    let mass = h_base[0];
    if mass <= 0.0 {
        return false;
    }
    let base = crate::policy::BasePolicy { model };
    let mut q = vec![0.0; n];
    let weigh = |t: usize, p: &[f64], q: &mut Vec<f64>| {
        let layer = &h_base[t * n..(t + 1) * n];
        q.par_iter_mut().enumerate().for_each(|(s, q)| *q = p[s] * layer[s] / mass);
    };
    let p_final = forward(model, &base, |t, p| {
        weigh(t - 1, p, &mut q);
        visit(t - 1, &q);
    });
    weigh(model.length(), &p_final, &mut q);
    visit(model.length(), &q);
    true
}

/// Teacher-forced per-position KL to the base on harmful prefixes and prefilling-attack success
/// ASR_k = E_{prefix ∼ Q_k}[P_π(H = 1 | prefix)] = Σ_s q_k(s)·h^π_k(s), for k = 0..T.
/// Returns NaNs when Q is undefined (E_base[H] = 0).
pub fn on_harmful_prefixes<P: Policy + ?Sized>(
    model: &Model,
    h_base: &[f64],
    policy: &P,
    h_policy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let n = model.num_states();
    let t_max = model.length();
    let mut kl = vec![f64::NAN; t_max];
    let mut asr = vec![f64::NAN; t_max + 1];
    harmful_prefixes(model, h_base, |k, q| {
        asr[k] = dot(q, &h_policy[k * n..(k + 1) * n]);
        if k < t_max {
            kl[k] = weighted_kl(model, policy, k + 1, q);
        }
    });
    (kl, asr)
}

/// Per-position KL(π_a(·|s) ‖ π_b(·|s)) on π_a's own prefixes: the sequence-level KL(P_a ‖ P_b) is
/// its sum.
pub fn kl_between(model: &Model, a: &dyn Policy, b: &dyn Policy) -> Vec<f64> {
    let (n, v) = (model.num_states(), model.vocab());
    let mut kl = vec![0.0; model.length()];
    forward(model, a, |t, p| {
        kl[t - 1] = sum_chunks::<1, _>(n, |range| {
            let (mut ra, mut rb) = (vec![0.0; v], vec![0.0; v]);
            let mut total = 0.0;
            for s in range.filter(|&s| model.live[s] && p[s] > 0.0) {
                a.probs(t, s, &mut ra);
                b.probs(t, s, &mut rb);
                total += p[s] * crate::policy::kl_divergence(&ra, &rb);
            }
            [total]
        })[0];
    });
    kl
}
