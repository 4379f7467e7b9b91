/**
 * Benchmarks of one training step (issue: training small policies), Rust core only — the pure-TS
 * reference has no training code to compare with:
 *   (1) exact descent: the standard objective's exact gradient over tabular logits on a `random`
 *       scenario of ~10^4 states, plus the Adam update;
 *   (2) PPO: sample 4096 responses of T = 64 from an mlp (width 64, order 2), 4 epochs of clipped
 *       surrogate gradients by batched forward and backward passes on the GEMM kernels (one row per
 *       distinct input), each followed by an Adam update. Its rate of the FLOPs it must perform (a
 *       pass per distinct (position, context) input) is reported as a fraction of this machine's
 *       f64 GEMM rate, measured in the same run (benches/neural.ts), beside the token-equivalent
 *       count (a pass per token). The sampling pass evaluates exactly those inputs (position by
 *       position, `Mlp::sample`), and every epoch one forward and one backward pass of each.
 */
import { Bench } from 'tinybench';
import { ExactEngine, MonteCarlo, compileScenario, initMlp, randomScenario } from '../ts/index.ts';
import { Optimizer } from '../ts/core/optimizer.ts';
import { baseLogits, objectiveValue, rlStep, type ObjectiveInput } from '../ts/core/training.ts';
import { distinctMlpInputs, measureGemmRate, ppoPerformedFlops, ppoTokenFlops } from './neural.ts';

export interface TrainingRow {
  name: string;
  states: number | null;
  parameters: number;
  stepsPerSecond: number;
  secondsPerStep: number;
  rme: number;
  /** PPO only: the GEMM rate of the same run (FLOP/s); the matrix-product FLOPs a step performs
   * (a pass per distinct input) and their rate as a fraction of the GEMM rate (the headline); the
   * token-equivalent FLOPs (a pass per token) and theirs. */
  gemmRate?: number;
  performedFlops?: number;
  performedGemmFraction?: number;
  tokenEquivalentFlops?: number;
  tokenEquivalentGemmFraction?: number;
  /** The performed fraction of five single steps, each against a GEMM rate measured just before it. */
  pairedGemmFractions?: number[];
}

export async function runTrainingBench(log: (line: string) => void): Promise<TrainingRow[]> {
  const rows: TrainingRow[] = [];

  const exactScenario = compileScenario(randomScenario({ seed: 3, vocab: 16, order: 1, length: 64, states: 600 }));
  const engine = new ExactEngine(exactScenario);
  const logits = baseLogits(engine);
  const adam = new Optimizer('adam', logits.length, 0.05);
  const objective: ObjectiveInput = { kind: 'standard', lambda: 1, mu: 10, gamma: 1, recovery: [] };
  const exactName = `exact descent step, standard objective, tabular (${exactScenario.name})`;

  const mlpScenario = compileScenario(randomScenario({ seed: 4, vocab: 32, order: 2, length: 64, states: 50 }), { memoryBudgetBytes: Infinity });
  const mc = new MonteCarlo(mlpScenario);
  const mlp = initMlp(mlpScenario, { order: 2, hidden: [64], activation: 'tanh' }, 1);
  const mlpAdam = new Optimizer('adam', mlp.params.length, 0.001);
  let step = 0;
  const ppoName = `PPO step, 4096 responses × T=64, mlp width 64, order 2 (V=32)`;
  const ppoShape = { responses: 4096, length: 64, vocab: 32, hidden: [64], epochs: 4 };
  const tokenFlops = ppoTokenFlops(ppoShape);
  // The distinct inputs of the first step's batch (drawn as rlStep draws it: same seed and index).
  const first = mc.sample(mlp, { count: ppoShape.responses, seed: 7, firstIndex: 0 });
  const inputs = distinctMlpInputs(first.tokens, first.count, first.length, 2);
  const performedFlops = ppoPerformedFlops({ rows: inputs, ...ppoShape });
  const gemmRate = measureGemmRate();
  log(`f64 GEMM FLOP/s of this machine (256 × 256 products, all threads): ${(gemmRate / 1e9).toFixed(2)} GFLOP/s`);

  const bench = new Bench({ iterations: 5, time: 0, warmupIterations: 1 });
  bench.add(exactName, () => {
    const value = objectiveValue(engine, { kind: 'tabular', logits }, objective, true);
    adam.step(logits, value.gradient!);
  });
  bench.add(ppoName, () => {
    rlStep(mc, mlp, mlp.params, mlpAdam, { algorithm: 'ppo', samples: 4096, seed: 7, firstIndex: 4096 * step++, lambda: 1, clip: 0.2, epochs: 4 });
  });
  await bench.run();
  for (const task of bench.tasks) {
    const r = task.result as { throughput?: { mean: number; rme: number }; latency?: { mean: number } } | undefined;
    const hz = r?.throughput?.mean ?? NaN;
    rows.push({
      name: task.name,
      states: task.name === exactName ? engine.numStates : null,
      parameters: task.name === exactName ? logits.length : mlp.params.length,
      stepsPerSecond: hz,
      secondsPerStep: 1 / hz,
      rme: r?.throughput?.rme ?? NaN,
    });
    log(`${task.name}: ${(1 / hz).toFixed(3)} s per step (${hz.toFixed(2)} steps/s ± ${(r?.throughput?.rme ?? NaN).toFixed(1)}%)`);
    if (task.name === ppoName) {
      const row = rows[rows.length - 1]!;
      Object.assign(row, {
        gemmRate,
        performedFlops,
        performedGemmFraction: (performedFlops * hz) / gemmRate,
        tokenEquivalentFlops: tokenFlops,
        tokenEquivalentGemmFraction: (tokenFlops * hz) / gemmRate,
      });
      const rate = (flops: number) => `${((flops * hz) / 1e9).toFixed(2)} GFLOP/s = ${((100 * flops * hz) / gemmRate).toFixed(1)}% of the GEMM rate`;
      log(`  performed FLOPs ${(performedFlops / 1e9).toFixed(2)} G per step (${inputs} distinct (position, context) inputs × (1 + 3·4 epochs) dense passes): ${rate(performedFlops)}`);
      log(`  token-equivalent FLOPs ${(tokenFlops / 1e9).toFixed(2)} G per step (a pass per token, ${((4096 * 64) / inputs).toFixed(2)} tokens per input): ${rate(tokenFlops)}`);
    }
  }
  // The same performed fraction with the yardstick taken right before each of five timed steps:
  // on a shared machine the load moves between the run-wide GEMM measurement and the step, and
  // this pairing keeps each ratio to one moment.
  const paired: number[] = [];
  for (let k = 0; k < 5; k++) {
    const yardstick = measureGemmRate(1, 100);
    const start = performance.now();
    rlStep(mc, mlp, mlp.params, mlpAdam, { algorithm: 'ppo', samples: 4096, seed: 7, firstIndex: 4096 * step++, lambda: 1, clip: 0.2, epochs: 4 });
    paired.push((performedFlops / ((performance.now() - start) / 1000)) / yardstick);
  }
  const ppoRow = rows.find((r) => r.name === ppoName)!;
  ppoRow.pairedGemmFractions = paired;
  const median = [...paired].sort((a, b) => a - b)[2]!;
  log(`  performed fraction with the GEMM rate measured just before each of 5 steps: median ${(100 * median).toFixed(1)}% (${paired.map((f) => (100 * f).toFixed(1)).join(', ')} %)`);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runTrainingBench((line) => console.log(line));
}
