/**
 * The entry file of a sweep worker thread (runner.ts starts it as one): it runs the batches of
 * cells the main thread posts and answers each with its result line or its error.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Scenario } from '../scenario/index.js';
import { CellRunner, type WireCell } from './cell.js';
import type { SweepCommand } from './params.js';

/** What a worker is started with (its `workerData`). */
export interface WorkerInit {
  command: SweepCommand;
  baseDir: string;
  scenarios: [string, Scenario][];
  timing: boolean;
  memoryBudgetBytes?: number;
}

/** A worker's answer for one cell: its result line, or its error. */
export interface WireResult {
  id: string;
  line?: string;
  error?: string;
  seconds: number;
}

function serve(init: WorkerInit): void {
  const runner = new CellRunner(init.command, new Map(init.scenarios), init.baseDir, init.timing, init.memoryBudgetBytes);
  parentPort!.on('message', async (message: { cells: WireCell[] }) => {
    const done: WireResult[] = [];
    for (const cell of message.cells) {
      const started = performance.now();
      try {
        const { line, seconds } = await runner.line(cell);
        done.push({ id: cell.id, line, seconds });
      } catch (error) {
        const e = error as { code?: unknown; message?: unknown };
        const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
        done.push({ id: cell.id, error: `${code}${String(e?.message ?? error)}`, seconds: (performance.now() - started) / 1000 });
      }
    }
    parentPort!.postMessage({ done });
  });
}

if (!isMainThread) serve(workerData as WorkerInit);
