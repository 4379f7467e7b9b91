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
 * Matrix-product FLOPs of one mlp PPO step: every epoch runs each sampled token through the dense
 * layers forward (2·m·n per m × n layer) and backward (weight gradient and input signal, 4·m·n).
 * The one-hot first layer is a gather of weight rows, not counted.
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

/** Transformer rows: batched score gradient (forward + backward) and batched forward, per sample. */
export async function runNeuralBench(log: (line: string) => void): Promise<{ gemmRate: number; rows: NeuralRow[] }> {
  const gemmRate = measureGemmRate();
  log(`f64 GEMM FLOP/s of this machine (256 × 256 products, all threads): ${(gemmRate / 1e9).toFixed(2)} GFLOP/s`);
  const shape: TransformerShape = { vocab: 16, length: 16, layers: 1, width: 32, heads: 2, mlpWidth: 128 };
  const model = new Transformer(shape);
  const params = model.initParams(1);
  const N = 4096;
  // Seeded responses and coefficients (a linear congruential stream: the values do not matter).
  let state = 12345;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const responses = Uint32Array.from({ length: N * shape.length }, () => Math.floor(next() * shape.vocab));
  const coefficients = Float64Array.from({ length: N * shape.length }, () => next() - 0.5);
  const tokenFlops = transformerTokenFlops(shape) * N * shape.length;
  const label = `transformer 1 layer, width 32, 2 heads, mlp 128, V = T = 16, ${N} responses`;
  const tasks: [string, number, () => void][] = [
    [`${label}: forward + backward (score gradient)`, 3 * tokenFlops, () => model.scoreGradient(params, responses, coefficients)],
    [`${label}: forward (logits)`, tokenFlops, () => model.logits(params, responses)],
  ];
  const bench = new Bench({ iterations: 5, time: 0, warmupIterations: 1 });
  for (const [name, , f] of tasks) bench.add(name, f);
  await bench.run();
  const rows: NeuralRow[] = [];
  for (const [name, flops] of tasks) {
    const mean = (bench.getTask(name)!.result as { latency: { mean: number } }).latency.mean / 1000;
    const row = { name, responses: N, secondsPerCall: mean, microsecondsPerSample: (1e6 * mean) / N, usefulFlops: flops, gemmFraction: flops / mean / gemmRate };
    rows.push(row);
    log(
      `${name}: ${(1000 * mean).toFixed(1)} ms, ${row.microsecondsPerSample.toFixed(1)} µs per sample (candle: ~215 µs forward + backward), ` +
        `${(flops / mean / 1e9).toFixed(2)} GFLOP/s = ${(100 * row.gemmFraction).toFixed(1)}% of the GEMM rate`,
    );
  }
  return { gemmRate, rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runNeuralBench((line) => console.log(line));
}
