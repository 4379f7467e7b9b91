//! Sampling an mlp policy position by position, evaluating only the inputs the walks reach.
//!
//! `sampling::sample` on an `MlpPolicy` tabulates every (position, context) input first (all
//! T·(V+1)^order of them, tens of MB), then copies a row out of that table per token and scans it.
//! Here all walks advance one position at a time: at each position one batched forward pass
//! evaluates the distinct contexts the walks are at, with each row's running sums, and each walk
//! draws its token by a binary search in its row's running sums (`rng::draw_from_cdfs`), in place.
//! The rows are those of the table and the draws are keyed by (response, position) as in
//! `sampling::sample`, so the results are the same bit for bit (tested), in memory proportional to
//! the batch.

use rayon::prelude::*;

use super::{BatchWork, Mlp, MlpPolicy, BATCH_ROWS};
use crate::error::Result;
use crate::model::ScenarioSpec;
use crate::rng::{draw_from_cdfs, token_uniform};
use crate::sampling::{check_request, sample, BaseStep, SampleRequest, Samples};
use crate::walk::{Track, NO_STATE, NO_TOKEN};

/// Responses per chunk of walks (advanced in parallel, each chunk in response order).
const RESPONSES_PER_CHUNK: usize = 512;

/// Walks whose binary searches run interleaved (each search is a chain of dependent loads).
const LANES: usize = 8;

impl Mlp {
    /// `sampling::sample` with the policy of `params` (the same results), position by position.
    /// A forced prefix goes through `sampling::sample`.
    pub fn sample(&self, params: &[f64], track: &Track, request: &SampleRequest) -> Result<Samples> {
        // The mlp, like the base, reads no exact state: the base stands in for it in the checks.
        check_request(track, &BaseStep { spec: track.spec }, request)?;
        let spec = track.spec;
        if request.prefix.is_some() || spec.length == 0 || self.config.vocab != spec.vocab || self.config.length != spec.length {
            return sample(track, &MlpPolicy::new(self, params), request);
        }
        let (n, t_max, v) = (request.count, spec.length, spec.vocab);
        let stride = t_max + 1;
        let mut tokens = vec![NO_TOKEN; n * t_max];
        let mut log_probs = vec![0.0; n * t_max];
        let mut states = track.model.map(|_| vec![NO_STATE; n * stride]);
        let mut harm = vec![0.0; n];
        let mut emitted = vec![0u32; n];
        let mut walks: Vec<Walks> = {
            let mut state_chunks = states.as_mut().map(|s| s.chunks_mut(RESPONSES_PER_CHUNK * stride));
            tokens
                .chunks_mut(RESPONSES_PER_CHUNK * t_max)
                .zip(log_probs.chunks_mut(RESPONSES_PER_CHUNK * t_max))
                .zip(harm.chunks_mut(RESPONSES_PER_CHUNK).zip(emitted.chunks_mut(RESPONSES_PER_CHUNK)))
                .enumerate()
                .map(|(chunk, ((tokens, log_probs), (harm, emitted)))| Walks {
                    first: request.first_index + (chunk * RESPONSES_PER_CHUNK) as u32,
                    num_contexts: self.num_contexts() as u64,
                    context: vec![(self.num_contexts() - 1) as u32; harm.len()],
                    automaton: vec![spec.start as u32; harm.len()],
                    exact: vec![0; harm.len()],
                    active: (0..harm.len() as u32).collect(),
                    tokens,
                    log_probs,
                    states: state_chunks.as_mut().and_then(|c| c.next()),
                    harm,
                    emitted,
                })
                .collect()
        };
        let flag = crate::cancel::current();
        let (mut contexts, mut rows, mut marks) = (Vec::new(), Vec::new(), Vec::new());
        // One work space per chunk of rows, kept from one position to the next.
        let mut works: Vec<RowsWork> = Vec::new();
        for t in 0..t_max {
            crate::cancel::stop_if_cancelled(flag.as_ref());
            // The distinct contexts of the walks still emitting, in order, and their rows.
            distinct_contexts(&walks, self.num_contexts(), &mut marks, &mut contexts);
            rows.resize(contexts.len() * v, [0.0; 2]);
            let chunks = contexts.len().div_ceil(rows_per_chunk(contexts.len()));
            works.extend((works.len()..chunks).map(|_| RowsWork::new(self)));
            self.draw_rows(params, t + 1, &contexts, &mut rows, &mut works);
            walks.par_iter_mut().for_each(|w| w.advance(track, request.seed, t, &contexts, &rows));
        }
        walks.par_iter_mut().for_each(|w| w.finish(spec));
        drop(walks);
        Ok(Samples { count: n, first_index: request.first_index, length: t_max, tokens, log_probs, harm, emitted, states })
    }

