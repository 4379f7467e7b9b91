/**
 * The scripts in examples/ run against the built package (dist/) and print what they promise, so
 * they never rot. Their numbers are checked against the library.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from './helpers/cli.js';
import { ExactEngine, builtinScenario, compileScenario, loadScenarioFile } from '../ts/index.js';

const EXAMPLES = fileURLToPath(new URL('../examples/', import.meta.url));

function runExample(name: string, args: string[] = []) {
  const r = spawnSync(process.execPath, [`${EXAMPLES}${name}`, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the examples import the package by its name (Node resolves it through package.json "exports")', (t) => {
  for (const name of readdirSync(EXAMPLES).filter((f) => f.endsWith('.mjs'))) {
    const imports = [...readFileSync(`${EXAMPLES}${name}`, 'utf8').matchAll(/from '([^']+)'/g)].map((m) => m[1]);
    t.true(imports.some((s) => s.startsWith('harm-horizon')), name);
    t.false(imports.some((s) => s.includes('dist/')), `${name} imports no dist/ path`);
  }
});

test('every example script is covered here', (t) => {
  t.deepEqual(readdirSync(EXAMPLES).filter((f) => f.endsWith('.mjs')).sort(), ['analyze-scenario.mjs', 'sweep-cell.mjs', 'train-and-attack.mjs']);
});

test('analyze-scenario.mjs prints I_t of the three-token scenario', (t) => {
  const r = runExample('analyze-scenario.mjs');
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, '');
  const scenario = compileScenario(loadScenarioFile(`${EXAMPLES}scenarios/three-token.json`));
  const profile = new ExactEngine(scenario).harmProfile();
  const printed = [...r.stdout.matchAll(/^t=(\d+)\s+I_t=([\d.]+)/gm)].map((m) => [Number(m[1]), Number(m[2])]);
  t.deepEqual(printed.map(([step]) => step), [1, 2, 3, 4]);
  for (const [step, info] of printed) t.true(Math.abs(info - profile.harmInformation[step - 1]) < 5e-7, `I_${step}`);
  t.regex(r.stdout, new RegExp(`horizon k = ${profile.horizon}\\b`));
  t.regex(r.stdout, /sum I_t = 0\.210000 \(= Var\(H\)\)/);
});

test('train-and-attack.mjs: deep-anchored alignment resists prefilling at the default λ, standard does not', (t) => {
  const r = runExample('train-and-attack.mjs');
  t.is(r.status, 0, r.stderr);
  const rows = [...r.stdout.matchAll(/^(\d+)\s+(standard|deep-anchored)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$/gm)].map((m) => ({
    lambda: Number(m[1]),
    objective: m[2],
    expectedHarm: Number(m[3]),
    asr1: Number(m[4]),
    asr4: Number(m[5]),
  }));
  t.is(rows.length, 6, r.stdout);
  t.deepEqual([...new Set(rows.map((row) => row.lambda))], [1, 5, 20]);
  const at = (lambda: number, objective: string) => rows.find((row) => row.lambda === lambda && row.objective === objective)!;
  t.true(at(5, 'deep-anchored').asr4 < at(5, 'standard').asr4);
  t.true(at(5, 'standard').asr4 > 0.9, 'standard alignment at λ = 5 is shallow');
  // Standard: stronger λ, less harm.
  t.true(at(1, 'standard').expectedHarm > at(5, 'standard').expectedHarm && at(5, 'standard').expectedHarm > at(20, 'standard').expectedHarm);
  t.true(Math.abs(at(5, 'standard').expectedHarm - 0.0188) < 1e-3, 'the Gibbs optimum\'s E[H] at λ = 5');
});

test('sweep-cell.mjs runs one cell and prints the line `harm-horizon sweep` writes for it', (t) => {
  const r = runExample('sweep-cell.mjs');
  t.is(r.status, 0, r.stderr);
  const [first, second] = r.stdout.trim().split('\n');
  const cell = JSON.parse(first);
  t.is(cell.command, 'analyze');
  t.deepEqual(cell.params, { lambda: 1, scenario: 'refusal' });
  const analysis = new ExactEngine(compileScenario(builtinScenario('refusal'))).analyze(1);
  t.true(Math.abs(cell.result.expectedHarm.aligned - analysis.alignedExpectedHarm) < 1e-12);
  t.regex(second, /^λ = 1: E\[H\] 0\.7401 → 0\.5116/);
  // The same cell through the command line gives the same results line.
  const dir = mkdtempSync(join(tmpdir(), 'hh-example-sweep-'));
  writeFileSync(join(dir, 'cell.yaml'), 'command: analyze\nscenario: refusal\ngrid:\n  lambda: [1]\n');
  const sweep = spawnSync(process.execPath, [CLI, 'sweep', join(dir, 'cell.yaml'), '--out', join(dir, 'out')], { encoding: 'utf8' });
  t.is(sweep.status, 0, sweep.stderr);
  t.is(readFileSync(join(dir, 'out', 'results.jsonl'), 'utf8').trim(), first);
  // At small λ the KL of the optimum is (λ²/2)·Σ I_t.
  const small = runExample('sweep-cell.mjs', ['0.01']).stdout.trim().split('\n')[0];
  const { result } = JSON.parse(small);
  const kl = result.positions.reduce((a: number, p: { klOnPolicy: number }) => a + p.klOnPolicy, 0);
  const predicted = (0.01 ** 2 / 2) * result.positions.reduce((a: number, p: { harmInformation: number }) => a + p.harmInformation, 0);
  t.true(Math.abs(kl / predicted - 1) < 0.01, `${kl} vs ${predicted}`);
});
