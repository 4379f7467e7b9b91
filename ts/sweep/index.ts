/**
 * Sweeps: one command (analyze, estimate, train or attack) over a grid and/or a list of parameter
 * settings, run in parallel on worker threads, appended cell by cell to a JSONL results file that
 * survives kills (resume skips finished cells), and split into deterministic shards for Slurm job
 * arrays and Kubernetes Indexed Jobs. The format and the guarantees are documented in
 * docs/sweeps.md. This file gathers the sweep API; each concept has its own file.
 */
export { SWEEP_COMMANDS, SWEEP_PARAMETERS, commandParameters, sweepParameters, type ParamSpec, type SweepCommand } from './params.js';
export { canonicalJson, cellId, derivedSeed } from './ids.js';
export { MAX_CELLS, loadSweep, parseSweep, parseSweepText, type Cell, type Sweep } from './spec.js';
export { parseShard, resultsFileName, shardCells, shardFromEnv, type Shard } from './shard.js';
export { scanResults, type ResultLine, type ResultsScan } from './results.js';
export { CellRunner, type WireCell } from './cell.js';
export { runSweep, type RunOptions, type RunSummary } from './runner.js';
export { mergeResults, type MergeReport } from './merge.js';
