/**
 * `harm-horizon demo`: one full run (budget: < 3 min on 2 cores; it takes seconds) checked for its
 * summary, its files and the theory it demonstrates; the manifest's commands reproduce the files;
 * Ctrl-C keeps what is done.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-demo-'));
const BUDGET_MS = 180_000;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function runIn(cwd: string, args: string[], timeout = BUDGET_MS): Run {
  const started = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - started };
}

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const readLines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));

// The one full run, in a folder of its own (to check that it writes nowhere but --out).
const cwd = join(scratch, 'run');
mkdirSync(cwd);
const run = runIn(cwd, ['demo', '--out', 'report', '--json']);
const out = join(cwd, 'report');
const names = ['base', 'gibbs', 'standard-ppo', 'deep', 'deep-anchored'];

test('demo --json finishes within the budget and prints the summary', (t) => {
  t.is(run.status, 0, run.stderr);
  t.true(run.ms < BUDGET_MS, `took ${run.ms} ms`);
  t.log(`demo took ${(run.ms / 1000).toFixed(1)} s`);
  const s = JSON.parse(run.stdout);
  t.is(s.scenario, 'refusal');
  t.false(s.interrupted);
  t.deepEqual(s.parameters.lambda, 5);
  t.deepEqual(s.policies.map((p: { name: string }) => p.name), names);
  t.deepEqual(s, readJson(join(out, 'summary.json')), 'stdout is summary.json');
  t.notRegex(run.stderr, /\n\s+at /, 'no stack trace');
});

test('deep alignment resists prefilling where standard alignment does not', (t) => {
  const s = JSON.parse(run.stdout);
  const asr4 = Object.fromEntries(s.policies.map((p: { name: string; prefill: number[] }) => [p.name, p.prefill[4]]));
  for (const deep of ['deep', 'deep-anchored']) {
    for (const standard of ['gibbs', 'standard-ppo']) t.true(asr4[deep] < asr4[standard], `ASR_4 ${deep} ${asr4[deep]} < ${standard} ${asr4[standard]}`);
  }
  t.true(asr4['standard-ppo'] > 0.9 && asr4.gibbs > 0.9, 'standard alignment is shallow: ASR_4 stays above 0.9');
  t.true(asr4.deep < 0.05, `deep ASR_4 ${asr4.deep}`);
  for (const p of s.policies) t.true(p.prefill[0] <= p.prefill[4] + 1e-12, `${p.name}: ASR_0 = E[H] ≤ ASR_4`);
  const eh = Object.fromEntries(s.policies.map((p: { name: string; expectedHarm: number }) => [p.name, p.expectedHarm]));
  t.true(Math.abs(eh.gibbs - 0.0188) < 1e-3 && Math.abs(eh.base - 0.7401) < 1e-3, 'E[H] as in RESULTS.md');
});

test('the λ-scaling check: D_t/((λ²/2)·I_t) is within 2% of 1 at the smallest λ wherever I_t > 1e-9', (t) => {
  const s = JSON.parse(run.stdout);
  const analysis = readJson(join(out, 'analyze.json'));
  const informative = analysis.positions.filter((p: { harmInformation: number }) => p.harmInformation > 1e-9).map((p: { t: number }) => p.t);
  t.true(informative.length > 0);
  const { rows } = readJson(join(out, 'lambda-scaling.json'));
  const smallest = Math.min(...rows.map((r: { lambda: number }) => r.lambda));
  t.is(smallest, s.parameters.lambdas[0]);
  const atSmallest = rows.filter((r: { lambda: number }) => r.lambda === smallest);
  t.deepEqual(atSmallest.map((r: { t: number }) => r.t), informative, 'one row per informative position');
  for (const r of atSmallest) t.true(Math.abs(r.ratio - 1) < 0.02, `t=${r.t}: ratio ${r.ratio}`);
  t.true(s.lambdaScaling.deviationAtSmallest < 0.02);
  // The ratio departs from 1 as λ grows (the law is a small-λ law).
  const largest = s.lambdaScaling.perLambda[s.lambdaScaling.perLambda.length - 1];
  t.true(largest.maxDeviation > s.lambdaScaling.deviationAtSmallest);
  t.is(s.horizon.k, analysis.horizon);
});

test('the report folder holds every file, and nothing is written outside it', (t) => {
  t.deepEqual(readdirSync(cwd), ['report']);
  const expected = ['index.html', 'analyze.json', 'lambda-scaling.json', 'manifest.json', 'summary.json', ...names.map((n) => `attack-${n}.json`), 'gibbs/policy.json'];
  for (const name of ['standard-ppo', 'deep', 'deep-anchored']) expected.push(`${name}/policy.json`, `${name}/log.jsonl`, `${name}/summary.json`);
  for (const f of expected) t.true(existsSync(join(out, f)), f);
  t.false(readdirSync(out, { recursive: true }).some((f) => /\.tmp/.test(String(f))), 'no temporary files left');
  // The HTML report: one page with its plots as SVG and their data as CSV.
  const plots = readdirSync(join(out, 'plots'));
  t.true(plots.length >= 5 && plots.every((f) => f.endsWith('.svg')), plots.join(', '));
  t.deepEqual(readdirSync(join(out, 'data')).sort(), plots.map((f) => f.replace(/\.svg$/, '.csv')).sort());
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  t.regex(html, /shallow versus deep alignment on refusal/);
  t.regex(html, /λ-scaling/);
  // Run folders are what `train` writes: one log line per step, the summary's last record.
  const s = JSON.parse(run.stdout);
  for (const [name, steps] of [['standard-ppo', s.parameters.ppoSteps], ['deep', 3000], ['deep-anchored', 1]] as const) {
    const log = readLines(join(out, name, 'log.jsonl'));
    t.is(log.length, steps + 1, `${name}: log lines`);
    const summary = readJson(join(out, name, 'summary.json'));
    t.deepEqual(summary.final, withoutSeconds(log[log.length - 1]), `${name}: summary.final`);
    t.regex(summary.command, /^harm-horizon train refusal /);
    t.false(summary.interrupted);
  }
  const attack = readJson(join(out, 'attack-deep.json'));
  t.deepEqual(Object.keys(attack), ['scenario', 'policy', 'rank', 'method', 'prefill', 'rap']);
  t.is(attack.policy, 'report/deep/policy.json');
  t.is(attack.prefill.length, 17);
  t.true(attack.prefill.every((x: unknown) => x === null || typeof x === 'number'), 'the ASR_k curve, indexed by k');
});

test('the manifest\'s commands reproduce the files exactly', (t) => {
  const manifest = readJson(join(out, 'manifest.json'));
  t.is(typeof manifest.title, 'string');
  t.is(manifest.parameters.lambda, 5);
  t.regex(manifest.commands[0], /^harm-horizon demo refusal --out report/);
  // Replay every artefact's commands in a fresh folder, with `harm-horizon` on the PATH.
  const bin = join(scratch, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'harm-horizon'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(join(bin, 'harm-horizon'), 0o755);
  const replay = join(scratch, 'replay');
  mkdirSync(join(replay, 'report', 'gibbs'), { recursive: true });
  const reproducible = manifest.artefacts.filter((a: { file: string }) => !a.file.endsWith('lambda-scaling.json'));
  for (const { commands } of reproducible) {
    for (const command of commands) {
      const r = spawnSync('sh', ['-c', command], { cwd: replay, encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeout: 60_000 });
      t.is(r.status, 0, `${command}: ${r.stderr}`);
    }
  }
  for (const { file } of reproducible.filter((a: { file: string }) => a.file.endsWith('.json'))) t.deepEqual(readJson(join(replay, file)), readJson(join(cwd, file)), file);
  t.true(existsSync(join(replay, 'report', 'index.html')), 'the report command rebuilds the page');
  // λ-scaling: each λ's analyze --json gives the ratios.
  const { rows } = readJson(join(out, 'lambda-scaling.json'));
  const first = runIn(replay, ['analyze', 'refusal', '--lambda', String(rows[0].lambda), '--json']);
  const position = JSON.parse(first.stdout).positions[rows[0].t - 1];
  t.is(position.klOnPolicy / position.klPredicted, rows[0].ratio);
});

test('demo prints the summary table (fewer PPO steps; another scenario)', (t) => {
  const file = join(process.cwd(), 'examples', 'scenarios', 'three-token.json');
  const r = runIn(scratch, ['demo', file, '--out', join(scratch, 'three'), '--ppo-steps', '20']);
  t.is(r.status, 0, r.stderr);
  for (const label of ['base', 'Gibbs optimum', 'standard, PPO', 'deep, exact descent', 'deep-anchored, fixed point']) t.regex(r.stdout, new RegExp(label));
  t.regex(r.stdout, /ASR_1/);
  t.regex(r.stdout, /λ-scaling/);
  t.regex(r.stdout, /Harm horizon k = 2 of T = 4: I_t = 0 after it/);
  t.regex(r.stdout, /20 steps × 1024 responses/);
  const s = readJson(join(scratch, 'three', 'summary.json'));
  t.is(s.scenario, 'three-token');
  t.is(s.parameters.ppoSteps, 20);
});

test('demo on a scenario without recovery tokens skips the deep policies', (t) => {
  const r = runIn(scratch, ['demo', 'horizon', '--out', join(scratch, 'horizon'), '--ppo-steps', '10', '--json']);
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  t.deepEqual(s.policies.map((p: { name: string }) => p.name), ['base', 'gibbs', 'standard-ppo']);
  t.true(s.notes.some((n: string) => /no recovery tokens/.test(n)));
  // Beyond the horizon (k = 4) the Gibbs optimum does not move: D_t = 0 for every λ.
  t.is(s.horizon.k, 4);
  t.true(s.lambdaScaling.beyondHorizonMaxKl <= 1e-12, `${s.lambdaScaling.beyondHorizonMaxKl}`);
});

/** A log record without its wall-clock time: the summary's final record (reproducible) leaves it out. */
function withoutSeconds({ seconds: _, ...record }: Record<string, unknown>) {
  return record;
}

