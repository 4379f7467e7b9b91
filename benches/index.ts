/**
 * Benchmarks of the exact engine (see BENCHMARKS.md).
 *
 *   npm run bench                                   # table on stdout
 *   npm run bench -- --json bench-results/exact.json  # also write the results as JSON
 *   npm run bench -- --skip-memory                  # skip the ~10^6-state peak-memory run
 *   npm run bench -- --skip-timing                  # only the peak-memory run
 *   npm run bench -- --memory-scenario NAME         # peak-memory run on another built-in scenario
 *   npm run bench -- --skip-montecarlo              # skip the Monte Carlo suite (benches/montecarlo.ts)
 *   npm run bench -- --only-montecarlo              # only the Monte Carlo suite (= --skip-timing --skip-memory)
 *
 * Part 1 times the full analysis at λ = 1 — the Rust core (`ExactEngine`) against the pure-TS
 * reference (ts/reference/exact.ts) — on seeded `random` scenarios of about 10^3, 10^4 and 10^5
 * reachable states. The reference's `analyze(sc, λ)` builds its state space internally, so the
 * compared operation includes the state-space build on both sides: Rust `new ExactEngine(sc)
 * .analyze(1)` against reference `analyze(sc, 1)`. The compiled scenario is the input of both and is
 * prepared outside the timed functions. Rust build-only and analyze-only (state space prebuilt)
 * times, and the reference's build-only time, are measured as well and written to the JSON.
 *
 * Part 2 runs the CLI (`node dist/cli/main.js analyze <random scenario> --json`) in a
 * child process on a scenario of about 10^6 states (report not printed; only its `states` field is
 * read) and reports the child's wall time (scenario generation included) and peak RSS; the
 * benchmark exits non-zero if the peak RSS exceeds 4 GiB or the CLI fails.
 *
 * JSON output (`--json FILE`):
 *   {
 *     "machine": { nproc, cpu, node, rayonThreads, date },
 *     "timing": "…what the timed operation includes…",
 *     "rows": [ { name, states, rustHz, tsHz, speedup,            // speedup = rustHz / tsHz
 *                 rustAnalyzeHz, rustBuildHz, tsBuildHz,           // components
 *                 rustRme, tsRme, rustSamples, tsSamples,          // relative margin of error (%)
 *                 maxRelDiff: { klOnPolicy, harmInformation } } ],  // max_t |rust − ts| / max_t |ts|
 *     "memory": { name, states, wallSeconds, peakRssMiB, limitMiB, ok, method } | null,  // null if skipped
 *     "montecarlo": { timing, loadAverage, rows: [ … ] } | null  // benches/montecarlo.ts; null if skipped
 *   }
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench, type Task } from 'tinybench';

import { ExactEngine, builtinScenario, compileScenario } from '../ts/index.ts';
import { native } from '../ts/core/native.ts';
import { analyze as refAnalyze, buildStateSpace as refBuildStateSpace } from '../ts/reference/exact.ts';
import { maxRelDiff, runMonteCarloBench, type MonteCarloResults } from './montecarlo.ts';
import { runTrainingBench, type TrainingRow } from './training.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LAMBDA = 1;
const MEMORY_LIMIT_BYTES = 4 * 1024 ** 3;

// ---------------------------------------------------------------------------------------------
// Command line

interface Args {
  json?: string;
  skipMemory: boolean;
  skipTiming: boolean;
  skipMonteCarlo: boolean;
  /** Skip the training-step and sweep-throughput benchmarks (benches/training.ts, benches/sweep.ts). */
  skipWorkbench: boolean;
  memoryScenario: string;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { skipMemory: false, skipTiming: false, skipMonteCarlo: false, skipWorkbench: false, memoryScenario: MEMORY_SCENARIO };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') {
      const file = argv[++i];
      if (file === undefined || file.startsWith('--')) fail('--json needs a file name');
      args.json = file;
    } else if (a.startsWith('--json=')) {
      args.json = a.slice('--json='.length);
    } else if (a === '--memory-scenario') {
      const name = argv[++i];
      if (name === undefined || name.startsWith('--')) fail('--memory-scenario needs a scenario name');
      args.memoryScenario = name;
    } else if (a === '--skip-timing') {
      args.skipTiming = true;
    } else if (a === '--skip-memory') {
      args.skipMemory = true;
    } else if (a === '--skip-montecarlo') {
      args.skipMonteCarlo = true;
    } else if (a === '--skip-workbench') {
      args.skipWorkbench = true;
    } else if (a === '--only-montecarlo') {
      args.skipTiming = true;
      args.skipMemory = true;
      args.skipWorkbench = true;
    } else if (a === '--help' || a === '-h') {
      console.log(
        'usage: npm run bench -- [--json FILE] [--skip-memory] [--skip-timing] [--memory-scenario NAME] [--skip-montecarlo | --only-montecarlo] [--skip-workbench]',
      );
      process.exit(0);
    } else {
      fail(
        `unknown argument ${JSON.stringify(a)} (expected --json FILE, --skip-memory, --skip-timing, --memory-scenario NAME, ` +
          `--skip-montecarlo, --only-montecarlo, --skip-workbench)`,
      );
    }
  }
  if (args.skipMonteCarlo && args.skipTiming && args.skipMemory) fail('--skip-montecarlo with --only-montecarlo (or with --skip-timing --skip-memory) leaves nothing to run');
  return args;
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Sizes

