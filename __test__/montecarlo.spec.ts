/**
 * The Monte Carlo engine through the TypeScript API: reproducible samples, estimates within their
 * standard errors of the exact values, mlp policies, policy files and the `estimate` command.
 */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE,
  ExactEngine,
  HarmHorizonError,
  MonteCarlo,
  NO_TOKEN,
  builtinScenario,
  compileScenario,
  fitMlpToBase,
  initMlp,
  loadPolicy,
  mlpLogits,
  policyFromJson,
  randomScenario,
  savePolicy,
  type Policy,
} from '../ts/index.js';
import { runCli } from './helpers/cli.js';
import { gradedScenario } from './helpers/graded.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-mc-'));
const horizon = compileScenario(builtinScenario('horizon'));
const refusal = compileScenario(builtinScenario('refusal'));

function within4se(t: { true: (c: boolean, m?: string) => void }, estimate: number, se: number, exact: number, what: string) {
  t.true(Math.abs(estimate - exact) <= 4 * se + 1e-10 * Math.max(Math.abs(exact), 1e-4), `${what}: ${estimate} ± ${se} vs ${exact}`);
}

test('samples are reproducible, batchable and identical with or without the exact model', (t) => {
  const exact = new ExactEngine(horizon);
  const withModel = new MonteCarlo(horizon, { exact });
  const without = new MonteCarlo(horizon);
  const a = withModel.sample(BASE, { count: 1000, seed: 3 });
  const b = without.sample(BASE, { count: 1000, seed: 3 });
  t.deepEqual(a.tokens, b.tokens);
  t.deepEqual(a.harm, b.harm);
  t.is(a.states!.length, 1000 * 11);
  t.is(b.states, undefined);
  const tail = without.sample(BASE, { count: 400, seed: 3, firstIndex: 600 });
  t.deepEqual(tail.tokens, a.tokens.subarray(600 * 10));
  t.notDeepEqual(without.sample(BASE, { count: 1000, seed: 4 }).tokens, a.tokens);
  // Forced prefixes: "b b" makes every response harmful.
  const forced = without.sample(BASE, { count: 200, seed: 1, prefix: new Uint32Array([1, 1]) });
  t.true(forced.harm.every((h) => h === 1));
  for (let n = 0; n < 200; n++) t.deepEqual(Array.from(forced.tokens.subarray(n * 10, n * 10 + 2)), [1, 1]);
  // Ended responses: refusal's <eos> ends responses early.
  const r = new MonteCarlo(refusal).sample(BASE, { count: 500, seed: 1 });
  const ended = Array.from(r.emitted).findIndex((e) => e < 16);
  t.true(ended >= 0);
  t.is(r.tokens[ended * 16 + r.emitted[ended]], NO_TOKEN);
});

test('estimates lie within 4 standard errors of the exact values (horizon, base and Gibbs)', async (t) => {
  const exact = new ExactEngine(horizon);
  const mc = new MonteCarlo(horizon, { exact });
  for (const policy of [BASE, { kind: 'gibbs', lambda: 2 } as Policy]) {
    const est = await mc.estimateAsync(policy, { samples: 40_000, seed: 7, harm: 'exact', teacherForced: true });
    const profile = exact.harmProfile(policy);
    within4se(t, est.expectedHarm, est.expectedHarmSE, profile.expectedHarm, `${policy.kind} E[H]`);
    const kl = exact.klOnPolicy(policy);
    const tf = exact.onHarmfulPrefixes(policy).klTeacherForced;
    for (let i = 0; i < horizon.length; i++) {
      within4se(t, est.harmInformation!.mean[i], est.harmInformation!.se[i], profile.harmInformation[i], `${policy.kind} I_${i + 1}`);
      within4se(t, est.klOnPolicy.mean[i], est.klOnPolicy.se[i], kl[i], `${policy.kind} KL_${i + 1}`);
      within4se(t, est.klTeacherForced!.mean[i], est.klTeacherForced!.se[i], tf[i], `${policy.kind} teacher-forced KL_${i + 1}`);
    }
  }
});

test('async estimates equal sync ones bit for bit', async (t) => {
  const mc = new MonteCarlo(horizon, { exact: new ExactEngine(horizon) });
  const options = { samples: 3000, seed: 5, harm: 'rollouts' as const, rollouts: 4, gradient: 'leave-one-out' as const, teacherForced: true };
  const sync = mc.estimate(BASE, options);
  const async = await mc.estimateAsync(BASE, options);
  t.deepEqual(async, sync);
});

