/**
 * Running (or resuming) a sweep's shard: the cells not yet in the results file are dispatched in
 * batches to worker threads and their lines appended as they finish; a worker that dies is
 * replaced and its cells counted as failed.
 */
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { HarmHorizonError } from '../core/errors.js';
import { JsonLinesWriter } from '../io/jsonl.js';
import { Progress } from '../io/progress.js';
import type { SweepCommand } from './params.js';
import { scanResults } from './results.js';
import { resultsFileName, shardCells, type Shard } from './shard.js';
import type { Cell, Sweep } from './spec.js';
import type { WireResult, WorkerInit } from './worker.js';

export interface RunOptions {
  /** Output folder (must exist and be writable). */
  out: string;
  shard?: Shard | null;
  /** Worker threads (default: available parallelism). */
  workers?: number;
  /** Add each cell's compute time to its line. */
  timing?: boolean;
  /** Show the progress bar (default: when stderr is a terminal). */
  progress?: boolean;
  /** Polled between batches: when it returns a reason, dispatching stops and in-flight cells finish. */
  shouldStop?: () => string | null;
  /** Warnings (foreign lines, removed torn line) go here. */
  warn?: (message: string) => void;
  /** Memory budget of each cell's exact state space, in bytes (default 4 GiB; over it, sampled cells sample). */
  memoryBudgetBytes?: number;
}

export interface RunSummary {
  sweep: string;
  command: SweepCommand;
  /** Cells in the whole sweep. */
  sweepCells: number;
  shard: Shard | null;
  /** Cells of this shard. */
  cells: number;
  doneBefore: number;
  ran: number;
  failed: number;
  /** Cells not run because the sweep was stopped. */
  notRun: number;
  seconds: number;
  cellsPerSecond: number;
  workers: number;
  results: string;
  tornLineRemoved: boolean;
  /** Lines of the results file that are not cells of this sweep (kept as they are). */
  foreignLines: number;
  interrupted: string | null;
  failures: { id: string; params: Record<string, unknown>; error: string }[];
}

