/** Terminal rendering: numbers, sparklines and bars for per-position tables. */

const SPARKS = '▁▂▃▄▅▆▇█';
const BAR_WIDTH = 12;

/** A compact number: fixed for ordinary magnitudes, exponent form for tiny or huge ones, '—' for null. */
export function num(x: number | null, digits = 4): string {
  if (x === null || Number.isNaN(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e5) return x.toFixed(digits);
  return x.toExponential(2);
}

/** One character per value, scaled to the largest (all blank-floor when every value is 0). */
export function sparkline(values: readonly (number | null)[]): string {
  const finite = values.map((v) => (v === null || !Number.isFinite(v) ? 0 : Math.max(v, 0)));
  const max = Math.max(...finite, 0);
  return finite.map((v) => (max === 0 ? SPARKS[0] : SPARKS[Math.min(SPARKS.length - 1, Math.floor((v / max) * (SPARKS.length - 1) + 0.5))])).join('');
}

/** A horizontal bar of `value / max`, BAR_WIDTH cells wide. */
export function bar(value: number | null, max: number): string {
  if (value === null || !Number.isFinite(value) || max <= 0) return ''.padEnd(BAR_WIDTH);
  const cells = Math.round((Math.max(value, 0) / max) * BAR_WIDTH);
  return '█'.repeat(cells).padEnd(BAR_WIDTH, '·');
}

/** Renders rows as a left-padded table under a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => cell.padStart(widths[c])).join('  ');
  return [line(header), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}
