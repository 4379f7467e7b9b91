//! The `mlp` policy family: one network shared by all positions.
//!
//! Input: the last `order` tokens, one-hot each over V + 1 symbols ("<bos>" = V pads the start),
//! concatenated with a one-hot of the position t (T entries). One or two hidden layers (tanh or
//! ReLU), then a softmax over the vocabulary. The input is a handful of one-hot entries, so the
//! first layer is a sum of n + 1 rows of its (transposed) weight matrix.
//!
//! Parameters are one flat vector, layer by layer: W₁ᵀ (D_in × H₁), b₁, [W₂ᵀ (H₁ × H₂), b₂],
//! W_outᵀ (H_last × V), b_out. Every weight matrix is stored input-major, so each input unit's
//! outgoing weights form a contiguous row that the forward pass adds with an axpy.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::policy::softmax_in_place;
use crate::sampling::StepPolicy;
use crate::walk::Walk;

mod batch;
mod sample;
mod score;
pub use batch::{BatchWork, BATCH_ROWS};
pub use score::ScoreIndex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
}

impl Activation {
    fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => crate::vector_math::tanh(x),
            Activation::Relu => x.max(0.0),
        }
    }
    /// Derivative in terms of the pre-activation x and the activation y = f(x).
    fn derivative(self, x: f64, y: f64) -> f64 {
        match self {
            Activation::Tanh => 1.0 - y * y,
            Activation::Relu => (x > 0.0) as u8 as f64,
        }
    }
}

/// Longest token context an `mlp` reads.
pub const MAX_ORDER: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    pub vocab: usize,
    pub order: usize,
    pub length: usize,
    /// Widths of the hidden layers (one or two).
    pub hidden: Vec<usize>,
    pub activation: Activation,
}

/// Offsets of a layer's weights and biases in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct Layer {
    weights: usize,
    bias: usize,
    inputs: usize,
    outputs: usize,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub config: MlpConfig,
    layers: Vec<Layer>,
    num_params: usize,
    contexts: usize,
}

