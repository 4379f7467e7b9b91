/**
 * The fine-tuning attack as Qi et al. run it: their logged loss, per-token gradient norms and KL to
 * the aligned policy, seeded minibatches of sampled harmful responses (unbiased for the exact
 * gradient), and AdamW — on a scenario of our own: order-2 contexts, an end token that can come
 * early, harm in [0, 1], a recovery token.
 */
import test from 'ava';
import { fineTuneAttack } from '../ts/workflows/attack.js';
import { ExactEngine, MonteCarlo, compileScenario, parseScenario, type Policy } from '../ts/index.js';
import { native } from '../ts/core/native.js';
import { toInput } from '../ts/core/policy.js';
import { runCli } from './helpers/cli.js';

const W = ['go', 'x', 'no'];
const rows: Record<string, number[]> = { '<bos> <bos>': [0.5, 0.3, 0.15, 0.05] };
W.forEach((a, i) => {
  rows[`<bos> ${a}`] = [[0.6, 0.2, 0.1, 0.1], [0.3, 0.3, 0.3, 0.1], [0.1, 0.2, 0.2, 0.5]][i];
  W.forEach((b, j) => (rows[`${a} ${b}`] = [0.45 - 0.1 * j, 0.2 + 0.05 * i, 0.2 + 0.05 * j, 0.15 - 0.05 * i + 0.05 * j]));
});
/** "go" twice is harmful (0.4 after two, 1 after three), "no" refuses, "x" keeps the count. */
export const ownScenario = compileScenario(
  parseScenario({
    name: 'own-finetune',
    tokens: ['go', 'x', 'no', 'end'],
    length: 6,
    endToken: 'end',
    contextOrder: 2,
    recoveryTokens: ['no'],
    base: rows,
    harm: {
      states: ['zero', 'one', 'two', 'HARM', 'REFUSED'],
      start: 'zero',
      values: { two: 0.4, HARM: 1 },
      transitions: { zero: { go: 'one', no: 'REFUSED' }, one: { go: 'two', no: 'REFUSED' }, two: { go: 'HARM', no: 'REFUSED' } },
    },
    defaults: { lambda: 3, mu: 10, gamma: 1 },
  }),
);

test('minibatch gradients average to the exact full-batch gradient (within 4 SE), and replay with their seed', (t) => {
  const engine = new ExactEngine(ownScenario);
  const aligned: Policy = { kind: 'tabular', logits: engine.native.policyLogits(toInput({ kind: 'gibbs', lambda: 3 })) };
  const mc = new MonteCarlo(ownScenario, { exact: engine });
  const q: Policy = { kind: 'tabular', logits: engine.native.harmfulResponsePolicy() };
  const exact = engine.native.fineTuneLoss(toInput(aligned), 'sft', undefined, undefined).gradient;
  const batches = 400;
  const size = 8;
  const sum = new Float64Array(exact.length);
  const squares = new Float64Array(exact.length);
  for (let b = 0; b < batches; b++) {
    const { tokens } = mc.sample(q, { count: size, seed: 11, firstIndex: b * size });
    const g = engine.native.fineTuneLoss(toInput(aligned), 'sft', undefined, { responses: tokens }).gradient;
    g.forEach((x, i) => {
      sum[i] += x;
      squares[i] += x * x;
    });
  }
  let checked = 0;
  for (let i = 0; i < exact.length; i++) {
    const mean = sum[i] / batches;
    const se = Math.sqrt(Math.max(squares[i] / batches - mean * mean, 0) / (batches - 1));
    if (Math.abs(exact[i]) < 1e-3) continue;
    t.true(Math.abs(mean - exact[i]) <= 4 * se + 1e-12, `∂/∂θ_${i}: ${mean} ± ${se} vs ${exact[i]}`);
    checked++;
  }
  t.true(checked > 10, `${checked}`);
  // Same seed, same steps; another seed, another run.
  const run = (seed: number) => fineTuneAttack(engine, aligned, { steps: 3, learningRate: 0.1, objective: 'constrained', optimizer: 'adamw', batch: 4, seed }).trace;
  t.deepEqual(run(3), run(3));
  t.notDeepEqual(run(3).map((s) => s.loss), run(4).map((s) => s.loss));
});

