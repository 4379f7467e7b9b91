/**
 * Issue 8, items 1–3: the decision time τ from h (with P(τ > T) apart), the sampled prefilling attack
 * on the exact path's Q (base reweighted by H), effective supports beside every SE, and importance
 * sampling from the policy tilted toward harm. Checked against the exact engine on a scenario of our
 * own (order 2, harm in [0, 1], a recovery a later token undoes, decisions before any absorbing
 * automaton state, undecided mass at T) and on the built-ins.
 */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE, DEFAULT_TILT, ExactEngine, initMlp, MonteCarlo, builtinScenario, compileScenario, prefillAttack, sampledPrefillAttack, scenarioToJson, type Policy } from '../ts/index.js';
import { runCli } from './helpers/cli.js';
import { gradedScenario } from './helpers/graded.js';

const graded = compileScenario(gradedScenario());
const refusal = compileScenario(builtinScenario('refusal'));

function within4se(t: { true: (c: boolean, m?: string) => void }, estimate: number, se: number, exact: number, what: string) {
  t.true(Math.abs(estimate - exact) <= 4 * se + 1e-12, `${what}: ${estimate} ± ${se} vs exact ${exact} (${(Math.abs(estimate - exact) / se).toFixed(1)} SE)`);
}

test('τ comes from h: horizon P(τ = 3) = 0.481, as analyze says', (t) => {
  const r = runCli(['estimate', 'horizon', '--samples', '20000', '--json']);
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.true(Math.abs(report.exactDecisionTime[3] - 0.481) < 1e-12);
  for (let k = 0; k <= 10; k++) within4se(t, report.decisionTime[k], report.decisionTimeSE[k], report.exactDecisionTime[k], `P(τ = ${k})`);
  t.is(report.undecided, 0);
  t.true(report.decisionTimeSupport[3] > 1000);
});

test('τ on a non-binary scenario: histogram within 4 SE, P(τ > T) apart, rollouts never later than τ', (t) => {
  const exact = new ExactEngine(graded);
  const mc = new MonteCarlo(graded, { exact });
  for (const policy of [BASE, { kind: 'gibbs', lambda: 2 } as Policy]) {
    const profile = exact.harmProfile(policy);
    t.true(profile.undecided > 0.05, `undecided mass ${profile.undecided}`);
    t.true(profile.decisionTime[2] > 0.01 && profile.decisionTime[3] > 0.01, 'decisions at t = 2 and 3, before any absorbing state');
    const est = mc.estimate(policy, { samples: 40_000, seed: 5, harm: 'exact' });
    const T = graded.length;
    for (let k = 0; k <= T; k++) within4se(t, est.decisionTime![k], est.decisionTimeSE![k], profile.decisionTime[k], `${policy.kind} P(τ = ${k})`);
    within4se(t, est.undecided!.mean, est.undecided!.se, profile.undecided, `${policy.kind} P(τ > T)`);
    const histogram = est.decisionTime!.reduce((a, b) => a + b, 0);
    t.true(Math.abs(histogram + est.undecided!.mean - 1) < 1e-12 && histogram < 0.95, `the histogram sums to ${histogram}`);
    // With rollouts τ̂ ≤ τ on every response, so its distribution function lies above τ's.
    const rolled = mc.estimate(policy, { samples: 4000, seed: 6, harm: 'rollouts', rollouts: 4 });
    let cdf = 0;
    let exactCdf = 0;
    for (let k = 0; k <= T; k++) {
      cdf += rolled.decisionTime![k];
      exactCdf += profile.decisionTime[k];
      t.true(cdf >= exactCdf - 4 * Math.sqrt((exactCdf * (1 - exactCdf)) / 4000) - 1e-12, `P(τ̂ ≤ ${k}) = ${cdf} vs P(τ ≤ ${k}) = ${exactCdf}`);
    }
  }
});

test('the sampled prefilling attack weights prefixes by H, as the exact path: within 4 SE', (t) => {
  const exact = new ExactEngine(graded);
  for (const policy of [BASE, initMlp(graded, { order: 2, hidden: [8], activation: 'tanh' }, 3)]) {
    const want = prefillAttack(exact, policy);
    const got = sampledPrefillAttack(graded, policy, { samples: 20_000, seed: 2 });
    t.is(got.prefixes, 20_000);
    t.true(got.effectivePrefixes < got.prefixes && got.effectivePrefixes > 5000, `Kish ${got.effectivePrefixes}`);
    for (let k = 0; k <= graded.length; k++) {
      within4se(t, got.asr[k], got.se[k], want[k], `${policy.kind} ASR_${k}`);
      t.true(got.support[k] >= 30, `${policy.kind} ASR_${k} support ${got.support[k]}`);
    }
  }
});

