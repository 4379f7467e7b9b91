/** The section of a report page for a sweep: a table of its cells, line plots (1-D) or heat maps (2-D), and per-position maps. */
import { basename } from 'node:path';
import { heatmapPlot, sweepLinePlot, type Plot } from './plots.js';
import type { Cell, Section } from './types.js';
import { esc } from './escape.js';
import type { Results } from './load.js';
import { finite, flatten, m, scalar, shown, slug } from './sections.js';

const MAX_HEATMAPS = 16;

/** Numbers before strings, numbers ascending. */
function compareCells(a: Cell, b: Cell): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}
/** Per-position results (arrays) drawn as position × parameter maps, at most this many. */
const MAX_POSITION_MAPS = 6;
/** Hidden column of a sweep row: the index of its cell (to find its per-position arrays). */
const CELL_INDEX = '#cell';
/** Axis of per-position maps: the position (array index + 1; for k = 0..T arrays, k + 1). */
const POSITION = 'position';

const isRow = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const numberOrNull = (x: unknown) => x === null || typeof x === 'number';

/** Arrays of rows (analyze's positions: [{t, harmInformation, …}]) as one number column per field. */
function rowColumns(result: Record<string, unknown>): Record<string, (number | null)[]> {
  const out: Record<string, (number | null)[]> = {};
  for (const rows of Object.values(result)) {
    if (!Array.isArray(rows) || !rows.every(isRow)) continue;
    for (const field of Object.keys(rows[0] ?? {})) {
      if (rows.every((r) => numberOrNull(r[field]))) out[field] = rows.map((r) => r[field] as number | null);
    }
    delete out.t;
    delete out.k;
  }
  return out;
}

