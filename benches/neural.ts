/**
 * Neural policies on the GEMM kernels: this machine's f64 GEMM rate (the yardstick of the FLOP/s
 * fractions of benches/training.ts and of this file), measured in the same run, and the
 * transformer's per-sample cost of a forward and backward pass (1 layer, V = T = 16: the size at
 * which candle and burn were measured at about 215 µs per sample).
 *
 *   node --import @oxc-node/core/register benches/neural.ts
 */
import { Bench } from 'tinybench';

import { native } from '../ts/core/native.ts';
import { Transformer, type TransformerShape } from '../ts/core/transformer.ts';

/** FLOP/s of 256 × 256 f64 products on every thread at once: the best of `runs` runs (three of
 * ~0.5 s by default; shorter ones give a yardstick taken right beside a timed step). */
export function measureGemmRate(runs = 3, repeats = 200): number {
  let best = 0;
  for (let run = 0; run < runs; run++) best = Math.max(best, native.gemmRate(256, repeats));
  return best;
}

/** Multiply-adds (×2) of one input through the mlp's dense layers (hidden → hidden → output); the
 * one-hot first layer is a gather of weight rows, not counted. */
function mlpDenseFlops(hidden: number[], vocab: number): number {
  const widths = [...hidden, vocab];
  let flops = 0;
  for (let l = 1; l < widths.length; l++) flops += 2 * widths[l - 1]! * widths[l]!;
  return flops;
}

/**
 * Token-equivalent matrix-product FLOPs of one mlp PPO step: every epoch, a pass for each sampled
 * token through the dense layers forward (2·m·n per m × n layer) and backward (weight gradient and
 * input signal, 4·m·n). The core shares one pass among the tokens with the same (position,
 * context), so it performs far fewer: see `ppoPerformedFlops`.
 */
export function ppoTokenFlops(o: { responses: number; length: number; vocab: number; hidden: number[]; epochs: number }): number {
  return o.epochs * o.responses * o.length * 3 * mlpDenseFlops(o.hidden, o.vocab);
}

/**
 * The matrix-product FLOPs one mlp PPO step must perform: a forward pass per distinct input
 * (position, context) of the batch to sample it, then in every epoch a forward and a backward
 * (3 × forward) per distinct input. `rows` = the number of distinct inputs (`distinctMlpInputs`).
 */
export function ppoPerformedFlops(o: { rows: number; vocab: number; hidden: number[]; epochs: number }): number {
  return o.rows * (1 + 3 * o.epochs) * mlpDenseFlops(o.hidden, o.vocab);
}

/** Distinct (position, last `order` tokens) pairs among the tokens of a batch (N × T, NO_TOKEN after the end). */
export function distinctMlpInputs(tokens: Uint32Array, count: number, length: number, order: number): number {
  let rows = 0;
  for (let t = 0; t < length; t++) {
    const seen = new Set<string>();
    for (let n = 0; n < count; n++) {
      if (tokens[n * length + t] === 0xffffffff) continue;
      const context = Array.from({ length: order }, (_, j) => (t - order + j < 0 ? -1 : tokens[n * length + t - order + j]!));
      seen.add(context.join(','));
    }
    rows += seen.size;
  }
  return rows;
}

/** Forward-pass FLOPs of one token through a transformer (all T keys per position, as computed). */
export function transformerTokenFlops(s: TransformerShape): number {
  const { width: d, mlpWidth: m, length: T, vocab: V, layers: L } = s;
  return L * (2 * d * 3 * d + 4 * T * d + 2 * d * d + 4 * d * m) + 2 * d * V;
}

/**
 * Useful forward FLOPs of one response of T tokens: per token and layer 2·d·3d (QKV) + 2·d² (output)
 * + 4·d·m (MLP), plus 2·d·V (head), and causal attention at position i (1-based) over its i keys:
 * 4·i·d per layer (scores and values). Summed over i = 1..T: the attention term is 2·T(T+1)·d·L.
 */
export function transformerResponseFlops(s: TransformerShape): number {
  const { width: d, mlpWidth: m, length: T, vocab: V, layers: L } = s;
  return T * (L * (8 * d * d + 4 * d * m) + 2 * d * V) + L * 2 * T * (T + 1) * d;
}

export interface NeuralRow {
  name: string;
  responses: number;
  secondsPerCall: number;
  microsecondsPerSample: number;
  usefulFlops: number;
  gemmFraction: number;
}

/** Seeded responses and coefficients for N responses (a linear congruential stream: the values do not matter). */
function workload(shape: TransformerShape, N: number): { responses: Uint32Array; coefficients: Float64Array } {
  let state = 12345;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const responses = Uint32Array.from({ length: N * shape.length }, () => Math.floor(next() * shape.vocab));
  const coefficients = Float64Array.from({ length: N * shape.length }, () => next() - 0.5);
  return { responses, coefficients };
}

