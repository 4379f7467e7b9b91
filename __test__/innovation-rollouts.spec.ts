/**
 * reinforce-innovation with h_t from nested rollouts (issue 10 §1): through the API, on a scenario
 * of our own (order-2 contexts, graded harm, an end token that can come early, mass undecided at T),
 * the rollout-h step is unbiased for the exact ∇J and agrees in expectation with the exact-h step;
 * beyond the exact budget the CLI trains the lazy tabular and mlp policies with it, the same bits
 * with 1 thread (a child process) as with this process's 2; the rollout buffers are checked against
 * the memory budget.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileScenario, ExactEngine, LazyTabular, MonteCarlo, initMlp, policyToJson, resolveScenario, train, TRAIN_DEFAULTS, type TrainOptions } from '../ts/index.js';
import { Optimizer } from '../ts/core/optimizer.js';
import { baseLogits, objectiveValue, rlStep } from '../ts/core/training.js';
import { initialPolicy } from '../ts/workflows/train.js';
import { runCli } from './helpers/cli.js';
import { ladderScenario } from './helpers/ladder.js';

/** "up" raises the harm (0.25, 0.5, then absorbing 1), "stop" absorbs at 0.1; a response can
 *  still sit at 0.25 or 0.5 at T = 6 (undecided mass), or end early. */
const scenario = ladderScenario({
  name: 'own-innovation',
  length: 6,
  first: [0.45, 0.3, 0.15, 0.1],
  second: [[0.5, 0.25, 0.15, 0.1], [0.3, 0.4, 0.2, 0.1], [0.25, 0.2, 0.3, 0.25]],
  pair: (i, j) => [0.35 + 0.05 * j, 0.3 - 0.05 * i, 0.2, 0.15 + 0.05 * i - 0.05 * j],
  values: { s1: 0.25, s2: 0.5, HARM: 1, SAFE: 0.1 },
});

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i]!, 0);
function meanSe(x: number[]): [number, number] {
  const mean = x.reduce((s, v) => s + v, 0) / x.length;
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / (x.length - 1);
  return [mean, Math.sqrt(variance / x.length)];
}

test('the rollout-h step is unbiased for the exact gradient of J and agrees with the exact-h step in expectation', (t) => {
  const engine = new ExactEngine(scenario);
  const mc = new MonteCarlo(scenario, { exact: engine });
  const logits = baseLogits(engine).map((x, i) => x + 0.6 * Math.sin(1.7 * i));
  const policy = { kind: 'tabular' as const, logits };
  const exact = objectiveValue(engine, policy, { kind: 'standard', lambda: 2, recovery: [] }, true).gradient!;
  const directions = [exact, exact.map((_, i) => Math.cos(2.3 * i)), exact.map((_, i) => Math.sin(0.9 * i * i))];
  // The gradient a step applies: the change of the parameters under plain SGD at rate 1.
  const gradient = (harm: 'exact' | 'rollouts', firstIndex: number) => {
    const params = logits.slice();
    rlStep(mc, policy, params, new Optimizer('sgd', params.length, 1), { algorithm: 'reinforce-innovation', samples: 128, seed: 3, firstIndex, lambda: 2, harm, ...(harm === 'rollouts' ? { rollouts: 2 } : {}) });
    return logits.map((x, i) => x - params[i]!);
  };
  const rollout: number[][] = directions.map(() => []);
  const paired: number[][] = directions.map(() => []);
  for (let k = 0; k < 120; k++) {
    const r = gradient('rollouts', k * 128);
    const e = gradient('exact', k * 128);
    directions.forEach((u, d) => {
      rollout[d]!.push(dot(r, u));
      paired[d]!.push(dot(r, u) - dot(e, u));
    });
  }
  directions.forEach((u, d) => {
    const [mean, se] = meanSe(rollout[d]!);
    t.true(Math.abs(mean - dot(exact, u)) <= 4 * se, `direction ${d}: ${mean} ± ${se} vs exact ${dot(exact, u)}`);
    const [diff, diffSe] = meanSe(paired[d]!);
    t.true(diffSe > 0 && Math.abs(diff) <= 4 * diffSe, `direction ${d}: rollout − exact h ${diff} ± ${diffSe}`);
  });
  const [along, alongSe] = meanSe(rollout[0]!);
  t.true(along > 10 * alongSe, `the estimate resolves ∇J: ${along} ± ${alongSe}`);
});

/** Over the exact budget at --memory-budget 0.01 GiB (≈ 1.2·10^6 exact states), small enough for rollouts. */
const OVER = 'random(seed=5,V=16,n=2,T=8,D=4000,eos=true)';
const over = compileScenario(resolveScenario(OVER, { samplingOnly: true }), { samplingOnly: true });
const BUDGET = 0.01 * 1024 ** 3;

/** The train command's options for `--algorithm reinforce-innovation --steps 3 --samples 64 --memory-budget 0.01`. */
const cliOptions = (policy: 'tabular' | 'mlp', extra: Partial<TrainOptions>): TrainOptions => ({
  ...TRAIN_DEFAULTS,
  objective: { kind: 'standard', lambda: 1, mu: 10, gamma: 1, mix: 0.2, anchor: 'init' },
  algorithm: 'reinforce-innovation',
  policy,
  steps: 3,
  samples: 64,
  memoryBudget: BUDGET,
  ...extra,
});

