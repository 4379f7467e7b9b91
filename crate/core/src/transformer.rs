//! The `transformer` policy family: a small decoder-only transformer shared by all positions.
//!
//! Position i = 0..T−1 reads the token before it (i = 0: "<bos>" = V) through learned token and
//! positional embeddings, and predicts y_{i+1}. Each layer is pre-norm: x += Attn(LN₁(x)), then
//! x += MLP(LN₂(x)), with causal multi-head self-attention and a GELU MLP; a final LayerNorm and a
//! linear head give the logits over V. Parameters are one flat f64 vector (see `Transformer::blocks`
//! for the order); every weight matrix is stored input-major (row-major inputs × outputs).
//!
//! Batches of sequences run as matrix products (crate::gemm) on (sequences × T) rows. Sampling
//! runs one position at a time with a KV cache kept in the sampler's scratch.

use crate::error::{Error, Result};
use crate::gemm::{gemm, gemm_strided, Mat};
use crate::parallel::map_chunks_of;
use crate::sampling::{Samples, StepPolicy};
use crate::vector_math::softmax_in_place;
use crate::walk::{Walk, NO_TOKEN};

mod batch_sample;
mod ppo;
pub use batch_sample::SAMPLE_CHUNK;

const LAYER_NORM_EPSILON: f64 = 1e-5;
/// Sequences per batched pass: 16 × T rows keep the attention maps of a pass in cache.
pub const BATCH_SEQUENCES: usize = 16;
/// Responses whose gradient one task accumulates (sequentially, in batches); tasks are summed in
/// order, so the result does not depend on the thread count.
const RESPONSES_PER_TASK: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    pub vocab: usize,
    pub length: usize,
    pub layers: usize,
    pub width: usize,
    pub heads: usize,
    /// Width of each layer's MLP block.
    pub mlp_width: usize,
}

/// Offsets of one layer's parameters.
#[derive(Debug, Clone, Copy)]
struct LayerOffsets {
    ln1_gain: usize,
    ln1_bias: usize,
    qkv_weights: usize,
    qkv_bias: usize,
    out_weights: usize,
    out_bias: usize,
    ln2_gain: usize,
    ln2_bias: usize,
    up_weights: usize,
    up_bias: usize,
    down_weights: usize,
    down_bias: usize,
}

#[derive(Debug, Clone)]
pub struct Transformer {
    pub config: TransformerConfig,
    token_embedding: usize,
    position_embedding: usize,
    layers: Vec<LayerOffsets>,
    final_gain: usize,
    final_bias: usize,
    head_weights: usize,
    head_bias: usize,
    num_params: usize,
}

