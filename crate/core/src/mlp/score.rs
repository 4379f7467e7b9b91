//! The mlp's score sums over sampled responses, on the batched passes of `batch.rs`.
//!
//! The network reads only (position, context), so the responses with the same context at a
//! position share one input row. `ScoreIndex` groups a batch's responses that way once; every
//! score sum on the batch (each of PPO's epochs) then reads the index instead of regrouping.

use std::sync::Mutex;

use rayon::prelude::*;

use super::batch::softmax_rows;
use super::{BatchWork, Mlp, BATCH_ROWS};
use crate::sampling::Samples;
use crate::vector_math::widest;
use crate::walk::NO_TOKEN;

/// Coefficients of the score terms of many responses at one position:
/// `coef(t, responses, log π_θ(y_{n,t} | …) of each, out)` writes c_{n,t} of each into `out`.
pub type BatchCoefficient<'c> = dyn Fn(usize, &[u32], &[f64], &mut [f64]) + Sync + 'c;

/// A batch's responses grouped by network input, position by position.
pub struct ScoreIndex {
    count: usize,
    positions: Vec<PositionIndex>,
}

/// The responses with a token at one position.
struct PositionIndex {
    /// Token units (`Mlp::token_units`) of each distinct input, rows in context order.
    units: Vec<u32>,
    rows: usize,
    /// (response, row, token) by chunk of BATCH_ROWS rows, responses in index order within a
    /// chunk; chunk k's are entries[chunk_starts[k]..chunk_starts[k + 1]]. The token is kept here
    /// so the coefficient loop does not walk the response-major token array with a stride.
    entries: Vec<(u32, u32, u32)>,
    chunk_starts: Vec<usize>,
}

impl Mlp {
    /// Groups a batch's responses by network input (positions in parallel).
    pub fn score_index(&self, samples: &Samples) -> ScoreIndex {
        // One position per job (its grouping work space is small), so the threads finish together.
        let positions = (0..samples.length).into_par_iter().with_max_len(1).map_init(Grouping::default, |g, t| g.position(self, samples, t)).collect();
        ScoreIndex { count: samples.count, positions }
    }

    /// Per-position score sums over sampled responses, T × P:
    /// Ĝ_t = (1/N) Σ_n c_{n,t}·∇log π_θ(y_{n,t} | y_{n,<t}), with c_{n,t} = coef(n, t, log π_θ(y_{n,t} | …))
    /// (the coefficient may use the current log-probability, as PPO's ratio does).
    pub fn score_blocks(&self, params: &[f64], samples: &Samples, coef: &(dyn Fn(usize, usize, f64) -> f64 + Sync)) -> Vec<f64> {
        let coefficients = |t: usize, responses: &[u32], current: &[f64], out: &mut [f64]| {
            out.iter_mut().zip(responses).zip(current).for_each(|((c, &n), &lp)| *c = coef(n as usize, t, lp));
        };
        self.indexed_score_blocks(params, &self.score_index(samples), &coefficients)
    }

    /// `score_blocks` on a batch grouped by `score_index`, with the coefficients of many responses
    /// at a position at once: `coef(t, responses, current log-probabilities, out)`.
    ///
    /// Each row's output signal is Σ_n c_n·(e_{y_n} − π) over the responses that share it. Rows, in
    /// context order, go through one batched forward and one backward per chunk of BATCH_ROWS; no
    /// per-sample gradient is formed. The coefficients of a chunk's responses are taken in index
    /// order. Positions run in parallel, one per job, the jobs reusing a few work spaces.
    pub fn indexed_score_blocks(&self, params: &[f64], index: &ScoreIndex, coef: &BatchCoefficient) -> Vec<f64> {
        let mut blocks = vec![0.0; index.positions.len() * self.num_params];
        self.indexed_score_blocks_into(params, index, coef, &mut blocks);
        blocks
    }