const runs: ['tabular' | 'mlp', string[], Partial<TrainOptions>][] = [
  ['tabular', [], {}],
  ['mlp', ['--mlp-hidden', '8', '--rollouts', '2'], { mlp: { order: 2, hidden: [8], activation: 'tanh' }, rollouts: 2 }],
];
for (const [policy, flags, extra] of runs) {
  test(`beyond the exact budget, train --algorithm reinforce-innovation --policy ${policy} moves the policy, the same bits with 1 thread as with 2`, async (t) => {
    const refused = t.throws(() => new ExactEngine(over, { memoryBudgetBytes: BUDGET, policyTables: true }));
    t.is((refused as Error & { code?: string }).code, 'HH_STATE_SPACE_TOO_LARGE');
    const log: number[] = [];
    const trained = await train(over, null, cliOptions(policy, extra), (r) => log.push(...(r.gradNorm ?? [])));
    t.is(trained.kind, policy === 'tabular' ? 'lazy-tabular' : 'mlp');
    t.true(log.length > 0 && log.every(Number.isFinite) && log.some((g) => g > 0), 'a nonzero sampled gradient');
    if (trained.kind === 'lazy-tabular') {
      // Rows start at the base; training moved them away from it.
      const sample = new MonteCarlo(over).sample({ kind: 'base' }, { count: 200, seed: 1 });
      const moved = new MonteCarlo(over).replayLogProbs(trained, sample.tokens, 200).map((x, i) => Math.abs(x - sample.logProbs[i]!));
      t.true(Math.max(...moved) > 1e-3, `${Math.max(...moved)}`);
    } else if (trained.kind === 'mlp') {
      // Training starts from the mlp's fit to the base, and moved away from it.
      const init = initialPolicy(over, null, 'mlp', extra.mlp, TRAIN_DEFAULTS.seed);
      t.true(init.kind === 'mlp' && trained.params.some((p, i) => p !== init.params[i]), 'the mlp moved from its fit to the base');
    }
    const dir = mkdtempSync(join(tmpdir(), 'hh-innov-'));
    try {
      const cli = runCli(['train', OVER, '--algorithm', 'reinforce-innovation', '--policy', policy, ...flags, '--steps', '3', '--samples', '64', '--memory-budget', '0.01', '--out', dir], { RAYON_NUM_THREADS: '1' });
      t.is(cli.status, 0, cli.stderr);
      t.true(readFileSync(join(dir, 'policy.json'), 'utf8') === JSON.stringify(policyToJson(trained, over)), 'the same policy file bit for bit');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('the rollout buffers (2 × samples × (T+1) f64) are checked against the memory budget before sampling', (t) => {
  const mc = new MonteCarlo(scenario);
  const mlp = initMlp(scenario, { order: 2, hidden: [4], activation: 'tanh' }, 1);
  const bytes = 2 * 64 * (scenario.length + 1) * 8;
  const step = (memoryBudget: number) => {
    const params = mlp.params.slice();
    rlStep(mc, mlp, params, new Optimizer('sgd', params.length, 0.1), { algorithm: 'reinforce-innovation', samples: 64, seed: 0, lambda: 2, memoryBudget });
    return params;
  };
  t.true(step(bytes).some((p, i) => p !== mlp.params[i]), 'at the budget exactly, it steps');
  const error = t.throws(() => step(bytes - 1));
  t.is((error as Error & { code?: string }).code, 'HH_OUT_OF_MEMORY');
  t.regex(error!.message, /rollout buffers/);
  // A lazy tabular policy's own budget applies when none is given; nothing is sampled or stored.
  const lazy = new LazyTabular(scenario, { memoryBudget: bytes - 1 });
  const refused = t.throws(() => lazy.rlStep(mc, new Optimizer('sgd', 0, 0.1), { algorithm: 'reinforce-innovation', samples: 64, seed: 0, lambda: 2 }));
  t.is((refused as Error & { code?: string }).code, 'HH_OUT_OF_MEMORY');
  t.is(lazy.numRows, 0);
});

test('the h source is checked: exact needs the exact model, rollouts are for reinforce-innovation only', async (t) => {
  const mc = new MonteCarlo(scenario);
  const mlp = initMlp(scenario, { order: 2, hidden: [4], activation: 'tanh' }, 1);
  const step = (options: Partial<Parameters<typeof rlStep>[4]>) => rlStep(mc, mlp, mlp.params.slice(), new Optimizer('sgd', mlp.params.length, 0.1), { algorithm: 'reinforce-innovation', samples: 16, seed: 0, lambda: 2, ...options });
  for (const [options, pattern] of [
    [{ harm: 'exact' }, /harm "exact" needs the exact model/],
    [{ algorithm: 'ppo', rollouts: 2 }, /only reinforce-innovation/],
    [{ rollouts: 0 }, /rollouts must be at least 1/],
  ] as const) {
    const error = t.throws(() => step(options));
    t.is((error as Error & { code?: string }).code, 'HH_INVALID_ARGUMENT');
    t.regex(error!.message, pattern);
  }
  await t.throwsAsync(train(scenario, null, { ...cliOptions('tabular', {}), algorithm: 'ppo', rollouts: 2 }, () => {}), { message: /rollouts: only reinforce-innovation/ });
});
