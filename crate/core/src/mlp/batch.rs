//! The mlp on a batch of inputs at once: hidden and output layers as matrix products (crate::gemm),
//! the one-hot first layer as a gather of weight rows, and the backward pass as the transposed
//! products. Row order fixes every summation order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::Mlp;
use crate::gemm::{gemm, Mat};
use crate::sampling::Samples;
use crate::walk::NO_TOKEN;

/// Rows one batched pass handles at a time: large enough for the GEMM kernels to run near their
/// peak, small enough for the activations to stay in cache.
pub const BATCH_ROWS: usize = 512;

/// Activations of a batch (row r = input r), kept by `forward_batch` for `backward_batch`.
pub struct BatchWork {
    rows: usize,
    /// Pre-activations and activations of each hidden layer, rows × width.
    pre: Vec<Vec<f64>>,
    act: Vec<Vec<f64>>,
    /// rows × V.
    pub logits: Vec<f64>,
    /// Backward signals, rows × (widest layer).
    signal: Vec<f64>,
    back: Vec<f64>,
}

impl Mlp {
    /// Work space for batches of up to `rows` inputs.
    pub fn batch_work(&self, rows: usize) -> BatchWork {
        let widest = self.config.hidden.iter().copied().chain([self.config.vocab]).max().unwrap_or(0);
        BatchWork {
            rows,
            pre: self.config.hidden.iter().map(|&h| vec![0.0; rows * h]).collect(),
            act: self.config.hidden.iter().map(|&h| vec![0.0; rows * h]).collect(),
            logits: vec![0.0; rows * self.config.vocab],
            signal: vec![0.0; rows * widest],
            back: vec![0.0; rows * widest],
        }
    }

    /// Logits of inputs (position t ∈ 1..T, context), B × V into `work.logits`.
    pub fn forward_batch(&self, params: &[f64], inputs: &[(usize, usize)], work: &mut BatchWork) {
        let b = inputs.len();
        assert!(b <= work.rows, "batch of {b} rows in work space for {}", work.rows);
        let hidden = self.config.hidden.len();
        for (l, layer) in self.layers.iter().enumerate() {
            let bias = &params[layer.bias..layer.bias + layer.outputs];
            let (done, rest) = work.act.split_at_mut(l.min(hidden));
            let out: &mut [f64] = if l < hidden { &mut work.pre[l][..b * layer.outputs] } else { &mut work.logits[..b * layer.outputs] };
            if l == 0 {
                // One-hot inputs: the product is a sum of `order + 1` weight rows per input, added
                // to the bias in input order.
                let weight_row = |i: usize| &params[layer.weights + i * layer.outputs..][..layer.outputs];
                for (row, &(t, context)) in out.chunks_exact_mut(layer.outputs).zip(inputs) {
                    let (active, count) = self.active_inputs(t, context);
                    row.iter_mut().zip(bias).zip(weight_row(active[0])).for_each(|((y, &b), &w)| *y = b + w);
                    for &i in &active[1..count] {
                        super::axpy(1.0, weight_row(i), row);
                    }
                }
            } else {
                // The product, then the bias added row by row (a vectorised add rather than a copy of
                // the bias into every row before the product).
                let input = Mat::new(&done[l - 1][..b * layer.inputs], b, layer.inputs);
                gemm(1.0, input, Mat::new(&params[layer.weights..layer.bias], layer.inputs, layer.outputs), 0.0, out);
                for row in out.chunks_exact_mut(layer.outputs) {
                    row.iter_mut().zip(bias).for_each(|(y, &b)| *y += b);
                }
            }
            if l < hidden {
                let (pre, act) = (&work.pre[l][..b * layer.outputs], &mut rest[0][..b * layer.outputs]);
                match self.config.activation {
                    super::Activation::Tanh => crate::vector_math::tanh_into(pre, act),
                    activation => act.iter_mut().zip(pre).for_each(|(y, &x)| *y = activation.apply(x)),
                }
            }
        }
    }

