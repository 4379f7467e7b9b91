/**
 * Neural policies on the GEMM kernels: this machine's f64 GEMM rate (the yardstick of the FLOP/s
 * fractions of benches/training.ts and of this file), measured in the same run.
 */
import { native } from '../ts/native.ts';

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