    /// `indexed_score_blocks` into `blocks` (T × P, overwritten), so that PPO's epochs reuse one
    /// buffer rather than fault in a fresh one each.
    pub fn indexed_score_blocks_into(&self, params: &[f64], index: &ScoreIndex, coef: &BatchCoefficient, blocks: &mut [f64]) {
        let p = self.num_params;
        assert_eq!(blocks.len(), index.positions.len() * p, "T × P blocks");
        // One position per job, so no thread waits at the end for another's run of positions; the
        // work spaces (0.7 MB each, zeroed when made) are taken from a pool and put back, so there
        // are about as many as threads.
        let pool = Mutex::new(Vec::new());
        let take = || pool.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| ScoreWork::new(self));
        blocks.par_chunks_mut(p).zip(index.positions.par_iter()).enumerate().with_max_len(1).for_each(|(t, (block, position))| {
            let mut w = take();
            block.fill(0.0);
            self.score_position(params, t, position, coef, &mut w, block, index.count);
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(w);
        });
    }

    /// One position's block of `indexed_score_blocks`; its loops compiled for the widest vectors
    /// the processor has.
    #[allow(clippy::too_many_arguments)]
    fn score_position(&self, params: &[f64], t: usize, position: &PositionIndex, coef: &BatchCoefficient, w: &mut ScoreWork, block: &mut [f64], count: usize) {
        let mlp = self;
        widest!((mlp: &Mlp, params: &[f64], t: usize, position: &PositionIndex, coef: &BatchCoefficient, w: &mut ScoreWork, block: &mut [f64], count: usize) => mlp.score_position_body(params, t, position, coef, w, block, count))
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn score_position_body(&self, params: &[f64], t: usize, position: &PositionIndex, coef: &BatchCoefficient, w: &mut ScoreWork, block: &mut [f64], count: usize) {
        let (v, width) = (self.config.vocab, self.config.order);
        for chunk in 0..position.chunk_starts.len() - 1 {
            let first_row = chunk * BATCH_ROWS;
            let rows = position.rows.min(first_row + BATCH_ROWS) - first_row;
            let units = &position.units[first_row * width..(first_row + rows) * width];
            self.forward_units(params, t + 1, units, &mut w.batch);
            // π of each row into δ's place, and its log-normaliser: log π_y = logit_y − norm.
            softmax_rows(&w.batch.logits[..rows * v], &mut w.delta[..rows * v], &mut w.norm[..rows]);
            // Σ_n c_n·(e_{y_n} − π) per row: the coefficients' total times −π, plus each c_n at y_n
            // (at_tokens and totals are zero between chunks: the loop that reads them clears them).
            let entries = &position.entries[position.chunk_starts[chunk]..position.chunk_starts[chunk + 1]];
            w.responses.clear();
            w.responses.extend(entries.iter().map(|&(n, _, _)| n));
            w.current.clear();
            w.current.extend(entries.iter().map(|&(_, row, y)| {
                let r = row as usize - first_row;
                w.batch.logits[r * v + y as usize] - w.norm[r]
            }));
            w.coefficients.resize(entries.len(), 0.0);
            coef(t, &w.responses, &w.current, &mut w.coefficients);
            for (&(_, row, y), &c) in entries.iter().zip(&w.coefficients) {
                let (r, y) = (row as usize - first_row, y as usize);
                w.at_tokens[r * v + y] += c;
                w.totals[r] += c;
            }
            for r in 0..rows {
                let total = std::mem::take(&mut w.totals[r]);
                w.delta[r * v..(r + 1) * v].iter_mut().zip(&mut w.at_tokens[r * v..(r + 1) * v]).for_each(|(x, c)| *x = std::mem::take(c) - total * *x);
            }
            self.backward_units(params, t + 1, units, &mut w.batch, &w.delta[..rows * v], block);
        }
        block.iter_mut().for_each(|g| *g /= count as f64);
    }
}

/// A job's work space for `indexed_score_blocks`, reused from one position to the next.
struct ScoreWork {
    batch: BatchWork,
    /// Per chunk row: output signal δ (V), coefficient sums per token (V) and their total (both
    /// zero outside a chunk's use), and the log-normaliser of π.
    delta: Vec<f64>,
    at_tokens: Vec<f64>,
    totals: Vec<f64>,
    norm: Vec<f64>,
    /// Per chunk entry: the response, its current log-probability and its coefficient.
    responses: Vec<u32>,
    current: Vec<f64>,
    coefficients: Vec<f64>,
}

impl ScoreWork {
    fn new(mlp: &Mlp) -> ScoreWork {
        let v = mlp.config.vocab;
        ScoreWork {
            batch: mlp.batch_work(BATCH_ROWS),
            delta: vec![0.0; BATCH_ROWS * v],
            at_tokens: vec![0.0; BATCH_ROWS * v],
            totals: vec![0.0; BATCH_ROWS],
            norm: vec![0.0; BATCH_ROWS],
            responses: Vec::new(),
            current: Vec::new(),
            coefficients: Vec::new(),
        }
    }
}

