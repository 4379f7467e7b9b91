/** Merging shard results files against their sweep into one file in sweep order. */
import { existsSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';
import { writeAtomic } from '../io/atomic.js';
import { canonicalJson } from './ids.js';
import { scanResults, type ResultLine } from './results.js';
import type { Sweep } from './spec.js';

export interface MergeReport {
  sweep: string;
  files: string[];
  cells: number;
  present: number;
  /** Identical copies of a line found more than once (dropped). */
  identicalDuplicates: number;
  missing: { id: string; params: Record<string, unknown> }[];
  /** Cells with two different lines. */
  conflicting: { id: string; params: Record<string, unknown>; files: string[] }[];
  /** Lines whose cell is not in the sweep. */
  unexpected: { id: string; params: Record<string, unknown>; file: string }[];
  /** Files whose last line was torn (ignored). */
  tornFiles: string[];
  out: string;
  complete: boolean;
}

const comparable = (line: ResultLine) => {
  const { seconds: _seconds, ...rest } = line;
  return canonicalJson(rest);
};

/** Joins results files against a sweep; writes the merged lines (sweep order) to `out`. */
export function mergeResults(sweep: Sweep, files: string[], out: string): MergeReport {
  const byId = new Map(sweep.cells.map((c) => [c.id, c]));
  const found = new Map<string, { text: string; key: string; file: string }>();
  const conflicts = new Map<string, Set<string>>();
  const unexpected: MergeReport['unexpected'] = [];
  const tornFiles: string[] = [];
  let identical = 0;
  for (const file of files) {
    if (!existsSync(file)) throw new HarmHorizonError('HH_FILE_NOT_FOUND', `no results file ${file}`, file);
    const r = scanResults(file, (line, text) => {
      const cell = line.command === sweep.command ? byId.get(line.id) : undefined;
      if (!cell) {
        unexpected.push({ id: line.id, params: line.params, file });
        return;
      }
      const key = comparable(line);
      const prior = found.get(line.id);
      if (!prior) found.set(line.id, { text, key, file });
      else if (prior.key === key) identical++;
      else {
        const set = conflicts.get(line.id) ?? new Set([prior.file]);
        set.add(file);
        conflicts.set(line.id, set);
      }
    });
    if (r.torn !== null) tornFiles.push(file);
  }
  const missing = sweep.cells.filter((c) => !found.has(c.id)).map((c) => ({ id: c.id, params: c.params }));
  const conflicting = [...conflicts].map(([id, set]) => ({ id, params: byId.get(id)!.params, files: [...set] }));
  const text = sweep.cells
    .filter((c) => found.has(c.id) && !conflicts.has(c.id))
    .map((c) => `${found.get(c.id)!.text}\n`)
    .join('');
  // Whole or not at all (temporary file, fsync, rename): `out` may be one of the inputs.
  writeAtomic(out, text);
  return {
    sweep: sweep.source,
    files,
    cells: sweep.cells.length,
    present: found.size - conflicting.length,
    identicalDuplicates: identical,
    missing,
    conflicting,
    unexpected,
    tornFiles,
    out,
    complete: missing.length === 0 && conflicting.length === 0 && unexpected.length === 0,
  };
}