    /// Rows of (position t ∈ 1..T, context) for the given contexts, V entries of (running sum, π)
    /// each: π with its running sums π_0 + … + π_a added in token order, as `rng::draw_index` adds
    /// them, so a binary search on them draws draw_index's token and ends on the cache line of the
    /// drawn token's π. Chunks of rows in parallel (`rows_per_chunk`), chunk k in works[k].
    fn draw_rows(&self, params: &[f64], t: usize, contexts: &[u32], rows: &mut [[f64; 2]], works: &mut [RowsWork]) {
        let (v, size) = (self.config.vocab, rows_per_chunk(contexts.len()));
        rows.par_chunks_mut(size * v).zip(contexts.par_chunks(size)).zip(works.par_iter_mut()).for_each(|((rows, contexts), w)| {
            w.contexts.clear();
            w.contexts.extend(contexts.iter().map(|&c| c as usize));
            self.forward_batch(params, t, &w.contexts, &mut w.batch);
            super::batch::softmax_rows(&w.batch.logits[..rows.len()], &mut w.pi[..rows.len()], &mut w.norm[..contexts.len()]);
            for (row, pi) in rows.chunks_exact_mut(v).zip(w.pi.chunks_exact(v)) {
                let mut sum = 0.0;
                for (entry, &p) in row.iter_mut().zip(pi) {
                    sum += p;
                    *entry = [sum, p];
                }
            }
        });
    }
}

/// The distinct contexts of the walks still emitting, in increasing order, into `out`: marked in a
/// bit set (`marks`) when there are at most 64 possible contexts per walk, else sorted.
fn distinct_contexts(walks: &[Walks], num_contexts: usize, marks: &mut Vec<u64>, out: &mut Vec<u32>) {
    out.clear();
    let active: usize = walks.iter().map(|w| w.active.len()).sum();
    let all = walks.iter().flat_map(|w| w.active.iter().map(|&i| w.context[i as usize]));
    if num_contexts <= 64 * active {
        marks.clear();
        marks.resize(num_contexts.div_ceil(64), 0);
        all.for_each(|c| marks[c as usize / 64] |= 1 << (c % 64));
        for (k, &word) in marks.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                out.push((k * 64) as u32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
    } else {
        out.extend(all);
        out.sort_unstable();
        out.dedup();
    }
}

/// Rows per parallel chunk of `draw_rows` when it evaluates `rows` rows: one chunk per thread, at
/// most BATCH_ROWS and at least MIN_ROWS_PER_CHUNK. A row's result does not depend on the batch it
/// is evaluated in (tested), so the split changes no result.
fn rows_per_chunk(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads()).clamp(MIN_ROWS_PER_CHUNK, BATCH_ROWS)
}

const MIN_ROWS_PER_CHUNK: usize = 64;

/// Work space of `draw_rows` for one chunk of rows.
struct RowsWork {
    batch: BatchWork,
    contexts: Vec<usize>,
    pi: Vec<f64>,
    norm: Vec<f64>,
}