test('every SE carries its support, and the table marks the thin ones', (t) => {
  const r = runCli(['estimate', 'refusal', '--samples', '3000', '--json']);
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.true(Number.isInteger(report.expectedHarmSupport) && report.expectedHarmSupport > 30);
  t.is(report.decisionTimeSupport.length, 17);
  t.true(Number.isInteger(report.undecidedSupport));
  for (const p of report.positions) {
    for (const key of ['harmInformationSupport', 'klOnPolicySupport', 'klTeacherForcedSupport']) t.true(Number.isInteger(p[key]), `${key} at t = ${p.t}`);
  }
  const text = runCli(['estimate', 'refusal', '--samples', '3000']);
  t.is(text.status, 0, text.stderr);
  t.regex(text.stdout, /^† the SE rests on fewer than 30 effective samples/m);
  // Row t of the table: its I_t cell is marked exactly when the JSON support is under 30.
  const rows = text.stdout.split('\n').filter((line) => /^\s*\d+\s+\S+ ± /.test(line)).slice(0, 16);
  t.is(rows.length, 16);
  rows.forEach((line, i) => {
    const cell = line.trim().split(/\s{2,}/)[1];
    t.is(cell.endsWith('†'), report.positions[i].harmInformationSupport < 30, `t = ${i + 1}: ${cell}`);
  });
});

test('the tilted proposal: refusal I_10..I_13 within 4 SE of exact, and E[H] of a rare-harm policy with a smaller SE', (t) => {
  const exact = new ExactEngine(refusal);
  const mc = new MonteCarlo(refusal, { exact });
  const profile = exact.harmProfile(BASE);
  const est = mc.estimate(BASE, { samples: 1_000_000, seed: 1, harm: 'exact', proposal: 'tilted' });
  t.is(est.importance?.tilt, DEFAULT_TILT);
  t.is(est.importance?.method, 'exact');
  t.true(est.importance!.effectiveSampleSize < 1_000_000);
  for (let i = 9; i < 13; i++) within4se(t, est.harmInformation!.mean[i], est.harmInformation!.se[i], profile.harmInformation[i], `tilted I_${i + 1}`);
  within4se(t, est.expectedHarm, est.expectedHarmSE, profile.expectedHarm, 'tilted E[H]');
  // Harm is rare under the aligned policy (E[H] ≈ 0.019): tilting toward it shrinks the SE of E[H].
  const aligned: Policy = { kind: 'gibbs', lambda: 5 };
  const rare = exact.harmProfile(aligned).expectedHarm;
  const plain = mc.estimate(aligned, { samples: 50_000, seed: 2 });
  const tilted = mc.estimate(aligned, { samples: 50_000, seed: 2, proposal: 'tilted', tilt: 5 });
  within4se(t, plain.expectedHarm, plain.expectedHarmSE, rare, 'plain E[H]');
  within4se(t, tilted.expectedHarm, tilted.expectedHarmSE, rare, 'tilted E[H]');
  t.true(tilted.expectedHarmSE < plain.expectedHarmSE / 2, `SE ${tilted.expectedHarmSE} (tilted) vs ${plain.expectedHarmSE} (plain)`);
  // Gradients are estimated on the policy's own samples only.
  t.throws(() => mc.estimate(BASE, { samples: 10, seed: 1, proposal: 'tilted', gradient: 'reinforce' }), { message: /own samples/ });
});

test('the per-token tilt (no exact engine) agrees with the exact values on the non-binary scenario', (t) => {
  const exact = new ExactEngine(graded);
  const profile = exact.harmProfile(BASE);
  const est = new MonteCarlo(graded).estimate(BASE, { samples: 40_000, seed: 8, harm: 'rollouts', rollouts: 2, proposal: 'tilted', tilt: 1 });
  t.is(est.importance?.method, 'per-token');
  within4se(t, est.expectedHarm, est.expectedHarmSE, profile.expectedHarm, 'E[H]');
  for (let i = 0; i < graded.length; i++) {
    if (est.harmInformation!.support[i] >= 30) within4se(t, est.harmInformation!.mean[i], est.harmInformation!.se[i], profile.harmInformation[i], `I_${i + 1}`);
  }
});

test('estimate --proposal tilted: JSON, thread-count invariance and bad input', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hh-rare-'));
  const file = join(dir, 'graded.json');
  writeFileSync(file, JSON.stringify(scenarioToJson(gradedScenario())));
  const args = ['estimate', file, '--samples', '4000', '--proposal', 'tilted', '--tilt', '2', '--json'];
  const one = runCli(args, { RAYON_NUM_THREADS: '1' });
  const two = runCli(args, { RAYON_NUM_THREADS: '2' });
  t.is(one.status, 0, one.stderr);
  t.is(one.stdout, two.stdout);
  const report = JSON.parse(one.stdout);
  t.deepEqual(Object.keys(report.proposal).sort(), ['effectiveSampleSize', 'kind', 'method', 'tilt']);
  t.is(report.proposal.method, 'exact');
  t.is(report.estimator, null);
  const rollouts = runCli([...args.slice(0, -1), '--rollouts', '2', '--json'], { RAYON_NUM_THREADS: '1' });
  t.is(rollouts.stdout, runCli([...args.slice(0, -1), '--rollouts', '2', '--json'], { RAYON_NUM_THREADS: '2' }).stdout);
  for (const bad of [['--tilt', 'x'], ['--tilt', '701'], ['--proposal', 'uniform'], ['--tilt', '1', '--proposal', 'policy']]) {
    const r = runCli(['estimate', 'horizon', '--samples', '10', ...bad]);
    t.is(r.status, 2, `${bad.join(' ')}: ${r.stderr}`);
  }
});
