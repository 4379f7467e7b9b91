//! The Gibbs optimum of λ·E[H] + KL(P ‖ P_base): P*(y) ∝ P_base(y)·exp(−λ·H(y)).
//!
//! It is kept as its values W_t(s) = −log Z_t(s), Z_t(s) = E_base[exp(−λH) | state s at t], a
//! (T+1) × S table: the position-dependent policy π*_t(a|s) = p(a|s)·exp(W_{t−1}(s) − W_t(s·a))
//! follows from the base and this table and is never materialised. So that neither the values nor
//! the rows cost an exp per entry, the table Z_t(s) = exp(−W_t(s)) ∈ [e^{−λ}, 1] is kept too: then
//! exp(W_{t−1}(s) − W_t(s·a)) = Z_t(s·a) / Z_{t−1}(s), and the soft-min of the backward induction
//! needs exp(shift − W_t(n)) = Z_t(n) / Z_t(n_min). Z does not underflow (nor do its products with
//! probabilities turn subnormal) while λ ≤ FAST_LAMBDA_MAX; beyond it the exps are taken.
//!
//! The per-state arithmetic (`SoftMin`, `soft_min`, `row_ratio`) is shared with the fused passes of
//! `analysis::analyze`, so that both give bit-identical values and rows.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::parallel::CHUNK;
use crate::policy::Policy;

/// Largest λ for which the exp-free values and rows are used: e^{−600} ≈ 3e−261 leaves room for
/// products with probabilities down to 1e−47 before anything turns subnormal.
pub const FAST_LAMBDA_MAX: f64 = 600.0;

pub struct GibbsPolicy<'m> {
    pub model: &'m Model,
    pub lambda: f64,
    /// W_t(s) at index t·S + s.
    pub values: Vec<f64>,
    /// Z_t(s) = exp(−W_t(s)) at index t·S + s, when λ ≤ FAST_LAMBDA_MAX.
    z: Option<Vec<f64>>,
}

impl<'m> GibbsPolicy<'m> {
    pub fn new(model: &'m Model, lambda: f64) -> Result<Self> {
        check_lambda(lambda)?;
        let n = model.num_states();
        let t_max = model.length();
        let fast = lambda <= FAST_LAMBDA_MAX;
        let mut values = vec![0.0; (t_max + 1) * n];
        let mut z = if fast { vec![0.0; (t_max + 1) * n] } else { Vec::new() };
        for s in 0..n {
            values[t_max * n + s] = lambda * model.harm(s);
            if fast {
                z[t_max * n + s] = (-values[t_max * n + s]).exp();
            }
        }
        for t in (1..=t_max).rev() {
            let (before, after) = values.split_at_mut(t * n);
            let later = &after[..n];
            let earlier = &mut before[(t - 1) * n..];
            if fast {
                let (z_before, z_after) = z.split_at_mut(t * n);
                let z_later = &z_after[..n];
                let z_earlier = &mut z_before[(t - 1) * n..];
                earlier.par_chunks_mut(CHUNK).zip(z_earlier.par_chunks_mut(CHUNK)).enumerate().for_each(|(chunk, (out, z_out))| {
                    for (i, (w, zo)) in out.iter_mut().zip(z_out.iter_mut()).enumerate() {
                        let s = chunk * CHUNK + i;
                        if model.live[s] {
                            let mut acc = SoftMin::new();
                            for (&p, &nx) in model.base_row(s).iter().zip(model.next_row(s)) {
                                acc.add(p, later[nx as usize], z_later[nx as usize]);
                            }
                            *w = acc.value();
                            *zo = (-*w).exp();
                        } else {
                            *w = later[s];
                            *zo = z_later[s];
                        }
                    }
                });
            } else {
                earlier.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
                    for (i, w) in out.iter_mut().enumerate() {
                        let s = chunk * CHUNK + i;
                        *w = if model.live[s] { soft_min(model.base_row(s), model.next_row(s), |n| later[n]) } else { later[s] };
                    }
                });
            }
        }
        Ok(GibbsPolicy { model, lambda, values, z: fast.then_some(z) })
    }

    /// 1/Z_{t−1}(s) (fast rows) or W_{t−1}(s) (slow rows): what `row_ratio` needs of the state.
    #[inline]
    fn state_term(&self, t: usize, s: usize) -> f64 {
        let at = (t - 1) * self.model.num_states() + s;
        match &self.z {
            Some(z) => 1.0 / z[at],
            None => self.values[at],
        }
    }

    /// π*_t(a|s)/p(a|s) = exp(W_{t−1}(s) − W_t(next)), for the token leading to `next`.
    #[inline]
    fn ratio(&self, t: usize, state_term: f64, next: usize) -> f64 {
        let at = t * self.model.num_states() + next;
        match &self.z {
            Some(z) => row_ratio::<true>(state_term, self.values[at], z[at]),
            None => row_ratio::<false>(state_term, self.values[at], 0.0),
        }
    }

    /// E_{P*}-free log-ratio log(π*_t(a|s) / p(a|s)) = W_{t−1}(s) − W_t(s·a).
    fn log_ratio(&self, t: usize, s: usize, a: usize) -> f64 {
        let n = self.model.num_states();
        let next = self.model.next_row(s)[a] as usize;
        self.values[(t - 1) * n + s] - self.values[t * n + next]
    }
}

