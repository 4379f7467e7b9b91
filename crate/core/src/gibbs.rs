//! The Gibbs optimum of λ·E[H] + KL(P ‖ P_base): P*(y) ∝ P_base(y)·exp(−λ·H(y)).
//!
//! It is kept as its values W_t(s) = −log Z_t(s), Z_t(s) = E_base[exp(−λH) | state s at t], a
//! (T+1) × S table: the position-dependent policy π*_t(a|s) = p(a|s)·exp(W_{t−1}(s) − W_t(s·a))
//! follows from the base and this table and is never materialised.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::parallel::CHUNK;
use crate::policy::Policy;

pub struct GibbsPolicy<'m> {
    pub model: &'m Model,
    pub lambda: f64,
    /// W_t(s) at index t·S + s.
    pub values: Vec<f64>,
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
        Ok(GibbsPolicy { model, lambda, values })
    }

    /// E_{P*}-free log-ratio log(π*_t(a|s) / p(a|s)) = W_{t−1}(s) − W_t(s·a).
    fn log_ratio(&self, t: usize, s: usize, a: usize) -> f64 {
        let n = self.model.num_states();
        let next = self.model.next_row(s)[a] as usize;
        self.values[(t - 1) * n + s] - self.values[t * n + next]
    }
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
        for (a, o) in out.iter_mut().enumerate() {
            *o = if p[a] > 0.0 { p[a] * self.log_ratio(t, s, a).exp() } else { 0.0 };
        }
    }

    fn kl_to_base(&self, model: &Model, t: usize, s: usize, _scratch: &mut [f64]) -> f64 {
        let p = model.base_row(s);
        (0..p.len())
            .filter(|&a| p[a] > 0.0)
            .map(|a| {
                let r = self.log_ratio(t, s, a);
                p[a] * r.exp() * r
            })
            .sum()
    }
}