impl Transformer {
    pub fn new(config: TransformerConfig) -> Result<Transformer> {
        let bad = |field: &str, m: String| Err(Error::InvalidArgument(format!("transformer.{field} {m}")));
        let c = &config;
        for (field, value) in [("vocab", c.vocab), ("length", c.length), ("layers", c.layers), ("width", c.width), ("heads", c.heads), ("mlpWidth", c.mlp_width)] {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if c.layers > 8 {
            return bad("layers", format!("is {}, at most 8", c.layers));
        }
        if c.width > 1024 || c.mlp_width > 4096 {
            return bad(if c.width > 1024 { "width" } else { "mlpWidth" }, "is too large (width ≤ 1024, mlpWidth ≤ 4096)".into());
        }
        if !c.width.is_multiple_of(c.heads) {
            return bad("heads", format!("({}) must divide transformer.width ({})", c.heads, c.width));
        }
        if c.length > 4096 || c.vocab > 1 << 20 {
            return bad(if c.length > 4096 { "length" } else { "vocab" }, "is too large".into());
        }
        let (d, m) = (c.width, c.mlp_width);
        let mut offset = 0;
        let mut take = |n: usize| {
            offset += n;
            offset - n
        };
        let token_embedding = take((c.vocab + 1) * d);
        let position_embedding = take(c.length * d);
        let layers = (0..c.layers)
            .map(|_| LayerOffsets {
                ln1_gain: take(d),
                ln1_bias: take(d),
                qkv_weights: take(d * 3 * d),
                qkv_bias: take(3 * d),
                out_weights: take(d * d),
                out_bias: take(d),
                ln2_gain: take(d),
                ln2_bias: take(d),
                up_weights: take(d * m),
                up_bias: take(m),
                down_weights: take(m * d),
                down_bias: take(d),
            })
            .collect();
        let (final_gain, final_bias) = (take(d), take(d));
        let (head_weights, head_bias) = (take(d * c.vocab), take(c.vocab));
        Ok(Transformer { config, token_embedding, position_embedding, layers, final_gain, final_bias, head_weights, head_bias, num_params: offset })
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// The named parameter blocks, in their order in the flat vector.
    pub fn blocks(&self) -> Vec<(String, std::ops::Range<usize>)> {
        let (d, m, v) = (self.config.width, self.config.mlp_width, self.config.vocab);
        let mut out = vec![("token_embedding".to_string(), self.token_embedding..self.position_embedding), ("position_embedding".to_string(), self.position_embedding..self.position_embedding + self.config.length * d)];
        for (l, o) in self.layers.iter().enumerate() {
            for (name, start, len) in [
                ("ln1_gain", o.ln1_gain, d),
                ("ln1_bias", o.ln1_bias, d),
                ("qkv_weights", o.qkv_weights, 3 * d * d),
                ("qkv_bias", o.qkv_bias, 3 * d),
                ("out_weights", o.out_weights, d * d),
                ("out_bias", o.out_bias, d),
                ("ln2_gain", o.ln2_gain, d),
                ("ln2_bias", o.ln2_bias, d),
                ("up_weights", o.up_weights, d * m),
                ("up_bias", o.up_bias, m),
                ("down_weights", o.down_weights, m * d),
                ("down_bias", o.down_bias, d),
            ] {
                out.push((format!("layer{l}.{name}"), start..start + len));
            }
        }
        out.push(("final_gain".into(), self.final_gain..self.final_gain + d));
        out.push(("final_bias".into(), self.final_bias..self.final_bias + d));
        out.push(("head_weights".into(), self.head_weights..self.head_weights + d * v));
        out.push(("head_bias".into(), self.head_bias..self.head_bias + v));
        out
    }

    pub fn check_params(&self, params: &[f64]) -> Result<()> {
        if params.len() != self.num_params {
            return Err(Error::InvalidArgument(format!("transformer parameters: {} entries, expected {}", params.len(), self.num_params)));
        }
        if let Some(i) = params.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!("transformer parameter {i} is {}", params[i])));
        }
        Ok(())
    }

    /// Seeded initialisation: weights N(0, 1/fan_in), embeddings N(0, 1), LayerNorm gains 1,
    /// biases 0.
    pub fn init_params(&self, seed: u64) -> Vec<f64> {
        let mut params = vec![0.0; self.num_params];
        let (d, m) = (self.config.width, self.config.mlp_width);
        let mut fill = |range: std::ops::Range<usize>, scale: f64, block: u32| {
            for (i, p) in params[range].iter_mut().enumerate() {
                let [u1, u2] = crate::rng::uniforms(seed, crate::rng::DrawKey { index: i as u32, position: block, stream: 0x7EA5, substream: 0 });
                *p = scale * (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            }
        };
        for (block, (name, range)) in self.blocks().into_iter().enumerate() {
            let scale = match name.rsplit('.').next().unwrap_or(&name) {
                "token_embedding" | "position_embedding" => 1.0,
                "qkv_weights" | "out_weights" | "up_weights" | "head_weights" => 1.0 / (d as f64).sqrt(),
                "down_weights" => 1.0 / (m as f64).sqrt(),
                _ => 0.0,
            };
            if scale > 0.0 {
                fill(range, scale, block as u32);
            }
        }
        for o in &self.layers {
            params[o.ln1_gain..o.ln1_gain + d].fill(1.0);
            params[o.ln2_gain..o.ln2_gain + d].fill(1.0);
        }
        params[self.final_gain..self.final_gain + d].fill(1.0);
        params
    }

    /// The input token of position i (0-based) of a response: "<bos>" at 0, else y_i (responses are
    /// padded with "<bos>" after their end: causal attention keeps that from earlier positions).
    fn input_token(&self, response: &[u32], i: usize) -> usize {
        match i.checked_sub(1).map(|j| response[j]) {
            Some(a) if a != NO_TOKEN => a as usize,
            _ => self.config.vocab,
        }
    }
}

/// LayerNorm of each row: xhat = (x − mean)/√(var + ε), y = xhat·gain + bias; keeps xhat and 1/σ.
fn layer_norm(x: &[f64], gain: &[f64], bias: &[f64], xhat: &mut [f64], rstd: &mut [f64], y: &mut [f64]) {
    let d = gain.len();
    for (r, row) in x.chunks_exact(d).enumerate() {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let s = 1.0 / (var + LAYER_NORM_EPSILON).sqrt();
        rstd[r] = s;
        for j in 0..d {
            let h = (row[j] - mean) * s;
            xhat[r * d + j] = h;
            y[r * d + j] = h * gain[j] + bias[j];
        }
    }
}

