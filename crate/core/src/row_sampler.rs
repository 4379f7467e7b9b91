//! The sampler of policies that keep their rows per (position, exact state) (policy.rs's RowCache):
//! bit for bit the tokens of sampling.rs's `sample`, laid out by response (the samples a caller
//! gets back) or by position (what the per-position estimates read, by_position.rs).
//!
//! All walks of a chunk advance one position at a time, so the position's S × V rows stay in cache,
//! and each token is a binary search in its row's running sums (no sum, scan or log per token). The
//! draws are keyed by (response, position), so this order gives the same tokens as any other.

use rayon::prelude::*;

use crate::cancel::{self, Cancel};
use crate::fused::{prefetch, prefetch_for_write, prefetch_l2};
use crate::model::Model;
use crate::policy::RowCache;
use crate::rng::{draw_from_cdfs, token_uniform};
use crate::sample_into::SamplesMut;
use crate::sampling::{SampleRequest, Samples};
use crate::walk::NO_TOKEN;

/// Fewest responses per chunk. A chunk's walks share each position's rows while they sit in cache,
/// so chunks are as large as the thread count allows (one per thread): the draws are keyed by
/// (response, position) and nothing is summed across responses, so the split changes no result.
const MIN_RESPONSES_PER_CHUNK: usize = 1024;

/// Walks whose tokens are drawn at once (their binary searches interleaved).
const LANES: usize = 8;

/// Responses sampled with an exact model, by position: entry t·N + n is response n at position t.
pub struct ByPosition {
    pub count: usize,
    pub length: usize,
    /// The token at position t + 1, T × N (NO_TOKEN after the response ended).
    pub tokens: Vec<u32>,
    /// The exact state after t tokens, (T+1) × N (the sink state after the end).
    pub states: Vec<u32>,
    pub harm: Vec<f64>,
    /// Number of tokens emitted.
    pub emitted: Vec<u32>,
}

impl ByPosition {
    /// The N tokens drawn at position t + 1 (t < T).
    pub fn tokens_at(&self, t: usize) -> &[u32] {
        &self.tokens[t * self.count..(t + 1) * self.count]
    }
    /// The N states after t tokens (t ≤ T).
    pub fn states_at(&self, t: usize) -> &[u32] {
        &self.states[t * self.count..(t + 1) * self.count]
    }
}

/// `sampling::sample` for a policy with precomputed rows (T ≥ 1; the request checked).
pub fn sample_rows(model: &Model, rows: &RowCache, request: &SampleRequest) -> Samples {
    let (n, t_max) = (request.count, model.length());
    let mut tokens = vec![0u32; n * t_max];
    let mut log_probs = vec![0.0; n * t_max];
    let mut states = vec![0u32; n * (t_max + 1)];
    let mut harm = vec![0.0; n];
    let mut emitted = vec![0u32; n];
    let out = SamplesMut { tokens: &mut tokens, log_probs: &mut log_probs, harm: &mut harm, emitted: &mut emitted, states: Some(&mut states) };
    sample_rows_into(model, rows, request, out);
    Samples { count: n, first_index: request.first_index, length: t_max, tokens, log_probs, harm, emitted, states: Some(states) }
}

/// `sample_rows` into caller-owned outputs, every entry written (T ≥ 1; the request and the
/// outputs' shapes checked, states included).
pub fn sample_rows_into(model: &Model, rows: &RowCache, request: &SampleRequest, out: SamplesMut) {
    let (n, t_max) = (request.count, model.length());
    let stride = t_max + 1;
    let states = out.states.expect("the row sampler writes the states");
    let size = chunk_size(n);
    let flag = cancel::current();
    let outputs = out.tokens.par_chunks_mut(size * t_max).zip(out.log_probs.par_chunks_mut(size * t_max)).zip(states.par_chunks_mut(size * stride));
    let ends = out.harm.par_chunks_mut(size).zip(out.emitted.par_chunks_mut(size));
    outputs.zip(ends).enumerate().for_each(|(chunk, (((tokens, log_probs), states), (harm, emitted)))| {
        let mut out = ByResponse::new(tokens, log_probs, states, harm.len(), &rows.log_probs, model.vocab());
        walk_chunk(model, rows, request, chunk * size, flag.as_ref(), harm, emitted, &mut out);
    });
}

