/** `sweep` and `merge`: run a sweep file's cells in parallel (resumable, shardable) and join shards' results (docs/sweeps.md). */
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { HarmHorizonError } from '../core/errors.js';
import { outputFolder } from '../io/files.js';
import { acquireLock } from '../io/lock.js';
import { loadSweep, mergeResults, parseShard, resultsFileName, runSweep, shardCells, shardFromEnv, type MergeReport, type RunSummary } from '../sweep/index.js';
import { declareCommand, flag, integer, parsed, string, strings } from './declare.js';
import { budgetOf, memoryBudget } from './options.js';

/** A cell as `sweep --list` prints it. */
export interface ListedCell {
  id: string;
  seed: number;
  params: Record<string, unknown>;
}

/** `sweep --list`: the cells of the shard; otherwise the run's summary. */
export type SweepResult = { listed: ListedCell[] } | RunSummary;

const showParams = (params: Record<string, unknown>) =>
  Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');

function renderSummary(s: RunSummary): string {
  const shard = s.shard && s.shard.count > 1 ? ` (shard ${s.shard.index}/${s.shard.count} from ${s.shard.source}, of ${s.sweepCells} in the sweep)` : '';
  const lines = [
    `sweep ${s.sweep}: ${s.command}, ${s.cells} cells${shard}`,
    `  done before ${s.doneBefore}, run now ${s.ran}, failed ${s.failed}${s.notRun > 0 ? `, not run ${s.notRun}` : ''}`,
    `  ${s.seconds.toFixed(2)} s, ${s.cellsPerSecond >= 10 ? s.cellsPerSecond.toFixed(0) : s.cellsPerSecond.toFixed(2)} cells/s on ${s.workers} worker${s.workers === 1 ? '' : 's'}`,
    `  results: ${s.results}`,
  ];
  if (s.interrupted) lines.push(`  stopped by ${s.interrupted}: finished cells are kept; run the same command again to resume`);
  for (const f of s.failures) lines.push(`  failed ${f.id} (${showParams(f.params)}): ${f.error}`);
  if (s.failed > s.failures.length) lines.push(`  … and ${s.failed - s.failures.length} more failures`);
  return lines.join('\n');
}

export const sweep = declareCommand({
  name: 'sweep',
  onStop: 'after-step',
  description: 'run a sweep file (a grid and/or list of analyze, estimate, train or attack cells) in parallel; resumable and shardable',
  params: {
    file: string('sweep-file', 'a sweep file, JSON or YAML (docs/sweeps.md)', { positional: true, required: true }),
    out: string('--out <dir>', 'output folder: results.jsonl, or results.shard-I-of-N.jsonl for a shard'),
    shard: parsed('--shard <i/n>', 'run shard i of n (0-based: cells whose position in id order is i mod n); default from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX', (text) => parseShard(text)),
    shards: integer('--shards <n>', 'number of shards when the index comes from JOB_COMPLETION_INDEX (or set HH_SHARD_COUNT)', { min: 1 }),
    workers: integer('--workers <n>', 'worker threads', { min: 1, default: availableParallelism(), defaultText: 'all cores' }),
    timing: flag('--timing', 'add each cell\'s compute time ("seconds") to its line (lines then differ between runs)'),
    list: flag('--list', 'print the cells of this shard (id, seed, params) as JSON lines; run nothing'),
    memoryBudget: memoryBudget(),
  },
  stopSignals: ['SIGINT', 'SIGTERM'],
  helpAfter: `
Exit codes: 0 done, 1 a failure of the run (failed cells, disk full), 2 bad usage or input (the message
names the bad field), 130 stopped by Ctrl-C and 143 by SIGTERM (finished cells are kept; rerun to resume).

Examples:
  $ harm-horizon sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda
  $ harm-horizon sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda --shard 0/4
  $ harm-horizon sweep examples/sweeps/deep-gamma.yaml --list
  $ harm-horizon merge runs/lambda/results.shard-*-of-4.jsonl --sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda/results.jsonl`,
  async run(p, context): Promise<SweepResult> {
    const budget = budgetOf(p.memoryBudget);
    const loaded = loadSweep(p.file, budget);
    const shard = p.shard ?? shardFromEnv(process.env, p.shards);
    if (p.shards !== undefined && !p.shard && !shard) {
      throw new HarmHorizonError('HH_INVALID_ARGUMENT', '--shards gives the number of shards when the index comes from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, and neither is set: use --shard i/n', '--shards');
    }
    if (p.list) return { listed: shardCells(loaded.cells, shard).map((c) => ({ id: c.id, seed: c.seed, params: c.params })) };
    if (p.out === undefined) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'sweep needs --out <dir> (or --list)', '--out');
    const out = outputFolder(p.out);
    // One process per results file: a second run on the same file would run every cell again.
    const results = join(out, resultsFileName(shard));
    acquireLock(`${results}.lock`, `the sweep results ${results}`);
    // Cells run side by side on all cores: each cell's own computation gets cores / workers threads
    // (results do not depend on the thread count). Only effective before the core's first use.
    if (process.env.RAYON_NUM_THREADS === undefined) process.env.RAYON_NUM_THREADS = String(Math.max(1, Math.floor(availableParallelism() / p.workers)));
    return runSweep(loaded, { out, shard, workers: p.workers, timing: p.timing, memoryBudgetBytes: budget.memoryBudgetBytes, shouldStop: context.stoppedBy, warn: context.warn });
  },
  // `… --list | head`: the listing ends quietly when the pipe closes.
  render: (r) => ('listed' in r ? r.listed.map((c) => JSON.stringify(c)).join('\n') : renderSummary(r)),
  exitCode: (r) => ('listed' in r || !r.interrupted ? 0 : r.interrupted === 'SIGTERM' ? 143 : 130),
  failure(r) {
    if ('listed' in r || r.interrupted || (r.failed === 0 && r.notRun === 0)) return undefined;
    const parts = [r.failed > 0 ? `${r.failed} cell${r.failed === 1 ? '' : 's'} failed` : '', r.notRun > 0 ? `${r.notRun} not run (the workers stopped)` : ''];
    return new HarmHorizonError('HH_SWEEP_FAILED', `${parts.filter((x) => x !== '').join(', ')}: not written; the sweep runs them again when resumed`);
  },
});

