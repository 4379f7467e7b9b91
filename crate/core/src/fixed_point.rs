//! The optimum of the standard and deep objectives by a per-state fixed point (tabular policies).
//!
//! Given the policy's own state distribution p_t(s) and Q's q_t(s), the objective splits into one
//! convex problem per (position, state) once the cost-to-go V_t of later positions is fixed:
//!   p·Σ_a π_a (log(π_a/p_a) + V_t(s·a)) + q·μw_t·(1 − π(R)) [+ q·KL(π ‖ p) when anchored],
//! solved by π ∝ p_base·exp((q·μ·w_t·1[a∈R] − p·V_t(s·a))/(p + q)) when anchored and by
//! π ∝ p_base·exp(−V_t(s·a) + (q/p)·μ·w_t·1[a∈R]) otherwise (THEORY.md). Backward induction gives
//! the rows for fixed p; p then follows from the rows. The two are alternated until the rows stop
//! changing. For the standard objective one backward pass gives the Gibbs optimum whatever p.
//! (The plain deep objective is not solved here: where the policy never goes its optimum has
//! π(R) → 1, at infinite logits, and the alternation does not settle.)

use crate::error::{Error, Result};
use crate::exact::forward;
use crate::model::Model;
use crate::objective::{Objective, ObjectiveKind};
use crate::policy::TabularPolicy;

pub struct FixedPoint {
    /// Optimal logits, T × S × V (log-probabilities up to a constant per row).
    pub logits: Vec<f64>,
    pub iterations: usize,
    /// Largest change of a probability in the last iteration.
    pub change: f64,
}

/// Solves the objective by alternating backward induction (rows for fixed visits) and the forward
/// pass (visits for fixed rows), at most `max_iterations` times or until rows move less than `tolerance`.
pub fn solve(model: &Model, objective: &Objective, q: &[f64], max_iterations: usize, tolerance: f64) -> Result<FixedPoint> {
    objective.check(model)?;
    if matches!(objective.kind, ObjectiveKind::Deep | ObjectiveKind::Augment) {
        // Plain deep: where the policy's own visits vanish the optimum sits at infinite logits and
        // the alternation oscillates; augment has no closed-form row. Both are trained by descent.
        return Err(Error::InvalidArgument("the fixed point solves the standard and deep-anchored objectives; train deep and augment by descent".into()));
    }
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    let anchored = objective.kind == ObjectiveKind::DeepAnchored;
    let penalised = objective.kind != ObjectiveKind::Standard;
    // Start from the base: p from the base's forward pass.
    let mut logits = crate::alloc::table(&[t_max, n, v], 0.0, "fixed point's T × S × V logits table")?;
    for (i, row) in logits.chunks_exact_mut(v).enumerate() {
        let s = i % n;
        if model.live[s] {
            row.iter_mut().zip(model.base_row(s)).for_each(|(l, p)| *l = p.ln());
        }
    }
    let mut visits = own_visits(model, &logits)?;
    let mut change = f64::INFINITY;
    let mut iterations = 0;
    let mut probs = vec![0.0; v];
    while iterations < max_iterations && change > tolerance {
        iterations += 1;
        change = 0.0;
        let mut value: Vec<f64> = (0..n).map(|s| objective.lambda * model.harm(s)).collect();
        for t in (1..=t_max).rev() {
            crate::cancel::checkpoint();
            let mut earlier = value.clone();
            for s in (0..n).filter(|&s| model.live[s]) {
                let (p, qs) = (visits[(t - 1) * n + s], if penalised { q[(t - 1) * n + s] } else { 0.0 });
                let bonus = objective.mu * objective.weights[t - 1];
                let base = model.base_row(s);
                let row = &mut logits[((t - 1) * n + s) * v..((t - 1) * n + s + 1) * v];
                let old: Vec<f64> = softmax_of(row);
                for a in 0..v {
                    let next = value[model.next_row(s)[a] as usize];
                    let r = objective.recovery[a] as u8 as f64;
                    row[a] = if base[a] == 0.0 {
                        f64::NEG_INFINITY
                    } else if anchored && p + qs > 0.0 {
                        base[a].ln() + (qs * bonus * r - p * next) / (p + qs)
                    } else {
                        base[a].ln() - next
                    };
                }
                // The cost-to-go of the state under the new row (its own KL to the base included).
                probs.copy_from_slice(&softmax_of(row));
                earlier[s] = (0..v)
                    .filter(|&a| probs[a] > 0.0)
                    .map(|a| probs[a] * ((probs[a] / base[a]).ln() + value[model.next_row(s)[a] as usize]))
                    .sum();
                change = old.iter().zip(&probs).fold(change, |c, (a, b)| c.max((a - b).abs()));
            }
            value = earlier;
        }
        visits = own_visits(model, &logits)?;
    }
    Ok(FixedPoint { logits, iterations, change })
}

fn softmax_of(row: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; row.len()];
    crate::policy::softmax(row, &mut out);
    out
}

/// The policy's state distribution p_t(s), (T+1) × S.
fn own_visits(model: &Model, logits: &[f64]) -> Result<Vec<f64>> {
    let n = model.num_states();
    let policy = TabularPolicy::new(model, logits)?;
    let mut visits = vec![0.0; (model.length() + 1) * n];
    let last = forward(model, &policy, |t, p| visits[(t - 1) * n..t * n].copy_from_slice(p));
    visits[model.length() * n..].copy_from_slice(&last);
    Ok(visits)
}