/// The same responses as `sample_rows`, by position, without log-probabilities (T ≥ 1; the
/// request checked).
pub fn sample_rows_by_position(model: &Model, rows: &RowCache, request: &SampleRequest) -> ByPosition {
    let (n, t_max) = (request.count, model.length());
    let mut tokens = vec![0u32; n * t_max];
    let mut states = vec![0u32; n * (t_max + 1)];
    let mut harm = vec![0.0; n];
    let mut emitted = vec![0u32; n];
    let size = chunk_size(n);
    let flag = cancel::current();
    let pieces = column_pieces(&mut tokens, n, size).into_par_iter().zip(column_pieces(&mut states, n, size));
    let ends = harm.par_chunks_mut(size).zip(emitted.par_chunks_mut(size));
    pieces.zip(ends).enumerate().for_each(|(chunk, ((tokens, states), (harm, emitted)))| {
        walk_chunk(model, rows, request, chunk * size, flag.as_ref(), harm, emitted, &mut ByColumn { tokens, states });
    });
    ByPosition { count: n, length: t_max, tokens, states, harm, emitted }
}

fn chunk_size(count: usize) -> usize {
    count.div_ceil(rayon::current_num_threads()).max(MIN_RESPONSES_PER_CHUNK)
}

/// Each chunk's pieces of the columns of a position-major table (columns of `count` entries, cut
/// into chunks of `size`): entry c holds chunk c's piece of every column, in column order.
fn column_pieces<T>(table: &mut [T], count: usize, size: usize) -> Vec<Vec<&mut [T]>> {
    let mut pieces: Vec<Vec<&mut [T]>> = (0..count.div_ceil(size)).map(|_| Vec::new()).collect();
    for column in table.chunks_mut(count) {
        for (chunk, piece) in column.chunks_mut(size).enumerate() {
            pieces[chunk].push(piece);
        }
    }
    pieces
}

/// Where `walk_chunk` writes what the walks of its chunk draw (walk i of the chunk).
trait Emit {
    /// Whether the draws' log-probabilities are read (after each position).
    const LOG_PROBS: bool;
    /// Walk i, in `state`, drew `token` at position t + 1.
    fn draw(&mut self, t: usize, i: usize, state: u32, token: u32);
    /// Walk i ended with that token, in the sink state `next`.
    fn ended(&mut self, t: usize, i: usize, next: u32);
    /// Every walk still going has drawn position t + 1 (`emitted` is set for those that ended).
    fn drawn(&mut self, t: usize, emitted: &[u32]);
    /// Walk i is in `state` after T tokens.
    fn last(&mut self, i: usize, state: u32);
}

