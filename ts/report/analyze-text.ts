/**
 * The human-readable rendering of an analysis report (what `analyze` prints without --json). The
 * width does not grow with T: long tables show their first and last positions with the middle
 * elided (a note says how many, and where I_t mass and the horizon fall), and shape lines are
 * binned to at most SHAPE_WIDTH characters.
 */
import { bar, numNonNegative as num, sparkline, table } from './format.js';
import type { AnalyzeReport, PositionRow } from './analysis.js';

/** Tables with more rows than this show the first HEAD and the last TAIL rows only. */
const MAX_ROWS = 40;
const HEAD = 24;
const TAIL = 8;
/** Shape lines (sparklines) never take more characters than this. */
export const SHAPE_WIDTH = 64;

function maxOf(values: readonly (number | null)[]): number {
  let m = 0;
  for (const v of values) if (v !== null && v > m) m = v;
  return m;
}

/** At most SHAPE_WIDTH values: the largest of each run of consecutive positions. */
function binned(values: readonly (number | null)[]): { values: (number | null)[]; per: number } {
  const per = Math.ceil(values.length / SHAPE_WIDTH);
  if (per <= 1) return { values: [...values], per: 1 };
  const out: (number | null)[] = [];
  for (let i = 0; i < values.length; i += per) out.push(maxOf(values.slice(i, i + per)));
  return { values: out, per };
}

/** Indices of the rows to show, with `null` where rows are elided. */
function shownRows(count: number): (number | null)[] {
  if (count <= MAX_ROWS) return Array.from({ length: count }, (_, i) => i);
  return [...Array.from({ length: HEAD }, (_, i) => i), null, ...Array.from({ length: TAIL }, (_, i) => count - TAIL + i)];
}

/** One row per item, or the first and last rows with a note (a string row) in place of the middle. */
function elided<T>(items: readonly T[], row: (item: T) => string[], note: (from: T, to: T, count: number) => string): (string[] | string)[] {
  return shownRows(items.length).map((i, j, all) =>
    i !== null ? row(items[i]) : note(items[(all[j - 1] as number) + 1], items[(all[j + 1] as number) - 1], items.length - HEAD - TAIL),
  );
}

export function renderAnalyzeReport(r: AnalyzeReport): string {
  const out: string[] = [];
  const p = r.positions;
  const T = p.length;
  out.push(`scenario ${r.scenario}: ${r.states} states, T = ${T}, λ = ${r.lambda}`);
  out.push(`E[H]: base ${num(r.expectedHarm.base)}, Gibbs-aligned ${num(r.expectedHarm.aligned)}   Var(H) ${num(r.harmVariance)} = Σ I_t ${num(r.harmInformationSum)}`);
  out.push(
    `harm horizon k = ${r.horizon} (I_t ≤ ${r.horizonTolerance}·Var H beyond it), ` +
      `effective horizon k = ${r.effectiveHorizon.k} (${100 * r.effectiveHorizon.fraction}% of Var H resolved)`,
  );
  out.push('');
  const maxInfo = maxOf(p.map((x) => x.harmInformation));
  const columns: [string, (x: PositionRow) => number | null][] = [
    ['I_t', (x) => x.harmInformation],
    ['‖G_t‖', (x) => x.gradNorm],
    ['bound', (x) => x.gradBound],
    ['KL on-policy', (x) => x.klOnPolicy],
    ['KL teacher-forced', (x) => x.klTeacherForced],
    ['(λ²/2)·I_t', (x) => x.klPredicted],
  ];
  const rows = elided(
    p,
    (x) => [String(x.t), ...columns.map(([, get]) => num(get(x))), bar(x.harmInformation, maxInfo), x.t <= r.horizon ? '' : 'beyond horizon'],
    (from, to, count) => {
      let mass = 0;
      for (let t = from.t; t <= to.t; t++) mass += p[t - 1].harmInformation;
      const share = r.harmVariance > 0 ? ` (${(100 * Math.max(0, mass / r.harmVariance)).toFixed(2)}% of Var H)` : '';
      return `  ⋮  ${count} positions not shown (t = ${from.t}..${to.t}): Σ I_t = ${num(mass)}${share}`;
    },
  );
  out.push(table(['t', ...columns.map(([name]) => name), 'I_t'.padEnd(12), ''], rows));
  out.push('');
  const shapes = columns.map(([name, get]) => ({ name, ...binned(p.map(get)) }));
  const per = shapes[0].per;
  out.push(`shape over t = 1..${T}${per > 1 ? ` (each character the largest of ${per} positions)` : ''}:`);
  const width = Math.max(...shapes.map((s) => s.name.length));
  for (const s of shapes) out.push(`  ${s.name.padEnd(width)}  ${sparkline(s.values)}`);
  out.push('');
  out.push('Prefilling attack: success after forcing the first k tokens of a harmful response');
  out.push(
    table(
      ['k', 'ASR base', '', 'ASR aligned', ''],
      elided(
        r.prefill,
        (x) => [String(x.k), num(x.asrBase), bar(x.asrBase, 1), num(x.asrAligned), bar(x.asrAligned, 1)],
        (from, to, count) => `  ⋮  ${count} values of k not shown (k = ${from.k}..${to.k})`,
      ),
    ),
  );
  return out.join('\n');
}
