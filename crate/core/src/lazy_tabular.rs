//! The lazily keyed tabular policy: softmax logits per (position, context, automaton state), stored
//! only for the keys a sample has visited, the base row (logits ln p) everywhere else.
//!
//! It is the tabular policy without the exact state index (an exact state is a (context, automaton
//! state) pair), so it trains on scenarios of any size with memory proportional to the keys visited.
//! Rows are kept in the order they were first visited; new keys are added in response order, so
//! the rows, and every result, are the same whatever the thread count.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{Model, ScenarioSpec};
use crate::policy::{kl_divergence, softmax};
use crate::estimate::{harm_paths, HarmPaths, HarmSource};
use crate::rl::{replay_log_probs, rl_update, RlAlgorithm, RlStep, ScoreCoefficient, Trainable};
use crate::sampling::{map_tokens, sample, SampleRequest, Samples, StepPolicy};
use crate::walk::{Track, Walk, NO_TOKEN};

/// A row's key: (position t = 1..T, scenario context, automaton state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub position: u32,
    pub context: u64,
    pub automaton: u32,
}

impl RowKey {
    /// The key of the token a walk emits next.
    pub fn of(walk: &Walk) -> RowKey {
        RowKey { position: walk.emitted() as u32 + 1, context: walk.context as u64, automaton: walk.automaton as u32 }
    }
}

/// Bytes one stored row costs: its logits and an optimiser's two moments (3·V doubles), the key,
/// the row number and the map's node overhead (bounded by 64 bytes per entry).
pub fn bytes_per_row(vocab: usize) -> u64 {
    3 * 8 * vocab as u64 + 64
}

#[derive(Debug, Clone)]
pub struct LazyTabular {
    vocab: usize,
    length: usize,
    contexts: u64,
    automata: u32,
    /// Each stored key's row number.
    index: BTreeMap<RowKey, usize>,
    /// rows × V logits, rows in the order they were first visited.
    logits: Vec<f64>,
    /// Bytes the rows may take (`bytes_per_row` each).
    budget: u64,
}

/// The base row as logits: ln p (−∞ where p = 0), the default of every unvisited key.
fn base_logits_into(spec: &ScenarioSpec, context: usize, out: &mut [f64]) {
    out.iter_mut().zip(spec.base_row(context)).for_each(|(l, p)| *l = p.ln());
}

impl LazyTabular {
    /// An empty policy (equal to the base) over `spec`, its rows limited to `budget` bytes.
    pub fn new(spec: &ScenarioSpec, budget: u64) -> LazyTabular {
        LazyTabular {
            vocab: spec.vocab,
            length: spec.length,
            contexts: spec.num_contexts() as u64,
            automata: spec.harm.len() as u32,
            index: BTreeMap::new(),
            logits: Vec::new(),
            budget,
        }
    }

    /// A policy from stored rows (keys and rows × V logits, as `rows` gives them), checked against
    /// `spec`: keys in range and distinct, every row with a finite logit and no NaN or +∞.
    pub fn from_rows(spec: &ScenarioSpec, budget: u64, keys: &[RowKey], logits: &[f64]) -> Result<LazyTabular> {
        let mut policy = LazyTabular::new(spec, budget);
        let v = policy.vocab;
        if logits.len() != keys.len() * v {
            return Err(Error::PolicyInvalid(format!("sparse rows: {} logits for {} keys, expected keys × V = {}", logits.len(), keys.len(), keys.len() * v)));
        }
        policy.check_budget(keys.len())?;
        for (i, (key, row)) in keys.iter().zip(logits.chunks_exact(v)).enumerate() {
            policy.check_key(key, i)?;
            if row.iter().any(|x| x.is_nan() || *x == f64::INFINITY) || !row.iter().any(|x| x.is_finite()) {
                return Err(Error::PolicyInvalid(format!("sparse row {i}: logits must be finite or −∞, with at least one finite")));
            }
            if policy.index.insert(*key, i).is_some() {
                return Err(Error::PolicyInvalid(format!("sparse row {i}: key (t = {}, context {}, automaton state {}) appears twice", key.position, key.context, key.automaton)));
            }
        }
        policy.logits = logits.to_vec();
        Ok(policy)
    }

    fn check_key(&self, key: &RowKey, i: usize) -> Result<()> {
        let ok = key.position >= 1 && key.position as usize <= self.length && key.context < self.contexts && key.automaton < self.automata;
        if ok {
            return Ok(());
        }
        Err(Error::PolicyInvalid(format!(
            "sparse row {i}: key (t = {}, context {}, automaton state {}) is outside 1..={} × 0..{} × 0..{}",
            key.position, key.context, key.automaton, self.length, self.contexts, self.automata
        )))
    }