/// Samples the chunk of walks that starts at response `first`, position by position.
#[allow(clippy::too_many_arguments)]
fn walk_chunk<E: Emit>(model: &Model, rows: &RowCache, request: &SampleRequest, first: usize, flag: Option<&Cancel>, harm: &mut [f64], emitted: &mut [u32], out: &mut E) {
    let (t_max, v, states_count) = (model.length(), model.vocab(), model.num_states());
    let count = harm.len();
    // `emitted` stays 0 until a walk ends (the outputs read it so); it may hold an earlier batch.
    emitted.fill(0);
    let mut at = vec![0u32; count];
    // Walks still emitting, in response order.
    let mut active: Vec<u32> = (0..count as u32).collect();
    let position = states_count * v;
    for t in 0..t_max {
        cancel::stop_if_cancelled(flag);
        let cdf = &rows.cdf[t * position..(t + 1) * position];
        // The next position's sums and this position's logs, brought into L2 a few lines per group
        // while this position is drawn: the next searches start on warm rows, and this
        // position's logs, gathered after its draws, were not evicted since.
        let mut ahead = WarmTables::new(rows, t, position, active.len().div_ceil(LANES), E::LOG_PROBS);
        let mut kept = 0;
        for group in (0..active.len()).step_by(LANES) {
            ahead.step();
            // The group's walks (the last group padded with its first walk, whose draw is then made
            // twice and used once).
            let walks: [usize; LANES] = std::array::from_fn(|k| active.get(group + k).copied().unwrap_or(active[group]) as usize);
            let lanes = (active.len() - group).min(LANES);
            for &ahead in active.iter().skip(group + LANES).take(LANES) {
                // The rows the next group will search (their totals, the last entries, and
                // middles), and the transitions it will follow (the row's ends).
                let row = at[ahead as usize] as usize * v;
                prefetch(&cdf[row + v - 1]);
                prefetch(&cdf[row + (v / 2).saturating_sub(1)]);
                prefetch(&model.next[row]);
                prefetch(&model.next[row + v - 1]);
            }
            let forced: [Option<u32>; LANES] = std::array::from_fn(|k| request.prefix.and_then(|p| p.token(first + walks[k], t)));
            let u: [f64; LANES] = std::array::from_fn(|k| match forced[k] {
                Some(_) => 0.0,
                None => token_uniform(request.seed, request.first_index + (first + walks[k]) as u32, t as u32 + 1),
            });
            let searched = std::array::from_fn(|k| {
                let s = at[walks[k]] as usize;
                &cdf[s * v..(s + 1) * v]
            });
            let drawn = draw_from_cdfs(&searched, |&c| c, &u);
            for k in 0..lanes {
                let i = walks[k];
                let s = at[i] as usize;
                let a = forced[k].map_or(drawn[k], |a| a as usize);
                out.draw(t, i, s as u32, a as u32);
                let next = model.next[s * v + a];
                at[i] = next;
                if model.spec.end_token == Some(a) {
                    out.ended(t, i, next);
                    emitted[i] = t as u32 + 1;
                } else {
                    active[kept] = i as u32;
                    kept += 1;
                }
            }
        }
        active.truncate(kept);
        out.drawn(t, emitted);
    }
    for &i in &active {
        out.last(i as usize, at[i as usize]);
        emitted[i as usize] = t_max as u32;
    }
    for (h, &s) in harm.iter_mut().zip(&at) {
        *h = model.harm(s as usize);
    }
}

/// The sums of the position after the current one, and the logs of the current one when they are
/// read, prefetched into L2 at an even pace over the current position's groups. Only when they
/// fit in 2 MB (an L2 on current x86 holds 1–2 MB per core) and the walks are many enough to pace
/// them (with fewer, each row is read about once anyway).
struct WarmTables<'a> {
    tables: [&'a [f64]; 2],
    /// Lines of the first table.
    first_lines: usize,
    /// Lines to prefetch per group, and the next line.
    per_group: usize,
    line: usize,
}

/// Both next tables together at most this size.
const PREFETCHED_POSITION_BYTES: usize = 1 << 21;
/// At most this many lines prefetched per group of LANES walks.
const PREFETCHED_LINES_PER_GROUP: usize = 8;
const LINE_F64: usize = 8;

impl<'a> WarmTables<'a> {
    /// At position t (drawing token t + 1).
    fn new(rows: &'a RowCache, t: usize, position: usize, groups: usize, log_probs: bool) -> Self {
        let none = WarmTables { tables: [&[], &[]], first_lines: 0, per_group: 0, line: 0 };
        if groups == 0 {
            return none;
        }
        let next = rows.cdf.get((t + 1) * position..(t + 2) * position).unwrap_or(&[]);
        let tables = [next, if log_probs { &rows.log_probs[t * position..(t + 1) * position] } else { &[] }];
        let [first_lines, second_lines] = tables.map(|table| table.len().div_ceil(LINE_F64));
        let lines = first_lines + second_lines;
        let per_group = lines.div_ceil(groups);
        if lines * 64 > PREFETCHED_POSITION_BYTES || per_group > PREFETCHED_LINES_PER_GROUP {
            return none;
        }
        WarmTables { tables, first_lines, per_group, line: 0 }
    }

    fn step(&mut self) {
        let [first, second] = self.tables;
        for _ in 0..self.per_group {
            let (table, line) = if self.line < self.first_lines { (first, self.line) } else { (second, self.line - self.first_lines) };
            if let Some(x) = table.get(line * LINE_F64) {
                prefetch_l2(x);
            }
            self.line += 1;
        }
    }
}