test('Ctrl-C stops after the current step and keeps what is done', async (t) => {
  const dir = join(scratch, 'interrupted');
  const child = spawn(process.execPath, [CLI, 'demo', '--out', dir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  let signalled = false;
  child.stderr.on('data', (d) => {
    stderr += d;
    // Interrupt in the middle of the longest training run.
    if (!signalled && /training deep, exact descent/.test(stderr)) {
      signalled = true;
      setTimeout(() => child.kill('SIGINT'), 300);
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.true(signalled, stderr);
  t.is(code, 130, stderr);
  t.notRegex(stderr, /\n\s+at /);
  const s = JSON.parse(stdout);
  t.true(s.interrupted);
  t.deepEqual(s.policies.map((p: { name: string }) => p.name), ['base', 'gibbs', 'standard-ppo'], 'the finished policies are kept');
  t.is(s.lambdaScaling, null);
  const log = readLines(join(dir, 'deep', 'log.jsonl'));
  t.true(log.length > 0 && log.length < 3001, `${log.length} log lines`);
  const summary = readJson(join(dir, 'deep', 'summary.json'));
  t.true(summary.interrupted);
  t.deepEqual(summary.final, withoutSeconds(log[log.length - 1]));
  t.true(existsSync(join(dir, 'deep', 'policy.json')));
  t.false(existsSync(join(dir, 'deep-anchored')));
  t.true(readJson(join(dir, 'manifest.json')).interrupted);
});