export function sweepSections(results: Results): Section[] {
  return results.sweeps.map((sweep, i) => {
    const id = results.sweeps.length > 1 ? `sweep-${slug(sweep.label || String(i + 1))}` : 'sweep';
    const paramKeys: string[] = [];
    const resultKeys: string[] = [];
    // Per-position results (arrays of numbers, e.g. analyze's harmInformation), by cell index.
    const perPosition = new Map<string, (number | null)[][]>();
    const rows = sweep.cells.map((cell, index) => {
      const params = flatten(cell.params);
      const result = flatten(cell.result);
      for (const k of Object.keys(params)) if (!paramKeys.includes(k)) paramKeys.push(k);
      for (const [k, v] of Object.entries({ ...result, ...rowColumns(result) })) {
        if (!Array.isArray(v) || v.length < 2 || !v.every((x) => x === null || typeof x === 'number')) continue;
        if (!perPosition.has(k)) perPosition.set(k, []);
        perPosition.get(k)![index] = v.map((x) => (finite(x) ? x : null));
      }
      const row: Record<string, Cell> = { [CELL_INDEX]: index };
      for (const [k, v] of Object.entries(params)) row[k] = scalar(v);
      for (const [k, v] of Object.entries(result)) {
        // A result that repeats its parameter (analyze's lambda) is not a result.
        if (k in params && JSON.stringify(v) === JSON.stringify(params[k])) continue;
        const key = k in params ? `result.${k}` : k;
        if (!resultKeys.includes(key)) resultKeys.push(key);
        row[key] = typeof v === 'number' ? (Number.isFinite(v) ? v : null) : scalar(v);
      }
      return row;
    });
    const distinct = (key: string) => [...new Set(rows.map((r) => JSON.stringify(r[key] ?? null)))].map((s) => JSON.parse(s) as Cell);
    const varying = paramKeys.filter((k) => distinct(k).length > 1);
    const numeric = resultKeys.filter((k) => rows.every((r) => r[k] === null || r[k] === undefined || typeof r[k] === 'number') && rows.some((r) => finite(r[k])));
    const constant = numeric.filter((k) => new Set(rows.map((r) => r[k])).size === 1);
    const plotted = numeric.filter((k) => !constant.includes(k));
    // Heat-map axes: the sweep file's grid order when known; else numeric parameters with the most values.
    // Seeds are replicates: averaged over, not an axis (unless nothing else varies).
    const isSeed = (k: string) => /(^|\.)seeds?$/i.test(k);
    const present = (k: string) => rows.filter((r) => r[k] !== null && r[k] !== undefined).length;
    const values = (k: string) => distinct(k).filter((v) => v !== null).length;
    const numericParam = (k: string) => rows.every((r) => r[k] === null || r[k] === undefined || typeof r[k] === 'number');
    const grid = sweep.sweepFile?.grid ?? [];
    const rank = (k: string) => (grid.includes(k) ? grid.indexOf(k) : grid.length);
    const axes = varying
      .filter((k) => !isSeed(k))
      .sort((a, b) => rank(a) - rank(b) || Number(numericParam(b)) - Number(numericParam(a)) || values(b) - values(a) || present(b) - present(a) || paramKeys.indexOf(a) - paramKeys.indexOf(b));
    if (axes.length === 0 && varying.length > 0) axes.push(varying[0]);
    const plots: Plot[] = [];
    const notes: string[] = [`${sweep.cells.length} cell results from ${sweep.files.map((f) => shown(results, f)).join(', ')}.`];
    if (sweep.sweepFile) notes.push(`The sweep (${sweep.sweepFile.command}) has ${sweep.sweepFile.cells} cells; ${sweep.sweepFile.done} of them are finished.`);
    if (sweep.unreadable > 0) notes.push(`${sweep.unreadable} line(s) were not cell results (e.g. a torn last line) and were skipped.`);
    if (axes.length > 0) {
      const x = axes[0];
      let y = axes[1];
      let mapRows = rows;
      if (!y) {
        y = paramKeys.includes('sweep') ? '(sweep)' : 'sweep';
        mapRows = rows.map((r) => ({ ...r, [y]: sweep.label || 'all' }));
      }
      // Other varying parameters (objective, algorithm, …) would mix unlike cells: keep the largest group.
      const sliceKeys = varying.filter((k) => k !== x && k !== y && !isSeed(k));
      const withAxes = mapRows.filter((r) => r[x] !== null && r[x] !== undefined && r[y!] !== null && r[y!] !== undefined);
      const groups = new Map<string, typeof rows>();
      for (const r of withAxes) {
        const key = JSON.stringify(sliceKeys.map((k) => r[k] ?? null));
        groups.set(key, [...(groups.get(key) ?? []), r]);
      }
      const [sliceKey, slice] = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)[0] ?? ['[]', []];
      if (sliceKeys.length > 0 && slice.length < rows.length) {
        const fixedValues = JSON.parse(sliceKey) as Cell[];
        const fixed = sliceKeys.flatMap((k, j) => (fixedValues[j] === null ? [] : [`${k} = ${String(fixedValues[j])}`])).join(', ') || 'the other parameters unset';
        notes.push(`Heat maps over ${x} × ${y} show the ${slice.length} of ${rows.length} cells with ${fixed} (the largest group of the other varying parameters).`);
      } else notes.push(`Heat maps are over ${x} × ${y}.`);
      const seeds = varying.filter(isSeed).filter((k) => k !== x && k !== y);
      if (seeds.length > 0) notes.push(`Each heat-map cell is the mean over ${seeds.join(', ')}.`);
      // Fields constant over the heat map, or equal to a field already drawn (parts.kl = kl), add nothing.
      const drawn = new Map<string, string>();
      const skippedFields: string[] = [];
      for (const field of plotted) {
        const column = slice.map((r) => r[field] ?? null);
        const key = JSON.stringify(column);
        if (new Set(column.filter(finite)).size <= 1 || drawn.has(key)) {
          skippedFields.push(drawn.has(key) ? `${field} (= ${drawn.get(key)})` : field);
          continue;
        }
        if (drawn.size >= MAX_HEATMAPS) {
          skippedFields.push(field);
          continue;
        }
        drawn.set(key, field);
      }
      if (skippedFields.length > 0) notes.push(`Not drawn (constant over the heat map, a copy of another field, or past ${MAX_HEATMAPS} maps): ${skippedFields.join(', ')}.`);
      // One swept parameter: a line plot against it; two or more: a heat map over the first two.
      const oneAxis = axes.length === 1;
      for (const field of drawn.values()) {
        const p = oneAxis ? sweepLinePlot(slice, x, field, `${field} against ${x}`) : heatmapPlot(slice, x, y, field, `${field} over ${x} × ${y}`);
        plots.push(results.sweeps.length > 1 ? { ...p, name: `${slug(sweep.label)}-${p.name}` } : p);
      }
      // Per-position results across the first swept parameter: position × x, at the first value of
      // the second axis (cells of different y, e.g. different scenarios, are not averaged together).
      const firstY = oneAxis ? undefined : [...new Set(slice.map((r) => r[y!]))].sort(compareCells)[0];
      const positionRows = oneAxis ? slice : slice.filter((r) => r[y!] === firstY);
      const varies = (field: string) => new Set(positionRows.map((r) => JSON.stringify(perPosition.get(field)![r[CELL_INDEX] as number] ?? null))).size > 1;
      const positionFields = [...perPosition.keys()].filter(varies).slice(0, MAX_POSITION_MAPS);
      if (positionFields.length > 0 && !oneAxis) notes.push(`Per-position maps are over ${x} at ${y} = ${String(firstY)}.`);
      for (const field of positionFields) {
        const exploded = positionRows.flatMap((r) =>
          (perPosition.get(field)![r[CELL_INDEX] as number] ?? []).map((v, i) => ({ [x]: r[x], [POSITION]: i + 1, [field]: v }) as Record<string, Cell>),
        );
        if (!exploded.some((r) => finite(r[field]))) continue;
        const p = heatmapPlot(exploded, x, POSITION, field, `${field} per position over ${x}`);
        plots.push(results.sweeps.length > 1 ? { ...p, name: `${slug(sweep.label)}-${p.name}` } : p);
      }
      const notDrawn = [...perPosition.keys()].filter((k) => !positionFields.includes(k));
      if (notDrawn.length > 0) notes.push(`Per-position results not drawn (the same in every cell, or past ${MAX_POSITION_MAPS} maps): ${notDrawn.join(', ')}.`);
    } else notes.push('No parameter varies, so there is no heat map.');
    if (constant.length > 0) notes.push(`Constant over the sweep (not drawn): ${constant.join(', ')}.`);
    const stats: Cell[][] = numeric.map((k) => {
      const v = rows.map((r) => r[k]).filter(finite);
      return [k, v.length, m(Math.min(...v)), m(v.reduce((a, b) => a + b, 0) / v.length), m(Math.max(...v))];
    });
    const paramRows: Cell[][] = paramKeys.map((k) => {
      const taken = distinct(k);
      const shown = taken.slice(0, 12).map((v) => String(v)).join(', ') + (taken.length > 12 ? `, … (${taken.length} values)` : '');
      return [k, taken.length, shown];
    });
    return {
      id,
      title: `Sweep${results.sweeps.length > 1 ? `: ${sweep.label}` : ''}`,
      intro: notes.map(esc).join(' '),
      tables: [
        { caption: 'Parameters', header: ['parameter', 'values', 'taken'], rows: paramRows },
        { caption: 'Numeric results over all cells', header: ['field', 'cells', 'min', 'mean', 'max'], rows: stats },
      ],
      plots,
      pre: sweep.sweepFile ? [{ caption: `Sweep file ${basename(sweep.sweepFile.path)}`, text: sweep.sweepFile.text.slice(0, 8000) }] : undefined,
    };
  });
}
