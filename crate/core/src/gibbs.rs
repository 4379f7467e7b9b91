//! The Gibbs optimum of λ·E[H] + KL(P ‖ P_base): P*(y) ∝ P_base(y)·exp(−λ·H(y)).
//!
//! It is kept as its values W_t(s) = −log Z_t(s), Z_t(s) = E_base[exp(−λH) | state s at t], a
//! (T+1) × S table: the position-dependent policy π*_t(a|s) = p(a|s)·exp(W_{t−1}(s) − W_t(s·a))
//! follows from the base and this table and is never materialised. So that rows cost no exp per
//! entry, the table E_t(s) = exp(c_t − W_t(s)), c_t = min_s W_t(s), is kept too: then
//! exp(W_{t−1}(s) − W_t(s·a)) = E_t(s·a) / E_{t−1}(s) · exp(c_{t−1} − c_t). W_t − c_t ≤ λ, so E does
//! not underflow while λ ≤ FAST_LAMBDA_MAX; beyond it rows take the exp of the log-ratio.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::parallel::CHUNK;
use crate::policy::Policy;

/// Largest λ for which the exp-free rows are used (e^{−700} is still a normal double).
pub const FAST_LAMBDA_MAX: f64 = 700.0;

pub struct GibbsPolicy<'m> {
    pub model: &'m Model,
    pub lambda: f64,
    /// W_t(s) at index t·S + s.
    pub values: Vec<f64>,
    /// E_t(s) = exp(c_t − W_t(s)) and the per-position factors exp(c_{t−1} − c_t), when λ ≤ FAST_LAMBDA_MAX.
    scaled: Option<(Vec<f64>, Vec<f64>)>,
}

impl<'m> GibbsPolicy<'m> {
    pub fn new(model: &'m Model, lambda: f64) -> Result<Self> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidArgument(format!("lambda must be a finite number ≥ 0, got {lambda}")));
        }
        let n = model.num_states();
        let t_max = model.length();
        let mut values = vec![0.0; (t_max + 1) * n];
        for s in 0..n {
            values[t_max * n + s] = lambda * model.harm(s);
        }
        for t in (1..=t_max).rev() {
            let (before, after) = values.split_at_mut(t * n);
            let later = &after[..n];
            let earlier = &mut before[(t - 1) * n..];
            earlier.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
                for (i, w) in out.iter_mut().enumerate() {
                    let s = chunk * CHUNK + i;
                    *w = if model.live[s] { soft_min(model.base_row(s), model.next_row(s), later) } else { later[s] };
                }
            });
        }
        let scaled = (lambda <= FAST_LAMBDA_MAX).then(|| scaled_exponentials(&values, n, t_max));
        Ok(GibbsPolicy { model, lambda, values, scaled })
    }

    /// exp(W_{t−1}(s) − W_t(next)) = π*_t(a|s)/p(a|s), for the token leading to `next`.
    #[inline]
    fn ratio(&self, t: usize, s: usize, next: usize) -> f64 {
        let n = self.model.num_states();
        match &self.scaled {
            Some((e, factor)) => e[t * n + next] / e[(t - 1) * n + s] * factor[t],
            None => (self.values[(t - 1) * n + s] - self.values[t * n + next]).exp(),
        }
    }

    /// E_{P*}-free log-ratio log(π*_t(a|s) / p(a|s)) = W_{t−1}(s) − W_t(s·a).
    fn log_ratio(&self, t: usize, s: usize, a: usize) -> f64 {
        let n = self.model.num_states();
        let next = self.model.next_row(s)[a] as usize;
        self.values[(t - 1) * n + s] - self.values[t * n + next]
    }
}

/// E_t(s) = exp(c_t − W_t(s)) with c_t = min_s W_t(s), and factor[t] = exp(c_{t−1} − c_t) (t ≥ 1).
fn scaled_exponentials(values: &[f64], n: usize, t_max: usize) -> (Vec<f64>, Vec<f64>) {
    let minima: Vec<f64> = values.chunks_exact(n).map(|layer| layer.iter().copied().fold(f64::INFINITY, f64::min)).collect();
    let mut e = vec![0.0; values.len()];
    e.par_chunks_mut(n).zip(values.par_chunks(n)).zip(minima.par_iter()).for_each(|((out, layer), &c)| {
        out.iter_mut().zip(layer).for_each(|(e, w)| *e = (c - w).exp());
    });
    let factor = (0..=t_max).map(|t| if t == 0 { 1.0 } else { (minima[t - 1] - minima[t]).exp() }).collect();
    (e, factor)
}

/// −log Σ_a p_a·exp(−w[next_a]), shifted by the smallest value among tokens with p_a > 0.
fn soft_min(p: &[f64], next: &[u32], w: &[f64]) -> f64 {
    let shift = p
        .iter()
        .zip(next)
        .filter(|(p, _)| **p > 0.0)
        .map(|(_, &n)| w[n as usize])
        .fold(f64::INFINITY, f64::min);
    let sum: f64 = p.iter().zip(next).map(|(p, &n)| if *p > 0.0 { p * (shift - w[n as usize]).exp() } else { 0.0 }).sum();
    shift - sum.ln()
}

impl Policy for GibbsPolicy<'_> {
    fn probs(&self, t: usize, s: usize, out: &mut [f64]) {
        let p = self.model.base_row(s);
        let next = self.model.next_row(s);
        for (a, o) in out.iter_mut().enumerate() {
            *o = if p[a] > 0.0 { p[a] * self.ratio(t, s, next[a] as usize) } else { 0.0 };
        }
    }

    fn kl_to_base(&self, model: &Model, t: usize, s: usize, _scratch: &mut [f64]) -> f64 {
        let p = model.base_row(s);
        let next = model.next_row(s);
        (0..p.len())
            .filter(|&a| p[a] > 0.0)
            .map(|a| p[a] * self.ratio(t, s, next[a] as usize) * self.log_ratio(t, s, a))
            .sum()
    }
}