/// Backward of `layer_norm`: adds the gain and bias gradients, and dy's pull-back to `dx`.
fn layer_norm_backward(dy: &[f64], xhat: &[f64], rstd: &[f64], gain: &[f64], d_gain: &mut [f64], d_bias: &mut [f64], dx: &mut [f64]) {
    let d = gain.len();
    for (r, g) in dy.chunks_exact(d).enumerate() {
        let h = &xhat[r * d..(r + 1) * d];
        let (mut mean_g, mut mean_gh) = (0.0, 0.0);
        for j in 0..d {
            d_gain[j] += g[j] * h[j];
            d_bias[j] += g[j];
            let gh = g[j] * gain[j];
            mean_g += gh;
            mean_gh += gh * h[j];
        }
        mean_g /= d as f64;
        mean_gh /= d as f64;
        for j in 0..d {
            dx[r * d + j] += rstd[r] * (g[j] * gain[j] - mean_g - h[j] * mean_gh);
        }
    }
}

/// Adds each row of `rows` (r × n) to `out` (n), in row order.
fn add_column_sums(rows: &[f64], out: &mut [f64]) {
    for row in rows.chunks_exact(out.len()) {
        crate::mlp::axpy(1.0, row, out);
    }
}

/// Each row of `out` (r × n) = bias.
fn fill_rows(out: &mut [f64], bias: &[f64]) {
    out.chunks_exact_mut(bias.len()).for_each(|row| row.copy_from_slice(bias));
}

/// Activations of one layer for a batch, rows = sequences × T.
struct LayerWork {
    input: Vec<f64>,
    ln1_hat: Vec<f64>,
    ln1_rstd: Vec<f64>,
    ln1: Vec<f64>,
    qkv: Vec<f64>,
    /// Attention probabilities, sequences × heads × T × T (row i over keys j ≤ i, 0 beyond).
    attention: Vec<f64>,
    heads_out: Vec<f64>,
    mid: Vec<f64>,
    ln2_hat: Vec<f64>,
    ln2_rstd: Vec<f64>,
    ln2: Vec<f64>,
    up: Vec<f64>,
    up_act: Vec<f64>,
}

/// Work space of batched passes over up to `sequences` responses.
pub struct TransformerWork {
    sequences: usize,
    layers: Vec<LayerWork>,
    last: Vec<f64>,
    final_hat: Vec<f64>,
    final_rstd: Vec<f64>,
    final_out: Vec<f64>,
    /// Logits, sequences × T × V.
    pub logits: Vec<f64>,
    // Backward buffers.
    d_x: Vec<f64>,
    d_a: Vec<f64>,
    d_b: Vec<f64>,
    d_qkv: Vec<f64>,
    d_up: Vec<f64>,
    d_scores: Vec<f64>,
}

impl Transformer {
    pub fn work(&self, sequences: usize) -> TransformerWork {
        let (t, d, m, h, v) = (self.config.length, self.config.width, self.config.mlp_width, self.config.heads, self.config.vocab);
        let rows = sequences * t;
        let layer = || LayerWork {
            input: vec![0.0; rows * d],
            ln1_hat: vec![0.0; rows * d],
            ln1_rstd: vec![0.0; rows],
            ln1: vec![0.0; rows * d],
            qkv: vec![0.0; rows * 3 * d],
            attention: vec![0.0; sequences * h * t * t],
            heads_out: vec![0.0; rows * d],
            mid: vec![0.0; rows * d],
            ln2_hat: vec![0.0; rows * d],
            ln2_rstd: vec![0.0; rows],
            ln2: vec![0.0; rows * d],
            up: vec![0.0; rows * m],
            up_act: vec![0.0; rows * m],
        };
        TransformerWork {
            sequences,
            layers: (0..self.config.layers).map(|_| layer()).collect(),
            last: vec![0.0; rows * d],
            final_hat: vec![0.0; rows * d],
            final_rstd: vec![0.0; rows],
            final_out: vec![0.0; rows * d],
            logits: vec![0.0; rows * v],
            d_x: vec![0.0; rows * d],
            d_a: vec![0.0; rows * d],
            d_b: vec![0.0; rows * d],
            d_qkv: vec![0.0; rows * 3 * d],
            d_up: vec![0.0; rows * m],
            d_scores: vec![0.0; t * t],
        }
    }