test('an mlp fitted to the base behaves like it, exactly and by sampling', (t) => {
  const init = initMlp(refusal, { order: 1, hidden: [16], activation: 'tanh' }, 1);
  const { policy, sequenceKl } = fitMlpToBase(refusal, init, { steps: 300 });
  t.true(sequenceKl < 0.05, `KL(base ‖ mlp) = ${sequenceKl}`);
  const exact = new ExactEngine(refusal);
  const viaMlp = exact.harmProfile(policy);
  const viaTable = exact.harmProfile({ kind: 'tabular', logits: exact.mlpTabulate(policy.mlp, policy.params) });
  t.deepEqual(viaMlp.harmInformation, viaTable.harmInformation);
  t.true(Math.abs(viaMlp.expectedHarm - exact.harmProfile(BASE).expectedHarm) < 0.05);
  // The mlp samples without the exact model, and exactly as its tabulation does with it.
  const free = new MonteCarlo(refusal).sample(policy, { count: 300, seed: 2 });
  const tabulated = new MonteCarlo(refusal, { exact }).sample({ kind: 'tabular', logits: exact.mlpTabulate(policy.mlp, policy.params) }, { count: 300, seed: 2 });
  t.deepEqual(free.tokens, tabulated.tokens);
});

test('policy files round-trip and bad ones are refused naming the field', (t) => {
  const exact = new ExactEngine(horizon);
  const mlp = initMlp(horizon, { order: 1, hidden: [4, 3], activation: 'relu' }, 9);
  const file = join(scratch, 'mlp.json');
  savePolicy(file, mlp, horizon);
  t.deepEqual(loadPolicy(file, horizon), mlp);
  const logits = new Float64Array(horizon.length * exact.numStates * 3).map((_, i) => Math.sin(i));
  logits[4] = -Infinity;
  const tabularFile = join(scratch, 'tabular.json');
  savePolicy(tabularFile, { kind: 'tabular', logits }, horizon, exact.numStates);
  t.deepEqual(loadPolicy(tabularFile, horizon, exact.numStates), { kind: 'tabular', logits });
  const bad = (change: Record<string, unknown>, field: string) => {
    const json = { format: 'harm-horizon-policy', version: 1, kind: 'mlp', scenario: { name: 'horizon', vocab: 3, length: 10 }, mlp: { order: 1, hidden: [4], activation: 'tanh' }, params: [0, 1], ...change };
    const error = t.throws(() => policyFromJson(json, horizon, exact.numStates), { instanceOf: HarmHorizonError });
    t.is(error?.code, 'HH_POLICY_INVALID');
    t.is(error?.field, field);
  };
  bad({ format: 'x' }, 'format');
  bad({ scenario: { name: 'horizon', vocab: 4, length: 10 } }, 'scenario.vocab');
  bad({ scenario: { vocab: 3, length: 10 } }, 'scenario.name');
  bad({ mlp: { order: 1, hidden: [4, 0], activation: 'tanh' } }, 'mlp.hidden[1]');
  bad({ kind: 'gibbs', lambda: -1 }, 'lambda');
  bad({ mlp: { order: 0, hidden: [4], activation: 'tanh' } }, 'mlp.order');
  bad({ mlp: { order: 1, hidden: [4], activation: 'sigmoid' } }, 'mlp.activation');
  bad({ params: [0, 'x'] }, 'params[1]');
  bad({ kind: 'tabular', logits: [1, 2, 3] }, 'logits');
  bad({ kind: 'rnn' }, 'kind');
  // A wrong-sized parameter vector is refused by the core with a coded error.
  const wrong = { kind: 'mlp', mlp: mlp.mlp, params: new Float64Array(3) } as Policy;
  t.is(t.throws(() => new MonteCarlo(horizon).sample(wrong, { count: 1, seed: 0 }), { instanceOf: HarmHorizonError })?.code, 'HH_INVALID_ARGUMENT');
});