/** Times the batched score gradient (forward + backward) and, optionally, the forward alone. */
async function timeShape(shape: TransformerShape, N: number, withForward: boolean, iterations: number, warmupIterations: number, gemmRate: number, log: (line: string) => void): Promise<NeuralRow[]> {
  const model = new Transformer(shape);
  const params = model.initParams(1);
  const { responses, coefficients } = workload(shape, N);
  const tokenFlops = transformerTokenFlops(shape) * N * shape.length;
  const label = `transformer ${shape.layers} layer(s), width ${shape.width}, ${shape.heads} heads, mlp ${shape.mlpWidth}, V = ${shape.vocab}, T = ${shape.length}, ${N} responses`;
  const tasks: [string, number, () => void][] = [[`${label}: forward + backward (score gradient)`, 3 * tokenFlops, () => model.scoreGradient(params, responses, coefficients)]];
  if (withForward) tasks.push([`${label}: forward (logits)`, tokenFlops, () => model.logits(params, responses)]);
  const bench = new Bench({ iterations, time: 0, warmup: warmupIterations > 0, warmupIterations });
  for (const [name, , f] of tasks) bench.add(name, f);
  await bench.run();
  const rows: NeuralRow[] = [];
  for (const [name, flops] of tasks) {
    const mean = (bench.getTask(name)!.result as { latency: { mean: number } }).latency.mean / 1000;
    const row = { name, responses: N, secondsPerCall: mean, microsecondsPerSample: (1e6 * mean) / N, usefulFlops: flops, gemmFraction: flops / mean / gemmRate };
    rows.push(row);
    log(
      `${name}: ${(1000 * mean).toFixed(1)} ms, ${row.microsecondsPerSample.toFixed(1)} µs per sample, ` +
        `${(flops / mean / 1e9).toFixed(2)} GFLOP/s = ${(100 * row.gemmFraction).toFixed(1)}% of the GEMM rate`,
    );
  }
  return rows;
}

/**
 * Transformer rows: (1) per-sample cost at V = T = 16, 1 layer (candle: ~215 µs per sample forward +
 * backward); (2) a batched sampling pass of 65 536 × 64 tokens and (3) one PPO step of 4096 × 64
 * tokens, 2 layers of width 64 (single timed runs: they take tens of seconds).
 */
export async function runNeuralBench(log: (line: string) => void): Promise<{ gemmRate: number; rows: NeuralRow[] }> {
  const gemmRate = measureGemmRate();
  log(`f64 GEMM FLOP/s of this machine (256 × 256 products, all threads): ${(gemmRate / 1e9).toFixed(2)} GFLOP/s`);
  const small: TransformerShape = { vocab: 16, length: 16, layers: 1, width: 32, heads: 2, mlpWidth: 128 };
  const rows = await timeShape(small, 4096, true, 5, 1, gemmRate, log);
  log('(candle and burn: about 215 µs per sample, forward + backward, at this size)');
  const large: TransformerShape = { vocab: 32, length: 64, layers: 2, width: 64, heads: 4, mlpWidth: 256 };
  rows.push(timeSampling(large, 65536, gemmRate, log));
  rows.push(timePpoStep(large, 4096, 4, gemmRate, log));
  return { gemmRate, rows };
}

function reportRow(name: string, responses: number, seconds: number, flops: number, gemmRate: number, log: (line: string) => void): NeuralRow {
  const row = { name, responses, secondsPerCall: seconds, microsecondsPerSample: (1e6 * seconds) / responses, usefulFlops: flops, gemmFraction: flops / seconds / gemmRate };
  log(
    `${name}: ${seconds.toFixed(2)} s, ${row.microsecondsPerSample.toFixed(1)} µs per response, useful FLOPs ${(flops / 1e9).toFixed(1)} G: ` +
      `${(flops / seconds / 1e9).toFixed(2)} GFLOP/s = ${(100 * row.gemmFraction).toFixed(1)}% of the GEMM rate`,
  );
  return row;
}

/** One batched sampling pass of N responses (a single timed run). */
function timeSampling(shape: TransformerShape, N: number, gemmRate: number, log: (line: string) => void): NeuralRow {
  const model = new Transformer(shape);
  const params = model.initParams(1);
  const start = performance.now();
  model.sample(params, N, 5);
  const seconds = (performance.now() - start) / 1000;
  return reportRow(`transformer sampling, ${N} × ${shape.length} tokens, ${shape.layers} layers, width ${shape.width} (batched KV cache)`, N, seconds, N * transformerResponseFlops(shape), gemmRate, log);
}

/**
 * One PPO step (a single timed run): sample N responses batch-wise, advantages from a stand-in
 * reward (each response's share of token 0, minus the other responses' mean), then `epochs`
 * clipped-surrogate gradients (ε = 0.2), each followed by a gradient-ascent update. Useful FLOPs:
 * the sampling forward plus, per epoch, forward + backward = 3 × forward.
 */
function timePpoStep(shape: TransformerShape, N: number, epochs: number, gemmRate: number, log: (line: string) => void): NeuralRow {
  const model = new Transformer(shape);
  const params = model.initParams(1);
  const T = shape.length;
  const start = performance.now();
  const { tokens, logProbs } = model.sample(params, N, 6);
  const reward = Float64Array.from({ length: N }, (_, n) => tokens.subarray(n * T, (n + 1) * T).filter((a) => a === 0).length / T);
  const total = reward.reduce((a, b) => a + b, 0);
  const advantages = Float64Array.from({ length: N * T }, (_, i) => {
    const n = Math.floor(i / T);
    return reward[n]! - (total - reward[n]!) / (N - 1);
  });
  for (let epoch = 0; epoch < epochs; epoch++) {
    const g = model.ppoGradient(params, tokens, logProbs, advantages, 0.2);
    for (let i = 0; i < params.length; i++) params[i]! += 0.01 * g[i]!;
  }
  const seconds = (performance.now() - start) / 1000;
  const flops = (1 + 3 * epochs) * N * transformerResponseFlops(shape);
  return reportRow(`transformer PPO step, ${N} × ${T} tokens, ${shape.layers} layers, width ${shape.width}, ${epochs} epochs`, N, seconds, flops, gemmRate, log);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runNeuralBench((line) => console.log(line));
}
