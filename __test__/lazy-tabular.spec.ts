/**
 * The lazily keyed tabular policy through the API (issue 10 §1): on a scenario of our own that the
 * exact engine enumerates (order-2 contexts, an end token that can come early, graded harm with
 * mass still undecided at T), training it without the engine gives the policy the tabular policy
 * reaches with the engine, bit for bit; its sparse file round-trips; its rows respect the budget.
 */
import test from 'ava';
import { ExactEngine, LazyTabular, MonteCarlo, policyFromJson, policyToJson, train, TRAIN_DEFAULTS, type Policy, type TrainOptions } from '../ts/index.js';
import { Optimizer } from '../ts/core/optimizer.js';
import { ladderScenario } from './helpers/ladder.js';

/** "up" raises the harm (0.3, 0.6, then absorbing 1), "stop" absorbs at 0; harm is graded and a
 *  response can still sit at 0.3 or 0.6 at T = 7 (undecided mass). */
const scenario = ladderScenario({
  name: 'own-lazy',
  length: 7,
  first: [0.4, 0.35, 0.15, 0.1],
  second: [[0.5, 0.3, 0.1, 0.1], [0.3, 0.4, 0.2, 0.1], [0.2, 0.2, 0.3, 0.3]],
  pair: (i, j) => [0.4 - 0.05 * j, 0.25 + 0.05 * i, 0.2 + 0.05 * j, 0.15 - 0.05 * i],
  values: { s1: 0.3, s2: 0.6, HARM: 1 },
});

const options = (algorithm: TrainOptions['algorithm']): TrainOptions => ({
  ...TRAIN_DEFAULTS,
  objective: { kind: 'standard', lambda: 2, mu: 10, gamma: 1 },
  algorithm,
  policy: 'tabular',
  steps: 6,
  samples: 128,
  seed: 4,
  learningRate: 0.1,
  evalEvery: 100,
});

/** Both policies' samples (tokens and log-probabilities) on one batch: equal exactly when their rows are. */
function sampled(engine: ExactEngine, policy: Policy) {
  const batch = new MonteCarlo(scenario, { exact: engine }).sample(policy, { count: 3000, seed: 8 });
  return { tokens: Array.from(batch.tokens), logProbs: Array.from(batch.logProbs) };
}

for (const algorithm of ['reinforce', 'ppo'] as const) {
  test(`${algorithm} without the exact engine (lazy rows) reaches the tabular policy trained with it, bit for bit`, async (t) => {
    const engine = new ExactEngine(scenario);
    const dense = await train(scenario, engine, options(algorithm), () => {});
    const records: number[] = [];
    const lazy = await train(scenario, null, options(algorithm), (r) => records.push(r.objective));
    t.is(dense.kind, 'tabular');
    t.is(lazy.kind, 'lazy-tabular');
    const a = sampled(engine, dense);
    const b = sampled(engine, lazy);
    t.deepEqual(b.tokens, a.tokens);
    t.deepEqual(b.logProbs, a.logProbs);
    // It trained: on base responses, its log-probabilities moved away from the base's.
    const mc = new MonteCarlo(scenario);
    const base = mc.sample({ kind: 'base' }, { count: 500, seed: 2 });
    const moved = mc.replayLogProbs(lazy, base.tokens, 500).map((x, i) => Math.abs(x - base.logProbs[i]!));
    t.true(Math.max(...moved) > 1e-2, `${Math.max(...moved)}`);
    t.true(records.slice(0, -1).every(Number.isFinite));
  });
}

test('the sparse policy file round-trips, and its estimates equal those of the stored rows', async (t) => {
  const policy = await train(scenario, null, options('ppo'), () => {});
  const json = JSON.parse(JSON.stringify(policyToJson(policy, scenario)));
  t.is(json.kind, 'lazy-tabular');
  t.true(json.entries.length > 10);
  t.deepEqual(Object.keys(json.entries[0]), ['t', 'context', 'state', 'logits']);
  const back = policyFromJson(json, scenario);
  t.deepEqual(back, policy);
  const mc = new MonteCarlo(scenario);
  const estimate = (p: Policy) => mc.estimate(p, { samples: 2000, seed: 3, harm: 'rollouts', rollouts: 4 });
  t.deepEqual(estimate(back), estimate(policy));
  // A row of the wrong width is named.
  json.entries[2].logits.pop();
  t.throws(() => policyFromJson(json, scenario), { code: 'HH_POLICY_INVALID', message: /entries\[2\]\.logits/ });
});

test('rows beyond the memory budget are refused with HH_OUT_OF_MEMORY, and nothing is stored', (t) => {
  const mc = new MonteCarlo(scenario);
  const lazy = new LazyTabular(scenario, { memoryBudget: 1000 });
  const optimizer = new Optimizer('adam', 0, 0.1);
  t.throws(() => lazy.rlStep(mc, optimizer, { algorithm: 'ppo', samples: 64, seed: 1, lambda: 2 }), { code: 'HH_OUT_OF_MEMORY', message: /lazy tabular policy.*memory budget/ });
  t.is(lazy.numRows, 0);
  const roomy = new LazyTabular(scenario);
  roomy.rlStep(mc, optimizer, { algorithm: 'ppo', samples: 64, seed: 1, lambda: 2 });
  t.true(roomy.numRows > 0);
  t.throws(() => new LazyTabular(scenario, { from: { kind: 'base' } }), { code: 'HH_INVALID_ARGUMENT' });
});
