/**
 * Transformer policies on the exact engine (the prefix tree), Monte Carlo against it, and training
 * (issue 12, §2–3).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';

import { rankAssistedAttack, sampledPrefillAttack } from '../ts/workflows/attack.js';
import { BASE, builtinScenario, compileScenario, ExactEngine, type Policy } from '../ts/index.js';
import { MonteCarlo } from '../ts/core/montecarlo.js';
import { initTransformer, type TransformerLayout } from '../ts/core/policy.js';
import { loadPolicy } from '../ts/io/policy-file.js';
import { evaluateObjective, train, TRAIN_DEFAULTS, type ObjectiveKind, type TrainOptions, type TrainRecord } from '../ts/workflows/train.js';
import { Transformer } from '../ts/core/transformer.js';
import { runCli } from './helpers/cli.js';
import { gradedScenario } from './helpers/graded.js';
import { STEPWISE, stepwiseScenario } from './helpers/stepwise.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-transformer-exact-'));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

const graded = compileScenario(gradedScenario());
const horizon = compileScenario(builtinScenario('horizon'));
const stepwise = compileScenario(stepwiseScenario());
const small: TransformerLayout = { layers: 1, width: 8, heads: 2, mlpWidth: 8 };

/** A seeded transformer moved off its symmetric start, so that every block matters. */
function transformer(scenario: typeof graded, layout: TransformerLayout, seed: number): Policy & { kind: 'transformer' } {
  const p = initTransformer(scenario, layout, seed);
  return { ...p, params: p.params.map((x, i) => x + 0.3 * Math.sin(1.3 * i + seed)) };
}

/**
 * The transformer's rows at every live prefix, built without the core's tabulation: each state's
 * prefix from the tree's successor table, its row from the KV-cache path (`nextLogits`).
 */
function independentTable(engine: ExactEngine, policy: Policy & { kind: 'transformer' }): Float64Array {
  const { tokens, length: t } = engine.scenario;
  const v = tokens.length;
  const { live, next } = engine.states();
  const s = live.length;
  const net = new Transformer({ vocab: v, length: t, ...policy.transformer });
  const prefix: number[][] = [[]];
  const byDepth: number[][] = Array.from({ length: t }, () => []);
  for (let state = 0; state < s; state++) {
    if (!live[state]) continue;
    byDepth[prefix[state]!.length]!.push(state);
    for (let a = 0; a < v; a++) prefix[next[state * v + a]!] = [...prefix[state]!, a];
  }
  const table = new Float64Array(t * s * v);
  byDepth.forEach((states, k) => {
    if (states.length === 0) return;
    const rows = k === 0 ? net.nextLogits(policy.params, new Uint32Array(0), 0) : net.nextLogits(policy.params, Uint32Array.from(states.flatMap((x) => prefix[x]!)), k);
    states.forEach((state, i) => {
      for (let pos = 0; pos < t; pos++) table.set(rows.subarray(i * v, (i + 1) * v), (pos * s + state) * v);
    });
  });
  return table;
}

