/**
 * Shards: a deterministic split of a sweep's cells for Slurm job arrays and Kubernetes Indexed
 * Jobs (cell k of the id order goes to shard k mod n), each with its own results file.
 */
import { HarmHorizonError } from '../core/errors.js';
import type { Cell } from './spec.js';

export interface Shard {
  index: number;
  count: number;
  /** Where the shard came from: "--shard", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX". */
  source: string;
}

/** Parses "i/n" (0 ≤ i < n). */
export function parseShard(text: string, source = '--shard'): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${source} must be i/n with 0 ≤ i < n (0-based), got ${JSON.stringify(text)}`, source);
  }
  return { index, count, source };
}

/**
 * The shard from the environment: a Slurm job array (SLURM_ARRAY_TASK_ID, with
 * SLURM_ARRAY_TASK_MIN (default 0), SLURM_ARRAY_TASK_STEP (default 1) and SLURM_ARRAY_TASK_COUNT, or
 * SLURM_ARRAY_TASK_MAX when COUNT is absent), or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with
 * the count from `shards`, else HH_SHARD_COUNT, else JOB_COMPLETIONS). Null when neither is set.
 */
export function shardFromEnv(env: NodeJS.ProcessEnv, shards?: number): Shard | null {
  const whole = (name: string, v: string | undefined, min: number): number => {
    const x = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isSafeInteger(x) || x < min) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${name} must be a whole number ≥ ${min}, got ${JSON.stringify(v)}`, name);
    return x;
  };
  const check = (shard: Shard, hint: string): Shard => {
    if (shard.index < 0 || shard.index >= shard.count || !Number.isSafeInteger(shard.index)) {
      throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${shard.source} gives shard ${shard.index} of ${shard.count}, outside 0..${shard.count - 1}: ${hint}`, shard.source);
    }
    return shard;
  };
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const id = whole('SLURM_ARRAY_TASK_ID', env.SLURM_ARRAY_TASK_ID, 0);
    const min = env.SLURM_ARRAY_TASK_MIN === undefined ? 0 : whole('SLURM_ARRAY_TASK_MIN', env.SLURM_ARRAY_TASK_MIN, 0);
    const step = env.SLURM_ARRAY_TASK_STEP === undefined ? 1 : whole('SLURM_ARRAY_TASK_STEP', env.SLURM_ARRAY_TASK_STEP, 1);
    let count: number;
    if (shards !== undefined) count = shards;
    else if (env.SLURM_ARRAY_TASK_COUNT !== undefined) count = whole('SLURM_ARRAY_TASK_COUNT', env.SLURM_ARRAY_TASK_COUNT, 1);
    else if (env.SLURM_ARRAY_TASK_MAX !== undefined) count = Math.floor((whole('SLURM_ARRAY_TASK_MAX', env.SLURM_ARRAY_TASK_MAX, 0) - min) / step) + 1;
    else throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is: pass --shards N or --shard i/n', 'SLURM_ARRAY_TASK_ID');
    return check({ index: (id - min) / step, count, source: 'SLURM_ARRAY_TASK_ID' }, 'use a contiguous array such as --array=0-N (or pass --shard i/n)');
  }
  if (env.JOB_COMPLETION_INDEX !== undefined) {
    const index = whole('JOB_COMPLETION_INDEX', env.JOB_COMPLETION_INDEX, 0);
    let count = shards;
    if (count === undefined && env.HH_SHARD_COUNT !== undefined) count = whole('HH_SHARD_COUNT', env.HH_SHARD_COUNT, 1);
    if (count === undefined && env.JOB_COMPLETIONS !== undefined) count = whole('JOB_COMPLETIONS', env.JOB_COMPLETIONS, 1);
    if (count === undefined) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'JOB_COMPLETION_INDEX is set but the number of shards is not: pass --shards N or set HH_SHARD_COUNT to the Job\'s completions', 'JOB_COMPLETION_INDEX');
    return check({ index, count, source: 'JOB_COMPLETION_INDEX' }, 'set HH_SHARD_COUNT (or --shards) to the Job\'s completions');
  }
  return null;
}

/** The cells of a shard, in expansion order: the cells whose position in id order is ≡ i (mod n). */
export function shardCells(cells: readonly Cell[], shard: Shard | null): Cell[] {
  if (!shard || shard.count === 1) return [...cells];
  const byId = [...cells].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const keep = new Set<number>();
  byId.forEach((c, position) => {
    if (position % shard.count === shard.index) keep.add(c.index);
  });
  return cells.filter((c) => keep.has(c.index));
}

/** Name of the results file of a shard (results.jsonl without sharding). */
export function resultsFileName(shard: Shard | null): string {
  return !shard || shard.count === 1 ? 'results.jsonl' : `results.shard-${shard.index}-of-${shard.count}.jsonl`;
}
