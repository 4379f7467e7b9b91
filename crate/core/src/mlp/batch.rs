//! The mlp on a batch of inputs at once: hidden and output layers as matrix products (crate::gemm),
//! the one-hot first layer as a gather of weight rows, and the backward pass as the transposed
//! products. Row order fixes every summation order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::Mlp;
use crate::gemm::{gemm, Mat};
use crate::vector_math::softmax_in_place;
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
            for row in out.chunks_exact_mut(layer.outputs) {
                row.copy_from_slice(bias);
            }
            if l == 0 {
                // One-hot inputs: the product is a sum of `order + 1` weight rows per input.
                for (row, &(t, context)) in out.chunks_exact_mut(layer.outputs).zip(inputs) {
                    let (active, count) = self.active_inputs(t, context);
                    for &i in &active[..count] {
                        super::axpy(1.0, &params[layer.weights + i * layer.outputs..][..layer.outputs], row);
                    }
                }
            } else {
                let input = Mat::new(&done[l - 1][..b * layer.inputs], b, layer.inputs);
                gemm(1.0, input, Mat::new(&params[layer.weights..layer.bias], layer.inputs, layer.outputs), 1.0, out);
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
        let v = self.config.vocab;
        work.signal[..b * v].copy_from_slice(&delta[..b * v]);
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let signal = &work.signal[..b * layer.outputs];
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
            let activation = self.config.activation;
            let (pre, act) = (&work.pre[l - 1][..b * layer.inputs], &work.act[l - 1][..b * layer.inputs]);
            for (((s, &d), &x), &y) in work.signal[..b * layer.inputs].iter_mut().zip(&work.back[..b * layer.inputs]).zip(pre).zip(act) {
                *s = d * activation.derivative(x, y);
            }
        }
        debug_assert!(hidden == self.layers.len() - 1);
    }

    /// Probability rows of every (position, context), T × (V+1)^order × V, by batched forward passes
    /// (positions in parallel).
    pub fn probability_table(&self, params: &[f64]) -> Vec<f64> {
        let (c, v) = (self.num_contexts(), self.config.vocab);
        let mut table = vec![0.0; self.config.length * c * v];
        table.par_chunks_mut(c * v).enumerate().for_each(|(t0, layer)| {
            let mut work = self.batch_work(BATCH_ROWS);
            for (first, rows) in layer.chunks_mut(BATCH_ROWS * v).enumerate() {
                let inputs: Vec<(usize, usize)> = (0..rows.len() / v).map(|i| (t0 + 1, first * BATCH_ROWS + i)).collect();
                self.forward_batch(params, &inputs, &mut work);
                rows.copy_from_slice(&work.logits[..rows.len()]);
                rows.chunks_exact_mut(v).for_each(softmax_in_place);
            }
        });
        table
    }

    /// Per-position score sums over sampled responses, T × P:
    /// Ĝ_t = (1/N) Σ_n c_{n,t}·∇log π_θ(y_{n,t} | y_{n,<t}), with c_{n,t} = coef(n, t, log π_θ(y_{n,t} | …))
    /// (the coefficient may use the current log-probability, as PPO's ratio does).
    ///
    /// The network reads only (t, context), so responses with the same context at t share one row:
    /// its output signal is Σ_n c_n·(e_{y_n} − π) over them. Rows go through one batched forward and
    /// one backward per chunk of BATCH_ROWS; no per-sample gradient is formed. Positions run in
    /// parallel; within one, rows are in context order and responses in index order.
    pub fn score_blocks(&self, params: &[f64], samples: &Samples, coef: &(dyn Fn(usize, usize, f64) -> f64 + Sync)) -> Vec<f64> {
        let (count, t_max, v, p) = (samples.count, samples.length, self.config.vocab, self.num_params);
        let mut blocks = vec![0.0; t_max * p];
        blocks.par_chunks_mut(p).enumerate().for_each(|(t, block)| {
            // (context, response) of every response with a token at t, sorted: equal contexts adjacent.
            let mut entries: Vec<(usize, usize)> = (0..count)
                .filter(|&n| samples.tokens[n * t_max + t] != NO_TOKEN)
                .map(|n| (self.context_of(&samples.tokens[n * t_max..n * t_max + t]), n))
                .collect();
            sort_by_context(&mut entries, self.num_contexts());
            let mut groups: Vec<(usize, usize)> = Vec::new(); // (context, first entry)
            for (i, &(context, _)) in entries.iter().enumerate() {
                if groups.last().is_none_or(|g| g.0 != context) {
                    groups.push((context, i));
                }
            }
            let mut work = self.batch_work(BATCH_ROWS);
            let mut delta = vec![0.0; BATCH_ROWS * v];
            let mut at_tokens = vec![0.0; v];
            for (chunk_index, chunk) in groups.chunks(BATCH_ROWS).enumerate() {
                let inputs: Vec<(usize, usize)> = chunk.iter().map(|&(context, _)| (t + 1, context)).collect();
                self.forward_batch(params, &inputs, &mut work);
                for (r, &(_, first)) in chunk.iter().enumerate() {
                    let next = groups.get(chunk_index * BATCH_ROWS + r + 1).map_or(entries.len(), |g| g.1);
                    let d = &mut delta[r * v..(r + 1) * v];
                    d.copy_from_slice(&work.logits[r * v..(r + 1) * v]);
                    softmax_in_place(d);
                    // Σ_n c_n·(e_{y_n} − π): the coefficients' total times −π, plus each c_n at y_n.
                    at_tokens.fill(0.0);
                    let mut total = 0.0;
                    for &(_, n) in &entries[first..next] {
                        let y = samples.tokens[n * t_max + t] as usize;
                        let c = coef(n, t, d[y].ln());
                        at_tokens[y] += c;
                        total += c;
                    }
                    d.iter_mut().zip(&at_tokens).for_each(|(x, &c)| *x = c - total * *x);
                }
                self.backward_batch(params, &inputs, &mut work, &delta[..chunk.len() * v], block);
            }
            block.iter_mut().for_each(|g| *g /= count as f64);
        });
        blocks
    }
}

/// Sorts (context, response) pairs, each response once: by a counting sort over the contexts when
/// there are few of them (it keeps response order within a context, the order a comparison sort of
/// the pairs gives), else by a comparison sort.
fn sort_by_context(entries: &mut Vec<(usize, usize)>, contexts: usize) {
    if contexts > 4 * entries.len().max(1024) {
        entries.sort_unstable();
        return;
    }
    let mut starts = vec![0usize; contexts + 1];
    for &(context, _) in entries.iter() {
        starts[context + 1] += 1;
    }
    for c in 0..contexts {
        starts[c + 1] += starts[c];
    }
    let mut sorted = vec![(0, 0); entries.len()];
    for &entry in entries.iter() {
        sorted[starts[entry.0]] = entry;
        starts[entry.0] += 1;
    }
    *entries = sorted;
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
            super::sort_by_context(&mut entries, contexts);
            assert_eq!(entries, expected);
        }
    }
}
