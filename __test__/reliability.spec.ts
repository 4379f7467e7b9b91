/**
 * Nothing lost, nothing half-written: occupied output folders, two processes on the same output,
 * standard output that fails (a full disk, a closed pipe), exit codes of bad budgets, and the
 * analyze table at very large T.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsonChunks } from '../ts/io/stdout.js';
import { CLI, runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-reliable-'));
const STACK = /\n\s+at |node:internal|\.js:\d+:\d+/;

/** A 2-token scenario of length T: H = 0.6 once a rare token b appears (non-binary harm, tiny state count). */
function rareTokenScenario(T: number, pB: number): string {
  const path = join(scratch, `rare-${T}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      name: `rare-${T}`,
      tokens: ['a', 'b'],
      length: T,
      contextOrder: 1,
      base: { '<bos>': [1 - pB, pB], a: [1 - pB, pB], b: [0.5, 0.5] },
      harm: { states: ['clean', 'seen'], start: 'clean', values: { seen: 0.6 }, transitions: { clean: { b: 'seen' } } },
    }),
  );
  return path;
}

test.serial('an occupied --out is refused with exit 2 naming --force, for train, demo and report', (t) => {
  const out = join(scratch, 'occupied');
  mkdirSync(out);
  writeFileSync(join(out, 'policy.json'), '{"precious": true}');
  for (const args of [
    ['train', 'horizon', '--steps', '2', '--out', out],
    ['demo', 'horizon', '--ppo-steps', '1', '--ppo-samples', '8', '--out', out],
    ['report', scratch, '--out', out],
  ]) {
    const r = runCli(args);
    t.is(r.status, 2, `${args[0]}: ${r.stderr}`);
    t.regex(r.stderr, /already holds the results of another run \(policy\.json\).*--force/);
    t.notRegex(r.stderr, STACK);
  }
  t.is(readFileSync(join(out, 'policy.json'), 'utf8'), '{"precious": true}', 'the earlier result is untouched');
  t.false(existsSync(join(out, '.harm-horizon.lock')), 'the lock is released on exit');
});

test.serial('--force writes over an occupied --out; an empty or fresh folder needs no --force', (t) => {
  const results = join(scratch, 'report-input');
  mkdirSync(results);
  writeFileSync(join(results, 'analyze.json'), runCli(['analyze', 'horizon', '--json']).stdout);
  const out = join(scratch, 'report-twice');
  t.is(runCli(['report', results, '--out', out]).status, 0);
  t.is(runCli(['report', results, '--out', out]).status, 2);
  const forced = runCli(['report', results, '--out', out, '--force']);
  t.is(forced.status, 0, forced.stderr);
  const empty = join(scratch, 'empty-out');
  mkdirSync(empty);
  t.is(runCli(['report', results, '--out', empty]).status, 0);
});

/** Runs the CLI in the background; resolves with its exit code and stderr. */
function background(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ status: number | null; stderr: string }>((resolve) => child.on('close', (status) => resolve({ status, stderr })));
  return { child, done };
}

async function waitFor(path: string) {
  for (let i = 0; i < 2400 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 50));
}

test.serial('two processes on the same --out: the second exits 2 and the first finishes', async (t) => {
  const out = join(scratch, 'shared-run');
  const first = background(['train', 'refusal', '--objective', 'deep', '--steps', '20000', '--out', out]);
  await waitFor(join(out, '.harm-horizon.lock'));
  t.true(existsSync(join(out, '.harm-horizon.lock')), 'the first process holds the lock');
  const second = runCli(['train', 'refusal', '--steps', '2', '--out', out, '--force']);
  t.is(second.status, 2, second.stderr);
  t.regex(second.stderr, new RegExp(`in use by process ${first.child.pid}`));
  first.child.kill('SIGINT');
  const r = await first.done;
  t.is(r.status, 130, r.stderr);
  t.true(existsSync(join(out, 'policy.json')), 'the first run kept its policy');
  t.false(existsSync(join(out, '.harm-horizon.lock')));
});

test.serial('a lock left by a process that died is taken over', (t) => {
  const out = join(scratch, 'stale');
  mkdirSync(out);
  const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']);
  writeFileSync(join(out, '.harm-horizon.lock'), `${dead.pid}\n`);
  const r = runCli(['train', 'horizon', '--steps', '2', '--out', out]);
  t.is(r.status, 0, r.stderr);
  t.false(existsSync(join(out, '.harm-horizon.lock')));
  // A live owner (this test process) keeps the folder.
  writeFileSync(join(out, '.harm-horizon.lock'), `${process.pid}\n`);
  const held = runCli(['train', 'horizon', '--steps', '2', '--out', out, '--force']);
  t.is(held.status, 2);
  t.regex(held.stderr, new RegExp(`in use by process ${process.pid}`));
});

test.serial('two sweeps on the same results: the second exits 2', async (t) => {
  const sweepFile = join(scratch, 'sweep.json');
  writeFileSync(sweepFile, JSON.stringify({ command: 'train', scenario: 'refusal', fixed: { objective: 'deep', algorithm: 'exact', steps: 3000 }, grid: { lambda: [1, 2, 3, 4] } }));
  const out = join(scratch, 'sweep-out');
  const first = background(['sweep', sweepFile, '--out', out, '--workers', '1']);
  await waitFor(join(out, 'results.jsonl.lock'));
  const second = runCli(['sweep', sweepFile, '--out', out, '--workers', '1']);
  t.is(second.status, 2, second.stderr);
  t.regex(second.stderr, /sweep results .*results\.jsonl is in use by process/);
  first.child.kill('SIGTERM');
  await first.done;
  t.false(existsSync(join(out, 'results.jsonl.lock')));
});

test.serial('stdout on a full disk (/dev/full) exits 1 with one line on stderr', (t) => {
  for (const args of [['analyze', 'refusal'], ['analyze', 'refusal', '--json'], ['scenario', 'show', 'horizon', '--json'], ['--help'], ['train', '--help'], ['--version']]) {
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" ${args.join(' ')} > /dev/full`], { encoding: 'utf8' });
    t.is(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.regex(r.stderr, /^harm-horizon: cannot write to standard output: .*ENOSPC/);
  }
});

