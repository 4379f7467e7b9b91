/**
 * Reference forward pass of the transformer policy (crate/core/src/transformer.rs), written as plain
 * loops: token + positional embeddings, pre-norm layers of causal multi-head self-attention and a
 * GELU (tanh form) MLP, a final LayerNorm and a linear head. Same flat parameter order as
 * ts/transformer.ts.
 */
import type { TransformerShape } from '../core/transformer.js';

const EPSILON = 1e-5;
const END = 0xffffffff;

function layerNorm(x: number[], gain: Float64Array, bias: Float64Array, g: number, b: number): number[] {
  const d = x.length;
  const mean = x.reduce((s, v) => s + v, 0) / d;
  const variance = x.reduce((s, v) => s + (v - mean) * (v - mean), 0) / d;
  const r = 1 / Math.sqrt(variance + EPSILON);
  return x.map((v, j) => (v - mean) * r * gain[g + j]! + bias[b + j]!);
}

/** y = x·W + b with W stored input-major (rows = inputs) at `w`, bias at `b`. */
function linear(x: number[], p: Float64Array, w: number, b: number, outputs: number): number[] {
  const y: number[] = [];
  for (let o = 0; o < outputs; o++) {
    let s = p[b + o]!;
    for (let i = 0; i < x.length; i++) s += x[i]! * p[w + i * outputs + o]!;
    y.push(s);
  }
  return y;
}

function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/** Logits B × T × V of B responses (B × T tokens, 0xFFFFFFFF after the end). */
export function transformerLogits(shape: TransformerShape, params: Float64Array, responses: Uint32Array): Float64Array {
  const { vocab: V, length: T, layers: L, width: d, heads: H, mlpWidth: m } = shape;
  const dh = d / H;
  let at = 0;
  const take = (n: number) => ((at += n), at - n);
  const tokenEmbedding = take((V + 1) * d);
  const positionEmbedding = take(T * d);
  const layers = Array.from({ length: L }, () => ({
    ln1g: take(d), ln1b: take(d), wqkv: take(3 * d * d), bqkv: take(3 * d), wo: take(d * d), bo: take(d),
    ln2g: take(d), ln2b: take(d), wup: take(d * m), bup: take(m), wdown: take(m * d), bdown: take(d),
  }));
  const fg = take(d);
  const fb = take(d);
  const wh = take(d * V);
  const bh = take(V);
  if (at !== params.length) throw new Error(`expected ${at} parameters, got ${params.length}`);
  const B = responses.length / T;
  const out = new Float64Array(B * T * V);
  for (let s = 0; s < B; s++) {
    let x: number[][] = [];
    for (let i = 0; i < T; i++) {
      const prev = i === 0 ? END : responses[s * T + i - 1]!;
      const token = prev === END ? V : prev;
      x.push(Array.from({ length: d }, (_, j) => params[tokenEmbedding + token * d + j]! + params[positionEmbedding + i * d + j]!));
    }
    for (const o of layers) {
      const qkv = x.map((row) => linear(layerNorm(row, params, params, o.ln1g, o.ln1b), params, o.wqkv, o.bqkv, 3 * d));
      const heads = x.map(() => new Array<number>(d).fill(0));
      for (let k = 0; k < H; k++) {
        for (let i = 0; i < T; i++) {
          const scores: number[] = [];
          for (let j = 0; j <= i; j++) {
            let dot = 0;
            for (let c = 0; c < dh; c++) dot += qkv[i]![k * dh + c]! * qkv[j]![d + k * dh + c]!;
            scores.push(dot / Math.sqrt(dh));
          }
          const max = Math.max(...scores);
          const e = scores.map((v) => Math.exp(v - max));
          const total = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= i; j++) for (let c = 0; c < dh; c++) heads[i]![k * dh + c]! += (e[j]! / total) * qkv[j]![2 * d + k * dh + c]!;
        }
      }
      const mid = x.map((row, i) => linear(heads[i]!, params, o.wo, o.bo, d).map((v, j) => v + row[j]!));
      x = mid.map((row) => {
        const up = linear(layerNorm(row, params, params, o.ln2g, o.ln2b), params, o.wup, o.bup, m).map(gelu);
        return linear(up, params, o.wdown, o.bdown, d).map((v, j) => v + row[j]!);
      });
    }
    for (let i = 0; i < T; i++) {
      const logits = linear(layerNorm(x[i]!, params, params, fg, fb), params, wh, bh, V);
      out.set(logits, (s * T + i) * V);
    }
  }
  return out;
}
