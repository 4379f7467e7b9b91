/**
 * Sweep throughput: a 10 000-cell exact-analysis sweep on `refusal` (λ over a 25-point log grid from
 * 0.01 to 100 × 400 seeds, as examples/sweeps/lambda-seeds.yaml) run by `runSweep` — the code behind
 * `harm-horizon sweep` — with 2 worker threads into a fresh folder, every cell appended to
 * results.jsonl with write + fsync. Reported: cells per second over the whole run (worker start-up,
 * analysis, JSON lines, writes and fsyncs included), the median and best of `--repeat` runs; the
 * resume pass over the finished file (10 000 lines read, checked and skipped); and, for scale, the
 * in-process cost of one cell (analysis + result line) on the main thread.
 *
 *   node --import @oxc-node/core/register benches/sweep.ts
 *   node --import @oxc-node/core/register benches/sweep.ts --workers 2 --repeat 3 --json bench-results/sweep.json
 *
 * As in the CLI, each cell's own computation gets cores / workers rayon threads unless
 * RAYON_NUM_THREADS is set.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CellRunner, parseSweep, runSweep, type RunSummary } from '../ts/sweep/index.ts';

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const workers = Number(arg('--workers', '2'));
const repeat = Number(arg('--repeat', '3'));
const jsonPath = arg('--json');
process.env.RAYON_NUM_THREADS ??= String(Math.max(1, Math.floor(availableParallelism() / workers)));

const sweep = parseSweep(
  { command: 'analyze', scenario: 'refusal', seed: 1, grid: { lambda: { log: [0.01, 100, 25] }, seed: { range: [0, 400] } } },
  'bench: refusal, λ log grid (25) × 400 seeds',
  process.cwd(),
);
const log = (line: string) => process.stdout.write(`${line}\n`);
log(`sweep bench: ${sweep.cells.length} analyze cells on refusal, ${workers} workers, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg()[0]!.toFixed(2)}, RAYON_NUM_THREADS=${process.env.RAYON_NUM_THREADS}`);

// One cell in process, for scale.
const runner = new CellRunner(sweep.command, sweep.scenarios, sweep.baseDir);
await runner.line(sweep.cells[0]!);
const probe = sweep.cells.slice(0, 2000);
let t0 = performance.now();
for (const cell of probe) await runner.line(cell);
const inProcessSeconds = (performance.now() - t0) / 1000 / probe.length;
log(`one cell in process (analysis + result line): ${(inProcessSeconds * 1e6).toFixed(0)} µs (${(1 / inProcessSeconds).toFixed(0)} cells/s on one thread)`);

const runs: RunSummary[] = [];
let resumeSeconds = NaN;
for (let r = 0; r < repeat; r++) {
  const out = mkdtempSync(join(tmpdir(), 'hh-sweep-bench-'));
  try {
    const summary = await runSweep(sweep, { out, workers, progress: false });
    if (summary.ran !== sweep.cells.length || summary.failed !== 0) throw new Error(`run ${r}: ${summary.ran} cells ran, ${summary.failed} failed`);
    runs.push(summary);
    log(`run ${r + 1}/${repeat}: ${summary.ran} cells in ${summary.seconds.toFixed(2)} s = ${summary.cellsPerSecond.toFixed(0)} cells/s`);
    if (r === 0) {
      t0 = performance.now();
      const again = await runSweep(sweep, { out, workers, progress: false });
      resumeSeconds = (performance.now() - t0) / 1000;
      if (again.doneBefore !== sweep.cells.length || again.ran !== 0) throw new Error('the resume pass ran cells');
      log(`resume pass over the finished file: ${resumeSeconds.toFixed(2)} s (all ${again.doneBefore} cells skipped)`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
const rates = runs.map((s) => s.cellsPerSecond).sort((a, b) => a - b);
const median = rates[Math.floor(rates.length / 2)]!;
const best = rates[rates.length - 1]!;
log(`sweep throughput: ${median.toFixed(0)} cells/s median, ${best.toFixed(0)} best (10 000 exact-analysis cells on refusal, ${workers} workers, fsync per batch)`);

if (jsonPath) {
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(
    jsonPath,
    JSON.stringify(
      {
        machine: { nproc: cpus().length, cpu: cpus()[0]?.model, node: process.version, rayonThreads: Number(process.env.RAYON_NUM_THREADS), loadAverage: loadavg(), date: new Date().toISOString() },
        sweep: { cells: sweep.cells.length, command: 'analyze', scenario: 'refusal', workers },
        timing: 'runSweep wall time per run: worker start-up, analyses, JSON lines, writes and fsyncs',
        cellsPerSecond: { median, best, runs: runs.map((s) => s.cellsPerSecond) },
        secondsPerRun: runs.map((s) => s.seconds),
        resumeSeconds,
        inProcessSecondsPerCell: inProcessSeconds,
      },
      null,
      2,
    ),
  );
  log(`wrote ${jsonPath}`);
}
