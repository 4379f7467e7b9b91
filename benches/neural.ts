/**
 * Neural policies on the GEMM kernels: this machine's f64 GEMM rate (the yardstick of the FLOP/s
 * fractions of benches/training.ts and of this file), measured in the same run, and the
 * transformer's per-sample cost of a forward and backward pass (1 layer, V = T = 16: the size at
 * which candle and burn were measured at about 215 µs per sample).
 *
 *   node --import @oxc-node/core/register benches/neural.ts
 */
import { Bench } from 'tinybench';

import { native } from '../ts/native.ts';
import { Transformer, type TransformerShape } from '../ts/transformer.ts';

/** FLOP/s of 256 × 256 f64 products on every thread at once: the best of three runs of ~0.5 s. */
export function measureGemmRate(): number {
  let best = 0;
  for (let run = 0; run < 3; run++) best = Math.max(best, native.gemmRate(256, 200));
  return best;
}

/**
 * Token-equivalent matrix-product FLOPs of one mlp PPO step: every epoch, a pass for each sampled
 * token through the dense layers forward (2·m·n per m × n layer) and backward (weight gradient and
 * input signal, 4·m·n); the one-hot first layer is a gather of weight rows, not counted. The core
 * shares one pass among the tokens with the same (position, context), so it performs fewer.
 */
export function ppoUsefulFlops(o: { responses: number; length: number; vocab: number; hidden: number[]; epochs: number }): number {
  const widths = [...o.hidden, o.vocab];
  let perToken = 0;
  for (let l = 1; l < widths.length; l++) perToken += 6 * widths[l - 1]! * widths[l]!;
  return o.epochs * o.responses * o.length * perToken;
}

/** Forward-pass FLOPs of one token through a transformer (all T keys per position, as computed). */
export function transformerTokenFlops(s: TransformerShape): number {
  const { width: d, mlpWidth: m, length: T, vocab: V, layers: L } = s;
  return L * (2 * d * 3 * d + 4 * T * d + 2 * d * d + 4 * d * m) + 2 * d * V;
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
 * backward); (2) one epoch of the PPO-size step, forward + backward over 4096 × 64 tokens,
 * 2 layers of width 64 (a single timed run: it takes tens of seconds).
 */
export async function runNeuralBench(log: (line: string) => void): Promise<{ gemmRate: number; rows: NeuralRow[] }> {
  const gemmRate = measureGemmRate();
  log(`f64 GEMM FLOP/s of this machine (256 × 256 products, all threads): ${(gemmRate / 1e9).toFixed(2)} GFLOP/s`);
  const small: TransformerShape = { vocab: 16, length: 16, layers: 1, width: 32, heads: 2, mlpWidth: 128 };
  const rows = await timeShape(small, 4096, true, 5, 1, gemmRate, log);
  log('(candle and burn: about 215 µs per sample, forward + backward, at this size)');
  const large: TransformerShape = { vocab: 32, length: 64, layers: 2, width: 64, heads: 4, mlpWidth: 256 };
  rows.push(...(await timeShape(large, 4096, false, 1, 0, gemmRate, log)));
  return { gemmRate, rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runNeuralBench((line) => console.log(line));
}