impl Mlp {
    pub fn new(config: MlpConfig) -> Result<Mlp> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if config.vocab == 0 || config.order == 0 || config.length == 0 {
            return bad("mlp: vocab, order and length must be at least 1".into());
        }
        if config.order > MAX_ORDER {
            return bad(format!("mlp: order {} is over the maximum {MAX_ORDER}", config.order));
        }
        if config.hidden.is_empty() || config.hidden.len() > 2 || config.hidden.contains(&0) {
            return bad(format!("mlp: one or two hidden layers of width ≥ 1, got {:?}", config.hidden));
        }
        let contexts = match (config.vocab + 1).checked_pow(config.order as u32) {
            Some(c) if c < u32::MAX as usize => c,
            _ => return bad("mlp: (V+1)^order is too large".into()),
        };
        let mut widths = vec![config.order * (config.vocab + 1) + config.length];
        widths.extend(&config.hidden);
        widths.push(config.vocab);
        let mut layers = Vec::new();
        let mut offset = 0;
        for w in widths.windows(2) {
            layers.push(Layer { weights: offset, bias: offset + w[0] * w[1], inputs: w[0], outputs: w[1] });
            offset += w[0] * w[1] + w[1];
        }
        Ok(Mlp { config, layers, num_params: offset, contexts })
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }
    pub fn input_width(&self) -> usize {
        self.layers[0].inputs
    }
    /// Number of distinct token contexts, (V + 1)^order.
    pub fn num_contexts(&self) -> usize {
        self.contexts
    }
    /// Scratch needed by forward/backward: pre-activation, activation and backward signal of each
    /// hidden layer, in layer order.
    pub fn scratch_len(&self) -> usize {
        3 * self.config.hidden.iter().sum::<usize>()
    }

    /// Where hidden layer l's three buffers start in the scratch.
    fn scratch_offset(&self, l: usize) -> usize {
        3 * self.config.hidden[..l].iter().sum::<usize>()
    }

    /// The policy's context number (last `order` tokens, base V + 1, "<bos>" = V) of a token prefix.
    pub fn context_of(&self, tokens: &[u32]) -> usize {
        let v1 = self.config.vocab + 1;
        let n = self.config.order;
        let mut c = 0;
        for j in 0..n {
            let at = tokens.len() as isize - n as isize + j as isize;
            let symbol = if at < 0 { self.config.vocab } else { tokens[at as usize] as usize };
            c = c * v1 + symbol;
        }
        c
    }

    /// The active input units of (position t, context): one per token slot, one for the position.
    fn active_inputs(&self, t: usize, context: usize) -> ([usize; MAX_ORDER + 1], usize) {
        let v1 = self.config.vocab + 1;
        let n = self.config.order;
        let mut out = [0; MAX_ORDER + 1];
        let mut c = context;
        for j in (0..n).rev() {
            out[j] = j * v1 + c % v1;
            c /= v1;
        }
        out[n] = n * v1 + (t - 1);
        (out, n + 1)
    }

    pub fn check_params(&self, params: &[f64]) -> Result<()> {
        if params.len() != self.num_params {
            return Err(Error::InvalidArgument(format!("mlp parameters: {} entries, expected {}", params.len(), self.num_params)));
        }
        if let Some(i) = params.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!("mlp parameter {i} is {}", params[i])));
        }
        Ok(())
    }

    /// Logits at (position t ∈ 1..T, context) into `logits` (length V). The hidden layers'
    /// pre-activations and activations are left in `scratch` for `backward` and `jvp`.
    pub fn forward(&self, params: &[f64], t: usize, context: usize, logits: &mut [f64], scratch: &mut [f64]) {
        let (active, count) = self.active_inputs(t, context);
        let hidden = self.config.hidden.len();
        for (l, layer) in self.layers.iter().enumerate() {
            let row = |k: usize| &params[layer.weights + k * layer.outputs..][..layer.outputs];
            let bias = &params[layer.bias..layer.bias + layer.outputs];
            let start = if l < hidden { self.scratch_offset(l) } else { scratch.len() };
            let (before, after) = scratch.split_at_mut(start);
            let out: &mut [f64] = if l < hidden { &mut after[..layer.outputs] } else { &mut *logits };
            out.copy_from_slice(bias);
            if l == 0 {
                active[..count].iter().for_each(|&i| axpy(1.0, row(i), out));
            } else {
                let input = &before[self.scratch_offset(l - 1) + layer.inputs..][..layer.inputs];
                input.iter().enumerate().for_each(|(k, &x)| axpy(x, row(k), out));
            }
            if l < hidden {
                let (pre, rest) = after.split_at_mut(layer.outputs);
                for (y, &x) in rest[..layer.outputs].iter_mut().zip(pre.iter()) {
                    *y = self.config.activation.apply(x);
                }
            }
        }
    }

    /// After `forward` at the same input: backpropagates the output signal δ, adding
    /// ∂/∂θ of Σ_a δ_a·logit_a to `grad` when given, and returns that gradient's squared norm.
    pub fn backward(&self, params: &[f64], t: usize, context: usize, delta: &[f64], mut grad: Option<&mut [f64]>, scratch: &mut [f64]) -> f64 {
        let (active, count) = self.active_inputs(t, context);
        let hidden = self.config.hidden.len();
        let mut squared = 0.0;
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let (before, after) = scratch.split_at_mut(if l < hidden { self.scratch_offset(l) } else { scratch.len() });
            // The signal at this layer's output: δ itself, or the hidden layer's backward buffer.
            let signal: &[f64] = if l == hidden { delta } else { &after[2 * layer.outputs..3 * layer.outputs] };
            let signal_sq = dot(signal, signal);
            if let Some(g) = grad.as_deref_mut() {
                axpy(1.0, signal, &mut g[layer.bias..layer.bias + layer.outputs]);
            }
            if l == 0 {
                if let Some(g) = grad.as_deref_mut() {
                    for &i in &active[..count] {
                        axpy(1.0, signal, &mut g[layer.weights + i * layer.outputs..][..layer.outputs]);
                    }
                }
                // One-hot input: `count` unit entries plus the bias.
                squared += signal_sq * (1 + count) as f64;
            } else {
                let (pre, rest) = before[self.scratch_offset(l - 1)..].split_at_mut(layer.inputs);
                let (input, back) = rest.split_at_mut(layer.inputs);
                for k in 0..layer.inputs {
                    let row = layer.weights + k * layer.outputs;
                    if let Some(g) = grad.as_deref_mut() {
                        axpy(input[k], signal, &mut g[row..row + layer.outputs]);
                    }
                    back[k] = dot(&params[row..row + layer.outputs], signal) * self.config.activation.derivative(pre[k], input[k]);
                }
                squared += signal_sq * (1.0 + dot(input, input));
            }
        }
        squared
    }

    /// After `forward` at the same input: the directional derivative of the logits along the
    /// parameter direction `u`, into `out` (length V). Uses the backward buffers as work space.
    pub fn jvp(&self, params: &[f64], t: usize, context: usize, u: &[f64], out: &mut [f64], scratch: &mut [f64]) {
        let (active, count) = self.active_inputs(t, context);
        let hidden = self.config.hidden.len();
        for (l, layer) in self.layers.iter().enumerate() {
            let start = if l < hidden { self.scratch_offset(l) } else { scratch.len() };
            let (before, after) = scratch.split_at_mut(start);
            let d_out: &mut [f64] = if l < hidden { &mut after[2 * layer.outputs..3 * layer.outputs] } else { &mut *out };
            d_out.copy_from_slice(&u[layer.bias..layer.bias + layer.outputs]);
            if l == 0 {
                active[..count].iter().for_each(|&i| axpy(1.0, &u[layer.weights + i * layer.outputs..][..layer.outputs], d_out));
            } else {
                // d(W x) = (dW) x + W (dx), with dx = f'(pre)·d(pre) of the previous layer.
                let prev = &before[self.scratch_offset(l - 1)..][..3 * layer.inputs];
                for k in 0..layer.inputs {
                    let (pre, act, d_pre) = (prev[k], prev[layer.inputs + k], prev[2 * layer.inputs + k]);
                    let dx = self.config.activation.derivative(pre, act) * d_pre;
                    axpy(act, &u[layer.weights + k * layer.outputs..][..layer.outputs], d_out);
                    axpy(dx, &params[layer.weights + k * layer.outputs..][..layer.outputs], d_out);
                }
            }
        }
    }

    /// Seeded initialisation: weights N(0, 1/fan_in), biases 0.
    pub fn init_params(&self, seed: u64) -> Vec<f64> {
        let mut params = vec![0.0; self.num_params];
        for (l, layer) in self.layers.iter().enumerate() {
            let fan_in = if l == 0 { (self.config.order + 1) as f64 } else { layer.inputs as f64 };
            let scale = 1.0 / fan_in.sqrt();
            for i in 0..layer.inputs * layer.outputs {
                let [u1, u2] = crate::rng::uniforms(seed, crate::rng::DrawKey { index: i as u32, position: l as u32, stream: 0xF00D, substream: 0 });
                let normal = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                params[layer.weights + i] = scale * normal;
            }
        }
        params
    }
}