    /// Refuses `rows` rows when they would not fit in the budget.
    fn check_budget(&self, rows: usize) -> Result<()> {
        let bytes = rows as u64 * bytes_per_row(self.vocab);
        if bytes > self.budget {
            return Err(Error::OutOfMemory {
                what: format!("lazy tabular policy: {rows} visited (position, context, automaton state) rows × {} bytes exceed the memory budget of {} bytes", bytes_per_row(self.vocab), self.budget),
                bytes: bytes as f64,
            });
        }
        Ok(())
    }

    /// Refuses a scenario of another shape (V, T, context count, automaton states) than its own.
    pub fn check_scenario(&self, spec: &ScenarioSpec) -> Result<()> {
        let theirs = (spec.vocab, spec.length, spec.num_contexts() as u64, spec.harm.len() as u32);
        if theirs != (self.vocab, self.length, self.contexts, self.automata) {
            return Err(Error::InvalidArgument(format!(
                "the lazy tabular policy was made for V = {}, T = {}, {} contexts, {} automaton states; the scenario has {theirs:?}",
                self.vocab, self.length, self.contexts, self.automata
            )));
        }
        Ok(())
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Bytes the rows may take.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Number of rows stored (keys visited).
    pub fn num_rows(&self) -> usize {
        self.index.len()
    }

    /// The stored rows' logits, rows × V in visiting order (the trainable parameters).
    pub fn params(&self) -> &[f64] {
        &self.logits
    }

    /// The stored rows in key order: keys and rows × V logits.
    pub fn rows(&self) -> (Vec<RowKey>, Vec<f64>) {
        let v = self.vocab;
        let keys: Vec<RowKey> = self.index.keys().copied().collect();
        let logits = self.index.values().flat_map(|&row| self.logits[row * v..(row + 1) * v].iter().copied()).collect();
        (keys, logits)
    }

    /// The sampler's view of the policy over `spec` (the scenario it was made for).
    pub fn view<'a>(&'a self, spec: &'a ScenarioSpec) -> LazyView<'a> {
        LazyView { index: &self.index, logits: &self.logits, spec }
    }

    /// Stores the base row for every key the samples visit that is not stored yet, in response
    /// order; returns the number of rows added. Refused, with nothing added, beyond the budget.
    pub fn visit(&mut self, track: &Track, samples: &Samples) -> Result<usize> {
        let keys = map_tokens(track, samples, || (), |_, walk, _| Some(RowKey::of(walk)));
        let mut fresh: Vec<RowKey> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for key in keys.into_iter().flatten() {
            if !self.index.contains_key(&key) && seen.insert(key) {
                fresh.push(key);
            }
        }
        self.check_budget(self.index.len() + fresh.len())?;
        let v = self.vocab;
        crate::alloc::grow(&mut self.logits, fresh.len() * v, "lazy tabular policy's rows")?;
        for key in &fresh {
            let row = self.index.len();
            self.index.insert(*key, row);
            self.logits.resize((row + 1) * v, 0.0);
            base_logits_into(track.spec, key.context as usize, &mut self.logits[row * v..]);
        }
        Ok(fresh.len())
    }

    /// The dense T × S × V logits over an exact model (the base row where no row is stored), for
    /// the exact engine and for comparison with the tabular policy.
    pub fn dense(&self, model: &Model) -> Result<Vec<f64>> {
        let (n, v) = (model.num_states(), model.vocab());
        let mut logits = crate::alloc::table(&[model.length(), n, v], 0.0, "lazy tabular policy's dense T × S × V logits")?;
        for (i, row) in logits.chunks_exact_mut(v).enumerate() {
            let (t, s) = (i / n + 1, i % n);
            if !model.live[s] {
                continue;
            }
            let key = RowKey { position: t as u32, context: model.context[s] as u64, automaton: model.automaton[s] };
            match self.index.get(&key) {
                Some(&r) => row.copy_from_slice(&self.logits[r * v..(r + 1) * v]),
                None => base_logits_into(&model.spec, model.context[s] as usize, row),
            }
        }
        Ok(logits)
    }

    /// One sampled training step (see `rl::rl_step`): samples a batch, stores the rows it visits,
    /// then updates the stored rows (`update` sees all rows, the new ones included: an optimiser's
    /// state grows with them).
    #[allow(clippy::too_many_arguments)]
    pub fn rl_step(
        &mut self,
        track: &Track,
        update: &mut dyn FnMut(&mut [f64], &[f64]),
        request: &SampleRequest,
        lambda: f64,
        algorithm: RlAlgorithm,
        harm: Option<&HarmSource>,
    ) -> Result<RlStep> {
        self.check_scenario(track.spec)?;
        let samples = sample(track, &self.view(track.spec), request)?;
        self.visit(track, &samples)?;
        let family = LazyFamily { index: &self.index, spec: track.spec };
        rl_update(track, &family, &mut self.logits, update, samples, request.seed, lambda, algorithm, harm)
    }
}

/// The policy as the sampler sees it: stored rows by key, the base elsewhere.
pub struct LazyView<'a> {
    index: &'a BTreeMap<RowKey, usize>,
    logits: &'a [f64],
    spec: &'a ScenarioSpec,
}