    /// Logits at every position of B responses (B × T tokens, NO_TOKEN after the end) into
    /// `work.logits` (B × T × V): row (b, i) is the distribution of y_{i+1} given y_{≤i}.
    pub fn forward_batch(&self, params: &[f64], responses: &[u32], work: &mut TransformerWork) {
        let c = &self.config;
        let (t, d, h, m) = (c.length, c.width, c.heads, c.mlp_width);
        let b = responses.len() / t;
        assert!(b <= work.sequences && responses.len() == b * t, "batch of {} tokens in work space for {} responses of {t}", responses.len(), work.sequences);
        let rows = b * t;
        let dh = d / h;
        let scale = 1.0 / (dh as f64).sqrt();
        // Embeddings.
        let x0 = &mut work.layers[0].input[..rows * d];
        for s in 0..b {
            for i in 0..t {
                let token = self.input_token(&responses[s * t..(s + 1) * t], i);
                let row = &mut x0[(s * t + i) * d..][..d];
                row.copy_from_slice(&params[self.token_embedding + token * d..][..d]);
                crate::mlp::axpy(1.0, &params[self.position_embedding + i * d..][..d], row);
            }
        }
        for l in 0..c.layers {
            let o = self.layers[l];
            let w = &mut work.layers[l];
            layer_norm(&w.input[..rows * d], &params[o.ln1_gain..][..d], &params[o.ln1_bias..][..d], &mut w.ln1_hat, &mut w.ln1_rstd, &mut w.ln1);
            fill_rows(&mut w.qkv[..rows * 3 * d], &params[o.qkv_bias..][..3 * d]);
            gemm(1.0, Mat::new(&w.ln1, rows, d), Mat::new(&params[o.qkv_weights..], d, 3 * d), 1.0, &mut w.qkv);
            for s in 0..b {
                let qkv = &w.qkv[s * t * 3 * d..(s + 1) * t * 3 * d];
                for k in 0..h {
                    let a = &mut w.attention[(s * h + k) * t * t..][..t * t];
                    let q = Mat::strided(&qkv[k * dh..], t, dh, 3 * d);
                    let key = Mat::strided(&qkv[d + k * dh..], t, dh, 3 * d);
                    gemm(scale, q, key.t(), 0.0, a);
                    for (i, row) in a.chunks_exact_mut(t).enumerate() {
                        softmax_in_place(&mut row[..=i]);
                        row[i + 1..].fill(0.0);
                    }
                    let value = Mat::strided(&qkv[2 * d + k * dh..], t, dh, 3 * d);
                    gemm_strided(1.0, Mat::new(a, t, t), value, 0.0, &mut w.heads_out[s * t * d + k * dh..], d);
                }
            }
            w.mid[..rows * d].copy_from_slice(&w.input[..rows * d]);
            add_bias_rows(&mut w.mid[..rows * d], &params[o.out_bias..][..d]);
            gemm(1.0, Mat::new(&w.heads_out, rows, d), Mat::new(&params[o.out_weights..], d, d), 1.0, &mut w.mid);
            layer_norm(&w.mid[..rows * d], &params[o.ln2_gain..][..d], &params[o.ln2_bias..][..d], &mut w.ln2_hat, &mut w.ln2_rstd, &mut w.ln2);
            fill_rows(&mut w.up[..rows * m], &params[o.up_bias..][..m]);
            gemm(1.0, Mat::new(&w.ln2, rows, d), Mat::new(&params[o.up_weights..], d, m), 1.0, &mut w.up);
            crate::vector_math::gelu_into(&w.up[..rows * m], &mut w.up_act[..rows * m]);
            // The layer's output: the next layer's input, or the last residual stream.
            let (done, later) = work.layers.split_at_mut(l + 1);
            let next: &mut [f64] = match later.first_mut() {
                Some(layer) => &mut layer.input,
                None => &mut work.last,
            };
            let w = &done[l];
            next[..rows * d].copy_from_slice(&w.mid[..rows * d]);
            add_bias_rows(&mut next[..rows * d], &params[o.down_bias..][..d]);
            gemm(1.0, Mat::new(&w.up_act, rows, m), Mat::new(&params[o.down_weights..], m, d), 1.0, next);
        }
        layer_norm(&work.last[..rows * d], &params[self.final_gain..][..d], &params[self.final_bias..][..d], &mut work.final_hat, &mut work.final_rstd, &mut work.final_out);
        fill_rows(&mut work.logits[..rows * c.vocab], &params[self.head_bias..][..c.vocab]);
        gemm(1.0, Mat::new(&work.final_out, rows, d), Mat::new(&params[self.head_weights..], d, c.vocab), 1.0, &mut work.logits);
    }