    /// After `forward_batch` on the same inputs: adds Σ_r Σ_a δ_{r,a}·∂logit_{r,a}/∂θ to `grad`
    /// (δ is B × V).
    pub fn backward_batch(&self, params: &[f64], inputs: &[(usize, usize)], work: &mut BatchWork, delta: &[f64], grad: &mut [f64]) {
        let b = inputs.len();
        let hidden = self.config.hidden.len();
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            // The output layer's signal is δ; a hidden layer's was left in work.signal below.
            let signal = if l == hidden { &delta[..b * layer.outputs] } else { &work.signal[..b * layer.outputs] };
            // Bias: column sums of the signal, in row order.
            for row in signal.chunks_exact(layer.outputs) {
                super::axpy(1.0, row, &mut grad[layer.bias..layer.bias + layer.outputs]);
            }
            if l == 0 {
                for (row, &(t, context)) in signal.chunks_exact(layer.outputs).zip(inputs) {
                    let (active, count) = self.active_inputs(t, context);
                    for &i in &active[..count] {
                        super::axpy(1.0, row, &mut grad[layer.weights + i * layer.outputs..][..layer.outputs]);
                    }
                }
                continue;
            }
            let input = Mat::new(&work.act[l - 1][..b * layer.inputs], b, layer.inputs);
            let signal_mat = Mat::new(signal, b, layer.outputs);
            // ∂W (inputs × outputs) += inputᵀ·signal; signal below = signal·Wᵀ ⊙ f'(pre).
            gemm(1.0, input.t(), signal_mat, 1.0, &mut grad[layer.weights..layer.bias]);
            let weights = Mat::new(&params[layer.weights..layer.bias], layer.inputs, layer.outputs);
            gemm(1.0, signal_mat, weights.t(), 0.0, &mut work.back[..b * layer.inputs]);
            let (pre, act) = (&work.pre[l - 1][..b * layer.inputs], &work.act[l - 1][..b * layer.inputs]);
            let (signal, back) = (&mut work.signal[..b * layer.inputs], &work.back[..b * layer.inputs]);
            // One loop per activation (not a match per entry), so each vectorises.
            match self.config.activation {
                super::Activation::Tanh => signal.iter_mut().zip(back).zip(act).for_each(|((s, &d), &y)| *s = d * (1.0 - y * y)),
                super::Activation::Relu => signal.iter_mut().zip(back).zip(pre).for_each(|((s, &d), &x)| *s = if x > 0.0 { d } else { 0.0 }),
            }
        }
        debug_assert!(hidden == self.layers.len() - 1);
    }

    /// Probability rows of every (position, context), T × (V+1)^order × V, by batched forward passes
    /// (positions in parallel; each thread reuses one work space).
    pub fn probability_table(&self, params: &[f64]) -> Vec<f64> {
        let (c, v) = (self.num_contexts(), self.config.vocab);
        let mut table = vec![0.0; self.config.length * c * v];
        table.par_chunks_mut(c * v).enumerate().for_each_init(
            || (self.batch_work(BATCH_ROWS), Vec::with_capacity(BATCH_ROWS), vec![0.0; BATCH_ROWS]),
            |(work, inputs, norm), (t0, layer)| {
                for (first, rows) in layer.chunks_mut(BATCH_ROWS * v).enumerate() {
                    inputs.clear();
                    inputs.extend((0..rows.len() / v).map(|i| (t0 + 1, first * BATCH_ROWS + i)));
                    self.forward_batch(params, inputs, work);
                    softmax_rows(&work.logits[..rows.len()], rows, &mut norm[..inputs.len()]);
                }
            },
        );
        table
    }

    /// Per-position score sums over sampled responses, T × P:
    /// Ĝ_t = (1/N) Σ_n c_{n,t}·∇log π_θ(y_{n,t} | y_{n,<t}), with c_{n,t} = coef(n, t, log π_θ(y_{n,t} | …))
    /// (the coefficient may use the current log-probability, as PPO's ratio does).
    ///
    /// The network reads only (t, context), so responses with the same context at t share one row:
    /// its output signal is Σ_n c_n·(e_{y_n} − π) over them. Rows, in context order, go through one
    /// batched forward and one backward per chunk of BATCH_ROWS; no per-sample gradient is formed.
    /// The coefficients of a chunk's responses are taken in index order (the response-major arrays
    /// they read are then walked with a fixed stride). Positions run in parallel, each thread
    /// reusing one work space.
    pub fn score_blocks(&self, params: &[f64], samples: &Samples, coef: &(dyn Fn(usize, usize, f64) -> f64 + Sync)) -> Vec<f64> {
        let (count, t_max, v, p) = (samples.count, samples.length, self.config.vocab, self.num_params);
        let mut blocks = vec![0.0; t_max * p];
        blocks.par_chunks_mut(p).enumerate().for_each_init(
            || ScoreWork::new(self),
            |w, (t, block)| {
                w.group(self, samples, t);
                for chunk in 0..w.chunk_starts.len() - 1 {
                    let first_row = chunk * BATCH_ROWS;
                    let rows = w.contexts.len().min(first_row + BATCH_ROWS) - first_row;
                    w.inputs.clear();
                    w.inputs.extend(w.contexts[first_row..first_row + rows].iter().map(|&context| (t + 1, context)));
                    self.forward_batch(params, &w.inputs, &mut w.batch);
                    // π of each row into δ's place, and its log-normaliser: log π_y = logit_y − norm.
                    softmax_rows(&w.batch.logits[..rows * v], &mut w.delta[..rows * v], &mut w.norm[..rows]);
                    // Σ_n c_n·(e_{y_n} − π) per row: the coefficients' total times −π, plus each c_n at y_n.
                    w.at_tokens[..rows * v].fill(0.0);
                    w.totals[..rows].fill(0.0);
                    for &(n, row, y) in &w.by_chunk[w.chunk_starts[chunk]..w.chunk_starts[chunk + 1]] {
                        let (n, r, y) = (n as usize, row as usize - first_row, y as usize);
                        let c = coef(n, t, w.batch.logits[r * v + y] - w.norm[r]);
                        w.at_tokens[r * v + y] += c;
                        w.totals[r] += c;
                    }
                    for r in 0..rows {
                        let total = w.totals[r];
                        w.delta[r * v..(r + 1) * v].iter_mut().zip(&w.at_tokens[r * v..(r + 1) * v]).for_each(|(x, &c)| *x = c - total * *x);
                    }
                    self.backward_batch(params, &w.inputs, &mut w.batch, &w.delta[..rows * v], block);
                }
                block.iter_mut().for_each(|g| *g /= count as f64);
            },
        );
        blocks
    }
}