/** worker.ts beside this file: .ts when run from source (tests, benches), .js when built. */
const WORKER_ENTRY = new URL(`./worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** Runs (or resumes) a sweep's shard into `<out>/<results file>`. */
export async function runSweep(sweep: Sweep, options: RunOptions): Promise<RunSummary> {
  const shard = options.shard ?? null;
  const cells = shardCells(sweep.cells, shard);
  const path = join(options.out, resultsFileName(shard));
  const byId = new Map(sweep.cells.map((c) => [c.id, c]));
  const done = new Set<string>();
  let foreign = 0;
  const existing = scanResults(path, (line, _text, number) => {
    const cell = line.command === sweep.command ? byId.get(line.id) : undefined;
    if (!cell) {
      foreign++;
      return;
    }
    if (line.seed !== cell.seed) {
      throw new HarmHorizonError(
        'HH_INVALID_ARGUMENT',
        `results file ${path}, line ${number}: cell ${line.id} ran with seed ${line.seed} but this sweep gives it seed ${cell.seed} (was the sweep seed changed?); use another --out`,
        'seed',
      );
    }
    done.add(line.id);
  });
  const todo = cells.filter((c) => !done.has(c.id));
  const doneBefore = cells.length - todo.length;
  const writer = new JsonLinesWriter(path, {
    keep: existing.validLength,
    durable: true,
    field: '--out',
    hint: 'every finished cell before this is kept — free space and run the sweep again to resume',
  });
  if (existing.fileLength > existing.validLength) options.warn?.(`removed a torn last line from ${path} (${existing.fileLength - existing.validLength} bytes); its cell runs again`);
  if (foreign > 0) options.warn?.(`${foreign} line${foreign === 1 ? '' : 's'} of ${path} ${foreign === 1 ? 'is not a cell' : 'are not cells'} of this sweep (kept as they are)`);

  const requested = options.workers ?? availableParallelism();
  const workerCount = Math.max(1, Math.min(requested, todo.length));
  const started = performance.now();
  const progress = new Progress('sweep', todo.length, options.progress ?? process.stderr.isTTY === true);
  const failures: RunSummary['failures'] = [];
  let failed = 0;
  let ran = 0;
  let interrupted: string | null = null;
  let fatal: unknown = null;

  try {
    if (todo.length > 0) {
      await new Promise<void>((resolveAll) => {
        const init: WorkerInit = {
          command: sweep.command,
          baseDir: sweep.baseDir,
          scenarios: [...sweep.scenarios],
          timing: options.timing === true,
          ...(options.memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes: options.memoryBudgetBytes }),
        };
        const pool: { worker: Worker; inflight: Cell[] | null; dead: boolean }[] = [];
        let next = 0;
        let cellSeconds = 0;
        let cellsTimed = 0;
        let deaths = 0;
        let finished = false;

        const finishIfIdle = () => {
          if (finished) return;
          if (pool.every((w) => w.inflight === null || w.dead)) {
            finished = true;
            for (const w of pool) void w.worker.terminate();
            resolveAll();
          }
        };
        const stopping = () => {
          if (fatal !== null) return true;
          if (interrupted === null) interrupted = options.shouldStop?.() ?? null;
          return interrupted !== null;
        };
        const batchSize = () => {
          const remaining = todo.length - next;
          const target = cellsTimed === 0 ? 1 : Math.floor(0.05 / Math.max(cellSeconds / cellsTimed, 1e-7));
          const fair = Math.ceil(remaining / (2 * workerCount));
          return Math.max(1, Math.min(target, 512, fair));
        };
        const dispatch = (slot: (typeof pool)[number]) => {
          if (slot.dead || stopping() || next >= todo.length) {
            slot.inflight = null;
            finishIfIdle();
            return;
          }
          const batch = todo.slice(next, next + batchSize());
          next += batch.length;
          slot.inflight = batch;
          slot.worker.postMessage({ cells: batch.map((c) => ({ id: c.id, seed: c.seed, params: c.params, scenarioKey: c.scenarioKey })) });
        };
        const spawn = (): (typeof pool)[number] => {
          const worker = new Worker(WORKER_ENTRY, { workerData: init, stdout: false, stderr: false });
          const slot = { worker, inflight: null as Cell[] | null, dead: false };
          worker.on('message', (message: { done: WireResult[] }) => {
            const lines: string[] = [];
            for (const r of message.done) {
              cellSeconds += r.seconds;
              cellsTimed++;
              if (r.line !== undefined) lines.push(r.line);
              else {
                failed++;
                const cell = byId.get(r.id)!;
                if (failures.length < 20) failures.push({ id: r.id, params: cell.params, error: r.error ?? 'failed' });
              }
            }
            if (lines.length > 0 && fatal === null) {
              try {
                writer.appendLines(lines);
                ran += lines.length;
              } catch (error) {
                fatal = error;
              }
            }
            progress.tick(message.done.length, failed > 0 ? `${failed} failed` : '');
            dispatch(slot);
          });
          const onDeath = (reason: string) => {
            if (slot.dead) return;
            slot.dead = true;
            if (finished) return;
            for (const cell of slot.inflight ?? []) {
              failed++;
              if (failures.length < 20) failures.push({ id: cell.id, params: cell.params, error: `the worker stopped: ${reason}` });
            }
            slot.inflight = null;
            deaths++;
            if (deaths <= 2 * workerCount && !stopping() && next < todo.length) {
              const fresh = spawn();
              pool.push(fresh);
              dispatch(fresh);
            }
            finishIfIdle();
          };
          worker.on('error', (error) => onDeath(error.message));
          worker.on('exit', (code) => onDeath(`exit code ${code}`));
          return slot;
        };
        for (let w = 0; w < workerCount; w++) pool.push(spawn());
        for (const slot of [...pool]) dispatch(slot);
      });
    }
  } finally {
    progress.finish();
    writer.close(false);
  }
  if (fatal !== null) throw fatal;
  const seconds = (performance.now() - started) / 1000;
  return {
    sweep: sweep.source,
    command: sweep.command,
    sweepCells: sweep.cells.length,
    shard,
    cells: cells.length,
    doneBefore,
    ran,
    failed,
    notRun: todo.length - ran - failed,
    seconds,
    cellsPerSecond: seconds > 0 ? ran / seconds : 0,
    workers: workerCount,
    results: path,
    tornLineRemoved: existing.fileLength > existing.validLength,
    foreignLines: foreign,
    interrupted,
    failures,
  };
}