#[inline(always)]
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    // Four accumulators break the dependency chain so the loop vectorises.
    let mut acc = [0.0; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xc.remainder().iter().zip(yc.remainder()).map(|(a, b)| a * b).sum();
    for (a, b) in xc.zip(yc) {
        for k in 0..4 {
            acc[k] += a[k] * b[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// y += a·x, written for the vectoriser.
#[inline(always)]
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// An `mlp` with its parameters: a policy that can be sampled.
///
/// When the table of all its inputs (T positions × (V+1)^order contexts × V) fits in
/// ROW_CACHE_MAX_ENTRIES, every probability row is computed once up front, in parallel: sampling
/// millions of tokens then costs a table lookup per token rather than a forward pass
/// (`Mlp::sample` goes further: only the inputs the walks reach, no row copied).
pub struct MlpPolicy<'a> {
    pub mlp: &'a Mlp,
    pub params: &'a [f64],
    cache: Option<Vec<f64>>,
}

impl<'a> MlpPolicy<'a> {
    pub fn new(mlp: &'a Mlp, params: &'a [f64]) -> MlpPolicy<'a> {
        let (t_max, c, v) = (mlp.config.length, mlp.num_contexts(), mlp.config.vocab);
        let cache = (t_max * c * v <= crate::policy::ROW_CACHE_MAX_ENTRIES).then(|| mlp.probability_table(params));
        MlpPolicy { mlp, params, cache }
    }
}

impl StepPolicy for MlpPolicy<'_> {
    fn scratch_len(&self) -> usize {
        self.mlp.scratch_len()
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]) {
        let context = self.mlp.context_of(&walk.tokens);
        match &self.cache {
            Some(table) => {
                let v = out.len();
                let row = walk.emitted() * self.mlp.num_contexts() + context;
                out.copy_from_slice(&table[row * v..(row + 1) * v]);
            }
            None => {
                self.mlp.forward(self.params, walk.emitted() + 1, context, out, scratch);
                softmax_in_place(out);
            }
        }
    }
}

