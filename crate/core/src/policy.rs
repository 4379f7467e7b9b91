//! Policies over the exact state space: π_t(a | s) at live states for positions t = 1..T.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::model::Model;

/// A policy the exact engine can analyse. Rows are only asked for at live states.
pub trait Policy: Sync {
    /// Writes π_t(· | s) into `out` (length V).
    fn probs(&self, t: usize, s: usize, out: &mut [f64]);

    /// KL(π_t(· | s) ‖ base(· | s)). `scratch` has length V. Policies that know their log-ratio to
    /// the base override this to avoid the cancellation in log π − log p when the two are close.
    fn kl_to_base(&self, model: &Model, t: usize, s: usize, scratch: &mut [f64]) -> f64 {
        self.probs(t, s, scratch);
        kl_divergence(scratch, model.base_row(s))
    }

    /// The policy's precomputed rows, when it keeps them (the sampler's fast path reads them).
    fn row_cache(&self) -> Option<&RowCache> {
        None
    }
}

/// KL(q ‖ p) = Σ q log(q/p), with 0·log 0 = 0 and +∞ where q > 0 = p.
pub fn kl_divergence(q: &[f64], p: &[f64]) -> f64 {
    q.iter()
        .zip(p)
        .filter(|(q, _)| **q > 0.0)
        .map(|(q, p)| if *p > 0.0 { q * (q / p).ln() } else { f64::INFINITY })
        .sum()
}

/// The base model P_base.
pub struct BasePolicy<'m> {
    pub model: &'m Model,
}

impl Policy for BasePolicy<'_> {
    fn probs(&self, _t: usize, s: usize, out: &mut [f64]) {
        out.copy_from_slice(self.model.base_row(s));
    }
    fn kl_to_base(&self, _model: &Model, _t: usize, _s: usize, _scratch: &mut [f64]) -> f64 {
        0.0
    }
}

/// Largest table of rows a policy caches (2^25 doubles = 256 MiB).
pub const ROW_CACHE_MAX_ENTRIES: usize = 1 << 25;

/// Softmax logits per (position, state): logits[((t−1)·S + s)·V + a].
///
/// The probabilities of every row and each row's KL to the base are computed once, in parallel,
/// when they fit in ROW_CACHE_MAX_ENTRIES: a sampler then pays no exp or log per token, which is
/// where the time goes otherwise.
pub struct TabularPolicy<'m> {
    pub model: &'m Model,
    pub logits: &'m [f64],
    cache: Option<Cow<'m, RowCache>>,
}

/// Per-(position, state) rows of a policy, ((t−1)·S + s)·V + a, computed once: a sampler then pays
/// no sum, scan, exp or log per token.
#[derive(Clone)]
pub struct RowCache {
    pub probs: Vec<f64>,
    /// The running sums of each row in token order (the last is the row's total, summed as
    /// `rng::draw_index` sums it, so a search in them draws the same token). Apart from the logs,
    /// so a row's sums fill as few cache lines as they can (4 for V = 32).
    pub cdf: Vec<f64>,
    /// ln π of each entry.
    pub log_probs: Vec<f64>,
    /// KL of each row to the base row, per (position, state).
    pub kl: Vec<f64>,
}

impl<'m> TabularPolicy<'m> {
    pub fn new(model: &'m Model, logits: &'m [f64]) -> Result<Self> {
        let expected = model.length() * model.num_states() * model.vocab();
        if logits.len() != expected {
            return Err(Error::InvalidArgument(format!(
                "tabular logits have {} entries, expected T × S × V = {} × {} × {} = {expected}",
                logits.len(),
                model.length(),
                model.num_states(),
                model.vocab()
            )));
        }
        if let Some(i) = logits.iter().position(|x| x.is_nan() || *x == f64::INFINITY) {
            return Err(Error::PolicyInvalid(format!("logit {i} is {} (must be finite or -Infinity)", logits[i])));
        }
        check_rows(model, logits)?;
        let cache = (logits.len() <= ROW_CACHE_MAX_ENTRIES).then(|| Cow::Owned(row_cache(model, logits)));
        Ok(TabularPolicy { model, logits, cache })
    }
}

/// Tabular logits with their row cache, owned, so that a binding can keep them between calls
/// instead of copying the logits and rebuilding the rows every time.
pub struct TabularTables {
    logits: Vec<f64>,
    cache: Option<RowCache>,
}