test.serial('a reader that stops early (EPIPE) ends the output quietly', (t) => {
  const big = rareTokenScenario(100_000, 1e-4);
  const direct = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" analyze "${big}" --json | head -c 100 > /dev/null`], { encoding: 'utf8' });
  t.is(direct.status, 0, direct.stderr);
  t.is(direct.stderr, '');
});

test.serial('memory budgets: 0 names the flag, over budget is HH_STATE_SPACE_TOO_LARGE, both exit 2', (t) => {
  const zero = runCli(['analyze', 'refusal', '--memory-budget', '0']);
  t.is(zero.status, 2);
  t.regex(zero.stderr, /--memory-budget must be a finite number > 0/);
  const over = runCli(['analyze', 'random(seed=1,V=16,n=2,T=64,D=40)', '--memory-budget', '0.01']);
  t.is(over.status, 2);
  t.regex(over.stderr, /scenario too large .*over the memory budget of 10\.24 MiB .*\(--memory-budget\)/);
  t.notRegex(over.stderr, /memoryBudgetBytes/);
  // Every command that builds a state space takes the flag, and names it when the budget is too small.
  const sweepFile = join(scratch, 'budget-sweep.json');
  writeFileSync(sweepFile, JSON.stringify({ command: 'analyze', scenario: 'refusal', grid: { lambda: [1, 2] } }));
  for (const args of [
    ['scenario', 'validate', rareTokenScenario(64, 0.01)],
    ['estimate', 'refusal', '--samples', '10'],
    ['demo', 'refusal', '--out', join(scratch, 'budget-demo')],
    ['sweep', sweepFile, '--out', join(scratch, 'budget-sweep')],
  ]) {
    const r = runCli([...args, '--memory-budget', '0.00000001']);
    t.is(r.status, 2, `${args[0]}: ${r.stderr}`);
    t.regex(r.stderr, /\(--memory-budget\)/, args[0]);
  }
  t.false(existsSync(join(scratch, 'budget-demo')), 'no output folder for a refused demo');
});

for (const T of [64, 10_000, 100_000, 1_000_000]) {
  test.serial(`analyze prints a table of bounded width at T = ${T}`, (t) => {
    const r = runCli(['analyze', rareTokenScenario(T, 20 / T)]);
    t.is(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    const widest = Math.max(...lines.map((l) => [...l].length));
    t.true(widest <= 120, `widest line ${widest} characters`);
    t.true(lines.length < 120, `${lines.length} lines`);
    if (T > 40) {
      t.regex(r.stdout, new RegExp(`⋮  ${T - 32} positions not shown \\(t = 25\\.\\.${T - 8}\\)`));
      t.regex(r.stdout, new RegExp(`⋮  ${T + 1 - 32} values of k not shown`));
    }
    // The rows shown and the elided mass of the note add up to Var H = Σ I_t (to the 3 digits printed).
    const variance = Number(/Var\(H\) (\S+)/.exec(r.stdout)?.[1]);
    const rows = lines.filter((l) => /^\s*\d+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+[█·]/.test(l));
    t.is(rows.length, Math.min(T, 32));
    const shownMass = rows.reduce((a, l) => a + Number(l.trim().split(/\s+/)[1]), 0);
    const elidedMass = T > 40 ? Number(/not shown \(t = [\d.]+\): Σ I_t = (\S+)/.exec(r.stdout)?.[1]) : 0;
    t.true(Math.abs(shownMass + elidedMass - variance) <= 0.01 * variance, `${shownMass} + ${elidedMass} vs ${variance}`);
    t.regex(r.stdout, /effective horizon k = \d+ \(99% of Var H resolved\)/);
  });
}

test.serial('analyze --json at T = 10^5 is one JSON document with every position', (t) => {
  const r = spawnSync(process.execPath, [CLI, 'analyze', rareTokenScenario(100_000, 2e-4), '--json'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.is(report.positions.length, 100_000);
  t.is(report.prefill.length, 100_001);
  const sum = report.positions.reduce((a: number, p: { harmInformation: number }) => a + p.harmInformation, 0);
  t.true(Math.abs(sum - report.harmVariance) <= 1e-9 * report.harmVariance, `Σ I_t ${sum} vs Var H ${report.harmVariance}`);
});

test('the streamed JSON is the text JSON.stringify(value, null, 2) gives', (t) => {
  const value = {
    a: 1,
    rows: Array.from({ length: 1500 }, (_, i) => ({ t: i, pair: [i, -i], s: 'q"', n: null, u: undefined })),
    nested: { long: Array.from({ length: 1200 }, (_, i) => i / 7), short: [1, 2] },
    holes: Array.from({ length: 1001 }, (_, i) => (i % 2 ? undefined : i)),
    empty: [],
    skipped: undefined,
  };
  t.is([...jsonChunks(value)].join(''), JSON.stringify(value, null, 2));
});