    /// After `forward_batch` on the same responses: adds Σ_{b,i,a} δ_{b,i,a}·∂logit_{b,i,a}/∂θ to
    /// `grad` (δ is B × T × V).
    pub fn backward_batch(&self, params: &[f64], responses: &[u32], work: &mut TransformerWork, delta: &[f64], grad: &mut [f64]) {
        let c = &self.config;
        let (t, d, h, m, v) = (c.length, c.width, c.heads, c.mlp_width, c.vocab);
        let b = responses.len() / t;
        let rows = b * t;
        let dh = d / h;
        let scale = 1.0 / (dh as f64).sqrt();
        let delta = &delta[..rows * v];
        let wk = work;
        // Head: logits = final_out·W + b.
        add_column_sums(delta, &mut grad[self.head_bias..][..v]);
        gemm(1.0, Mat::new(&wk.final_out, rows, d).t(), Mat::new(delta, rows, v), 1.0, &mut grad[self.head_weights..][..d * v]);
        gemm(1.0, Mat::new(delta, rows, v), Mat::new(&params[self.head_weights..], d, v).t(), 0.0, &mut wk.d_a);
        wk.d_x[..rows * d].fill(0.0);
        let (gain_grad, rest) = grad[self.final_gain..].split_at_mut(d);
        layer_norm_backward(&wk.d_a[..rows * d], &wk.final_hat, &wk.final_rstd, &params[self.final_gain..][..d], gain_grad, &mut rest[..d], &mut wk.d_x);
        for l in (0..c.layers).rev() {
            let o = self.layers[l];
            let w = &wk.layers[l];
            // MLP block: out = mid + GELU(LN₂(mid)·W_up + b_up)·W_down + b_down. d_x is ∂/∂out.
            let d_out = &wk.d_x[..rows * d];
            add_column_sums(d_out, &mut grad[o.down_bias..][..d]);
            gemm(1.0, Mat::new(&w.up_act, rows, m).t(), Mat::new(d_out, rows, d), 1.0, &mut grad[o.down_weights..][..m * d]);
            gemm(1.0, Mat::new(d_out, rows, d), Mat::new(&params[o.down_weights..], m, d).t(), 0.0, &mut wk.d_up);
            crate::vector_math::gelu_backward(&w.up[..rows * m], &mut wk.d_up[..rows * m]);
            add_column_sums(&wk.d_up[..rows * m], &mut grad[o.up_bias..][..m]);
            gemm(1.0, Mat::new(&w.ln2, rows, d).t(), Mat::new(&wk.d_up, rows, m), 1.0, &mut grad[o.up_weights..][..d * m]);
            gemm(1.0, Mat::new(&wk.d_up, rows, m), Mat::new(&params[o.up_weights..], d, m).t(), 0.0, &mut wk.d_a);
            // ∂/∂mid = ∂/∂out + LN₂'s pull-back (accumulated into d_x in place).
            let (gain_grad, rest) = grad[o.ln2_gain..].split_at_mut(d);
            layer_norm_backward(&wk.d_a[..rows * d], &w.ln2_hat, &w.ln2_rstd, &params[o.ln2_gain..][..d], gain_grad, &mut rest[..d], &mut wk.d_x);
            // Attention block: mid = input + heads_out·W_o + b_o.
            let d_mid = &wk.d_x[..rows * d];
            add_column_sums(d_mid, &mut grad[o.out_bias..][..d]);
            gemm(1.0, Mat::new(&w.heads_out, rows, d).t(), Mat::new(d_mid, rows, d), 1.0, &mut grad[o.out_weights..][..d * d]);
            gemm(1.0, Mat::new(d_mid, rows, d), Mat::new(&params[o.out_weights..], d, d).t(), 0.0, &mut wk.d_b);
            for s in 0..b {
                let qkv = &w.qkv[s * t * 3 * d..(s + 1) * t * 3 * d];
                let d_qkv = &mut wk.d_qkv[s * t * 3 * d..(s + 1) * t * 3 * d];
                let d_heads = &wk.d_b[s * t * d..(s + 1) * t * d];
                for k in 0..h {
                    let a = &w.attention[(s * h + k) * t * t..][..t * t];
                    let d_o = Mat::strided(&d_heads[k * dh..], t, dh, d);
                    // ∂A = ∂O·Vᵀ, ∂V = Aᵀ·∂O; ∂S = A ⊙ (∂A − rowsum(A ⊙ ∂A)), times the scale.
                    gemm(1.0, d_o, Mat::strided(&qkv[2 * d + k * dh..], t, dh, 3 * d).t(), 0.0, &mut wk.d_scores);
                    gemm_strided(1.0, Mat::new(a, t, t).t(), d_o, 0.0, &mut d_qkv[2 * d + k * dh..], 3 * d);
                    for (row_a, row_d) in a.chunks_exact(t).zip(wk.d_scores.chunks_exact_mut(t)) {
                        let inner = crate::mlp::dot(row_a, row_d);
                        for (g, &p) in row_d.iter_mut().zip(row_a) {
                            *g = scale * p * (*g - inner);
                        }
                    }
                    let d_s = Mat::new(&wk.d_scores, t, t);
                    gemm_strided(1.0, d_s, Mat::strided(&qkv[d + k * dh..], t, dh, 3 * d), 0.0, &mut d_qkv[k * dh..], 3 * d);
                    gemm_strided(1.0, d_s.t(), Mat::strided(&qkv[k * dh..], t, dh, 3 * d), 0.0, &mut d_qkv[d + k * dh..], 3 * d);
                }
            }
            add_column_sums(&wk.d_qkv[..rows * 3 * d], &mut grad[o.qkv_bias..][..3 * d]);
            gemm(1.0, Mat::new(&w.ln1, rows, d).t(), Mat::new(&wk.d_qkv, rows, 3 * d), 1.0, &mut grad[o.qkv_weights..][..3 * d * d]);
            gemm(1.0, Mat::new(&wk.d_qkv, rows, 3 * d), Mat::new(&params[o.qkv_weights..], d, 3 * d).t(), 0.0, &mut wk.d_a);
            let (gain_grad, rest) = grad[o.ln1_gain..].split_at_mut(d);
            layer_norm_backward(&wk.d_a[..rows * d], &w.ln1_hat, &w.ln1_rstd, &params[o.ln1_gain..][..d], gain_grad, &mut rest[..d], &mut wk.d_x);
        }
        // Embeddings, in row order.
        for s in 0..b {
            for i in 0..t {
                let token = self.input_token(&responses[s * t..(s + 1) * t], i);
                let row = &wk.d_x[(s * t + i) * d..][..d];
                crate::mlp::axpy(1.0, row, &mut grad[self.token_embedding + token * d..][..d]);
                crate::mlp::axpy(1.0, row, &mut grad[self.position_embedding + i * d..][..d]);
            }
        }
    }