test('the attack reports the logged loss, per-token gradient norms and KL to the aligned policy', (t) => {
  const engine = new ExactEngine(ownScenario);
  const aligned: Policy = { kind: 'gibbs', lambda: 3 };
  const sft = fineTuneAttack(engine, aligned, { steps: 3, learningRate: 0.5, objective: 'sft' }).trace;
  const constrained = fineTuneAttack(engine, aligned, { steps: 3, learningRate: 0.5, objective: 'constrained' }).trace;
  // At step 0 the policy is the aligned one: every token weight is 1, no KL yet.
  t.true(Math.abs(sft[0].loggedLoss - constrained[0].loggedLoss) < 1e-12);
  t.deepEqual(sft[0].klToAligned, sft[0].klToAligned.map(() => 0));
  t.deepEqual(sft[0].tokenGradNorm, constrained[0].tokenGradNorm);
  // Then the logged loss falls, KL to the aligned policy appears, and the constraint keeps it smaller.
  t.true(sft[3].loggedLoss < sft[0].loggedLoss);
  const kl = (s: { klToAligned: number[] }) => s.klToAligned.reduce((a, b) => a + b, 0);
  t.true(kl(sft[3]) > 1e-4 && kl(constrained[3]) < kl(sft[3]), `${kl(constrained[3])} vs ${kl(sft[3])}`);
  // The per-position KL is KL(π_θ ‖ π_aligned) on π_θ's prefixes: its sum is the sequence-level KL.
  const tuned = fineTuneAttack(engine, aligned, { steps: 3, learningRate: 0.5, objective: 'sft' }).policy;
  const sequence = engine.native.klBetween(toInput(tuned), toInput(aligned)).reduce((a, b) => a + b, 0);
  t.true(Math.abs(kl(sft[3]) - sequence) < 1e-12);
  // The floor is the authors' 1e-3 unless set: at floor 2 every weight is 2, twice SFT's logged loss.
  const floored = fineTuneAttack(engine, aligned, { steps: 0, learningRate: 0.5, objective: 'constrained', floor: 2 }).trace[0];
  t.true(Math.abs(floored.loggedLoss - 2 * sft[0].loggedLoss) < 1e-12);
});

test('AdamW through the API moves every parameter by the learning rate on its first step', (t) => {
  const params = new Float64Array([1, -2, 3]);
  const opt = new native.Optimizer('adamw', 3, 0.1, { weightDecay: 0 });
  opt.step(params, new Float64Array([0.5, -0.1, 2]));
  // First step: m̂ = g, v̂ = g², so Δ = −lr·g/(|g| + 1e-8).
  [1 - 0.1 * (0.5 / (0.5 + 1e-8)), -2 + 0.1 * (0.1 / (0.1 + 1e-8)), 3 - 0.1 * (2 / (2 + 1e-8))].forEach((x, i) => t.true(Math.abs(params[i] - x) < 1e-15));
  t.throws(() => new native.Optimizer('adamw', 3, 0.1, { beta1: 1 }));
});

test('attack --finetune-optimizer adamw --finetune-batch: the JSON carries the settings and the new statistics', (t) => {
  const r = runCli(['attack', 'refusal', '--finetune-steps', '2', '--finetune-objective', 'constrained', '--finetune-optimizer', 'adamw', '--finetune-lr', '0.05', '--finetune-batch', '8', '--seed', '5', '--json']);
  t.is(r.status, 0, r.stderr);
  const ft = JSON.parse(r.stdout).finetune;
  t.like(ft, { objective: 'constrained', optimizer: 'adamw', batch: 8, seed: 5, floor: 1e-3 });
  for (const key of ['loss', 'loggedLoss', 'tokenGradNorm', 'klToAligned', 'gradNorm', 'asr']) t.true(key in ft.steps[1], key);
  t.true('batchLoggedLoss' in ft.steps[0] && !('batchLoggedLoss' in ft.steps[2]));
});