impl StepPolicy for LazyView<'_> {
    fn scratch_len(&self) -> usize {
        self.spec.vocab
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]) {
        let v = self.spec.vocab;
        match self.index.get(&RowKey::of(walk)) {
            Some(&row) => softmax(&self.logits[row * v..(row + 1) * v], out),
            // softmax(ln p) rather than p itself: bit for bit what a tabular policy at the base gives.
            None => {
                base_logits_into(self.spec, walk.context, scratch);
                softmax(scratch, out);
            }
        }
    }
    fn kl_to_base(&self, track: &Track, walk: &Walk, row: &mut [f64], scratch: &mut [f64]) -> f64 {
        self.probs(walk, row, scratch);
        kl_divergence(row, track.spec.base_row(walk.context))
    }
}

/// The stored rows as a trainable family: the parameters are the rows' logits (rows × V).
struct LazyFamily<'a> {
    index: &'a BTreeMap<RowKey, usize>,
    spec: &'a ScenarioSpec,
}

impl Trainable for LazyFamily<'_> {
    fn sample(&self, track: &Track, params: &[f64], request: &SampleRequest) -> Result<Samples> {
        sample(track, &LazyView { index: self.index, logits: params, spec: self.spec }, request)
    }

    /// Rollouts follow the view: stored rows where the continuations visit them, the base elsewhere.
    fn harm_paths(&self, track: &Track, params: &[f64], samples: &Samples, source: &HarmSource, seed: u64) -> Result<HarmPaths> {
        harm_paths(track, &LazyView { index: self.index, logits: params, spec: self.spec }, samples, source, seed)
    }

    /// Ĝ = (1/N) Σ_n c_{n,t}·(e_{y_{n,t}} − π) on each visited row: per position, the coefficients
    /// are summed per (row, token) in response order, as the tabular kernel sums them per (state,
    /// token), so both give the same bits.
    fn score_gradient(&self, track: &Track, params: &[f64], samples: &Samples, coef: ScoreCoefficient, uses_log_prob: bool) -> Result<(Vec<f64>, Vec<f64>)> {
        let view = LazyView { index: self.index, logits: params, spec: self.spec };
        let (count, t_max, v) = (samples.count, samples.length, self.spec.vocab);
        let current = if uses_log_prob { replay_log_probs(track, &view, samples) } else { vec![] };
        let rows: Vec<usize> = map_tokens(track, samples, || (), |_, walk, _| self.index.get(&RowKey::of(walk)).map_or(usize::MAX, |&r| r));
        if rows.contains(&usize::MAX) {
            return Err(Error::InvalidArgument("a sampled response visits a row the lazy tabular policy has not stored".into()));
        }
        // Per position: (row, its gradient) for the rows visited there, in row order.
        let per_t: Vec<Vec<(usize, Vec<f64>)>> = (0..t_max)
            .into_par_iter()
            .map(|t| {
                let mut sums: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for n in (0..count).filter(|&n| samples.tokens[n * t_max + t] != NO_TOKEN) {
                    let i = n * t_max + t;
                    let c = coef(n, t, current.get(i).copied().unwrap_or(f64::NAN));
                    sums.entry(rows[i]).or_insert_with(|| vec![0.0; v])[samples.tokens[i] as usize] += c;
                }
                let mut pi = vec![0.0; v];
                sums.into_iter()
                    .map(|(row, sum_c)| {
                        softmax(&params[row * v..(row + 1) * v], &mut pi);
                        let total: f64 = sum_c.iter().sum();
                        let grad = (0..v).map(|a| (0.0 + (sum_c[a] - total * pi[a])) / count as f64).collect();
                        (row, grad)
                    })
                    .collect()
            })
            .collect();
        let mut gradient = crate::alloc::filled(params.len(), 0.0, "lazy tabular policy's gradient")?;
        let norms = per_t
            .into_iter()
            .map(|rows| {
                let mut sq = 0.0;
                for (row, grad) in rows {
                    sq += grad.iter().map(|g| g * g).sum::<f64>();
                    gradient[row * v..(row + 1) * v].copy_from_slice(&grad);
                }
                sq.sqrt()
            })
            .collect();
        Ok((gradient, norms))
    }
}