interface Size {
  label: string;
  /** Built-in random scenario name (ts/scenario.ts, `builtinScenario`). */
  scenario: string;
  /** tinybench options for this size: minimum iterations and time budget (ms). */
  iterations: number;
  time: number;
  warmupIterations: number;
  warmupTime: number;
}

// State counts (seed 1): 1 001, 10 195, 101 326 reachable states.
const SIZES: Size[] = [
  { label: '1e3', scenario: 'random(seed=1,V=16,n=1,T=256,D=100)', iterations: 10, time: 1500, warmupIterations: 3, warmupTime: 200 },
  { label: '1e4', scenario: 'random(seed=1,V=32,n=1,T=128,D=500)', iterations: 4, time: 1500, warmupIterations: 1, warmupTime: 0 },
  // At 10^5 a reference run takes seconds: 3 timed runs each, no extra warmup (the agreement check
  // just before is a full run of both engines and serves as the warmup).
  { label: '1e5', scenario: 'random(seed=1,V=16,n=1,T=64,D=10000)', iterations: 3, time: 0, warmupIterations: 0, warmupTime: 0 },
];

// About 10^6 states (1 011 483), V = 16, T = 64.
const MEMORY_SCENARIO = 'random(seed=1,V=16,n=1,T=64,D=100000)';

// ---------------------------------------------------------------------------------------------
// Helpers

interface Stats {
  hz: number;
  meanMs: number;
  rme: number;
  samples: number;
}

function stats(task: Task | undefined): Stats {
  const r = task?.result;
  if (!r || (r.state !== 'completed' && r.state !== 'aborted-with-statistics')) {
    const err = r && r.state === 'errored' ? r.error : undefined;
    throw new Error(`benchmark task ${task?.name ?? '?'} did not complete${err ? `: ${err.message}` : ''}`);
  }
  const meanMs = r.latency.mean;
  return { hz: 1000 / meanMs, meanMs, rme: r.latency.rme, samples: r.latency.samplesCount };
}

function fmtHz(hz: number): string {
  if (hz >= 100) return hz.toFixed(0);
  if (hz >= 10) return hz.toFixed(1);
  if (hz >= 1) return hz.toFixed(2);
  return hz.toPrecision(3);
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux */
  }
  return cpus()[0]?.model ?? 'unknown';
}

function nproc(): number {
  const r = spawnSync('nproc', { encoding: 'utf8' });
  const n = Number.parseInt(r.stdout ?? '', 10);
  return Number.isFinite(n) ? n : cpus().length;
}

// ---------------------------------------------------------------------------------------------
// Part 1: Rust against the reference

