//! Sampling a transformer batch-wise: the responses of a chunk advance one position at a time, so
//! each position is one matrix product over the chunk's rows (projections, MLP, head) with every
//! response's keys and values kept in a per-chunk KV cache.
//!
//! Draws are keyed by (seed, response, position) exactly as `sampling::sample` keys them, and each
//! chunk is independent, so the tokens equal the per-sample sampler's (`TransformerPolicy`) and do
//! not depend on the thread count.

use super::{layer_norm, Transformer};
use crate::error::{Error, Result};
use crate::gemm::{gemm, Mat};
use crate::parallel::map_chunks_of;
use crate::rng::{draw_index, uniforms, DrawKey};
use crate::sampling::Samples;
use crate::vector_math::softmax_in_place;
use crate::walk::{Track, NO_STATE, NO_TOKEN};

/// Responses advanced together: 64 rows per product, and a KV cache of 2·L·64·T·d values.
pub const SAMPLE_CHUNK: usize = 64;

/// Per-chunk buffers of the batched sampler (rows = responses of the chunk).
struct ChunkWork {
    keys: Vec<f64>,
    values: Vec<f64>,
    x: Vec<f64>,
    hat: Vec<f64>,
    rstd: Vec<f64>,
    normed: Vec<f64>,
    qkv: Vec<f64>,
    heads: Vec<f64>,
    hidden: Vec<f64>,
    hidden_act: Vec<f64>,
    logits: Vec<f64>,
    scores: Vec<f64>,
}

impl Transformer {
    /// Samples `count` responses (indices first_index.. in the draw keys) on `track`, batch-wise;
    /// the same tokens, log-probabilities, harm and states as `sampling::sample` with a
    /// `TransformerPolicy` and no prefix.
    pub fn sample_batched(&self, params: &[f64], track: &Track, count: usize, seed: u64, first_index: u32) -> Result<Samples> {
        self.check_params(params)?;
        let (t_max, v) = (self.config.length, self.config.vocab);
        if track.spec.length != t_max || track.spec.vocab != v {
            return Err(Error::InvalidArgument(format!("transformer of V = {v}, T = {t_max} on a scenario of V = {}, T = {}", track.spec.vocab, track.spec.length)));
        }
        if count == 0 || first_index as u64 + count as u64 > u32::MAX as u64 {
            return Err(Error::InvalidArgument("the number of samples must be in 1..2^32 − first index".into()));
        }
        let with_states = track.model.is_some();
        let parts = map_chunks_of(count, SAMPLE_CHUNK, |range| {
            let rows = range.len();
            let mut out = Samples {
                count: rows,
                first_index: first_index + range.start as u32,
                length: t_max,
                tokens: vec![NO_TOKEN; rows * t_max],
                log_probs: vec![0.0; rows * t_max],
                harm: vec![0.0; rows],
                emitted: vec![0; rows],
                states: with_states.then(|| vec![NO_STATE; rows * (t_max + 1)]),
            };
            let mut walks: Vec<_> = (0..rows).map(|_| track.start()).collect();
            let mut work = self.chunk_work(rows);
            let mut inputs = vec![v; rows];
            for i in 0..t_max {
                let mut running = false;
                for (r, walk) in walks.iter().enumerate() {
                    if let Some(states) = out.states.as_mut() {
                        states[r * (t_max + 1) + i] = walk.state;
                    }
                    running |= !track.finished(walk);
                }
                if !running {
                    break;
                }
                self.forward_chunk_position(params, &mut work, rows, i, &inputs);
                for (r, walk) in walks.iter_mut().enumerate() {
                    if track.finished(walk) {
                        inputs[r] = v;
                        continue;
                    }
                    let row = &mut work.logits[r * v..(r + 1) * v];
                    softmax_in_place(row);
                    let key = DrawKey { index: first_index + (range.start + r) as u32, position: i as u32 + 1, stream: 0, substream: 0 };
                    let token = draw_index(row, uniforms(seed, key)[0]);
                    out.tokens[r * t_max + i] = token as u32;
                    out.log_probs[r * t_max + i] = row[token].ln();
                    track.advance(walk, token);
                    inputs[r] = token;
                }
            }
            for (r, walk) in walks.iter().enumerate() {
                if let Some(states) = out.states.as_mut() {
                    // A finished response stays in its (sink) state for the remaining positions.
                    let first = walk.emitted();
                    states[r * (t_max + 1) + first..(r + 1) * (t_max + 1)].fill(walk.state);
                }
                out.harm[r] = track.harm(walk);
                out.emitted[r] = walk.emitted() as u32;
            }
            out
        });
        let mut all = crate::sampling::concat(parts, t_max);
        all.first_index = first_index;
        Ok(all)
    }

