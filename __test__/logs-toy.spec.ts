/**
 * Rollout logs of toy scenarios against the exact engine: `profile` must recover analyze's on-policy
 * and teacher-forced KL, harm information by block, prefilling success and the KL-law fit within
 * 4 standard errors, on `refusal`, on a scenario of our own with soft harm, an order-2 context, an
 * end token and undecided mass at T, and on `horizon` (horizon 4).
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExactEngine, builtinScenario, compileScenario, loadScenarioFile, type Analysis } from '../ts/index.js';
import { parseLog, type LogRecord } from '../ts/logs/format.js';
import { profileLog, type LogProfile } from '../ts/logs/profile.js';
import { fitKlLaw } from '../ts/core/log-stats.js';
import { toyRolloutLog } from '../ts/logs/toy-runner.js';
import type { CompiledScenario } from '../ts/scenario/compiled.js';
import { runCli } from './helpers/cli.js';

function toyProfile(scenario: CompiledScenario, lambda: number, depths: number[], samples = 2000) {
  const engine = new ExactEngine(scenario);
  const records: LogRecord[] = [];
  toyRolloutLog(scenario, engine, { lambda, samples, rollouts: 8, depths, seed: 11 }, (r) => records.push(r));
  // Through the text format and its validator, as `profile` reads it.
  const log = parseLog(records.map((r) => JSON.stringify(r)).join('\n'), 'toy');
  return { profile: profileLog(log, { replicates: 300, seed: 5 }), analysis: engine.analyze(lambda), log };
}

/**
 * |estimate − exact| ≤ 4 SE (with a floor for estimates that are exact up to rounding), unless the
 * profile flagged the estimate as resting on few samples (rare events it may not have seen).
 */
function within4SE(t: ExecutionContext, estimate: number, se: number, exact: number, what: string, lowSupport = false) {
  t.true(Math.abs(estimate - exact) <= 4 * se + 1e-9 || lowSupport, `${what}: ${estimate} ± ${se}, exact ${exact}`);
}

function blockSum(a: Float64Array, tStart: number, tEnd: number): number {
  let s = 0;
  for (let t = tStart; t <= tEnd; t++) s += a[t - 1];
  return s;
}

function agreesWithAnalyze(t: ExecutionContext, profile: LogProfile, analysis: Analysis) {
  within4SE(t, profile.expectedHarm.reference, profile.expectedHarm.referenceSE, analysis.base.expectedHarm, 'E_base[H]');
  within4SE(t, profile.expectedHarm.policy, profile.expectedHarm.policySE, analysis.alignedExpectedHarm, 'E_policy[H]');
  t.is(profile.klTeacherForcedKind, 'exact');
  for (const row of profile.klProfile) {
    within4SE(t, row.klOnPolicy, row.klOnPolicySE, analysis.klOnPolicy[row.t - 1], `D_${row.t}`, row.lowSupport);
    within4SE(t, row.k1, row.k1SE, analysis.klOnPolicy[row.t - 1], `k1 at ${row.t}`, row.lowSupport);
    within4SE(t, row.klTeacherForced!, row.klTeacherForcedSE!, analysis.klTeacherForced[row.t - 1], `teacher-forced KL at ${row.t}`, row.lowSupport);
  }
  for (const row of profile.positions) {
    within4SE(t, row.harmInformation!, row.harmInformationSE!, blockSum(analysis.base.harmInformation, row.tStart, row.tEnd), `I over ${row.tStart}..${row.tEnd}`, row.lowSupport);
    within4SE(t, row.klOnPolicy, row.klOnPolicySE, blockSum(analysis.klOnPolicy, row.tStart, row.tEnd), `D over ${row.tStart}..${row.tEnd}`, row.lowSupport);
  }
  for (const row of profile.prefill) within4SE(t, row.asr, row.asrSE, analysis.asrAligned[row.k], `ASR_${row.k}`, row.lowSupport);
  // The law's fit on the exact per-block D and I is what the log's fit estimates.
  const exactD = Float64Array.from(profile.positions, (r) => blockSum(analysis.klOnPolicy, r.tStart, r.tEnd));
  const exactI = Float64Array.from(profile.positions, (r) => blockSum(analysis.base.harmInformation, r.tStart, r.tEnd));
  const zero = new Float64Array(exactD.length);
  const exactFit = fitKlLaw(exactD, zero, exactI, zero, new Float64Array(0), new Float64Array(0));
  within4SE(t, profile.fit!.lambda, profile.fit!.lambdaSE, exactFit.lambda, 'fitted λ');
}