test('estimate --json: the output contract, beside the exact values', (t) => {
  const r = runCli(['estimate', 'horizon', '--samples', '20000', '--seed', '3', '--json']);
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  for (const key of ['expectedHarm', 'expectedHarmSE', 'positions']) t.true(key in report, key);
  t.is(report.positions.length, 10);
  for (const p of report.positions) {
    for (const key of ['t', 'harmInformation', 'harmInformationSE', 'klOnPolicy', 'klOnPolicySE']) t.true(key in p, key);
    t.is(p.klOnPolicy, 0, 'the base against itself');
    t.true(Math.abs(p.harmInformation - p.exact.harmInformation) <= 4 * p.harmInformationSE + 1e-12);
  }
  t.true(Math.abs(report.expectedHarm - report.exactExpectedHarm) <= 4 * report.expectedHarmSE);
});

test('estimate takes a policy file and is identical whatever the thread count', (t) => {
  const init = initMlp(refusal, { order: 1, hidden: [8], activation: 'tanh' }, 4);
  const file = join(scratch, 'refusal-mlp.json');
  savePolicy(file, init, refusal);
  const args = ['estimate', 'refusal', '--policy', file, '--samples', '3000', '--rollouts', '2', '--json'];
  const one = runCli(args, { RAYON_NUM_THREADS: '1' });
  const two = runCli(args, { RAYON_NUM_THREADS: '2' });
  t.is(one.status, 0, one.stderr);
  t.is(one.stdout, two.stdout);
  const report = JSON.parse(one.stdout);
  t.is(report.policy, 'mlp');
  t.is(report.harmSource, 'rollouts');
  t.true(report.positions[0].klOnPolicy > 0, 'an untrained mlp is not the base');
});

test('estimate refuses bad input with exit 2', (t) => {
  const notJson = join(scratch, 'broken.json');
  writeFileSync(notJson, '{');
  for (const args of [
    ['estimate', 'horizon'],
    ['estimate', 'horizon', '--samples', '0'],
    ['estimate', 'horizon', '--samples', '10', '--estimator', 'magic'],
    ['estimate', 'horizon', '--samples', '10', '--policy', notJson],
    ['estimate', 'horizon', '--samples', '10', '--policy', join(scratch, 'missing.json')],
  ]) {
    const r = runCli(args);
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.notRegex(r.stderr, /\n\s+at /);
  }
});

test('Monte Carlo runs on a scenario too large for the exact engine (base and mlp)', (t) => {
  const big = compileScenario(randomScenario({ seed: 2, vocab: 16, order: 3, length: 64, states: 200 }), { memoryBudgetBytes: Infinity });
  t.throws(() => new ExactEngine(big, { memoryBudgetBytes: 1e8 }), { instanceOf: HarmHorizonError });
  const mc = new MonteCarlo(big);
  const est = mc.estimate(BASE, { samples: 500, seed: 1, harm: 'rollouts', rollouts: 1 });
  t.true(est.expectedHarm >= 0 && est.expectedHarm <= 1);
  const mlp = initMlp(big, { order: 2, hidden: [16], activation: 'tanh' }, 0);
  const g = mc.estimate(mlp, { samples: 500, seed: 1, gradient: 'leave-one-out' });
  t.is(g.gradient!.blockLength, mlp.params.length);
  t.true(g.gradient!.norm.every((x) => Number.isFinite(x)));
});

test('policy handles: batch logits, replayed log-probabilities and the score kernel on given responses', (t) => {
  const exact = new ExactEngine(horizon);
  const mc = new MonteCarlo(horizon, { exact });
  const mlp = initMlp(horizon, { order: 1, hidden: [6], activation: 'tanh' }, 3);
  // Batch logits equal the tabulation at the states with those contexts.
  const table = exact.mlpTabulate(mlp.mlp, mlp.params);
  const states = exact.states();
  const positions = new Uint32Array([1, 2, 5]);
  const picks = [0, 1, 2].map((i) => states.live.findIndex((l, s) => l === 1 && s >= i));
  const contexts = new Uint32Array(picks.map((s) => states.context[s] % 4));
  const logits = mlpLogits(horizon, mlp, positions, contexts);
  picks.forEach((s, i) => t.deepEqual(Array.from(logits.subarray(i * 3, i * 3 + 3)), Array.from(table.subarray(((positions[i] - 1) * exact.numStates + s) * 3, ((positions[i] - 1) * exact.numStates + s + 1) * 3))));
  // Replayed log-probabilities are those the sampler recorded.
  const batch = mc.sample(mlp, { count: 200, seed: 2 });
  t.deepEqual(mc.replayLogProbs(mlp, batch.tokens, 200), batch.logProbs);
  // The kernel with c = H is the REINFORCE estimate of estimate().
  const coefficients = new Float64Array(200 * 10).map((_, i) => batch.harm[Math.floor(i / 10)]);
  const kernel = mc.accumulateScores(mlp, batch.tokens, 200, coefficients);
  const est = mc.estimate(mlp, { samples: 200, seed: 2, gradient: 'reinforce' });
  t.deepEqual(kernel.blocks, est.gradient!.blocks);
  t.deepEqual(kernel.variance, est.gradient!.variance);
  const tabular: Policy = { kind: 'tabular', logits: exact.native.baseLogits() };
  t.is(mc.accumulateScores(tabular, batch.tokens, 200, coefficients).blockLength, exact.numStates * 3);
  t.is(t.throws(() => mc.accumulateScores(mlp, batch.tokens, 200, new Float64Array(3)), { instanceOf: HarmHorizonError })?.code, 'HH_INVALID_ARGUMENT');
});