/// Row-wise softmax of `logits` (rows × V) into `pi`, with each row's log-normaliser
/// norm = max + ln Σ_a e^{logit_a − max} (so log π_a = logit_a − norm). Max and sum run on four
/// lanes and π multiplies by the sum's reciprocal, so the whole loop vectorises; compiled for AVX2
/// when the processor has it (as crate::vector_math's slice kernels are).
fn softmax_rows(logits: &[f64], pi: &mut [f64], norm: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide(logits: &[f64], pi: &mut [f64], norm: &mut [f64]) {
            softmax_rows_body(logits, pi, norm)
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features `wide` is compiled for were just detected.
            return unsafe { wide(logits, pi, norm) };
        }
    }
    softmax_rows_body(logits, pi, norm)
}

#[inline(always)]
fn softmax_rows_body(logits: &[f64], pi: &mut [f64], norm: &mut [f64]) {
    if norm.is_empty() {
        return;
    }
    let v = logits.len() / norm.len();
    for ((x, p), norm) in logits.chunks_exact(v).zip(pi.chunks_exact_mut(v)).zip(norm.iter_mut()) {
        let max = lanes_fold(x, f64::NEG_INFINITY, f64::max);
        p.iter_mut().zip(x).for_each(|(p, &x)| *p = crate::vector_math::exp_nonpositive(x - max));
        let sum = lanes_fold(p, 0.0, |a, b| a + b);
        let inverse = 1.0 / sum;
        p.iter_mut().for_each(|p| *p *= inverse);
        *norm = max + sum.ln();
    }
}

/// A fold over four interleaved lanes combined as (0 ⊕ 1) ⊕ (2 ⊕ 3), then the tail in order: a
/// fixed order that the compiler keeps in SIMD registers.
#[inline(always)]
fn lanes_fold(x: &[f64], init: f64, f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [init; 4];
    let chunks = x.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            acc[k] = f(acc[k], c[k]);
        }
    }
    tail.iter().fold(f(f(acc[0], acc[1]), f(acc[2], acc[3])), |a, &b| f(a, b))
}

/// A thread's work space for `score_blocks`, reused from one position to the next.
struct ScoreWork {
    batch: BatchWork,
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
    /// (response, row, token) by chunk of BATCH_ROWS rows, responses in index order within a
    /// chunk; chunk k's are by_chunk[chunk_starts[k]..chunk_starts[k + 1]]. The token is kept here
    /// so the coefficient loop does not walk the response-major token array with a stride.
    by_chunk: Vec<(u32, u32, u32)>,
    chunk_starts: Vec<usize>,
    inputs: Vec<(usize, usize)>,
    /// Per chunk row: output signal δ (V), coefficient sums per token (V), their total, and the
    /// log-normaliser of π.
    delta: Vec<f64>,
    at_tokens: Vec<f64>,
    totals: Vec<f64>,
    norm: Vec<f64>,
}

impl ScoreWork {
    fn new(mlp: &Mlp) -> ScoreWork {
        let v = mlp.config.vocab;
        ScoreWork {
            batch: mlp.batch_work(BATCH_ROWS),
            entries: Vec::new(),
            sorted: Vec::new(),
            row_of: Vec::new(),
            starts: Vec::new(),
            contexts: Vec::new(),
            by_chunk: Vec::new(),
            chunk_starts: Vec::new(),
            inputs: Vec::with_capacity(BATCH_ROWS),
            delta: vec![0.0; BATCH_ROWS * v],
            at_tokens: vec![0.0; BATCH_ROWS * v],
            totals: vec![0.0; BATCH_ROWS],
            norm: vec![0.0; BATCH_ROWS],
        }
    }

    /// The responses with a token at position t (0-based): the distinct contexts (rows) in context
    /// order, and each response's row, bucketed by chunk of rows in index order.
    fn group(&mut self, mlp: &Mlp, samples: &Samples, t: usize) {
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
        self.chunk_starts.clear();
        self.chunk_starts.resize(chunks + 1, 0);
        for &(_, row) in &self.sorted {
            self.chunk_starts[row / BATCH_ROWS + 1] += 1;
        }
        for k in 0..chunks {
            self.chunk_starts[k + 1] += self.chunk_starts[k];
        }
        self.by_chunk.clear();
        self.by_chunk.resize(self.sorted.len(), (0, 0, 0));
        let mut next = self.chunk_starts[..chunks].to_vec();
        for &(n, row) in &self.sorted {
            let k = row / BATCH_ROWS;
            self.by_chunk[next[k]] = (n as u32, row as u32, samples.tokens[n * t_max + t]);
            next[k] += 1;
        }
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