/// Response-major outputs (a chunk's rows of `Samples`), written a block of positions at a time.
struct ByResponse<'a> {
    tokens: &'a mut [u32],
    log_probs: &'a mut [f64],
    states: &'a mut [u32],
    count: usize,
    t_max: usize,
    staged: Staged,
    /// Where the next draws go in the staged block: the position's offset, (t mod block)·count.
    offset: usize,
    /// The rows' log-probabilities, T × S × V.
    row_log_probs: &'a [f64],
    vocab: usize,
}

/// Positions whose outputs are kept position-major, then written out per response: written per
/// response at every position, the outputs of a chunk's walks (one cache line each per position,
/// 1 KB per walk) miss the cache on every token.
const POSITION_BLOCK: usize = 16;

impl<'a> ByResponse<'a> {
    fn new(tokens: &'a mut [u32], log_probs: &'a mut [f64], states: &'a mut [u32], count: usize, row_log_probs: &'a [f64], vocab: usize) -> Self {
        let t_max = tokens.len() / count;
        let block = POSITION_BLOCK.min(t_max);
        let staged = Staged::take(block, count);
        ByResponse { tokens, log_probs, states, count, t_max, staged, offset: 0, row_log_probs, vocab }
    }

    /// The log-probabilities of position t + 1's draws, gathered in one pass after them: read
    /// between the searches, each was a cache miss that held up the walk.
    fn gather_log_probs(&mut self, t: usize, emitted: &[u32]) {
        let position = self.row_log_probs.len() / self.t_max;
        let table = &self.row_log_probs[t * position..(t + 1) * position];
        let at = self.offset..self.offset + self.count;
        let (states, tokens) = (&self.staged.states[at.clone()], &self.staged.tokens[at.clone()]);
        for (i, (log_prob, (&s, &a))) in self.staged.log_probs[at].iter_mut().zip(states.iter().zip(tokens)).enumerate() {
            if emitted[i] == 0 || emitted[i] as usize > t {
                *log_prob = table[s as usize * self.vocab + a as usize];
            }
        }
    }
}

impl Emit for ByResponse<'_> {
    const LOG_PROBS: bool = true;
    fn draw(&mut self, _t: usize, i: usize, state: u32, token: u32) {
        self.staged.states[self.offset + i] = state;
        self.staged.tokens[self.offset + i] = token;
    }
    fn ended(&mut self, t: usize, i: usize, next: u32) {
        // No tokens (and log-probabilities 0) after, and the sink state for the remaining
        // positions: the outputs may hold an earlier batch.
        let (t_max, stride) = (self.t_max, self.t_max + 1);
        self.tokens[i * t_max + t + 1..(i + 1) * t_max].fill(NO_TOKEN);
        self.log_probs[i * t_max + t + 1..(i + 1) * t_max].fill(0.0);
        self.states[i * stride + t + 1..(i + 1) * stride].fill(next);
    }
    fn drawn(&mut self, t: usize, emitted: &[u32]) {
        self.gather_log_probs(t, emitted);
        let block = self.staged.block;
        if t + 1 == self.t_max || (t + 1).is_multiple_of(block) {
            self.staged.write_out(t - t % block..t + 1, emitted, self.tokens, self.log_probs, self.states);
        }
        self.offset = (t + 1) % block * self.count;
    }
    fn last(&mut self, i: usize, state: u32) {
        self.states[i * (self.t_max + 1) + self.t_max] = state;
    }
}

impl Drop for ByResponse<'_> {
    fn drop(&mut self) {
        std::mem::take(&mut self.staged).keep();
    }
}

/// Outputs of a block of positions, position-major: entry (t − t0)·count + i for walk i.
#[derive(Default)]
struct Staged {
    block: usize,
    tokens: Vec<u32>,
    log_probs: Vec<f64>,
    states: Vec<u32>,
}

thread_local! {
    /// The staging arrays of this thread's last chunk, for its next one: fresh ones cost their
    /// page faults and zeroing (16 MB per call of 65 536 walks) on every call.
    static SPARE: std::cell::RefCell<Staged> = std::cell::RefCell::new(Staged::default());
}

