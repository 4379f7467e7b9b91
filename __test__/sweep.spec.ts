/**
 * Sweeps: grid expansion, ids and seeds; runs end to end; kill, torn line and Ctrl-C followed by a
 * resume; shards and merge; bad input (exit 2, field named, no stack trace, results untouched); a
 * full disk (exit 1, results intact).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cellId, commandParameters, derivedSeed, loadSweep, parseShard, parseSweep, shardCells, shardFromEnv, SWEEP_COMMANDS } from '../ts/sweep/index.js';
import { CLI, runCli } from './helpers/cli.js';
import { smallDisk } from './helpers/small-disk.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-sweep-'));
let counter = 0;
const fresh = (name: string) => join(scratch, `${name}-${counter++}`);

function sweepFile(name: string, body: unknown, ext = 'json'): string {
  const path = join(scratch, `${name}.${ext}`);
  writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body, null, 2));
  return path;
}

const readLines = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
const sorted = (path: string) => readLines(path).sort();

/** No stack trace: no "    at f (file:line)" frames and no error class dump. */
function assertClean(t: { false: (v: boolean, m?: string) => void }, stderr: string) {
  t.false(/^\s+at .+[:(]/m.test(stderr), `stack trace in: ${stderr}`);
  t.false(/node:internal|TypeError|ReferenceError/.test(stderr), `internal error in: ${stderr}`);
}

const analyzeSweep = {
  command: 'analyze',
  scenario: ['refusal', 'horizon'],
  seed: 11,
  grid: { lambda: { log: [0.1, 10, 3] }, length: [6, 8] },
  list: [{ scenario: 'refusal', lambda: 0.5 }],
};

/** Slow enough cells (about 0.05–0.1 s each) to interrupt a run. */
const slowSweep = {
  command: 'estimate',
  scenario: 'refusal',
  seed: 5,
  fixed: { samples: 10000 },
  grid: { estimator: ['reinforce', 'innovation'], replicate: { range: [0, 8] } },
};

// ---------------------------------------------------------------------------------------------
// Expansion, ids, seeds

test('grid × list expansion: order, ids and canonical params are deterministic', (t) => {
  const a = parseSweep(analyzeSweep, 'inline', scratch);
  const b = parseSweep(JSON.parse(JSON.stringify(analyzeSweep)), 'inline', scratch);
  t.is(a.cells.length, 2 * 3 * 2 + 1);
  t.deepEqual(
    a.cells.map((c) => c.id),
    b.cells.map((c) => c.id),
  );
  // Scenarios outermost, the last grid axis fastest, then the list.
  t.deepEqual(a.cells[0]!.params, { lambda: 0.1, length: 6, scenario: 'refusal' });
  t.deepEqual(a.cells[1]!.params, { lambda: 0.1, length: 8, scenario: 'refusal' });
  t.deepEqual(a.cells[2]!.params, { lambda: 1, length: 6, scenario: 'refusal' });
  t.deepEqual(a.cells[6]!.params.scenario, 'horizon');
  t.deepEqual(a.cells[12]!.params, { lambda: 0.5, scenario: 'refusal' });
  // The id hashes the canonical JSON of {command, params}: key order in the file does not matter.
  t.is(a.cells[0]!.id, cellId('analyze', { scenario: 'refusal', length: 6, lambda: 0.1 }));
  t.regex(a.cells[0]!.id, /^[0-9a-f]{16}$/);
  t.not(cellId('estimate', a.cells[0]!.params), a.cells[0]!.id, 'the command is part of the id');
  t.is(new Set(a.cells.map((c) => c.id)).size, a.cells.length);
  // Log grid values: endpoints exact, the middle rounded to 12 significant digits.
  t.deepEqual(
    parseSweep({ command: 'analyze', scenario: 'refusal', grid: { lambda: { log: [0.01, 100, 5] } } }, 'inline', scratch).cells.map((c) => c.params.lambda),
    [0.01, 0.1, 1, 10, 100],
  );
  t.deepEqual(
    parseSweep({ command: 'analyze', scenario: 'refusal', grid: { seed: { range: [3, 9, 2] } } }, 'inline', scratch).cells.map((c) => c.params.seed),
    [3, 5, 7],
  );
  // Lengths: rows a shorter T cannot reach are dropped.
  t.deepEqual(
    parseSweep({ command: 'analyze', scenario: ['refusal', 'horizon'], grid: { length: [1, 40] } }, 'inline', scratch).cells.map((c) => c.params.length),
    [1, 40, 1, 40],
  );
  // A cell given by both the grid and the list runs once.
  const dup = parseSweep({ command: 'analyze', scenario: 'refusal', grid: { lambda: [1, 2] }, list: [{ lambda: 2 }] }, 'inline', scratch);
  t.is(dup.cells.length, 2);
  // The same through the CLI's --list (YAML this time).
  const yaml = sweepFile(
    'expansion',
    'command: analyze\nscenario: [refusal, horizon]\nseed: 11\ngrid:\n  lambda: {log: [0.1, 10, 3]}\n  length: [6, 8]\nlist:\n  - {scenario: refusal, lambda: 0.5}\n',
    'yaml',
  );
  const r = runCli(['sweep', yaml, '--list']);
  t.is(r.status, 0, r.stderr);
  const listed = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  t.deepEqual(
    listed.map((c) => [c.id, c.seed]),
    a.cells.map((c) => [c.id, c.seed]),
  );
});

test('the example sweeps are valid; every sweep parameter is documented in docs/sweeps.md', (t) => {
  const examples = new URL('../examples/sweeps/', import.meta.url);
  const files = readdirSync(examples).filter((f) => /\.(ya?ml|json)$/.test(f));
  t.true(files.length >= 4);
  for (const f of files) t.notThrows(() => loadSweep(fileURLToPath(new URL(f, examples))), f);
  t.is(loadSweep(fileURLToPath(new URL('lambda-seeds.yaml', examples))).cells.length, 10_000);
  const docs = readFileSync(new URL('../docs/sweeps.md', import.meta.url), 'utf8');
  for (const command of SWEEP_COMMANDS) {
    for (const name of Object.keys(commandParameters(command))) t.true(docs.includes(`\`${name}\``), `${command} ${name}`);
  }
});

test('per-cell seeds: derived from the sweep seed and the id, or the explicit seed parameter', (t) => {
  const a = parseSweep(analyzeSweep, 'inline', scratch);
  for (const c of a.cells) {
    t.is(c.seed, derivedSeed(11, c.id));
    t.true(Number.isSafeInteger(c.seed) && c.seed >= 0 && c.seed < 2 ** 53);
  }
  t.is(derivedSeed(11, a.cells[0]!.id), derivedSeed(11, a.cells[0]!.id));
  const other = parseSweep({ ...analyzeSweep, seed: 12 }, 'inline', scratch);
  t.deepEqual(
    other.cells.map((c) => c.id),
    a.cells.map((c) => c.id),
    'the sweep seed changes seeds, not ids',
  );
  t.notDeepEqual(
    other.cells.map((c) => c.seed),
    a.cells.map((c) => c.seed),
  );
  t.is(new Set(a.cells.map((c) => c.seed)).size, a.cells.length);
  const explicit = parseSweep({ command: 'estimate', scenario: 'refusal', fixed: { samples: 10 }, grid: { seed: [4, 9] } }, 'inline', scratch);
  t.deepEqual(
    explicit.cells.map((c) => c.seed),
    [4, 9],
  );
});

test('shards partition the cells; --shard, Slurm and Kubernetes environments agree', (t) => {
  const sweep = parseSweep({ command: 'analyze', scenario: 'refusal', grid: { lambda: { log: [0.1, 10, 7] }, replicate: { range: [0, 5] } } }, 'inline', scratch);
  const parts = [0, 1, 2].map((i) => shardCells(sweep.cells, parseShard(`${i}/3`)));
  t.deepEqual(
    parts.map((p) => p.length),
    [12, 12, 11],
  );
  t.deepEqual(parts.flat().map((c) => c.id).sort(), sweep.cells.map((c) => c.id).sort());
  t.deepEqual(shardFromEnv({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '3' }), { index: 1, count: 3, source: 'SLURM_ARRAY_TASK_ID' });
  t.deepEqual(shardFromEnv({ SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_MAX: '6' }), { index: 1, count: 3, source: 'SLURM_ARRAY_TASK_ID' });
  t.deepEqual(shardFromEnv({ JOB_COMPLETION_INDEX: '2', HH_SHARD_COUNT: '3' }), { index: 2, count: 3, source: 'JOB_COMPLETION_INDEX' });
  t.deepEqual(shardFromEnv({ JOB_COMPLETION_INDEX: '2' }, 3), { index: 2, count: 3, source: 'JOB_COMPLETION_INDEX' });
  t.is(shardFromEnv({}), null);
  t.throws(() => shardFromEnv({ JOB_COMPLETION_INDEX: '2' }), { message: /HH_SHARD_COUNT/ });
  t.throws(() => parseShard('3/3'), { message: /0 ≤ i < n/ });
  const file = sweepFile('shard-env', { command: 'analyze', scenario: 'refusal', grid: { lambda: { log: [0.1, 10, 7] }, replicate: { range: [0, 5] } } });
  const expected = parts[1]!.map((c) => JSON.stringify({ id: c.id, seed: c.seed, params: c.params })).join('\n') + '\n';
  t.is(runCli(['sweep', file, '--list'], { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '3' }).stdout, expected);
  t.is(runCli(['sweep', file, '--list'], { JOB_COMPLETION_INDEX: '1', HH_SHARD_COUNT: '3' }).stdout, expected);
});

// ---------------------------------------------------------------------------------------------
// Running

test('a small sweep end to end: one line per cell, the library\'s numbers, a rerun does nothing', (t) => {
  const file = sweepFile('small', analyzeSweep);
  const out = fresh('small');
  const r = runCli(['sweep', file, '--out', out, '--json', '--workers', '2']);
  t.is(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  t.like(summary, { cells: 13, sweepCells: 13, doneBefore: 0, ran: 13, failed: 0, notRun: 0, interrupted: null });
  const path = join(out, 'results.jsonl');
  const lines = readLines(path).map((l) => JSON.parse(l));
  t.is(lines.length, 13);
  const ids = loadSweep(file).cells.map((c) => c.id);
  t.deepEqual(lines.map((l) => l.id).sort(), [...ids].sort());
  for (const l of lines) {
    t.deepEqual(Object.keys(l), ['id', 'command', 'params', 'seed', 'result']);
    t.is(l.command, 'analyze');
    t.is(l.result.positions.length, l.params.length ?? 16);
  }
  // The list cell is exactly what `harm-horizon analyze refusal --lambda 0.5 --json` prints.
  const cell = lines.find((l) => l.params.lambda === 0.5)!;
  const a = runCli(['analyze', 'refusal', '--lambda', '0.5', '--json']);
  t.deepEqual(cell.result, JSON.parse(a.stdout));
  // Rerun: everything is done, the file is unchanged.
  const before = readFileSync(path);
  const again = runCli(['sweep', file, '--out', out, '--json', '--workers', '1']);
  t.is(again.status, 0, again.stderr);
  t.like(JSON.parse(again.stdout), { doneBefore: 13, ran: 0 });
  t.deepEqual(readFileSync(path), before);
});

function runAsync(args: string[], onStart: (child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
    onStart(child);
  });
}

/** Sends `signal` to the child once the results file holds at least `lines` lines. */
function signalAfter(child: ReturnType<typeof spawn>, path: string, lines: number, signal: NodeJS.Signals) {
  const timer = setInterval(() => {
    if (existsSync(path) && readFileSync(path, 'utf8').split('\n').length - 1 >= lines) {
      clearInterval(timer);
      child.kill(signal);
    }
  }, 10);
  child.on('close', () => clearInterval(timer));
}

let uninterrupted: Promise<string[]> | undefined;
/** The reference: the slow sweep run in one go (shared by the interruption tests). */
function uninterruptedLines(file: string): Promise<string[]> {
  uninterrupted ??= (async () => {
    const out = fresh('uninterrupted');
    const r = await runAsync(['sweep', file, '--out', out], () => {});
    if (r.code !== 0) throw new Error(r.stderr);
    return sorted(join(out, 'results.jsonl'));
  })();
  return uninterrupted;
}

test.serial('kill -9 mid-sweep, a torn last line, resume: the same lines as an uninterrupted run', async (t) => {
  const file = sweepFile('slow-kill', slowSweep, 'json');
  const reference = await uninterruptedLines(file);
  t.is(reference.length, 16);
  const out = fresh('killed');
  const path = join(out, 'results.jsonl');
  const killed = await runAsync(['sweep', file, '--out', out], (child) => signalAfter(child, path, 3, 'SIGKILL'));
  t.is(killed.signal, 'SIGKILL');
  const survivors = readLines(path);
  t.true(survivors.length >= 3 && survivors.length < 16, `${survivors.length} lines after the kill`);
  for (const l of survivors) t.notThrows(() => JSON.parse(l));
  // A write cut short: half of a line, no newline.
  const half = reference[reference.length - 1]!.slice(0, 200);
  appendFileSync(path, half);
  const resumed = await runAsync(['sweep', file, '--out', out, '--json'], () => {});
  t.is(resumed.code, 0, resumed.stderr);
  const summary = JSON.parse(resumed.stdout);
  t.is(summary.doneBefore, survivors.length);
  t.is(summary.ran, 16 - survivors.length);
  t.true(summary.tornLineRemoved);
  t.regex(resumed.stderr, /torn last line/);
  t.deepEqual(sorted(path), reference);
  // The survivors kept their place: the file starts with them, byte for byte.
  t.deepEqual(readLines(path).slice(0, survivors.length), survivors);
});

test.serial('Ctrl-C stops cleanly (exit 130), keeps the finished cells, and the sweep resumes', async (t) => {
  const file = sweepFile('slow-int', slowSweep, 'json');
  const reference = await uninterruptedLines(file);
  const out = fresh('interrupted');
  const path = join(out, 'results.jsonl');
  const stopped = await runAsync(['sweep', file, '--out', out, '--json'], (child) => signalAfter(child, path, 1, 'SIGINT'));
  t.is(stopped.code, 130, stopped.stderr);
  assertClean(t, stopped.stderr);
  const summary = JSON.parse(stopped.stdout);
  t.is(summary.interrupted, 'SIGINT');
  const kept = readLines(path);
  t.is(kept.length, summary.ran);
  t.true(kept.length < 16);
  for (const l of kept) t.true(reference.includes(l));
  const resumed = await runAsync(['sweep', file, '--out', out], () => {});
  t.is(resumed.code, 0, resumed.stderr);
  t.deepEqual(sorted(path), reference);
});

test('shards 0/3, 1/3, 2/3 merged equal the whole sweep; merge reports missing and duplicated cells', (t) => {
  const file = sweepFile('sharded', { command: 'analyze', scenario: ['refusal', 'horizon'], grid: { lambda: { log: [0.1, 10, 4] }, length: [5, 7] } });
  const whole = fresh('whole');
  t.is(runCli(['sweep', file, '--out', whole, '--workers', '1']).status, 0);
  const out = fresh('shards');
  for (const i of [0, 1, 2]) {
    const r = runCli(['sweep', file, '--out', out, '--shard', `${i}/3`, '--workers', '1']);
    t.is(r.status, 0, r.stderr);
  }
  const shardFiles = [0, 1, 2].map((i) => join(out, `results.shard-${i}-of-3.jsonl`));
  t.deepEqual(
    shardFiles.map((f) => readLines(f).length),
    [6, 5, 5],
  );
  const merged = join(out, 'merged.jsonl');
  // Shard 0 given twice: identical lines are kept once.
  const m = runCli(['merge', ...shardFiles, shardFiles[0]!, '--sweep', file, '--out', merged, '--json']);
  t.is(m.status, 0, m.stderr);
  t.like(JSON.parse(m.stdout), { cells: 16, present: 16, complete: true, missing: [], conflicting: [], identicalDuplicates: 6 });
  t.deepEqual(sorted(merged), sorted(join(whole, 'results.jsonl')));

  // Break it: drop a line of shard 0, and give shard 1 a second, different line for a cell of shard 2.
  const [first, ...rest] = readLines(shardFiles[0]!);
  writeFileSync(shardFiles[0]!, rest.map((l) => `${l}\n`).join(''));
  const victim = JSON.parse(readLines(shardFiles[2]!)[0]!);
  appendFileSync(shardFiles[1]!, `${JSON.stringify({ ...victim, result: { ...victim.result, horizon: 99 } })}\n`);
  const bad = runCli(['merge', ...shardFiles, '--sweep', file, '--out', merged, '--json']);
  t.is(bad.status, 1);
  const report = JSON.parse(bad.stdout);
  t.false(report.complete);
  t.deepEqual(
    report.missing.map((x: { id: string }) => x.id),
    [JSON.parse(first!).id],
  );
  t.deepEqual(
    report.conflicting.map((x: { id: string }) => x.id),
    [victim.id],
  );
  t.deepEqual(report.conflicting[0].params, victim.params);
  t.regex(bad.stderr, /1 missing, 1 duplicated/);
  const text = runCli(['merge', ...shardFiles, '--sweep', file, '--out', merged]);
  t.is(text.status, 1);
  t.regex(text.stdout, /missing: 1\n {2}[0-9a-f]{16} {2}lambda=/);
  t.regex(text.stdout, new RegExp(`duplicated with different results: 1\\n  ${victim.id}`));
});

// ---------------------------------------------------------------------------------------------
// Bad input

test('bad input exits 2 naming the field, without a stack trace, leaving the results file as it was', async (t) => {
  const out = fresh('guarded');
  const good = sweepFile('good', { command: 'analyze', scenario: 'refusal', grid: { lambda: [1, 2] } });
  t.is(runCli(['sweep', good, '--out', out]).status, 0);
  const path = join(out, 'results.jsonl');
  // A torn tail that a good run would remove: bad runs must not touch even that.
  appendFileSync(path, '{"id":"torn');
  const before = readFileSync(path);

  const badScenario = JSON.parse(readFileSync(new URL('../examples/scenarios/three-token.json', import.meta.url), 'utf8'));
  const key = Object.keys(badScenario.base)[0]!;
  badScenario.base[key] = badScenario.base[key].map((x: number) => x * 0.9);
  writeFileSync(join(scratch, 'bad-scenario.json'), JSON.stringify(badScenario));

  const cases: [string, unknown, string, RegExp][] = [
    ['broken', '{"command": "analyze", "scenario": "refusal", "grid": {"lambda": [1', 'json', /not valid JSON/],
    ['broken-yaml', 'command: analyze\nscenario: refusal\ngrid:\n  lambda: [1\n', 'yaml', /not valid YAML at line/],
    ['unknown-param', { command: 'analyze', scenario: 'refusal', grid: { lamda: [1] } }, 'json', /grid\.lamda: unknown parameter "lamda" for analyze; did you mean "lambda"\?/],
    ['unknown-field', { command: 'analyze', scenario: 'refusal', grid: { lambda: [1] }, extra: 1 }, 'json', /extra: unknown field/],
    ['negative-lambda', { command: 'analyze', scenario: 'refusal', grid: { lambda: [1, -0.5] } }, 'json', /grid\.lambda\[1\]: lambda must be a finite number ≥ 0, got -0\.5/],
    ['gamma', { command: 'train', scenario: 'refusal', fixed: { gamma: 1.5 } }, 'json', /fixed\.gamma: gamma must be a number in \(0, 1\], got 1\.5/],
    ['gamma-zero', { command: 'train', scenario: 'refusal', grid: { gamma: { linear: [0, 1, 3] } } }, 'json', /grid\.gamma\.linear: gamma must be a number in \(0, 1\], got 0 \(value 1 of 3\)/],
    ['length', { command: 'analyze', scenario: 'refusal', grid: { length: [4, 0] } }, 'json', /grid\.length\[1\]: length must be a whole number ≥ 1, got 0/],
    ['probabilities', { command: 'analyze', scenario: ['refusal', 'bad-scenario.json'], grid: { lambda: [1] } }, 'json', /scenario\[1\]: scenario "bad-scenario\.json": invalid scenario .*base\[.*\]: row must sum to 1/],
    ['missing-file', { command: 'analyze', scenario: 'nowhere.json', grid: { lambda: [1] } }, 'json', /scenario: no built-in scenario and no file "nowhere\.json"/],
  ];
  const results = await Promise.all(cases.map(([name, body, ext]) => runAsync(['sweep', sweepFile(`bad-${name}`, body, ext), '--out', out], () => {})));
  for (const [i, [name, , , message]] of cases.entries()) {
    const r = results[i]!;
    t.is(r.code, 2, `${name}: ${r.stderr}`);
    t.regex(r.stderr, message, name);
    t.regex(r.stderr, /^harm-horizon: /, name);
    assertClean(t, r.stderr);
    t.deepEqual(readFileSync(path), before, `${name} left the results file alone`);
  }
  const [missing, shard, reseeded] = await Promise.all([
    runAsync(['sweep', join(scratch, 'no-such-sweep.yaml'), '--out', out], () => {}),
    runAsync(['sweep', good, '--out', out, '--shard', '3/3'], () => {}),
    // A different sweep seed against the same results.
    runAsync(['sweep', sweepFile('reseeded', { command: 'analyze', scenario: 'refusal', seed: 9, grid: { lambda: [1, 2] } }), '--out', out], () => {}),
  ]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /sweep file not found/);
  t.is(shard.code, 2);
  t.regex(shard.stderr, /--shard/);
  t.is(reseeded.code, 2, reseeded.stderr);
  t.regex(reseeded.stderr, /cell [0-9a-f]{16} ran with seed \d+ but this sweep gives it seed \d+/);
  t.deepEqual(readFileSync(path), before);
});

test('more bad sweeps are refused with the field named', (t) => {
  const cases: [unknown, string, RegExp][] = [
    [{ command: 'analyze', scenario: 'refusal', grid: { lambda: [] } }, 'grid.lambda', /empty list/],
    [{ command: 'analyze', scenario: 'refusal', grid: {} }, 'grid', /empty grid/],
    [{ command: 'analyze', scenario: 'refusal', list: [] }, 'list', /empty list/],
    [{ command: 'analyze', scenario: 'refusal' }, 'grid', /the sweep has no cells/],
    [{ command: 'analyse', scenario: 'refusal', grid: { lambda: [1] } }, 'command', /must be one of analyze, estimate, train, attack/],
    [{ command: 'analyze', scenario: 'refusal', lambda: 1 }, 'lambda', /lambda is a parameter: put it in "fixed"/],
    [{ command: 'analyze', scenario: 'refusal', grid: { lambda: [1] }, extra: 1 }, 'extra', /unknown field/],
    [{ command: 'analyze', scenario: 'refusal', grid: { lambda: { log: [0, 1, 3] } } }, 'grid.lambda.log', /from > 0/],
    [{ command: 'analyze', scenario: 'refusal', grid: { lambda: { linaer: [0, 1, 3] } } }, 'grid.lambda.linaer', /did you mean "linear"/],
    [{ command: 'analyze', scenario: 'refusal', grid: { seed: { range: [5, 5] } } }, 'grid.seed.range', /is empty/],
    [{ command: 'analyze', scenario: 'refusal', grid: { lambda: [1] }, fixed: { lambda: 2 } }, 'grid.lambda', /also set in fixed\.lambda/],
    [{ command: 'analyze', scenario: 'refusal', grid: { vocab: [4] } }, 'grid.vocab', /applies to the random scenario only/],
    [{ command: 'analyze', scenario: 'random', grid: { states: [1] } }, 'grid.states[0]', /states must be a whole number ≥ 2/],
    [{ command: 'train', scenario: 'refusal', grid: { algorithm: ['exact', 'ppo'] }, fixed: { objective: 'deep' } }, 'grid.algorithm', /the sampled algorithm ppo trains the standard objective only/],
    [{ command: 'train', scenario: 'horizon', grid: { objective: ['deep'] } }, 'grid.objective', /needs recovery tokens/],
    [{ command: 'train', scenario: 'refusal', list: [{ mlpHidden: [0] }] }, 'list[0].mlpHidden', /one or two widths/],
    [{ command: 'estimate', scenario: 'refusal', grid: { seed: [1] } }, 'fixed.samples', /need samples/],
    [{ command: 'attack', scenario: 'refusal', fixed: { policy: 'p.json' }, grid: { rank: [1] } }, 'fixed.policy', /no policy file/],
    [{ command: 'analyze', list: [{ lambda: 1 }] }, 'list[0]', /no scenario/],
    [{ command: 'analyze', scenario: 'short-order2.json', grid: { length: [2, 3] } }, 'grid.length', /scenario "short-order2\.json with length 3": .*missing row/],
  ];
  // An order-2 scenario of length 2 has no rows for two-token contexts: it cannot be made longer.
  const order2 = JSON.parse(readFileSync(new URL('../examples/scenarios/order2.json', import.meta.url), 'utf8'));
  for (const key of Object.keys(order2.base)) if (!key.includes('<bos>')) delete order2.base[key];
  writeFileSync(join(scratch, 'short-order2.json'), JSON.stringify({ ...order2, length: 2 }));
  for (const [body, field, message] of cases) {
    const error = t.throws(() => parseSweep(body, 'inline', scratch), { message }, field) as Error & { field?: string; code?: string };
    t.is(error?.field, field);
    t.is(error?.code === 'HH_INVALID_ARGUMENT' || error?.code === 'HH_SCENARIO_INVALID', true, `${field}: ${error?.code}`);
  }
});

test('an unwritable --out and a corrupted results file exit 2 and change nothing', (t) => {
  const good = sweepFile('good2', { command: 'analyze', scenario: 'refusal', grid: { lambda: [1, 2, 3] } });
  const blocker = join(scratch, 'a-file');
  writeFileSync(blocker, 'not a folder');
  const r = runCli(['sweep', good, '--out', join(blocker, 'out')]);
  t.is(r.status, 2);
  t.regex(r.stderr, /cannot write to the output folder .*a-file\/out/);
  assertClean(t, r.stderr);
  t.is(readFileSync(blocker, 'utf8'), 'not a folder');

  const out = fresh('corrupt');
  t.is(runCli(['sweep', good, '--out', out]).status, 0);
  const path = join(out, 'results.jsonl');
  const lines = readLines(path);
  writeFileSync(path, `${lines[0]}\n{"garbage": true}\n${lines[1]}\n`);
  const before = readFileSync(path);
  const c = runCli(['sweep', good, '--out', out]);
  t.is(c.status, 2);
  t.regex(c.stderr, /results\.jsonl, line 2: not a result line/);
  assertClean(t, c.stderr);
  t.deepEqual(readFileSync(path), before);
});

test.serial('a full disk exits 1 with a clear message and leaves only whole lines', (t) => {
  const disk = smallDisk(fresh('tmpfs'));
  if (!disk) {
    t.log('skipped: needs root and a mountable tmpfs');
    t.pass();
    return;
  }
  const mountPoint = disk.dir;
  try {
    const out = join(mountPoint, 'out');
    // First a few cells that fit, then a sweep whose results (~2 KB a line) do not.
    const small = sweepFile('disk-small', { command: 'analyze', scenario: 'refusal', grid: { lambda: [1, 2, 3] } });
    t.is(runCli(['sweep', small, '--out', out]).status, 0);
    const path = join(out, 'results.jsonl');
    const before = readFileSync(path, 'utf8');
    const big = sweepFile('disk-big', { command: 'analyze', scenario: 'refusal', grid: { lambda: [1, 2, 3] }, list: Array.from({ length: 60 }, (_, i) => ({ lambda: 4 + i })) });
    const r = runCli(['sweep', big, '--out', out, '--workers', '1']);
    t.is(r.status, 1, r.stderr);
    t.regex(r.stderr, /disk is full \(ENOSPC: no space left on device/);
    assertClean(t, r.stderr);
    const after = readFileSync(path, 'utf8');
    t.true(after.startsWith(before), 'the earlier lines are untouched');
    t.true(after.endsWith('\n'), 'no partial line');
    for (const l of after.split('\n').filter((x) => x !== '')) t.notThrows(() => JSON.parse(l));
    t.true(after.split('\n').length - 1 > 3, 'cells written before the disk filled are kept');
  } finally {
    disk.release();
  }
});
