/**
 * Training and attacks: exact descent reaches the Gibbs optimum, the deep-anchored fixed point
 * matches the recovery closed form where the policy does not go, nothing moves beyond the horizon,
 * and the train/attack commands keep their contracts.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fineTuneAttack, prefillAttack, rankAssistedAttack } from '../ts/workflows/attack.js';
import { ExactEngine, builtinScenario, compileScenario, type Policy } from '../ts/index.js';
import { convergence, DEFAULT_MIX, train, TRAIN_DEFAULTS, type TrainOptions, type TrainRecord } from '../ts/workflows/train.js';
import { runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-train-'));
const sum = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0);

function options(over: Partial<TrainOptions>): TrainOptions {
  return { ...TRAIN_DEFAULTS, objective: { kind: 'standard', lambda: 1, mu: 10, gamma: 1, mix: 0.2 }, algorithm: 'exact', policy: 'tabular', steps: 1500, learningRate: 0.1, evalEvery: 1_000_000, ...over };
}

for (const name of ['refusal', 'horizon']) {
  test(`exact descent on the standard objective converges to the Gibbs policy (${name})`, async (t) => {
    const sc = compileScenario(builtinScenario(name));
    const engine = new ExactEngine(sc);
    const lambda = sc.defaults.lambda;
    const records: TrainRecord[] = [];
    const policy = await train(sc, engine, options({ objective: { kind: 'standard', lambda, mu: 10, gamma: 1, mix: 0.2 } }), (r) => records.push(r));
    const kl = sum(engine.native.klBetween(policy as never, { kind: 'gibbs', lambda } as never));
    t.true(kl <= 1e-6, `KL(P_trained ‖ P*) = ${kl}`);
    t.true(records[records.length - 1].objective <= records[0].objective);
    if (name === 'horizon') {
      // Beyond the horizon the trained policy equals the base.
      const perPosition = engine.klOnPolicy(policy);
      for (let i = 4; i < sc.length; i++) t.true(perPosition[i] <= 1e-10, `KL_${i + 1} = ${perPosition[i]}`);
    }
  });
}

test('the deep-anchored optimum recovers as the closed form predicts where the policy does not go', async (t) => {
  const sc = compileScenario(builtinScenario('refusal'));
  const engine = new ExactEngine(sc);
  const { lambda, mu } = sc.defaults;
  const policy = await train(sc, engine, options({ objective: { kind: 'deep-anchored', lambda, mu, gamma: 1, mix: 0.2 }, algorithm: 'fixed-point', steps: 500 }), () => {});
  const grad = engine.native.objective(policy as never, { kind: 'deep-anchored', lambda, mu, gamma: 1, recovery: sc.recovery }, true, undefined).gradNorm;
  const atBase = engine.native.objective({ kind: 'base' } as never, { kind: 'deep-anchored', lambda, mu, gamma: 1, recovery: sc.recovery }, true, undefined).gradNorm;
  t.true(Math.hypot(...grad) <= 1e-8 * Math.hypot(...atBase), 'stationary');
  // At a decided harmful prefix (four "step"s) the policy almost never goes: recovery → σ(logit p0 + μ).
  const states = engine.states();
  const logits = engine.native.policyLogits(policy as never);
  const visits = engine.native.stateDistribution(policy as never);
  const q = engine.native.harmfulPrefixes();
  const n = engine.numStates;
  const v = sc.tokens.length;
  const harmful = sc.automatonStates.indexOf('HARMFUL');
  const sorry = sc.tokens.indexOf('Sorry');
  const closedForm = (p0: number) => 1 / (1 + Math.exp(-(Math.log(p0 / (1 - p0)) + mu)));
  let checked = 0;
  for (let tt = 6; tt <= sc.length; tt++) {
    for (let s = 0; s < n; s++) {
      if (!states.live[s] || states.automaton[s] !== harmful || q[(tt - 1) * n + s] < 1e-6) continue;
      if (visits[(tt - 1) * n + s] / q[(tt - 1) * n + s] > 1e-3) continue;
      const row = logits.subarray(((tt - 1) * n + s) * v, ((tt - 1) * n + s + 1) * v);
      const z = row.reduce((a, x) => a + Math.exp(x), 0);
      const closed = closedForm(sc.base[states.context[s] * v + sorry]);
      t.true(Math.abs(Math.exp(row[sorry]) / z - closed) < 0.01, `t=${tt}: ${Math.exp(row[sorry]) / z} vs ${closed}`);
      checked++;
    }
  }
  t.true(checked > 5);
});

test('sampled REINFORCE drifts beyond the horizon; its innovation variant does not', async (t) => {
  const sc = compileScenario(builtinScenario('horizon'));
  const engine = new ExactEngine(sc);
  // Plain gradient descent: Adam would rescale the rounding-level gradients there to full-size steps.
  const run = (algorithm: 'reinforce' | 'reinforce-innovation') =>
    train(sc, engine, options({ algorithm, steps: 40, samples: 128, optimizer: 'sgd', learningRate: 1, schedule: 'constant' }), () => {});
  const drift = (p: Policy) => Math.max(...engine.klOnPolicy(p).subarray(4));
  const plain = await run('reinforce');
  const innovation = await run('reinforce-innovation');
  t.true(drift(plain) > 1e-4, `REINFORCE drift ${drift(plain)}`);
  t.true(drift(innovation) <= 1e-12, `innovation drift ${drift(innovation)}`);
  // Both still learn where it matters.
  t.true(engine.conditionalHarm(innovation)[0] < engine.conditionalHarm({ kind: 'base' })[0]);
});

test('fine-tuning on harmful responses raises harm; the constrained objective resists at the first positions', (t) => {
  const sc = compileScenario(builtinScenario('refusal'));
  const engine = new ExactEngine(sc);
  const aligned: Policy = { kind: 'gibbs', lambda: 5 };
  const sft = fineTuneAttack(engine, aligned, { steps: 4, learningRate: 0.05, objective: 'sft' }).trace;
  const adamw = fineTuneAttack(engine, aligned, { steps: 4, learningRate: 0.05, objective: 'sft', optimizer: 'adamw' }).trace;
  t.true(adamw[4].asr[0] > adamw[0].asr[0], 'so does AdamW');
  const constrained = fineTuneAttack(engine, aligned, { steps: 4, learningRate: 0.05, objective: 'constrained' }).trace;
  t.true(sft[4].asr[0] > sft[0].asr[0], 'SFT makes the policy more harmful');
  t.true(constrained[4].asr[0] < sft[4].asr[0], `constrained ${constrained[4].asr[0]} vs SFT ${sft[4].asr[0]}`);
  t.true(Math.abs(sft[0].asr[0] - prefillAttack(engine, aligned)[0]) < 1e-12);
  // Front-loaded: the first position carries the largest gradient.
  t.is(sft[0].gradNorm.indexOf(Math.max(...sft[0].gradNorm)), 0);
});

test('train writes the policy, a JSONL log per step and a summary; the policy is re-usable everywhere', (t) => {
  const out = join(scratch, 'std');
  const r = runCli(['train', 'horizon', '--objective', 'standard', '--algorithm', 'exact', '--steps', '50', '--eval-every', '10', '--out', out, '--json']);
  t.is(r.status, 0, r.stderr);
  for (const file of ['policy.json', 'log.jsonl', 'summary.json']) t.true(existsSync(join(out, file)), file);
  const lines = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(lines.length, 51);
  for (const key of ['step', 'objective', 'parts', 'expectedHarm', 'kl', 'klOnPolicy', 'gradNorm', 'recovery']) t.true(key in lines[0], key);
  t.true('asr' in lines[10] && 'klTeacherForced' in lines[10]);
  t.true(lines[50].objective < lines[0].objective);
  const policy = join(out, 'policy.json');
  for (const args of [['attack', 'horizon', '--policy', policy, '--json'], ['estimate', 'horizon', '--policy', policy, '--samples', '500', '--json'], ['analyze', 'horizon', '--policy', policy, '--json']]) {
    const again = runCli(args);
    t.is(again.status, 0, `${args[0]}: ${again.stderr}`);
  }
  const analyzed = JSON.parse(runCli(['analyze', 'horizon', '--policy', policy, '--json']).stdout);
  t.true(Math.abs(analyzed.expectedHarm.aligned - lines[50].expectedHarm) < 1e-12);
});

test('attack --json: prefill and rank-assisted curves, exact', (t) => {
  const r = runCli(['attack', 'refusal', '--json', '--rank', '2']);
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.is(report.prefill.length, 17);
  t.true(report.prefill.every((x: unknown) => typeof x === 'number'), 'the curve indexed by k');
  t.is(report.rap.length, 17);
  const analyzed = JSON.parse(runCli(['analyze', 'refusal', '--json']).stdout);
  const full = JSON.parse(runCli(['attack', 'refusal', '--json']).stdout);
  t.is(full.rank, 5, 'r = 20 is capped at V');
  for (let k = 0; k <= 16; k++) {
    t.true(Math.abs(report.prefill[k] - analyzed.prefill[k].asrBase) < 1e-12);
    // With every token a candidate, steering to the most harmful continuation beats sampling.
    t.true(full.rap[k] >= full.prefill[k] - 1e-12);
  }
  const engine = new ExactEngine(compileScenario(builtinScenario('refusal')));
  t.deepEqual(report.rap, Array.from(rankAssistedAttack(engine, { kind: 'base' }, 2)));
});

test('train refuses bad options with exit 2', (t) => {
  for (const args of [
    ['train', 'refusal', '--out', join(scratch, 'x'), '--objective', 'deepest'],
    ['train', 'refusal', '--out', join(scratch, 'x'), '--gamma', '1.5'],
    ['train', 'refusal', '--out', join(scratch, 'x'), '--objective', 'deep', '--algorithm', 'ppo'],
    ['train', 'horizon', '--out', join(scratch, 'x'), '--objective', 'deep'],
    ['train', 'refusal', '--out', '/proc/forbidden/place'],
    ['train', 'refusal'],
  ]) {
    const r = runCli(args);
    t.is(r.status, 2, `${args.slice(2).join(' ')}: ${r.stderr}`);
    t.notRegex(r.stderr, /\n\s+at /);
  }
});

test('a run that has not converged says so in the summary and on stderr; a converged one does not', (t) => {
  // deep with the default steps ends with its gradient at 2% of its initial norm, J well above the optimum.
  const deep = runCli(['train', 'refusal', '--objective', 'deep', '--out', join(scratch, 'deep-default')]);
  t.is(deep.status, 0, deep.stderr);
  t.regex(deep.stderr, /NOT CONVERGED: the gradient norm is still 0\.02\d? of its initial value \(threshold 0\.001\)/);
  const summary = JSON.parse(readFileSync(join(scratch, 'deep-default', 'summary.json'), 'utf8'));
  t.like(summary.convergence, { converged: false, threshold: 1e-3 });
  t.true(summary.convergence.ratio > 1e-2 && summary.convergence.ratio < 0.05, `${summary.convergence.ratio}`);
  const standard = runCli(['train', 'refusal', '--objective', 'standard', '--out', join(scratch, 'standard-default'), '--json']);
  t.is(standard.status, 0, standard.stderr);
  t.notRegex(standard.stderr, /CONVERGED/);
  const converged = JSON.parse(standard.stdout).convergence;
  t.like(converged, { converged: true });
  t.true(converged.ratio <= 1e-3 && Math.abs(converged.ratio - converged.finalGradNorm / converged.initialGradNorm) < 1e-15);
});

test('augment starts at the Gibbs policy and anchors there: α weighs the recovery term, 1 − α the KL to P_init', async (t) => {
  const sc = compileScenario(builtinScenario('refusal'));
  const engine = new ExactEngine(sc);
  const { lambda, mu } = sc.defaults;
  const records: TrainRecord[] = [];
  for (const anchor of ['init', 'base'] as const) {
    records.length = 0;
    await train(sc, engine, options({ objective: { kind: 'augment', lambda, mu, gamma: 1, anchor }, steps: 20 }), (r) => records.push(r));
    const gibbs = engine.native.objective({ kind: 'gibbs', lambda } as never, { kind: 'standard', lambda, recovery: sc.recovery }, false, undefined, undefined);
    // Step 0 is the Gibbs policy: its KL to the base is the Gibbs policy's, its KL to P_init is 0.
    t.true(Math.abs(records[0].kl - gibbs.kl) < 1e-10);
    t.true(Math.abs(records[0].parts.anchorKl - (anchor === 'init' ? 0 : gibbs.kl)) < 1e-10, `${anchor}: ${records[0].parts.anchorKl}`);
    for (const r of [records[0], records[20]]) t.true(Math.abs(r.objective - (DEFAULT_MIX * r.parts.sftLoss + (1 - DEFAULT_MIX) * r.parts.anchorKl)) < 1e-12);
    t.true(records[20].objective < records[0].objective);
  }
  t.is(DEFAULT_MIX, 0.2);
});

test('the demo says when one of its training runs has not converged', (t) => {
  // Ten PPO steps cannot reach the optimum: the note and the run's summary say so.
  const out = join(scratch, 'demo-horizon');
  const r = runCli(['demo', 'horizon', '--out', out, '--ppo-steps', '10', '--json']);
  t.is(r.status, 0, r.stderr);
  t.true(JSON.parse(r.stdout).notes.some((n: string) => /^standard, PPO: NOT CONVERGED/.test(n)));
  t.like(JSON.parse(readFileSync(join(out, 'standard-ppo', 'summary.json'), 'utf8')).convergence, { converged: false });
});

test('a run that starts at its optimum counts as converged; without an exact gradient nothing is claimed', async (t) => {
  const sc = compileScenario(builtinScenario('horizon'));
  const engine = new ExactEngine(sc);
  const gibbs: Policy = { kind: 'tabular', logits: engine.native.policyLogits({ kind: 'gibbs', lambda: 1 } as never) };
  const records: TrainRecord[] = [];
  // Plain gradient descent: Adam would blow the rounding-level gradient up into full-size steps.
  await train(sc, engine, options({ policy: gibbs, steps: 5, optimizer: 'sgd' }), (r) => records.push(r));
  // The gradient is at rounding level from the start: its ratio says nothing, the absolute floor does.
  const verdict = convergence(records[0], records[5]);
  t.true(verdict.finalGradNorm! <= 1e-12 && verdict.converged === true, JSON.stringify(verdict));
  const { totalGradNorm: _, ...sampledOnly } = records[5];
  t.like(convergence(sampledOnly, sampledOnly), { converged: null, ratio: null });
});