test('a MonteCarlo keeps the tables of the last tabular policy only while its logits are unchanged', (t) => {
  const sc = compileScenario(randomScenario({ seed: 4, vocab: 5, order: 2, length: 8, states: 6, endToken: true }));
  const exact = new ExactEngine(sc);
  const logits = new Float64Array(sc.length * exact.numStates * sc.tokens.length).map((_, i) => Math.sin(i * 1.7));
  const options = { samples: 500, seed: 2, harm: 'exact' as const, gradient: 'innovation' as const };
  const mc = new MonteCarlo(sc, { exact });
  const first = mc.estimate({ kind: 'tabular', logits }, options);
  t.deepEqual(mc.estimate({ kind: 'tabular', logits }, options), first);
  // Changed in place: the kept tables no longer hold these logits; a fresh MonteCarlo agrees.
  logits[3] += 1;
  const changed = mc.estimate({ kind: 'tabular', logits }, options);
  t.notDeepEqual(changed, first);
  t.deepEqual(changed, new MonteCarlo(sc, { exact }).estimate({ kind: 'tabular', logits }, options));
  t.deepEqual(mc.sample({ kind: 'tabular', logits }, { count: 50, seed: 1 }), new MonteCarlo(sc, { exact }).sample({ kind: 'tabular', logits }, { count: 50, seed: 1 }));
});

test('sampleInto overwrites an earlier batch with the responses sample() returns, bit for bit', (t) => {
  // Own scenario: order-2 contexts, graded harm, an end token, mass undecided at T.
  const sc = compileScenario(gradedScenario());
  const exact = new ExactEngine(sc);
  const mc = new MonteCarlo(sc, { exact });
  const V = sc.tokens.length;
  const tabular: Policy = { kind: 'tabular', logits: new Float64Array(sc.length * exact.numStates * V).map((_, i) => Math.cos(i * 0.9)) };
  const mlp = initMlp(sc, { order: 2, hidden: [5], activation: 'tanh' }, 4);
  const N = 700;
  const prefix = new Uint32Array(N * 2).map((_, i) => (i % 3 === 1 ? NO_TOKEN : i % V));
  for (const [policy, engine] of [
    [tabular, mc],
    [mlp, new MonteCarlo(sc)],
  ] as const) {
    const batch = engine.sample(policy, { count: N, seed: 1 });
    for (const options of [{ count: N, seed: 2, firstIndex: 5 }, { count: N, seed: 3, prefix, prefixLength: 2 }]) {
      const expected = engine.sample(policy, options);
      t.true(Array.from(expected.emitted).some((e) => e < sc.length), 'some responses end early');
      const into = engine.sampleInto(policy, options, batch);
      t.deepEqual(into, expected);
      t.is(into.tokens, batch.tokens, 'the arrays are reused');
    }
  }
  const batch = mc.sample(tabular, { count: N, seed: 1 });
  const fail = (into: typeof batch, count = N) => t.throws(() => mc.sampleInto(tabular, { count, seed: 1 }, into), { instanceOf: HarmHorizonError });
  t.regex(fail({ ...batch, emitted: batch.tokens.subarray(0, N) })?.message ?? '', /tokens and emitted share memory/);
  t.regex(fail({ ...batch, harm: new Float64Array(N - 1) })?.message ?? '', /harm: 699 entries, expected N = 700/);
  t.is(fail(batch, N + 1)?.field, 'count');
  const { states: _, ...stateless } = batch;
  t.regex(fail(stateless)?.message ?? '', /states: missing/);
});