interface Row {
  name: string;
  label: string;
  states: number;
  rustHz: number;
  tsHz: number;
  speedup: number;
  rustAnalyzeHz: number;
  rustBuildHz: number;
  tsBuildHz: number;
  rustRme: number;
  tsRme: number;
  rustSamples: number;
  tsSamples: number;
  maxRelDiff: { klOnPolicy: number; harmInformation: number };
  /**
   * The analysis against this machine's random-lookup rate, measured right after this size's timing
   * (`native.lookupRate`, all threads) on a table of the backward pass's cells (S × 32 bytes): the
   * analysis gathers about 3·S·V·T random 8-byte values (next states' cells in the backward pass,
   * sources in the forward pass), so boundMs = gathers / lookupsPerSecond, and fraction =
   * boundMs / (prebuilt analyze ms) (1 = the analysis runs at the lookup bound).
   */
  lookupBound: { tableBytes: number; lookupsPerSecond: number; gathers: number; boundMs: number; analyzeMs: number; fraction: number };
}

/** Random reads timed for the lookup bound (best of LOOKUP_RUNS). */
const LOOKUPS = 1 << 24;
const LOOKUP_RUNS = 3;

async function benchSize(size: Size): Promise<Row> {
  const sc = compileScenario(builtinScenario(size.scenario));
  const engine = new ExactEngine(sc);
  const states = engine.numStates;
  console.log(`\n[${size.label}] ${size.scenario}: ${states} reachable states (V=${sc.tokens.length}, T=${sc.length})`);

  // Agreement check (also the warmup of the large sizes).
  let t0 = performance.now();
  const rust = engine.analyze(LAMBDA);
  const rustMs = performance.now() - t0;
  t0 = performance.now();
  const ref = refAnalyze(sc, LAMBDA);
  const refMs = performance.now() - t0;
  const diff = {
    klOnPolicy: maxRelDiff(rust.klOnPolicy, ref.klOnPolicy),
    harmInformation: maxRelDiff(rust.base.harmInformation, ref.harmInformation),
  };
  console.log(
    `  agreement: max_t |rust − ts| / max_t |ts|: klOnPolicy ${diff.klOnPolicy.toExponential(2)}, harmInformation ` +
      `${diff.harmInformation.toExponential(2)} (first runs: rust ${rustMs.toFixed(0)} ms, ts ${refMs.toFixed(0)} ms)`,
  );
  if (!(diff.klOnPolicy <= 1e-9 && diff.harmInformation <= 1e-9)) {
    throw new Error(`Rust and the reference disagree at ${size.label}: ${JSON.stringify(diff)}`);
  }

  const bench = new Bench({
    name: size.label,
    iterations: size.iterations,
    time: size.time,
    warmup: size.warmupIterations > 0 || size.warmupTime > 0,
    warmupIterations: size.warmupIterations,
    warmupTime: size.warmupTime,
    throws: true,
  });
  let sink = 0;
  bench
    .add('rust build+analyze', () => {
      sink += new ExactEngine(sc).analyze(LAMBDA).alignedExpectedHarm;
    }, { async: false })
    .add('ts build+analyze', () => {
      sink += refAnalyze(sc, LAMBDA).expectedHarm.aligned;
    }, { async: false })
    .add('rust analyze (prebuilt)', () => {
      sink += engine.analyze(LAMBDA).alignedExpectedHarm;
    }, { async: false })
    .add('rust build', () => {
      sink += new ExactEngine(sc).numStates;
    }, { async: false })
    .add('ts build', () => {
      sink += refBuildStateSpace(sc).numStates;
    }, { async: false });
  await bench.run();
  if (!Number.isFinite(sink)) console.log('  (sink)', sink);

  const rustFull = stats(bench.getTask('rust build+analyze'));
  const tsFull = stats(bench.getTask('ts build+analyze'));
  const rustAnalyze = stats(bench.getTask('rust analyze (prebuilt)'));
  const rustBuild = stats(bench.getTask('rust build'));
  const tsBuild = stats(bench.getTask('ts build'));
  for (const [name, s] of [
    ['rust build+analyze', rustFull],
    ['ts build+analyze', tsFull],
    ['rust analyze (prebuilt)', rustAnalyze],
    ['rust build', rustBuild],
    ['ts build', tsBuild],
  ] as const) {
    console.log(`  ${pad(name, 24)} ${pad(s.meanMs.toFixed(2), 10, true)} ms/op  ±${s.rme.toFixed(1)}%  (${s.samples} samples)`);
  }
  const tableBytes = states * 32;
  let lookupsPerSecond = 0;
  for (let run = 0; run < LOOKUP_RUNS; run++) lookupsPerSecond = Math.max(lookupsPerSecond, native.lookupRate(tableBytes, LOOKUPS));
  const gathers = 3 * states * sc.tokens.length * sc.length;
  const boundMs = (gathers / lookupsPerSecond) * 1e3;
  const lookupBound = { tableBytes, lookupsPerSecond, gathers, boundMs, analyzeMs: rustAnalyze.meanMs, fraction: boundMs / rustAnalyze.meanMs };
  console.log(
    `  lookup bound: ${(gathers / 1e6).toFixed(0)} M random reads at ${(lookupsPerSecond / 1e6).toFixed(0)} M/s (table ${(tableBytes / 1e6).toFixed(1)} MB, all threads) = ` +
      `${boundMs.toFixed(1)} ms; analyze ${rustAnalyze.meanMs.toFixed(1)} ms: it runs at ${(lookupBound.fraction * 100).toFixed(0)}% of the lookup bound`,
  );
  return {
    lookupBound,
    name: size.scenario,
    label: size.label,
    states,
    rustHz: rustFull.hz,
    tsHz: tsFull.hz,
    speedup: rustFull.hz / tsFull.hz,
    rustAnalyzeHz: rustAnalyze.hz,
    rustBuildHz: rustBuild.hz,
    tsBuildHz: tsBuild.hz,
    rustRme: rustFull.rme,
    tsRme: tsFull.rme,
    rustSamples: rustFull.samples,
    tsSamples: tsFull.samples,
    maxRelDiff: diff,
  };
}