    /// Logits of B responses (B × T tokens), B × T × V: batches of BATCH_SEQUENCES in parallel.
    pub fn logits(&self, params: &[f64], responses: &[u32]) -> Vec<f64> {
        let (t, v) = (self.config.length, self.config.vocab);
        map_chunks_of(responses.len() / t, BATCH_SEQUENCES, |range| {
            let mut work = self.work(range.len());
            self.forward_batch(params, &responses[range.start * t..range.end * t], &mut work);
            work.logits.truncate(range.len() * t * v);
            work.logits
        })
        .concat()
    }

    /// Σ_n Σ_t c_{n,t}·∇log π_θ(y_{n,t} | y_{n,<t}) / N over sampled responses, with
    /// c_{n,t} = coef(n, t, log π_θ(y_{n,t} | …)): one batched forward and one backward per
    /// BATCH_SEQUENCES responses, never a per-sample gradient.
    pub fn score_gradient(&self, params: &[f64], samples: &Samples, coef: &(dyn Fn(usize, usize, f64) -> f64 + Sync)) -> Vec<f64> {
        self.score_sums(params, samples, coef, false)
    }

    /// The per-position gradients Ĝ_t = Σ_n c_{n,t}·∇log π_θ(y_{n,t} | y_{n,<t}) / N, T × P (they sum
    /// to `score_gradient`). The parameters are shared, so each position needs its own backward
    /// pass: T backward passes per batch of responses, after one forward.
    pub fn score_gradient_per_position(&self, params: &[f64], samples: &Samples, coef: &(dyn Fn(usize, usize, f64) -> f64 + Sync)) -> Vec<f64> {
        self.score_sums(params, samples, coef, true)
    }

