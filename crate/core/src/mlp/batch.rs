//! The mlp on a batch of inputs at once: hidden and output layers as matrix products (crate::gemm),
//! the one-hot first layer as a gather of weight rows, and the backward pass as the transposed
//! products. Row order fixes every summation order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::Mlp;
use crate::gemm::{gemm, Mat};
use crate::vector_math::widest;

/// Rows one batched pass handles at a time: large enough for the GEMM kernels to run near their
/// peak, small enough for the activations to stay in cache.
pub const BATCH_ROWS: usize = 256;

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
    /// The token units of the batch (`token_units`), when given as contexts.
    units: Vec<u32>,
    /// The bias plus the position's weight row (forward), the signal's column sums (backward).
    shared: Vec<f64>,
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
            units: Vec::with_capacity(rows * self.config.order),
            shared: vec![0.0; widest],
        }
    }

    /// The token units of each context (one per token slot, `order` per input, in input order): the
    /// layout `forward_units` and `backward_units` read. The position's unit is shared by the batch.
    pub fn token_units(&self, contexts: &[usize], units: &mut Vec<u32>) {
        units.clear();
        for &context in contexts {
            let (active, _) = self.active_inputs(1, context);
            units.extend(active[..self.config.order].iter().map(|&i| i as u32));
        }
    }

    /// Logits of the inputs (position t ∈ 1..T, context) for the given contexts, B × V into `work.logits`.
    pub fn forward_batch(&self, params: &[f64], t: usize, contexts: &[usize], work: &mut BatchWork) {
        let mut units = std::mem::take(&mut work.units);
        self.token_units(contexts, &mut units);
        self.forward_units(params, t, &units, work);
        work.units = units;
    }

    /// After `forward_batch` on the same inputs: adds Σ_r Σ_a δ_{r,a}·∂logit_{r,a}/∂θ to `grad`
    /// (δ is B × V).
    pub fn backward_batch(&self, params: &[f64], t: usize, contexts: &[usize], work: &mut BatchWork, delta: &[f64], grad: &mut [f64]) {
        let mut units = std::mem::take(&mut work.units);
        self.token_units(contexts, &mut units);
        self.backward_units(params, t, &units, work, delta, grad);
        work.units = units;
    }

    /// The input unit of position t (1..T).
    fn position_unit(&self, t: usize) -> usize {
        self.config.order * (self.config.vocab + 1) + t - 1
    }

    /// `forward_batch` on inputs at position t given by their token units (`token_units`' layout).
    /// Its loops (gathers, bias, activation) are compiled for the widest vectors the processor has.
    pub fn forward_units(&self, params: &[f64], t: usize, units: &[u32], work: &mut BatchWork) {
        let mlp = self;
        widest!((mlp: &Mlp, params: &[f64], t: usize, units: &[u32], work: &mut BatchWork) => mlp.forward_units_body(params, t, units, work))
    }

    #[inline(always)]
    fn forward_units_body(&self, params: &[f64], t: usize, units: &[u32], work: &mut BatchWork) {
        let order = self.config.order;
        let b = units.len() / order;
        assert!(b <= work.rows, "batch of {b} rows in work space for {}", work.rows);
        let hidden = self.config.hidden.len();
        for (l, layer) in self.layers.iter().enumerate() {
            let bias = &params[layer.bias..layer.bias + layer.outputs];
            let (done, rest) = work.act.split_at_mut(l.min(hidden));
            let out: &mut [f64] = if l < hidden { &mut work.pre[l][..b * layer.outputs] } else { &mut work.logits[..b * layer.outputs] };
            if l == 0 {
                // One-hot inputs: the product is a sum of weight rows per input: the bias plus the
                // position's row (shared by the batch), then the token slots' rows in slot order.
                let weight_row = |i: usize| &params[layer.weights + i * layer.outputs..][..layer.outputs];
                let shared = &mut work.shared[..layer.outputs];
                shared.iter_mut().zip(bias).zip(weight_row(self.position_unit(t))).for_each(|((y, &b), &w)| *y = b + w);
                for (row, active) in out.chunks_exact_mut(layer.outputs).zip(units.chunks_exact(order)) {
                    row.iter_mut().zip(&*shared).zip(weight_row(active[0] as usize)).for_each(|((y, &s), &w)| *y = s + w);
                    for &i in &active[1..] {
                        super::axpy(1.0, weight_row(i as usize), row);
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

    /// `backward_batch` after `forward_units` on the same inputs; compiled like `forward_units`.
    pub fn backward_units(&self, params: &[f64], t: usize, units: &[u32], work: &mut BatchWork, delta: &[f64], grad: &mut [f64]) {
        let mlp = self;
        widest!((mlp: &Mlp, params: &[f64], t: usize, units: &[u32], work: &mut BatchWork, delta: &[f64], grad: &mut [f64]) => mlp.backward_units_body(params, t, units, work, delta, grad))
    }

    #[inline(always)]
    fn backward_units_body(&self, params: &[f64], t: usize, units: &[u32], work: &mut BatchWork, delta: &[f64], grad: &mut [f64]) {
        let order = self.config.order;
        let b = units.len() / order;
        let hidden = self.config.hidden.len();
        for l in (1..self.layers.len()).rev() {
            let layer = self.layers[l];
            // The output layer's signal is δ; a hidden layer's was left in work.signal below.
            let signal = if l == hidden { &delta[..b * layer.outputs] } else { &work.signal[..b * layer.outputs] };
            // Bias: the column sums of the signal, in row order.
            let sums = &mut work.shared[..layer.outputs];
            sums.fill(0.0);
            for row in signal.chunks_exact(layer.outputs) {
                super::axpy(1.0, row, sums);
            }
            super::axpy(1.0, sums, &mut grad[layer.bias..layer.bias + layer.outputs]);
            let input = Mat::new(&work.act[l - 1][..b * layer.inputs], b, layer.inputs);
            let signal_mat = Mat::new(signal, b, layer.outputs);
            // ∂W (inputs × outputs) += inputᵀ·signal; the signal below is signal·Wᵀ ⊙ f'(pre).
            gemm(1.0, input.t(), signal_mat, 1.0, &mut grad[layer.weights..layer.bias]);
            let weights = Mat::new(&params[layer.weights..layer.bias], layer.inputs, layer.outputs);
            gemm(1.0, signal_mat, weights.t(), 0.0, &mut work.back[..b * layer.inputs]);
            if l > 1 {
                let (pre, act) = (&work.pre[l - 1][..b * layer.inputs], &work.act[l - 1][..b * layer.inputs]);
                self.activation_backward(&work.back[..b * layer.inputs], act, pre, &mut work.signal[..b * layer.inputs]);
            }
        }
        self.first_layer_backward(t, units, work, grad);
    }

    /// signal = back ⊙ f′ at the layer's pre-activations `pre` (activations `act`). One loop per
    /// activation (not a match per entry), so each vectorises.
    #[inline(always)]
    fn activation_backward(&self, back: &[f64], act: &[f64], pre: &[f64], signal: &mut [f64]) {
        match self.config.activation {
            super::Activation::Tanh => signal.iter_mut().zip(back).zip(act).for_each(|((s, &d), &y)| *s = d * (1.0 - y * y)),
            super::Activation::Relu => signal.iter_mut().zip(back).zip(pre).for_each(|((s, &d), &x)| *s = if x > 0.0 { d } else { 0.0 }),
        }
    }

    /// The first layer's backward from `work.back` (the signal below the second layer, before f′),
    /// in one pass over the rows: each row's signal f′ ⊙ back is added to the column sums (the
    /// gradient of the bias and of the position's row, active in every row) and to the rows of its
    /// token units. Rows in order, as separate passes would take them: the same sums.
    #[inline(always)]
    fn first_layer_backward(&self, t: usize, units: &[u32], work: &mut BatchWork, grad: &mut [f64]) {
        let (layer, order) = (self.layers[0], self.config.order);
        let width = layer.outputs;
        let b = units.len() / order;
        let (back, act, pre) = (&work.back[..b * width], &work.act[0][..b * width], &work.pre[0][..b * width]);
        let (sums, signal) = (&mut work.shared[..width], &mut work.signal[..width]);
        sums.fill(0.0);
        for (((back, act), pre), active) in back.chunks_exact(width).zip(act.chunks_exact(width)).zip(pre.chunks_exact(width)).zip(units.chunks_exact(order)) {
            self.activation_backward(back, act, pre, signal);
            super::axpy(1.0, signal, sums);
            for &i in active {
                super::axpy(1.0, signal, &mut grad[layer.weights + i as usize * width..][..width]);
            }
        }
        super::axpy(1.0, sums, &mut grad[layer.bias..layer.bias + width]);
        let position = layer.weights + self.position_unit(t) * width;
        super::axpy(1.0, sums, &mut grad[position..position + width]);
    }

    /// Probability rows of every (position, context), T × (V+1)^order × V, by batched forward passes
    /// (positions in parallel; each thread reuses one work space).
    pub fn probability_table(&self, params: &[f64]) -> Vec<f64> {
        let (c, v) = (self.num_contexts(), self.config.vocab);
        let mut table = vec![0.0; self.config.length * c * v];
        table.par_chunks_mut(c * v).enumerate().for_each_init(
            || (self.batch_work(BATCH_ROWS), Vec::with_capacity(BATCH_ROWS), vec![0.0; BATCH_ROWS]),
            |(work, contexts, norm), (t0, layer)| {
                for (first, rows) in layer.chunks_mut(BATCH_ROWS * v).enumerate() {
                    contexts.clear();
                    contexts.extend(first * BATCH_ROWS..first * BATCH_ROWS + rows.len() / v);
                    self.forward_batch(params, t0 + 1, contexts, work);
                    softmax_rows(&work.logits[..rows.len()], rows, &mut norm[..contexts.len()]);
                }
            },
        );
        table
    }
}

/// Row-wise softmax of `logits` (rows × V) into `pi`, with each row's log-normaliser
/// norm = max + ln Σ_a e^{logit_a − max} (so log π_a = logit_a − norm). Max and sum run on four
/// lanes, the exponentials of a row side by side (`map_interleaved`) and π multiplies by the sum's
/// reciprocal, so the whole loop vectorises; compiled for the widest vectors the processor has (as
/// crate::vector_math's slice kernels are).
pub(super) fn softmax_rows(logits: &[f64], pi: &mut [f64], norm: &mut [f64]) {
    widest!((logits: &[f64], pi: &mut [f64], norm: &mut [f64]) => softmax_rows_body::<FUSED>(logits, pi, norm))
}

#[inline(always)]
fn softmax_rows_body<const FUSED: bool>(logits: &[f64], pi: &mut [f64], norm: &mut [f64]) {
    if norm.is_empty() {
        return;
    }
    let v = logits.len() / norm.len();
    // The logarithms (calls into the C library, which clobber every vector register) after the
    // loop over a block's rows, so that loop keeps the exponential's constants in registers.
    const BLOCK: usize = 64;
    let mut sums = [0.0; BLOCK];
    for ((logits, pi), norm) in logits.chunks(BLOCK * v).zip(pi.chunks_mut(BLOCK * v)).zip(norm.chunks_mut(BLOCK)) {
        for (((x, p), max), sum) in logits.chunks_exact(v).zip(pi.chunks_exact_mut(v)).zip(norm.iter_mut()).zip(&mut sums) {
            *max = lanes_fold(x, f64::NEG_INFINITY, f64::max);
            let m = *max;
            crate::vector_math::map_interleaved(x, p, |x| crate::vector_math::exp_kernel::<FUSED>(x - m));
            *sum = lanes_fold(p, 0.0, |a, b| a + b);
            let inverse = 1.0 / *sum;
            p.iter_mut().for_each(|p| *p *= inverse);
        }
        norm.iter_mut().zip(&sums).for_each(|(norm, sum)| *norm += sum.ln());
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