test('refusal: profile of a toy log agrees with analyze within 4 SE', (t) => {
  const { profile, analysis } = toyProfile(compileScenario(builtinScenario('refusal')), 5, [0, 1, 2, 4, 8, 16]);
  agreesWithAnalyze(t, profile, analysis);
  // Where the flag is off, the comparison above held; most of the profile is well supported.
  t.true(profile.klProfile.filter((r) => !r.lowSupport).length >= 7);
  t.deepEqual(profile.positions.map((r) => [r.tStart, r.tEnd]), [[1, 1], [2, 2], [3, 4], [5, 8], [9, 16]]);
  // Single positions carry t; the on-policy KL is the larger at the first position, as Qi et al. saw.
  t.is(profile.positions[0].t, 1);
  t.true(profile.klProfile[0].klOnPolicy > 10 * profile.klProfile[1].klOnPolicy);
});

test('soft harm, order-2 context, end token: profile agrees with analyze within 4 SE, and the KL law fits at small λ', (t) => {
  const scenario = compileScenario(loadScenarioFile('examples/logs/soft-order2.json'));
  const { profile, analysis, log } = toyProfile(scenario, 0.5, [0, 1, 2, 3, 4, 5, 6]);
  t.is(log.header.judge.scores, 'soft');
  t.true(log.samples.some((s) => s.harm > 0 && s.harm < 1), 'soft scores occur');
  t.true(analysis.base.undecided > 0, 'the scenario leaves harm undecided at T');
  agreesWithAnalyze(t, profile, analysis);
  // At λ = 0.5 the small-λ law holds within a few percent: λ̂ is near the true λ.
  t.true(Math.abs(profile.fit!.lambda - 0.5) < 0.05, `λ̂ = ${profile.fit!.lambda}`);
  // The martingale: mean ĥ_d is E[H] at every depth.
  for (const h of profile.conditionalHarm) within4SE(t, h.h, h.hSE, analysis.base.expectedHarm, `h at depth ${h.depth}`);
});

test('horizon: information is exactly zero past position 4 and the estimated horizon is 4', (t) => {
  const { profile, analysis } = toyProfile(compileScenario(builtinScenario('horizon')), 1, [0, 1, 2, 3, 4, 6, 8, 10], 1000);
  t.is(analysis.base.horizon, 4);
  for (const row of profile.positions.filter((r) => r.tStart > 4)) {
    t.is(row.harmInformation, 0, `I over ${row.tStart}..${row.tEnd}`);
    t.true(row.klOnPolicy < 1e-12, `D over ${row.tStart}..${row.tEnd}`);
  }
  t.deepEqual(profile.horizon, { estimate: 4, lower: 4, upper: 4 });
});

test('toy logs are reproducible: the same seed gives the same log', (t) => {
  const scenario = compileScenario(builtinScenario('horizon'));
  const engine = new ExactEngine(scenario);
  const text = () => {
    const lines: string[] = [];
    toyRolloutLog(scenario, engine, { lambda: 1, samples: 50, rollouts: 4, depths: [0, 2, 4], seed: 3 }, (r) => lines.push(JSON.stringify(r)));
    return lines.join('\n');
  };
  t.is(text(), text());
});

test('rollouts and profile --json on the command line: the output contract', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hh-logs-'));
  const made = runCli(['rollouts', 'horizon', '--samples', '200', '--rollouts', '4', '--depths', '0,2,4,10', '--out', dir]);
  t.is(made.status, 0, made.stderr);
  const r = runCli(['profile', join(dir, 'log.jsonl'), '--json', '--bootstrap', '50']);
  t.is(r.status, 0, r.stderr);
  const p = JSON.parse(r.stdout);
  t.deepEqual(p.positions.map((x: { tStart: number; tEnd: number }) => [x.tStart, x.tEnd]), [[1, 2], [3, 4], [5, 10]]);
  for (const key of ['tStart', 'tEnd', 'klOnPolicy', 'klOnPolicySE', 'klTeacherForced', 'klTeacherForcedSE', 'harmInformation', 'harmInformationSE']) t.true(key in p.positions[0], key);
  t.deepEqual(Object.keys(p.prefill[0]).slice(0, 3), ['k', 'asr', 'asrSE']);
  t.true(['lambda', 'lambdaSE', 'rSquared', 'chiSquared'].every((k) => k in p.fit));
  t.deepEqual(Object.keys(p.horizon), ['estimate', 'lower', 'upper']);
  t.is(p.klProfile.length, 10);
  // The bootstrap's replicates are pure functions of the seed: the same numbers on 1 thread.
  const oneThread = runCli(['profile', join(dir, 'log.jsonl'), '--json', '--bootstrap', '50'], { RAYON_NUM_THREADS: '1' });
  t.is(oneThread.stdout, r.stdout);
  const bad = runCli(['rollouts', 'horizon', '--depths', '0,x', '--out', join(dir, 'bad')]);
  t.false(existsSync(join(dir, 'bad')), 'a refused run leaves no folder behind');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /--depths takes whole numbers/);
});