/// A thread's work space for `score_index`, reused from one position to the next.
#[derive(Default)]
struct Grouping {
    /// (context, response) of every response with a token at the position; sorted by context.
    entries: Vec<(usize, usize)>,
    /// Work space: the counting sort's output, then the (response, row) pairs in index order.
    sorted: Vec<(usize, usize)>,
    /// Row of each response (usize::MAX for those without a token at the position).
    row_of: Vec<usize>,
    /// Counting-sort offsets, one per context + 1.
    starts: Vec<usize>,
    /// The distinct contexts in order: row r of the position is contexts[r].
    contexts: Vec<usize>,
}

impl Grouping {
    /// The responses with a token at position t (0-based): the distinct contexts (rows) in context
    /// order, and each response's row, bucketed by chunk of rows in index order.
    fn position(&mut self, mlp: &Mlp, samples: &Samples, t: usize) -> PositionIndex {
        let t_max = samples.length;
        self.entries.clear();
        self.entries.extend((0..samples.count).filter(|&n| samples.tokens[n * t_max + t] != NO_TOKEN).map(|n| (mlp.context_of(&samples.tokens[n * t_max..n * t_max + t]), n)));
        sort_by_context(&mut self.entries, &mut self.sorted, &mut self.starts, mlp.num_contexts());
        // Row of each response, then the (response, row) pairs in index order, bucketed by chunk.
        self.contexts.clear();
        self.row_of.clear();
        self.row_of.resize(samples.count, usize::MAX);
        for &(context, n) in &self.entries {
            if self.contexts.last() != Some(&context) {
                self.contexts.push(context);
            }
            self.row_of[n] = self.contexts.len() - 1;
        }
        self.sorted.clear();
        self.sorted.extend(self.row_of.iter().enumerate().filter(|&(_, &row)| row != usize::MAX).map(|(n, &row)| (n, row)));
        let chunks = self.contexts.len().div_ceil(BATCH_ROWS);
        let mut chunk_starts = vec![0; chunks + 1];
        for &(_, row) in &self.sorted {
            chunk_starts[row / BATCH_ROWS + 1] += 1;
        }
        for k in 0..chunks {
            chunk_starts[k + 1] += chunk_starts[k];
        }
        let mut entries = vec![(0, 0, 0); self.sorted.len()];
        let mut next = chunk_starts[..chunks].to_vec();
        for &(n, row) in &self.sorted {
            let k = row / BATCH_ROWS;
            entries[next[k]] = (n as u32, row as u32, samples.tokens[n * t_max + t]);
            next[k] += 1;
        }
        let mut units = Vec::new();
        mlp.token_units(&self.contexts, &mut units);
        PositionIndex { units, rows: self.contexts.len(), entries, chunk_starts }
    }
}

/// Sorts (context, response) pairs, each response once: by a counting sort over the contexts when
/// there are few of them (it keeps response order within a context, the order a comparison sort of
/// the pairs gives), else by a comparison sort. `sorted` and `starts` are work space.
fn sort_by_context(entries: &mut Vec<(usize, usize)>, sorted: &mut Vec<(usize, usize)>, starts: &mut Vec<usize>, contexts: usize) {
    if contexts > 4 * entries.len().max(1024) {
        entries.sort_unstable();
        return;
    }
    starts.clear();
    starts.resize(contexts + 1, 0);
    for &(context, _) in entries.iter() {
        starts[context + 1] += 1;
    }
    for c in 0..contexts {
        starts[c + 1] += starts[c];
    }
    sorted.clear();
    sorted.resize(entries.len(), (0, 0));
    for &entry in entries.iter() {
        sorted[starts[entry.0]] = entry;
        starts[entry.0] += 1;
    }
    std::mem::swap(entries, sorted);
}

#[cfg(test)]
mod tests {
    /// The counting sort gives the comparison sort's order, with few contexts and with many.
    #[test]
    fn sorting_by_context_equals_sorting_the_pairs() {
        for contexts in [7, 1 << 20] {
            let mut entries: Vec<(usize, usize)> = (0..500).map(|n| ((n * 7919 + 13) % contexts.min(97) * (contexts / 97).max(1), n)).collect();
            let mut expected = entries.clone();
            expected.sort_unstable();
            super::sort_by_context(&mut entries, &mut vec![], &mut vec![], contexts);
            assert_eq!(entries, expected);
        }
    }
}