function renderMerge(r: MergeReport): string {
  const lines = [
    `merged ${r.files.length} file${r.files.length === 1 ? '' : 's'} into ${r.out}: ${r.present} of ${r.cells} cells` +
      (r.identicalDuplicates > 0 ? ` (${r.identicalDuplicates} identical duplicate line${r.identicalDuplicates === 1 ? '' : 's'} dropped)` : ''),
  ];
  const list = <T extends { id: string; params: Record<string, unknown> }>(label: string, items: T[], extra: (x: T) => string = () => '') => {
    if (items.length === 0) return;
    lines.push(`${label}: ${items.length}`);
    for (const x of items.slice(0, 20)) lines.push(`  ${x.id}  ${showParams(x.params)}${extra(x)}`);
    if (items.length > 20) lines.push(`  … and ${items.length - 20} more (--json lists them all)`);
  };
  list('missing', r.missing);
  list('duplicated with different results', r.conflicting, (x) => `  in ${x.files.join(', ')}`);
  list('not cells of this sweep', r.unexpected, (x) => `  in ${x.file}`);
  for (const f of r.tornFiles) lines.push(`torn last line ignored in ${f}`);
  lines.push(r.complete ? 'complete: every cell once' : 'incomplete');
  return lines.join('\n');
}

export const merge = declareCommand({
  name: 'merge',
  description: 'join the results files of a sweep\'s shards, checking that every cell is there exactly once',
  params: {
    files: strings('files', 'results files (results.shard-I-of-N.jsonl, …)'),
    sweep: string('--sweep <file>', 'the sweep file the results come from', { required: true }),
    out: string('--out <file>', 'the merged results file (lines in the sweep\'s order)', { required: true }),
  },
  helpAfter: `
Identical lines found twice are kept once. Exit codes: 0 every cell present once, 1 cells missing,
duplicated with different results, or not in the sweep (the merged file is still written, without
the conflicting cells), 2 bad usage or input.

Example:
  $ harm-horizon merge runs/lambda/results.shard-*-of-4.jsonl --sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda/results.jsonl`,
  async run(p): Promise<MergeReport> {
    const loaded = loadSweep(p.sweep);
    outputFolder(dirname(resolve(p.out)));
    return mergeResults(loaded, p.files, p.out);
  },
  render: renderMerge,
  failure(r) {
    if (r.complete) return undefined;
    const parts = [
      r.missing.length > 0 ? `${r.missing.length} missing` : '',
      r.conflicting.length > 0 ? `${r.conflicting.length} duplicated with different results` : '',
      r.unexpected.length > 0 ? `${r.unexpected.length} not in the sweep` : '',
    ].filter((x) => x !== '');
    return new HarmHorizonError('HH_SWEEP_INCOMPLETE', `merge: ${parts.join(', ')}`);
  },
});