    fn score_sums(&self, params: &[f64], samples: &Samples, coef: &(dyn Fn(usize, usize, f64) -> f64 + Sync), per_position: bool) -> Vec<f64> {
        let (t, v, p) = (self.config.length, self.config.vocab, self.num_params);
        assert_eq!(samples.length, t, "samples of length {} for a transformer of length {t}", samples.length);
        let blocks = if per_position { t } else { 1 };
        let parts = map_chunks_of(samples.count, RESPONSES_PER_TASK, |range| {
            let mut grad = vec![0.0; blocks * p];
            let mut work = self.work(BATCH_SEQUENCES);
            let mut delta = vec![0.0; BATCH_SEQUENCES * t * v];
            let mut masked = if per_position { vec![0.0; BATCH_SEQUENCES * t * v] } else { vec![] };
            let mut start = range.start;
            while start < range.end {
                let end = (start + BATCH_SEQUENCES).min(range.end);
                let responses = &samples.tokens[start * t..end * t];
                self.forward_batch(params, responses, &mut work);
                for (r, (logits, d)) in work.logits.chunks_exact(v).zip(delta.chunks_exact_mut(v)).take(responses.len()).enumerate() {
                    let (n, i) = (start + r / t, r % t);
                    let y = responses[r];
                    if y == NO_TOKEN {
                        d.fill(0.0);
                        continue;
                    }
                    // ∇_logits log π(y) = e_y − π.
                    d.copy_from_slice(logits);
                    softmax_in_place(d);
                    let c = coef(n, i, d[y as usize].ln());
                    d.iter_mut().for_each(|x| *x *= -c);
                    d[y as usize] += c;
                }
                if per_position {
                    // Position i's block: the output signal at position i only.
                    for (i, block) in grad.chunks_exact_mut(p).enumerate() {
                        masked.fill(0.0);
                        for s in 0..end - start {
                            let row = (s * t + i) * v;
                            masked[row..row + v].copy_from_slice(&delta[row..row + v]);
                        }
                        self.backward_batch(params, responses, &mut work, &masked, block);
                    }
                } else {
                    self.backward_batch(params, responses, &mut work, &delta, &mut grad);
                }
                start = end;
            }
            grad
        });
        let mut total = vec![0.0; blocks * p];
        for part in &parts {
            crate::mlp::axpy(1.0, part, &mut total);
        }
        total.iter_mut().for_each(|g| *g /= samples.count as f64);
        total
    }
}

/// Adds `bias` to every row of `rows`.
fn add_bias_rows(rows: &mut [f64], bias: &[f64]) {
    rows.chunks_exact_mut(bias.len()).for_each(|row| crate::mlp::axpy(1.0, bias, row));
}

/// A transformer with its parameters: a policy the sampler can draw from, one position at a time.
///
/// The sampler's scratch holds a KV cache: the tokens it has read, and every layer's keys and
/// values at those positions. A call at a walk reuses the longest cached prefix of the walk's
/// tokens and runs the remaining positions incrementally.
pub struct TransformerPolicy<'a> {
    pub model: &'a Transformer,
    pub params: &'a [f64],
}

impl Transformer {
    /// Layout of the KV-cache scratch: [cached count, T tokens, L × T × d keys, L × T × d values,
    /// per-position work: x, normed, qkv (3d), heads (d), mlp (2m), scores (T), xhat (d)].
    pub fn cache_len(&self) -> usize {
        let (t, d, m, l) = (self.config.length, self.config.width, self.config.mlp_width, self.config.layers);
        1 + t + 2 * l * t * d + 7 * d + 2 * m + t
    }