impl Mlp {
    /// The mlp's context of an exact state: the last `order` tokens, a suffix of the state's
    /// scenario context, so the scenario's context order must be at least the mlp's.
    fn check_model(&self, model: &crate::model::Model) -> Result<()> {
        let spec = &model.spec;
        if spec.vocab != self.config.vocab || spec.length != self.config.length {
            return Err(Error::InvalidArgument(format!(
                "mlp was built for V = {}, T = {}, the scenario has V = {}, T = {}",
                self.config.vocab, self.config.length, spec.vocab, spec.length
            )));
        }
        if spec.order < self.config.order {
            return Err(Error::InvalidArgument(format!(
                "the exact engine needs the scenario's context order ({}) to be at least the mlp's ({}): lift the scenario's order",
                spec.order, self.config.order
            )));
        }
        Ok(())
    }

    fn state_context(&self, model: &crate::model::Model, s: usize) -> usize {
        model.context[s] as usize % self.contexts
    }

    /// Logits at every (position, live state) of an exact model: a tabular policy, T × S × V.
    pub fn tabulate(&self, params: &[f64], model: &crate::model::Model) -> Result<Vec<f64>> {
        self.check_model(model)?;
        self.check_params(params)?;
        let (n, v) = (model.num_states(), self.config.vocab);
        let mut logits = crate::alloc::table(&[self.config.length, n, v], 0.0, "mlp's T × S × V logits table")?;
        logits.par_chunks_mut(n * v).enumerate().for_each(|(t0, layer)| {
            let mut scratch = vec![0.0; self.scratch_len()];
            for (s, row) in layer.chunks_exact_mut(v).enumerate() {
                if model.live[s] {
                    self.forward(params, t0 + 1, self.state_context(model, s), row, &mut scratch);
                }
            }
        });
        Ok(logits)
    }

    /// Pulls a gradient with respect to the tabulated logits (T × S × V) back to the parameters:
    /// Σ_{t,s} J_{t,s}ᵀ g_t(s), grouping the states that share an mlp input first.
    pub fn pull_back(&self, params: &[f64], model: &crate::model::Model, logit_grad: &[f64]) -> Result<Vec<f64>> {
        let per_position = self.pull_back_per_position(params, model, logit_grad)?;
        let mut total = vec![0.0; self.num_params];
        for g in per_position.chunks_exact(self.num_params) {
            axpy(1.0, g, &mut total);
        }
        Ok(total)
    }

    /// The pull-back position by position: T × P, row t − 1 = J_tᵀ g_t (the per-position gradient G_t
    /// in parameter space when g is the logit gradient of E[H]).
    pub fn pull_back_per_position(&self, params: &[f64], model: &crate::model::Model, logit_grad: &[f64]) -> Result<Vec<f64>> {
        self.check_model(model)?;
        self.check_params(params)?;
        let (n, v) = (model.num_states(), self.config.vocab);
        if logit_grad.len() != self.config.length * n * v {
            return Err(Error::InvalidArgument(format!("logit gradient: {} entries, expected T × S × V", logit_grad.len())));
        }
        let per_position: Vec<Vec<f64>> = (0..self.config.length)
            .into_par_iter()
            .map(|t0| {
                let mut grouped: Vec<(usize, usize)> = (0..n).filter(|&s| model.live[s]).map(|s| (self.state_context(model, s), s)).collect();
                grouped.sort_unstable();
                let mut grad = vec![0.0; self.num_params];
                let mut scratch = vec![0.0; self.scratch_len()];
                let (mut delta, mut logits) = (vec![0.0; v], vec![0.0; v]);
                let mut i = 0;
                while i < grouped.len() {
                    let context = grouped[i].0;
                    delta.fill(0.0);
                    while i < grouped.len() && grouped[i].0 == context {
                        let s = grouped[i].1;
                        axpy(1.0, &logit_grad[(t0 * n + s) * v..][..v], &mut delta);
                        i += 1;
                    }
                    self.forward(params, t0 + 1, context, &mut logits, &mut scratch);
                    self.backward(params, t0 + 1, context, &delta, Some(&mut grad), &mut scratch);
                }
                grad
            })
            .collect();
        Ok(per_position.concat())
    }
}