impl TabularTables {
    /// Checks the logits against `model` and builds the rows (as `TabularPolicy::new`).
    pub fn new(model: &Model, logits: Vec<f64>) -> Result<Self> {
        let cache = TabularPolicy::new(model, &logits)?.cache.map(Cow::into_owned);
        Ok(TabularTables { logits, cache })
    }

    /// Whether these are the tables of `logits` (bit for bit).
    pub fn holds(&self, logits: &[f64]) -> bool {
        // Compared a block at a time without an early exit inside, so the comparison vectorises;
        // the blocks on every thread (tens of megabytes are compared on every call).
        use rayon::prelude::*;
        let same = |(a, b): (&[f64], &[f64])| a.iter().zip(b).fold(true, |same, (x, y)| same & (x.to_bits() == y.to_bits()));
        self.logits.len() == logits.len() && self.logits.par_chunks(1 << 14).zip(logits.par_chunks(1 << 14)).all(same)
    }

    /// The policy over `model`, which must be the model the tables were built with.
    pub fn policy<'a>(&'a self, model: &'a Model) -> TabularPolicy<'a> {
        TabularPolicy { model, logits: &self.logits, cache: self.cache.as_ref().map(Cow::Borrowed) }
    }
}

/// Every row a live state reads must hold a finite logit: a row of −∞ has no softmax (it would give
/// NaN probabilities and, downstream, NaN expectations reported as if they were numbers).
fn check_rows(model: &Model, logits: &[f64]) -> Result<()> {
    let (n, v) = (model.num_states(), model.vocab());
    let bad = logits.chunks_exact(v).enumerate().find(|(row, l)| model.live[row % n] && !l.iter().any(|x| x.is_finite()));
    match bad {
        Some((row, _)) => Err(Error::PolicyInvalid(format!(
            "logits row of position t = {}, state s = {} (entries {}..{}) has no finite logit: every token is −∞",
            row / n + 1,
            row % n,
            row * v,
            (row + 1) * v - 1
        ))),
        None => Ok(()),
    }
}

/// Softmax of every live row, its running sums, logs and KL to the base row.
fn row_cache(model: &Model, logits: &[f64]) -> RowCache {
    use rayon::prelude::*;
    let (n, v) = (model.num_states(), model.vocab());
    let mut probs = vec![0.0; logits.len()];
    let mut cdf = vec![0.0; logits.len()];
    let mut log_probs = vec![0.0; logits.len()];
    let mut kl = vec![0.0; logits.len() / v];
    let rows = probs.par_chunks_mut(v).zip(cdf.par_chunks_mut(v)).zip(log_probs.par_chunks_mut(v)).zip(kl.par_iter_mut());
    rows.enumerate().for_each(|(row, (((p, c), l), k))| {
        let s = row % n;
        if model.live[s] {
            softmax(&logits[row * v..(row + 1) * v], p);
            *k = kl_divergence(p, model.base_row(s));
            let mut acc = 0.0;
            for ((c, l), &p) in c.iter_mut().zip(l.iter_mut()).zip(p.iter()) {
                acc += p;
                *c = acc;
                *l = p.ln();
            }
        }
    });
    RowCache { probs, cdf, log_probs, kl }
}

impl Policy for TabularPolicy<'_> {
    fn probs(&self, t: usize, s: usize, out: &mut [f64]) {
        let v = self.model.vocab();
        let row = (t - 1) * self.model.num_states() + s;
        match &self.cache {
            Some(cache) => out.copy_from_slice(&cache.probs[row * v..(row + 1) * v]),
            None => softmax(&self.logits[row * v..(row + 1) * v], out),
        }
    }

    fn kl_to_base(&self, model: &Model, t: usize, s: usize, scratch: &mut [f64]) -> f64 {
        match &self.cache {
            Some(cache) => cache.kl[(t - 1) * self.model.num_states() + s],
            None => {
                self.probs(t, s, scratch);
                kl_divergence(scratch, model.base_row(s))
            }
        }
    }

    fn row_cache(&self) -> Option<&RowCache> {
        self.cache.as_deref()
    }
}

/// out = softmax(logits), shifted by the max for stability.
pub fn softmax(logits: &[f64], out: &mut [f64]) {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (o, x) in out.iter_mut().zip(logits) {
        *o = (x - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Turns logits into probabilities in place.
pub fn softmax_in_place(x: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}
