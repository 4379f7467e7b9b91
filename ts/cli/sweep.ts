/** The `sweep` and `merge` commands (see docs/sweeps.md). */
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import * as h from './helpers.js';
import { HarmHorizonError } from '../core/errors.js';
import { outputFolder } from '../io/files.js';
import { acquireLock } from '../io/lock.js';
import { memoryBudget, memoryBudgetOption } from './options.js';
import { writeStdout } from '../io/stdout.js';
import { loadSweep, mergeResults, parseShard, resultsFileName, runSweep, shardCells, shardFromEnv, type MergeReport, type RunSummary, type Shard } from '../sweep/index.js';

function shardOption(value: string): Shard {
  try {
    return parseShard(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

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

export function addSweepCommands(program: Command): void {
  program
    .command('sweep')
    .description('run a sweep file (a grid and/or list of analyze, estimate, train or attack cells) in parallel; resumable and shardable')
    .argument('<sweep-file>', 'a sweep file, JSON or YAML (docs/sweeps.md)')
    .option('--out <dir>', 'output folder: results.jsonl, or results.shard-I-of-N.jsonl for a shard')
    .option('--shard <i/n>', 'run shard i of n (0-based: cells whose position in id order is i mod n); default from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX', shardOption)
    .option('--shards <n>', 'number of shards when the index comes from JOB_COMPLETION_INDEX (or set HH_SHARD_COUNT)', h.positiveInteger('--shards'))
    .addOption(new Option('--workers <n>', 'worker threads').argParser(h.positiveInteger('--workers')).default(availableParallelism(), 'all cores'))
    .option('--timing', 'add each cell\'s compute time ("seconds") to its line (lines then differ between runs)')
    .option('--list', 'print the cells of this shard (id, seed, params) as JSON lines; run nothing')
    .addOption(memoryBudgetOption())
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      `
Exit codes: 0 done, 1 a failure of the run (failed cells, disk full), 2 bad usage or input (the message
names the bad field), 130 stopped by Ctrl-C and 143 by SIGTERM (finished cells are kept; rerun to resume).

Examples:
  $ harm-horizon sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda
  $ harm-horizon sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda --shard 0/4
  $ harm-horizon sweep examples/sweeps/deep-gamma.yaml --list
  $ harm-horizon merge runs/lambda/results.shard-*-of-4.jsonl --sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda/results.jsonl`,
    )
    .action(async (file: string, opts: { out?: string; shard?: Shard; shards?: number; workers: number; timing?: boolean; list?: boolean; memoryBudget: number; json?: boolean }) => {
      const budget = memoryBudget(opts.memoryBudget);
      const sweep = loadSweep(file, budget);
      const shard = opts.shard ?? shardFromEnv(process.env, opts.shards);
      if (opts.shards !== undefined && !opts.shard && !shard) {
        throw new HarmHorizonError('HH_INVALID_ARGUMENT', '--shards gives the number of shards when the index comes from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, and neither is set: use --shard i/n', '--shards');
      }
      if (opts.list) {
        // `… --list | head`: writeStdout ends the listing quietly when the pipe closes.
        const lines = shardCells(sweep.cells, shard).map((c) => JSON.stringify({ id: c.id, seed: c.seed, params: c.params }));
        if (lines.length > 0) writeStdout(lines.join('\n'));
        return;
      }
      if (opts.out === undefined) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'sweep needs --out <dir> (or --list)', '--out');
      const out = outputFolder(opts.out);
      // One process per results file: a second run on the same file would run every cell again.
      const results = join(out, resultsFileName(shard));
      acquireLock(`${results}.lock`, `the sweep results ${results}`);
      // Cells run side by side on all cores: each cell's own computation gets cores / workers threads
      // (results do not depend on the thread count). Only effective before the core's first use.
      if (process.env.RAYON_NUM_THREADS === undefined) process.env.RAYON_NUM_THREADS = String(Math.max(1, Math.floor(availableParallelism() / opts.workers)));
      let stop: string | null = null;
      const onSignal = (signal: NodeJS.Signals) => {
        if (stop !== null) {
          // A second signal: leave now. Whole batches are written synchronously, so the file stays valid.
          process.stderr.write(`\nharm-horizon: ${signal} again, leaving without waiting for the cells in flight\n`);
          process.exit(signal === 'SIGTERM' ? 143 : 130);
        }
        stop = signal;
        if (process.stderr.isTTY) process.stderr.write(`\n${signal}: finishing the cells in flight (again to leave at once)\n`);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let summary: RunSummary;
      try {
        summary = await runSweep(sweep, {
          out,
          shard,
          workers: opts.workers,
          timing: opts.timing,
          memoryBudgetBytes: budget.memoryBudgetBytes,
          shouldStop: () => stop,
          warn: (message) => process.stderr.write(`harm-horizon: ${message}\n`),
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      if (opts.json) h.json(summary);
      else h.write(renderSummary(summary));
      if (summary.interrupted) process.exitCode = summary.interrupted === 'SIGTERM' ? 143 : 130; // kept by the CLI
      else if (summary.failed > 0 || summary.notRun > 0) {
        const parts = [summary.failed > 0 ? `${summary.failed} cell${summary.failed === 1 ? '' : 's'} failed` : '', summary.notRun > 0 ? `${summary.notRun} not run (the workers stopped)` : ''];
        throw new HarmHorizonError('HH_SWEEP_FAILED', `${parts.filter((x) => x !== '').join(', ')}: not written; the sweep runs them again when resumed`);
      }
    });

  program
    .command('merge')
    .description('join the results files of a sweep\'s shards, checking that every cell is there exactly once')
    .argument('<files...>', 'results files (results.shard-I-of-N.jsonl, …)')
    .requiredOption('--sweep <file>', 'the sweep file the results come from')
    .requiredOption('--out <file>', 'the merged results file (lines in the sweep\'s order)')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Identical lines found twice are kept once. Exit codes: 0 every cell present once, 1 cells missing,
duplicated with different results, or not in the sweep (the merged file is still written, without
the conflicting cells), 2 bad usage or input.

Example:
  $ harm-horizon merge runs/lambda/results.shard-*-of-4.jsonl --sweep examples/sweeps/lambda-seeds.yaml --out runs/lambda/results.jsonl`,
    )
    .action((files: string[], opts: { sweep: string; out: string; json?: boolean }) => {
      const sweep = loadSweep(opts.sweep);
      outputFolder(dirname(resolve(opts.out)));
      const report = mergeResults(sweep, files, opts.out);
      if (opts.json) h.json(report);
      else h.write(renderMerge(report));
      if (!report.complete) {
        const parts = [
          report.missing.length > 0 ? `${report.missing.length} missing` : '',
          report.conflicting.length > 0 ? `${report.conflicting.length} duplicated with different results` : '',
          report.unexpected.length > 0 ? `${report.unexpected.length} not in the sweep` : '',
        ].filter((x) => x !== '');
        throw new HarmHorizonError('HH_SWEEP_INCOMPLETE', `merge: ${parts.join(', ')}`);
      }
    });
}