function printTable(rows: readonly Row[]): void {
  const head = ['name', 'states', 'rust ops/s', 'ts ops/s', 'speedup'];
  const body = rows.map((r) => [r.name, String(r.states), fmtHz(r.rustHz), fmtHz(r.tsHz), `${r.speedup.toFixed(2)}×`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => pad(c, widths[i]!, i > 0)).join('  ');
  console.log(`\nfull analysis at λ = ${LAMBDA}, state-space build included on both sides:`);
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

// ---------------------------------------------------------------------------------------------
// Part 2: peak memory of the CLI at about 10^6 states

interface MemoryResult {
  name: string;
  states: number;
  wallSeconds: number;
  peakRssMiB: number;
  limitMiB: number;
  ok: boolean;
  method: string;
}

function memoryRun(scenario: string): MemoryResult {
  const cli = resolve(ROOT, 'dist/cli/main.js');
  if (!existsSync(cli)) fail(`${cli} not found: run npm run build first`);
  console.log(`\n[memory] node dist/cli/main.js analyze "${scenario}" --json  (report not printed)`);

  let peakKiB: number;
  let wallMs: number;
  let method: string;
  let stdout: string;
  const gnuTime = '/usr/bin/time';
  if (existsSync(gnuTime) && spawnSync(gnuTime, ['-v', 'true']).status === 0) {
    method = '/usr/bin/time -v (Maximum resident set size)';
    const t0 = performance.now();
    const r = spawnSync(gnuTime, ['-v', process.execPath, cli, 'analyze', scenario, '--json'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    wallMs = performance.now() - t0;
    if (r.status !== 0) throw new Error(`CLI failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
    const m = /Maximum resident set size \(kbytes\):\s*(\d+)/.exec(r.stderr);
    if (!m) throw new Error(`cannot read the peak RSS from /usr/bin/time -v:\n${r.stderr}`);
    peakKiB = Number(m[1]);
    stdout = r.stdout;
  } else {
    // Fallback: a wrapper node process that runs the CLI in-process and reports its own maxRSS (KiB).
    method = 'process.resourceUsage().maxRSS of a wrapper node process running the CLI';
    const script =
      `process.argv = [process.argv[0], ${JSON.stringify(cli)}, 'analyze', ${JSON.stringify(scenario)}, '--json'];` +
      `process.on('exit', (c) => { process.stderr.write('\\nMAXRSS_KIB=' + process.resourceUsage().maxRSS + '\\n'); });` +
      `await import(${JSON.stringify(new URL(`file://${cli}`).href)});`;
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    wallMs = performance.now() - t0;
    if (r.status !== 0) throw new Error(`CLI failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
    const m = /MAXRSS_KIB=(\d+)/.exec(r.stderr);
    if (!m) throw new Error(`cannot read the peak RSS from the wrapper:\n${r.stderr}`);
    peakKiB = Number(m[1]);
    stdout = r.stdout;
  }

  // The CLI's report is not printed; only its state count is read from it.
  const states = (JSON.parse(stdout) as { states: number }).states;
  const peakRssMiB = peakKiB / 1024;
  const limitMiB = MEMORY_LIMIT_BYTES / 1024 ** 2;
  const ok = peakKiB * 1024 <= MEMORY_LIMIT_BYTES;
  console.log(
    `memory: ${states} states, wall ${(wallMs / 1000).toFixed(1)} s, peak RSS ${peakRssMiB.toFixed(0)} MiB ` +
      `(limit ${limitMiB} MiB) ${ok ? 'OK' : 'EXCEEDED'}  [${method}]`,
  );
  return { name: scenario, states, wallSeconds: wallMs / 1000, peakRssMiB, limitMiB, ok, method };
}

// ---------------------------------------------------------------------------------------------
// Main

const args = parseArgs(process.argv.slice(2));
const machine = {
  nproc: nproc(),
  cpu: cpuModel(),
  node: process.version,
  rayonThreads: native.threadCount(),
  date: new Date().toISOString(),
};
console.log(
  `harm-horizon exact-engine bench — ${machine.cpu}, nproc ${machine.nproc}, node ${machine.node}, ` +
    `rayon threads ${machine.rayonThreads}`,
);
const timing =
  `full analysis at λ = ${LAMBDA}; compared operation includes the state-space build on both sides ` +
  `(Rust: new ExactEngine(sc).analyze(1), sync; TS reference: analyze(sc, 1)); the compiled scenario is prepared once outside`;
console.log(`timing: ${timing}`);

const rows: Row[] = [];
if (!args.skipTiming) {
  for (const size of SIZES) rows.push(await benchSize(size));
  printTable(rows);
} else {
  console.log('\n[timing] skipped (--skip-timing)');
}

let memory: MemoryResult | null = null;
if (!args.skipMemory) memory = memoryRun(args.memoryScenario);
else console.log('\n[memory] skipped (--skip-memory)');

let montecarlo: MonteCarloResults | null = null;
if (!args.skipMonteCarlo) montecarlo = await runMonteCarloBench();
else console.log('\n[montecarlo] skipped (--skip-montecarlo)');

let training: TrainingRow[] | null = null;
let sweep: unknown = null;
if (!args.skipWorkbench) {
  console.log('\n[training] one training step, Rust core (the reference has no training code)');
  training = await runTrainingBench((line) => console.log(`  ${line}`));
  console.log('\n[neural] transformer per-sample cost against the GEMM rate (benches/neural.ts)'), await (await import('./neural.ts')).runNeuralBench((line) => console.log(`  ${line}`));
  console.log('\n[sweep] 10 000 exact-analysis cells on refusal, 2 workers (benches/sweep.ts)');
  const sweepJson = join(ROOT, 'bench-results', 'sweep.json');
  // The sweep sizes its own rayon pools (cores / workers) unless RAYON_NUM_THREADS is set.
  const env = { ...process.env };
  delete env.RAYON_NUM_THREADS;
  const run = spawnSync(process.execPath, ['--import', '@oxc-node/core/register', join(ROOT, 'benches', 'sweep.ts'), '--repeat', '2', '--json', sweepJson], { cwd: ROOT, encoding: 'utf8', env });
  process.stdout.write(run.stdout.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n'));
  if (run.status !== 0) console.error(`bench: the sweep benchmark failed (exit ${run.status}): ${run.stderr}`);
  else sweep = JSON.parse(readFileSync(sweepJson, 'utf8'));
} else console.log('\n[training, sweep] skipped (--skip-workbench)');

if (args.json !== undefined) {
  const file = resolve(process.cwd(), args.json);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify({ machine, timing, rows, memory, montecarlo, training, sweep }, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
}

if (memory && !memory.ok) {
  console.error(`bench: FAILED — peak RSS ${memory.peakRssMiB.toFixed(0)} MiB exceeds ${memory.limitMiB} MiB`);
  process.exitCode = 1;
}