pub(crate) fn check_lambda(lambda: f64) -> Result<()> {
    if lambda >= 0.0 && lambda.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("lambda must be a finite number ≥ 0, got {lambda}")))
    }
}

/// π*_t(a|s)/p(a|s) from the state's term (1/Z_{t−1}(s) with fast rows, W_{t−1}(s) otherwise) and the
/// next state's W_t and Z_t: Z_t(next)·(1/Z_{t−1}(s)), or exp(W_{t−1}(s) − W_t(next)).
#[inline(always)]
pub(crate) fn row_ratio<const FAST: bool>(state_term: f64, w_next: f64, z_next: f64) -> f64 {
    if FAST {
        z_next * state_term
    } else {
        (state_term - w_next).exp()
    }
}

/// The soft-min W = −log Σ_a p_a·exp(−w_a) of fast rows, accumulated over a row without exps:
/// shifted by the smallest w among tokens with p_a > 0, exp(shift − w_a) = z_a / z_shift with
/// z = exp(−w). Branch-free (z is non-increasing in w, so the largest z goes with the smallest w).
#[derive(Clone, Copy)]
pub(crate) struct SoftMin {
    shift: f64,
    z_shift: f64,
    z_sum: f64,
}

impl SoftMin {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        SoftMin { shift: f64::INFINITY, z_shift: 0.0, z_sum: 0.0 }
    }
    #[inline(always)]
    pub(crate) fn add(&mut self, p: f64, w: f64, z: f64) {
        self.z_sum += p * z;
        let reached = p > 0.0;
        self.shift = self.shift.min(if reached { w } else { f64::INFINITY });
        self.z_shift = self.z_shift.max(if reached { z } else { 0.0 });
    }
    #[inline(always)]
    pub(crate) fn value(self) -> f64 {
        self.shift - (self.z_sum / self.z_shift).ln()
    }
}

/// −log Σ_a p_a·exp(−w[next_a]), shifted by the smallest value among tokens with p_a > 0.
#[inline(always)]
pub(crate) fn soft_min(p: &[f64], next: &[u32], w: impl Fn(usize) -> f64) -> f64 {
    let shift = p
        .iter()
        .zip(next)
        .filter(|(p, _)| **p > 0.0)
        .map(|(_, &n)| w(n as usize))
        .fold(f64::INFINITY, f64::min);
    let sum: f64 = p.iter().zip(next).map(|(p, &n)| if *p > 0.0 { p * (shift - w(n as usize)).exp() } else { 0.0 }).sum();
    shift - sum.ln()
}

impl Policy for GibbsPolicy<'_> {
    fn probs(&self, t: usize, s: usize, out: &mut [f64]) {
        let p = self.model.base_row(s);
        let next = self.model.next_row(s);
        let term = self.state_term(t, s);
        for (a, o) in out.iter_mut().enumerate() {
            *o = if p[a] > 0.0 { p[a] * self.ratio(t, term, next[a] as usize) } else { 0.0 };
        }
    }

    fn kl_to_base(&self, model: &Model, t: usize, s: usize, _scratch: &mut [f64]) -> f64 {
        let p = model.base_row(s);
        let next = model.next_row(s);
        let term = self.state_term(t, s);
        (0..p.len())
            .filter(|&a| p[a] > 0.0)
            .map(|a| p[a] * self.ratio(t, term, next[a] as usize) * self.log_ratio(t, s, a))
            .sum()
    }
}