impl RowsWork {
    fn new(mlp: &Mlp) -> RowsWork {
        let v = mlp.config.vocab;
        RowsWork { batch: mlp.batch_work(BATCH_ROWS), contexts: Vec::with_capacity(BATCH_ROWS), pi: vec![0.0; BATCH_ROWS * v], norm: vec![0.0; BATCH_ROWS] }
    }
}

/// A chunk of walks and their outputs (response-major, as in `Samples`).
struct Walks<'a> {
    /// RNG index of the chunk's first response.
    first: u32,
    /// The mlp's number of contexts, (V + 1)^order.
    num_contexts: u64,
    /// Each walk's mlp context, automaton state and exact state (when a model is given).
    context: Vec<u32>,
    automaton: Vec<u32>,
    exact: Vec<u32>,
    /// Walks still emitting, in response order.
    active: Vec<u32>,
    tokens: &'a mut [u32],
    log_probs: &'a mut [f64],
    states: Option<&'a mut [u32]>,
    harm: &'a mut [f64],
    emitted: &'a mut [u32],
}

impl Walks<'_> {
    /// Draws the token at position t (0-based) of every walk still emitting, from the rows of
    /// `contexts` (sorted), and moves the walks on.
    fn advance(&mut self, track: &Track, seed: u64, t: usize, contexts: &[u32], rows: &[[f64; 2]]) {
        let (spec, t_max) = (track.spec, track.spec.length);
        let (v, v1, stride) = (spec.vocab, spec.vocab as u64 + 1, t_max + 1);
        let mut kept = 0;
        for group in (0..self.active.len()).step_by(LANES) {
            // The group's walks (the last group padded with its first walk, whose draw is then
            // made twice and used once).
            let walks: [usize; LANES] = std::array::from_fn(|k| self.active.get(group + k).copied().unwrap_or(self.active[group]) as usize);
            let u: [f64; LANES] = std::array::from_fn(|k| token_uniform(seed, self.first + walks[k] as u32, t as u32 + 1));
            let searched = walks.map(|i| {
                let row = contexts.binary_search(&self.context[i]).expect("every active walk's context has a row");
                &rows[row * v..(row + 1) * v]
            });
            let drawn = draw_from_cdfs(&searched, |e| e[0], &u);
            for k in 0..(self.active.len() - group).min(LANES) {
                let (i, a) = (walks[k], drawn[k]);
                self.tokens[i * t_max + t] = a as u32;
                self.log_probs[i * t_max + t] = searched[k][a][1].ln();
                if let (Some(states), Some(model)) = (self.states.as_deref_mut(), track.model) {
                    states[i * stride + t] = self.exact[i];
                    self.exact[i] = model.next_row(self.exact[i] as usize)[a];
                }
                self.context[i] = ((self.context[i] as u64 * v1 + a as u64) % self.num_contexts) as u32;
                self.automaton[i] = spec.transitions[self.automaton[i] as usize * v + a];
                if spec.end_token == Some(a) {
                    // Ended: the state after the end token for the remaining positions.
                    self.emitted[i] = t as u32 + 1;
                    if let Some(states) = self.states.as_deref_mut() {
                        states[i * stride + t + 1..(i + 1) * stride].fill(self.exact[i]);
                    }
                } else {
                    self.active[kept] = i as u32;
                    kept += 1;
                }
            }
        }
        self.active.truncate(kept);
    }

    /// After the last position: the walks that reached T, and every walk's harm.
    fn finish(&mut self, spec: &ScenarioSpec) {
        let t_max = spec.length;
        for &i in &self.active {
            self.emitted[i as usize] = t_max as u32;
            if let Some(states) = self.states.as_deref_mut() {
                states[i as usize * (t_max + 1) + t_max] = self.exact[i as usize];
            }
        }
        for (h, &s) in self.harm.iter_mut().zip(&self.automaton) {
            *h = spec.harm[s as usize];
        }
    }
}