/// The most staging memory kept per thread between calls.
const SPARE_BYTES: usize = 32 << 20;

impl Staged {
    /// Arrays for `block` positions of `count` walks, this thread's spare ones when it has them.
    /// Their entries may hold an earlier chunk's: a walk's entries are written before they are read.
    fn take(block: usize, count: usize) -> Staged {
        let mut staged = SPARE.with_borrow_mut(std::mem::take);
        staged.block = block;
        staged.tokens.resize(block * count, 0);
        staged.log_probs.resize(block * count, 0.0);
        staged.states.resize(block * count, 0);
        staged
    }

    /// Keeps these arrays as this thread's spare ones, when they are not too large.
    fn keep(self) {
        // 16 bytes per entry: a token, a log-probability and a state.
        if self.tokens.capacity() * 16 <= SPARE_BYTES {
            SPARE.set(self);
        }
    }

    /// Copies positions `span` of every walk into the response-major outputs (of `count` walks),
    /// up to where a walk ended (emitted > 0 is set when it ends; the ended walk's outputs after
    /// that were filled when it ended).
    fn write_out(&self, span: std::ops::Range<usize>, emitted: &[u32], tokens: &mut [u32], log_probs: &mut [f64], states: &mut [u32]) {
        let t_max = tokens.len() / emitted.len();
        // One output at a time: each pass reads the block's rows of one output and writes one
        // stream, which the hardware prefetchers follow better than three at once.
        transpose_out(&self.tokens, &span, emitted, tokens, t_max);
        transpose_out(&self.log_probs, &span, emitted, log_probs, t_max);
        transpose_out(&self.states, &span, emitted, states, t_max + 1);
    }
}

/// Copies positions `span` of a staged output (position-major, a row of `emitted.len()` walks per
/// position) into its response-major rows (`stride` entries per walk), up to where each walk
/// ended.
fn transpose_out<T: Copy>(staged: &[T], span: &std::ops::Range<usize>, emitted: &[u32], out: &mut [T], stride: usize) {
    let count = emitted.len();
    // The block's positions, each a row of the walks' entries (i < count in each).
    let positions: Vec<&[T]> = staged.chunks_exact(count).take(span.len()).collect();
    let per_line = (64 / std::mem::size_of::<T>()).max(1);
    for i in 0..count {
        // The span of the walk WRITE_AHEAD further on, readied for writing: an entry per line
        // and the last, so every line it touches.
        if let Some(ahead) = out.get((i + WRITE_AHEAD) * stride + span.start..(i + WRITE_AHEAD) * stride + span.end) {
            ahead.iter().step_by(per_line).chain(ahead.last()).for_each(prefetch_for_write);
        }
        let (row, e) = (&mut out[i * stride..(i + 1) * stride], emitted[i]);
        let end = if e > 0 { span.end.min(e as usize) } else { span.end };
        for (entry, position) in row[span.start..end.max(span.start)].iter_mut().zip(&positions) {
            *entry = position[i];
        }
    }
}

/// Walks between the one whose rows are written and the one whose rows are readied for writing:
/// enough to overlap the reads the writes need, few enough that the lines stay in L1.
const WRITE_AHEAD: usize = 16;

/// A chunk's pieces of the position-major columns (`ByPosition`).
struct ByColumn<'a> {
    /// Position t's piece, t < T.
    tokens: Vec<&'a mut [u32]>,
    /// The piece of the states after t tokens, t ≤ T.
    states: Vec<&'a mut [u32]>,
}

impl Emit for ByColumn<'_> {
    const LOG_PROBS: bool = false;
    fn draw(&mut self, t: usize, i: usize, state: u32, token: u32) {
        self.tokens[t][i] = token;
        self.states[t][i] = state;
    }
    fn ended(&mut self, t: usize, i: usize, next: u32) {
        self.tokens[t + 1..].iter_mut().for_each(|column| column[i] = NO_TOKEN);
        self.states[t + 1..].iter_mut().for_each(|column| column[i] = next);
    }
    fn drawn(&mut self, _t: usize, _emitted: &[u32]) {}
    fn last(&mut self, i: usize, state: u32) {
        let t_max = self.tokens.len();
        self.states[t_max][i] = state;
    }
}
