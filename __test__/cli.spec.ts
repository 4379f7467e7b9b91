/** The command line: the analyze output contract, scenario commands, exit codes and error messages. */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-cli-'));

function analyzeJson(args: string[], env = {}) {
  const r = runCli(['analyze', ...args, '--json'], env);
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('analyze --json follows the output contract', (t) => {
  const report = analyzeJson(['refusal']);
  t.is(report.scenario, 'refusal');
  t.is(report.lambda, 5, 'refusal defaults to λ = 5');
  t.is(typeof report.expectedHarm.base, 'number');
  t.true(report.expectedHarm.aligned < report.expectedHarm.base);
  t.true(Math.abs(report.harmInformationSum - report.harmVariance) <= 1e-12);
  t.is(report.positions.length, 16);
  t.is(report.prefill.length, 17);
  t.deepEqual(Object.keys(report.positions[0]).slice(0, 7), ['t', 'harmInformation', 'gradNorm', 'gradBound', 'klOnPolicy', 'klTeacherForced', 'klPredicted']);
  t.deepEqual(Object.keys(report.prefill[0]), ['k', 'asrBase', 'asrAligned']);
  t.deepEqual(report.positions.map((p: { t: number }) => p.t), Array.from({ length: 16 }, (_, i) => i + 1));
  for (const p of report.positions) {
    t.true(p.gradNorm <= p.gradBound * (1 + 1e-12), `bound at t=${p.t}`);
    t.true(Math.abs(p.klPredicted - (25 / 2) * p.harmInformation) <= 1e-12 * Math.max(1, p.klPredicted));
  }
  t.true(Math.abs(report.prefill[0].asrAligned - report.expectedHarm.aligned) < 1e-12);
});

test('analyze: the default λ is 1 for other scenarios, and --lambda overrides it', (t) => {
  const horizon = analyzeJson(['horizon']);
  t.is(horizon.lambda, 1);
  t.is(horizon.horizon, 4);
  for (const p of horizon.positions.filter((p: { t: number }) => p.t > 4)) {
    t.true(p.harmInformation <= 1e-12 && p.klOnPolicy <= 1e-12 && p.gradNorm <= 1e-12, `t=${p.t}`);
  }
  const low = analyzeJson(['refusal', '--lambda', '0.5']);
  t.is(low.lambda, 0.5);
  const high = analyzeJson(['refusal']);
  t.true(low.expectedHarm.aligned > high.expectedHarm.aligned, 'weaker alignment leaves more harm');
});

test('scenario show --json writes a file that analyses exactly like the built-in', (t) => {
  const shown = runCli(['scenario', 'show', 'horizon', '--json']);
  t.is(shown.status, 0);
  const file = join(scratch, 'horizon.json');
  writeFileSync(file, shown.stdout);
  t.deepEqual(analyzeJson([file]), analyzeJson(['horizon']));
  const valid = runCli(['scenario', 'validate', file]);
  t.is(valid.status, 0);
  t.regex(valid.stdout, /valid/);
});

test('analyze takes scenario files and seeded random scenarios', (t) => {
  const custom = analyzeJson(['examples/scenarios/three-token.json']);
  t.is(custom.scenario, 'three-token');
  t.is(custom.lambda, 2, 'the file\'s default λ');
  t.is(custom.positions.length, 4);
  const a = analyzeJson(['random', '--seed', '3']);
  const b = analyzeJson(['random', '--seed', '3']);
  const c = analyzeJson(['random', '--seed', '4']);
  t.deepEqual(a, b);
  t.notDeepEqual(a.positions, c.positions);
});

test('scenario list names the built-ins', (t) => {
  const r = runCli(['scenario', 'list', '--json']);
  t.is(r.status, 0);
  t.deepEqual(
    JSON.parse(r.stdout).map((s: { name: string }) => s.name),
    ['refusal', 'horizon', 'random'],
  );
});

test('the human table shows every column with its shape and the prefilling curve', (t) => {
  const r = runCli(['analyze', 'horizon']);
  t.is(r.status, 0);
  t.regex(r.stdout, /harm horizon k = 4/);
  for (const column of ['I_t', '‖G_t‖', 'bound', 'KL on-policy', 'KL teacher-forced', '(λ²/2)·I_t', 'shape', 'ASR base', 'ASR aligned']) {
    t.true(r.stdout.includes(column), column);
  }
  t.regex(r.stdout, /beyond horizon/);
});

test('results are bit-identical whatever the thread count', (t) => {
  const name = 'random(seed=9,V=6,n=2,T=20,D=600)';
  const one = runCli(['analyze', name, '--json'], { RAYON_NUM_THREADS: '1' });
  const two = runCli(['analyze', name, '--json'], { RAYON_NUM_THREADS: '2' });
  t.is(one.status, 0, one.stderr);
  t.true(JSON.parse(one.stdout).states > 2000, 'several parallel chunks');
  t.is(one.stdout, two.stdout);
});

/** Writes a scenario file derived from the three-token example with one change. */
function brokenScenario(name: string, change: (s: Record<string, any>) => void): string {
  const s = JSON.parse(runCli(['scenario', 'show', 'examples/scenarios/three-token.json', '--json']).stdout);
  change(s);
  const file = join(scratch, `${name}.json`);
  writeFileSync(file, JSON.stringify(s));
  return file;
}

const badInputs: [string, (s: Record<string, any>) => void, RegExp][] = [
  ['row-sum', (s) => (s.base.yes[0] = 0.9), /base\["yes"\].*sum/],
  ['negative', (s) => (s.base['<bos>'] = [0.6, -0.2, 0.6]), /base\["<bos>"\]\[1\]/],
  ['unknown-token', (s) => (s.harm.transitions.start = { maybe: 'once' }), /harm\.transitions\.start\.maybe/],
  ['harm-range', (s) => (s.harm.values.HARM = 2), /harm\.values\.HARM/],
  ['wrong-shape', (s) => (s.base.no = [0.5, 0.5]), /base\["no"\]/],
  ['length', (s) => (s.length = 0), /length/],
];

for (const [name, change, field] of badInputs) {
  test(`a bad scenario file (${name}) exits 2 naming the field, without a stack trace`, (t) => {
    const file = brokenScenario(name, change);
    for (const args of [['analyze', file], ['scenario', 'validate', file]]) {
      const r = runCli(args);
      t.is(r.status, 2, r.stderr);
      t.regex(r.stderr, field);
      t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
      t.is(r.stdout, '');
    }
  });
}

test('bad usage exits 2', (t) => {
  for (const args of [
    ['analyze', 'refusal', '--lambda', '-1'],
    ['analyze', 'refusal', '--lambda', 'abc'],
    ['analyze'],
    ['frobnicate'],
    ['analyze', 'no-such-scenario.json'],
  ]) {
    const r = runCli(args);
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.notRegex(r.stderr, /\n\s+at /);
  }
  const invalidJson = join(scratch, 'invalid.json');
  writeFileSync(invalidJson, '{"name": "x",, }');
  const r = runCli(['analyze', invalidJson]);
  t.is(r.status, 2);
  t.regex(r.stderr, /line 1, column/);
});

test('a state space over the memory budget is refused with exit 2', (t) => {
  const r = runCli(['analyze', 'random(seed=1,V=16,n=2,T=64,D=4000)', '--memory-budget', '0.01']);
  t.is(r.status, 2);
  t.regex(r.stderr, /memory budget/);
});

test('--help has examples', (t) => {
  const r = runCli(['analyze', '--help']);
  t.is(r.status, 0);
  t.regex(r.stdout, /Examples:/);
});