    /// Runs position i (0-based) on input token `token`, with positions < i in the cache, storing its
    /// keys and values; writes the logits of y_{i+1} into `logits`.
    fn forward_position(&self, params: &[f64], cache: &mut [f64], i: usize, token: usize, logits: &mut [f64]) {
        let c = &self.config;
        let (t, d, h, m) = (c.length, c.width, c.heads, c.mlp_width);
        let dh = d / h;
        let scale = 1.0 / (dh as f64).sqrt();
        let (keys_values, work) = cache[1 + t..].split_at_mut(2 * c.layers * t * d);
        let (keys, values) = keys_values.split_at_mut(c.layers * t * d);
        let (x, rest) = work.split_at_mut(d);
        let (normed, rest) = rest.split_at_mut(d);
        let (qkv, rest) = rest.split_at_mut(3 * d);
        let (heads, rest) = rest.split_at_mut(d);
        let (hidden, rest) = rest.split_at_mut(m);
        let (hidden_act, rest) = rest.split_at_mut(m);
        let (scores, rest) = rest.split_at_mut(t);
        let (hat, _) = rest.split_at_mut(d);
        let mut rstd = [0.0];
        x.copy_from_slice(&params[self.token_embedding + token * d..][..d]);
        crate::mlp::axpy(1.0, &params[self.position_embedding + i * d..][..d], x);
        for (l, o) in self.layers.iter().enumerate() {
            layer_norm(x, &params[o.ln1_gain..][..d], &params[o.ln1_bias..][..d], hat, &mut rstd, normed);
            qkv.copy_from_slice(&params[o.qkv_bias..][..3 * d]);
            gemm(1.0, Mat::new(normed, 1, d), Mat::new(&params[o.qkv_weights..], d, 3 * d), 1.0, qkv);
            let (layer_keys, layer_values) = (&mut keys[l * t * d..(l + 1) * t * d], &mut values[l * t * d..(l + 1) * t * d]);
            layer_keys[i * d..(i + 1) * d].copy_from_slice(&qkv[d..2 * d]);
            layer_values[i * d..(i + 1) * d].copy_from_slice(&qkv[2 * d..]);
            for k in 0..h {
                let s = &mut scores[..=i];
                gemm(scale, Mat::new(&qkv[k * dh..], 1, dh), Mat::strided(&layer_keys[k * dh..], i + 1, dh, d).t(), 0.0, s);
                softmax_in_place(s);
                gemm(1.0, Mat::new(s, 1, i + 1), Mat::strided(&layer_values[k * dh..], i + 1, dh, d), 0.0, &mut heads[k * dh..(k + 1) * dh]);
            }
            crate::mlp::axpy(1.0, &params[o.out_bias..][..d], x);
            gemm(1.0, Mat::new(heads, 1, d), Mat::new(&params[o.out_weights..], d, d), 1.0, x);
            layer_norm(x, &params[o.ln2_gain..][..d], &params[o.ln2_bias..][..d], hat, &mut rstd, normed);
            hidden.copy_from_slice(&params[o.up_bias..][..m]);
            gemm(1.0, Mat::new(normed, 1, d), Mat::new(&params[o.up_weights..], d, m), 1.0, hidden);
            crate::vector_math::gelu_into(hidden, hidden_act);
            crate::mlp::axpy(1.0, &params[o.down_bias..][..d], x);
            gemm(1.0, Mat::new(hidden_act, 1, m), Mat::new(&params[o.down_weights..], m, d), 1.0, x);
        }
        layer_norm(x, &params[self.final_gain..][..d], &params[self.final_bias..][..d], hat, &mut rstd, normed);
        logits.copy_from_slice(&params[self.head_bias..][..c.vocab]);
        gemm(1.0, Mat::new(normed, 1, d), Mat::new(&params[self.head_weights..], d, c.vocab), 1.0, logits);
    }

    /// Logits of the token after `prefix` (at most T − 1 tokens), by the KV cache in `cache`
    /// (length `cache_len`; zero it before first use): positions of the longest prefix the cache
    /// has already read are reused, the others run one at a time.
    pub fn next_logits(&self, params: &[f64], prefix: &[u32], cache: &mut [f64], logits: &mut [f64]) {
        let t = self.config.length;
        assert!(prefix.len() < t, "a prefix of {} tokens has no next position below T = {t}", prefix.len());
        // Position i reads input token i (<bos>, y_1, …); the cache has positions 0..cached.
        let cached = cache[0] as usize;
        let tokens_match = |i: usize| i == 0 || cache[i] == prefix[i - 1] as f64;
        let mut valid = 0;
        while valid < cached && valid <= prefix.len() && tokens_match(valid) {
            valid += 1;
        }
        // Position prefix.len() must run to produce logits, even when cached.
        let first = valid.min(prefix.len());
        for i in first..=prefix.len() {
            let token = if i == 0 { self.config.vocab } else { prefix[i - 1] as usize };
            if i > 0 {
                cache[i] = token as f64;
            }
            self.forward_position(params, cache, i, token, logits);
        }
        cache[0] = (prefix.len() + 1) as f64;
    }
}

impl StepPolicy for TransformerPolicy<'_> {
    fn scratch_len(&self) -> usize {
        self.model.cache_len()
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]) {
        self.model.next_logits(self.params, &walk.tokens, scratch, out);
        softmax_in_place(out);
    }
}