function close(t: { true: (c: boolean, m?: string) => void }, a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-10) {
  t.true(a.length === b.length, `${what}: lengths ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    const ok = (Number.isNaN(a[i]!) && Number.isNaN(b[i]!)) || Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!));
    if (!ok) return t.true(false, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
  t.true(true);
}

test('exact analysis of a transformer = the analysis of the tabular policy of its rows (graded, order 2)', (t) => {
  const tree = new ExactEngine(graded, { prefixTree: true });
  const policy = transformer(graded, small, 3);
  const tabular: Policy = { kind: 'tabular', logits: independentTable(tree, policy) };
  const [a, b] = [tree.harmProfile(policy, { gradient: true }), tree.harmProfile(tabular, { gradient: true })];
  t.true(a.undecided > 1e-3, 'harm is left undecided at T');
  close(t, [a.expectedHarm, a.harmVariance, a.undecided, a.horizon], [b.expectedHarm, b.harmVariance, b.undecided, b.horizon], 'E[H], Var(H), undecided, horizon');
  close(t, a.harmInformation, b.harmInformation, 'I_t');
  close(t, a.gradNorm, b.gradNorm, '||G_t||');
  close(t, a.decisionTime, b.decisionTime, 'P(τ = t)');
  close(t, a.gradient!, b.gradient!, 'G_t(s, a)');
  close(t, tree.klOnPolicy(policy), tree.klOnPolicy(tabular), 'on-policy KL');
  const [pa, pb] = [tree.onHarmfulPrefixes(policy), tree.onHarmfulPrefixes(tabular)];
  close(t, pa.asr, pb.asr, 'ASR_k');
  close(t, pa.klTeacherForced, pb.klTeacherForced, 'teacher-forced KL');
  // The scenario's own state space merges prefixes: a transformer is refused there, by name.
  const error = t.throws(() => new ExactEngine(graded).harmProfile(policy));
  t.regex(error!.message, /prefix-tree/);
});

for (const [name, scenario] of [['horizon', horizon], ['graded', graded]] as const) {
  test(`Monte Carlo on a transformer lies within 4 SE of its exact values (${name})`, (t) => {
    const tree = new ExactEngine(scenario, { prefixTree: true });
    const policy = transformer(scenario, small, 7);
    const mc = new MonteCarlo(scenario, { exact: tree });
    const e = mc.estimate(policy, { samples: 20000, seed: 11, harm: 'exact' });
    const exact = tree.harmProfile(policy);
    const kl = tree.klOnPolicy(policy);
    const within = (what: string, est: number, se: number, value: number) => t.true(Math.abs(est - value) <= 4 * se + 1e-12, `${what}: ${est} ± ${se} vs exact ${value}`);
    within('E[H]', e.expectedHarm, e.expectedHarmSE, exact.expectedHarm);
    for (let i = 0; i < scenario.length; i++) {
      within(`KL_${i + 1}`, e.klOnPolicy.mean[i]!, e.klOnPolicy.se[i]!, kl[i]!);
      within(`I_${i + 1}`, e.harmInformation!.mean[i]!, e.harmInformation!.se[i]!, exact.harmInformation[i]!);
    }
    for (let i = 0; i <= scenario.length; i++) within(`P(τ = ${i})`, e.decisionTime![i]!, e.decisionTimeSE![i]!, exact.decisionTime[i]!);
    if (e.undecided) within('P(τ > T)', e.undecided.mean, e.undecided.se, exact.undecided);
  });
}

test('the exact training gradient of a transformer = finite differences, for every objective', (t) => {
  const tree = new ExactEngine(stepwise, { prefixTree: true });
  const tiny: TransformerLayout = { layers: 1, width: 4, heads: 2, mlpWidth: 4 };
  const policy = transformer(stepwise, tiny, 5);
  const init = transformer(stepwise, tiny, 6);
  const { lambda, mu } = stepwise.defaults;
  const h = 1e-5;
  for (const kind of ['standard', 'deep', 'deep-anchored', 'augment'] as ObjectiveKind[]) {
    const objective = { kind, lambda, mu, gamma: 0.9 };
    const grad = evaluateObjective(tree, policy, objective, true, init).gradient!;
    t.is(grad.length, policy.params.length);
    const value = (params: Float64Array) => evaluateObjective(tree, { ...policy, params }, objective, false, init).total;
    for (let i = 0; i < policy.params.length; i += 9) {
      const [up, down] = [Float64Array.from(policy.params), Float64Array.from(policy.params)];
      up[i]! += h;
      down[i]! -= h;
      const fd = (value(up) - value(down)) / (2 * h);
      t.true(Math.abs(fd - grad[i]!) <= 1e-6 * (1 + Math.abs(fd)), `${kind}, parameter ${i}: finite difference ${fd}, gradient ${grad[i]}`);
    }
  }
});

const trainOptions = (over: Partial<TrainOptions>): TrainOptions => ({
  ...TRAIN_DEFAULTS,
  objective: { kind: 'standard', lambda: stepwise.defaults.lambda, mu: stepwise.defaults.mu, gamma: stepwise.defaults.gamma },
  algorithm: 'exact',
  policy: 'transformer',
  transformer: small,
  steps: 20,
  learningRate: 0.02,
  evalEvery: 1000,
  ...over,
});

async function run(engine: ExactEngine | null, options: TrainOptions): Promise<TrainRecord[]> {
  const records: TrainRecord[] = [];
  await train(stepwise, engine, options, (r) => records.push(r));
  return records;
}

test('train --policy transformer fits the base first and reports the fit', async (t) => {
  const tree = new ExactEngine(stepwise, { prefixTree: true });
  const [first] = await run(tree, trainOptions({ steps: 1 }));
  const fit = first!.fit!;
  t.true(fit.exactKl! < 0.05, `exact KL of the fit ${fit.exactKl}`);
  t.true(Math.abs(fit.sampledKl - fit.exactKl!) <= 4 * fit.sampledKlSE, `sampled ${fit.sampledKl} ± ${fit.sampledKlSE} vs exact ${fit.exactKl}`);
  t.true(first!.kl < 0.05, 'training starts near the base');
});

for (const kind of ['standard', 'deep', 'deep-anchored', 'augment'] as ObjectiveKind[]) {
  test(`exact descent on a transformer lowers the ${kind} objective`, async (t) => {
    const tree = new ExactEngine(stepwise, { prefixTree: true });
    const start = transformer(stepwise, small, 1);
    const records = await run(tree, trainOptions({ objective: { ...trainOptions({}).objective, kind }, policy: start }));
    t.true(records.at(-1)!.objective < records[0]!.objective - 1e-3, `J ${records[0]!.objective} → ${records.at(-1)!.objective}`);
  });
}

for (const algorithm of ['reinforce', 'ppo'] as const) {
  test(`${algorithm} on a transformer lowers the exact objective`, async (t) => {
    const tree = new ExactEngine(stepwise, { prefixTree: true });
    const start = transformer(stepwise, small, 1);
    const records = await run(tree, trainOptions({ algorithm, policy: start, samples: 256, steps: 20, learningRate: 0.02 }));
    t.true(records.at(-1)!.objective < records[0]!.objective - 1e-3, `J ${records[0]!.objective} → ${records.at(-1)!.objective}`);
    // Without the exact state space, the same run trains on the samples alone.
    const sampled = await run(null, trainOptions({ algorithm, policy: start, samples: 64, steps: 2 }));
    t.true(Number.isFinite(sampled.at(-2)!.objective), "the last sampled step logs its batch objective");
  });
}

test('the command line trains, saves, reloads and attacks a transformer; reinforce is bit-identical on 1 and 2 threads', (t) => {
  const file = join(scratch, 'stepwise.json');
  writeFileSync(file, JSON.stringify(STEPWISE));
  const outs = ['1', '2'].map((threads) => {
    const out = join(scratch, `reinforce-${threads}`);
    const r = runCli(['train', file, '--policy', 'transformer', '--width', '8', '--heads', '2', '--mlp-width', '8', '--algorithm', 'reinforce', '--steps', '3', '--samples', '64', '--out', out], { RAYON_NUM_THREADS: threads });
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /fitted to the base: KL\(P_base ‖ P_init\) [0-9.e-]+ \(exact\)/);
    return out;
  });
  const [one, two] = outs.map((out) => readFileSync(join(out!, 'policy.json'), 'utf8'));
  t.is(one, two);
  const saved = loadPolicy(join(outs[0]!, 'policy.json'), stepwise);
  t.is(saved.kind, 'transformer');
  const summary = JSON.parse(readFileSync(join(outs[0]!, 'summary.json'), 'utf8'));
  t.true(summary.fit.exactKl >= 0);
  const attack = runCli(['attack', file, '--policy', join(outs[0]!, 'policy.json'), '--rank', '2', '--json']);
  t.is(attack.status, 0, attack.stderr);
  const report = JSON.parse(attack.stdout);
  t.is(report.method, 'exact');
  // The exact prefill ASR on the tree = the engine's, on the reloaded policy.
  const tree = new ExactEngine(stepwise, { prefixTree: true });
  close(t, report.prefill.map((x: number | null) => x ?? NaN), tree.onHarmfulPrefixes(saved).asr, 'prefill ASR');
  t.is(report.rap.length, stepwise.length + 1);
  t.true(tree.klBetween(saved, BASE).every((x) => x >= -1e-15));
});

test('sampled rank-assisted prefilling against a transformer lies within 4 SE of the exact attack on its prefix tree', (t) => {
  const engine = new ExactEngine(stepwise);
  const tree = new ExactEngine(stepwise, { prefixTree: true });
  const policy = transformer(stepwise, small, 4);
  const exact = rankAssistedAttack(tree, policy, 2);
  const sampled = sampledPrefillAttack(stepwise, policy, { samples: 4000, seed: 3, rank: 2, engine });
  t.true(exact.some((x, k) => k > 0 && x > 0.05 && x < 0.95), 'the attack neither always fails nor always succeeds');
  for (let k = 0; k <= stepwise.length; k++) {
    t.true(Math.abs(sampled.asr[k]! - exact[k]!) <= 4 * sampled.se[k]! + 1e-12, `RAP ASR_${k}: ${sampled.asr[k]} ± ${sampled.se[k]} vs exact ${exact[k]}`);
  }
  // Without the scenario's exact states there is no base conditional harm to rank by.
  t.throws(() => sampledPrefillAttack(stepwise, policy, { samples: 10, seed: 3, rank: 2 }), { code: 'HH_INVALID_ARGUMENT' });
});

test('ppo on the deep objective (recovery penalty on sampled harmful responses) lowers the exact deep objective', async (t) => {
  const tree = new ExactEngine(stepwise, { prefixTree: true });
  const start = transformer(stepwise, small, 1);
  const deep = { ...trainOptions({}).objective, kind: 'deep' as const };
  const records = await run(tree, trainOptions({ algorithm: 'ppo', objective: deep, policy: start, samples: 256, steps: 20 }));
  const [first, last] = [records[0]!, records.at(-1)!];
  t.true(last.objective < first.objective - 1e-3, `J ${first.objective} → ${last.objective}`);
  t.true(last.parts.penalty < first.parts.penalty, `penalty ${first.parts.penalty} → ${last.parts.penalty}`);
  // The penalty is for transformers only; the other sampled objectives stay exact-only.
  await t.throwsAsync(run(tree, trainOptions({ algorithm: 'ppo', objective: deep, policy: 'tabular', steps: 1 })), { code: 'HH_INVALID_ARGUMENT' });
  await t.throwsAsync(run(tree, trainOptions({ algorithm: 'ppo', objective: { ...deep, kind: 'deep-anchored' }, policy: start, steps: 1 })), { code: 'HH_INVALID_ARGUMENT' });
});

test('on refusal, whose prefix tree does not fit, a transformer is trained and attacked by sampling, rank-assisted included', (t) => {
  const out = join(scratch, 'refusal-ppo');
  const trained = runCli(['train', 'refusal', '--policy', 'transformer', '--width', '8', '--mlp-width', '8', '--algorithm', 'ppo', '--objective', 'deep', '--steps', '2', '--samples', '64', '--out', out]);
  t.is(trained.status, 0, trained.stderr);
  t.regex(trained.stdout, /fitted to the base: KL\(P_base ‖ P_init\) [0-9.e-]+ ± [0-9.e-]+ \(sampled\)/);
  const attack = runCli(['attack', 'refusal', '--policy', join(out, 'policy.json'), '--rank', '2', '--samples', '300', '--json']);
  t.is(attack.status, 0, attack.stderr);
  const report = JSON.parse(attack.stdout);
  t.is(report.method, 'sampled');
  t.is(report.rap.length, 17);
  t.is(report.rapSE.length, 17);
  t.true(report.rap.every((x: number) => x >= 0 && x <= 1));
  // Exact descent needs the prefix tree: refused by name.
  const exact = runCli(['train', 'refusal', '--policy', 'transformer', '--steps', '1', '--out', join(scratch, 'refusal-exact')]);
  t.is(exact.status, 2, exact.stderr);
  t.regex(exact.stderr, /exact state space/);
});