    fn chunk_work(&self, rows: usize) -> ChunkWork {
        let (t, d, m, l, v) = (self.config.length, self.config.width, self.config.mlp_width, self.config.layers, self.config.vocab);
        ChunkWork {
            keys: vec![0.0; l * rows * t * d],
            values: vec![0.0; l * rows * t * d],
            x: vec![0.0; rows * d],
            hat: vec![0.0; rows * d],
            rstd: vec![0.0; rows],
            normed: vec![0.0; rows * d],
            qkv: vec![0.0; rows * 3 * d],
            heads: vec![0.0; rows * d],
            hidden: vec![0.0; rows * m],
            hidden_act: vec![0.0; rows * m],
            logits: vec![0.0; rows * v],
            scores: vec![0.0; t],
        }
    }

    /// Position i of every row of a chunk (input token `inputs[r]`, positions < i in the cache):
    /// the same operations as `forward_position`, with the row-wise products as one GEMM.
    fn forward_chunk_position(&self, params: &[f64], w: &mut ChunkWork, rows: usize, i: usize, inputs: &[usize]) {
        let c = &self.config;
        let (t, d, h, m, v) = (c.length, c.width, c.heads, c.mlp_width, c.vocab);
        let dh = d / h;
        let scale = 1.0 / (dh as f64).sqrt();
        for (r, x) in w.x.chunks_exact_mut(d).enumerate() {
            x.copy_from_slice(&params[self.token_embedding + inputs[r] * d..][..d]);
            crate::mlp::axpy(1.0, &params[self.position_embedding + i * d..][..d], x);
        }
        let fill = |out: &mut [f64], bias: &[f64]| out.chunks_exact_mut(bias.len()).for_each(|row| row.copy_from_slice(bias));
        let add = |out: &mut [f64], bias: &[f64]| out.chunks_exact_mut(bias.len()).for_each(|row| crate::mlp::axpy(1.0, bias, row));
        for (l, o) in self.layers.iter().enumerate() {
            layer_norm(&w.x, &params[o.ln1_gain..][..d], &params[o.ln1_bias..][..d], &mut w.hat, &mut w.rstd, &mut w.normed);
            fill(&mut w.qkv, &params[o.qkv_bias..][..3 * d]);
            gemm(1.0, Mat::new(&w.normed, rows, d), Mat::new(&params[o.qkv_weights..], d, 3 * d), 1.0, &mut w.qkv);
            let cache = l * rows * t * d;
            for r in 0..rows {
                let qkv = &w.qkv[r * 3 * d..(r + 1) * 3 * d];
                let (keys, values) = (&mut w.keys[cache + r * t * d..][..t * d], &mut w.values[cache + r * t * d..][..t * d]);
                keys[i * d..(i + 1) * d].copy_from_slice(&qkv[d..2 * d]);
                values[i * d..(i + 1) * d].copy_from_slice(&qkv[2 * d..]);
                let heads = &mut w.heads[r * d..(r + 1) * d];
                for k in 0..h {
                    let q = &qkv[k * dh..(k + 1) * dh];
                    let s = &mut w.scores[..=i];
                    for (j, s) in s.iter_mut().enumerate() {
                        *s = scale * crate::mlp::dot(q, &keys[j * d + k * dh..][..dh]);
                    }
                    softmax_in_place(s);
                    let out = &mut heads[k * dh..(k + 1) * dh];
                    out.fill(0.0);
                    for (j, &p) in s.iter().enumerate() {
                        crate::mlp::axpy(p, &values[j * d + k * dh..][..dh], out);
                    }
                }
            }
            add(&mut w.x, &params[o.out_bias..][..d]);
            gemm(1.0, Mat::new(&w.heads, rows, d), Mat::new(&params[o.out_weights..], d, d), 1.0, &mut w.x);
            layer_norm(&w.x, &params[o.ln2_gain..][..d], &params[o.ln2_bias..][..d], &mut w.hat, &mut w.rstd, &mut w.normed);
            fill(&mut w.hidden, &params[o.up_bias..][..m]);
            gemm(1.0, Mat::new(&w.normed, rows, d), Mat::new(&params[o.up_weights..], d, m), 1.0, &mut w.hidden);
            crate::vector_math::gelu_into(&w.hidden, &mut w.hidden_act);
            add(&mut w.x, &params[o.down_bias..][..d]);
            gemm(1.0, Mat::new(&w.hidden_act, rows, m), Mat::new(&params[o.down_weights..], m, d), 1.0, &mut w.x);
        }
        layer_norm(&w.x, &params[self.final_gain..][..d], &params[self.final_bias..][..d], &mut w.hat, &mut w.rstd, &mut w.normed);
        fill(&mut w.logits, &params[self.head_bias..][..v]);
        gemm(1.0, Mat::new(&w.normed, rows, d), Mat::new(&params[self.head_weights..], d, v), 1.0, &mut w.logits);
    }
}
