/**
 * The binding converts only: errors reach JavaScript with their code built at the boundary, sync and
 * async alike (no "HH_…: " message prefix to parse back), enums cross as string enums, and the
 * training wrappers of ts/core/ compute what the core computes.
 */
import test from 'ava';
import { ExactEngine, HarmHorizonError, MonteCarlo, builtinScenario, compileScenario, randomScenario, type Policy } from '../ts/index.js';
import { Optimizer } from '../ts/core/optimizer.js';
import { baseLogits, policyLogits } from '../ts/core/training.js';

const scenario = compileScenario(randomScenario({ seed: 12, vocab: 4, order: 2, length: 5, states: 3 }));

test('an async rejection carries the same code and message as the sync error, with no code prefix', async (t) => {
  const engine = new ExactEngine(scenario);
  // Checked inside the task's compute (on the thread pool), not while copying the inputs.
  const policy: Policy = { kind: 'tabular', logits: new Float64Array(3) };
  const sync = t.throws(() => engine.harmProfile(policy), { instanceOf: HarmHorizonError });
  const rejected = await t.throwsAsync(engine.harmProfileAsync(policy), { instanceOf: HarmHorizonError });
  t.is(sync?.code, 'HH_INVALID_ARGUMENT');
  t.is(rejected?.code, sync?.code);
  t.is(rejected?.message, sync?.message);
  t.notRegex(rejected?.message ?? '', /^HH_/);
  const analysis = await t.throwsAsync(engine.analyzeAsync(-1), { instanceOf: HarmHorizonError });
  t.is(analysis?.code, 'HH_INVALID_ARGUMENT');
  t.regex(analysis?.message ?? '', /lambda must be a finite number/);
  // A later call on the same engine works.
  const profile = await engine.harmProfileAsync({ kind: 'tabular', logits: baseLogits(engine) });
  t.true(Math.abs(profile.expectedHarm - engine.harmProfile().expectedHarm) < 1e-12);
});

test('a value outside a string enum is refused as HH_INVALID_ARGUMENT naming the field', async (t) => {
  const mc = new MonteCarlo(scenario, { exact: new ExactEngine(scenario) });
  const options = { samples: 10, seed: 1, proposal: 'sideways' } as unknown as Parameters<MonteCarlo['estimate']>[1];
  const sync = t.throws(() => mc.estimate({ kind: 'base' }, options), { instanceOf: HarmHorizonError });
  t.is(sync?.code, 'HH_INVALID_ARGUMENT');
  t.regex(sync?.message ?? '', /proposal/);
  const rejected = await t.throwsAsync(mc.estimateAsync({ kind: 'base' }, options), { instanceOf: HarmHorizonError });
  t.is(rejected?.code, 'HH_INVALID_ARGUMENT');
  t.throws(() => new Optimizer('momentum' as never, 3, 0.1), { instanceOf: HarmHorizonError, message: /kind|Optimizer/ });
});

test('the optimizer wrapper steps as its definition says: sgd moves by −lr·g, adam by ≈ lr·sign(g) at first', (t) => {
  const gradient = Float64Array.from([0.5, -2, 0]);
  const params = Float64Array.from([1, 1, 1]);
  new Optimizer('sgd', 3, 0.1).step(params, gradient);
  t.deepEqual(Array.from(params), [1 - 0.05, 1 + 0.2, 1]);
  const adamParams = Float64Array.from([1, 1, 1]);
  new Optimizer('adam', 3, 0.1).step(adamParams, gradient);
  t.true(Math.abs(adamParams[0] - 0.9) < 1e-6 && Math.abs(adamParams[1] - 1.1) < 1e-6 && adamParams[2] === 1);
  t.throws(() => new Optimizer('sgd', 3, 0.1).step(params, new Float64Array(2)), { instanceOf: HarmHorizonError, message: /differ in length/ });
});

test('policyLogits of the Gibbs policy at λ = 0 are the base logits where the base is positive', (t) => {
  const engine = new ExactEngine(compileScenario(builtinScenario('refusal')));
  const base = baseLogits(engine);
  const gibbs = policyLogits(engine, { kind: 'gibbs', lambda: 0 });
  t.is(gibbs.length, base.length);
  let compared = 0;
  for (let i = 0; i < base.length; i++) {
    if (Number.isFinite(base[i]) && base[i] !== 0) {
      t.true(Math.abs(Math.exp(gibbs[i]) - Math.exp(base[i])) < 1e-12, `entry ${i}`);
      compared++;
    }
  }
  t.true(compared > 10);
});
