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

/**
 * Rounding noise that floating point leaves below 0 on a quantity that cannot be negative (a KL, a
 * probability, I_t): at most this far below 0 it is 0. A value further below 0 is a real error and
 * is kept, so that it shows.
 */
export const ROUNDING_NOISE = 1e-12;

/** `x` with rounding noise below 0 removed (see ROUNDING_NOISE); null and NaN pass through. */
export function clampRounding(x: number): number;
export function clampRounding(x: number | null): number | null;
export function clampRounding(x: number | null): number | null {
  return x !== null && x < 0 && x >= -ROUNDING_NOISE ? 0 : x;
}

/** `num` of a quantity that cannot be negative (a KL, a probability, I_t): never prints −1e-17. */
export function numNonNegative(x: number | null, digits = 4): string {
  return num(clampRounding(x), digits);
}

/**
 * A computed number for a message, to 12 significant digits (enough to show a deviation from a
 * 1e-9 tolerance): a row sum of 0.9995999999999999 reads 0.9996, one of 1 + 2e-9 reads 1.000000002.
 */
export function approx(x: number, significant = 12): string {
  return Number.isFinite(x) ? String(Number(x.toPrecision(significant))) : String(x);
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

/** Renders rows as a left-padded table under a header; a row given as a string (a note) is printed as is. */
export function table(header: string[], rows: (string[] | string)[]): string {
  const cells = rows.filter((r): r is string[] => typeof r !== 'string');
  const widths = header.map((h, c) => cells.reduce((w, r) => Math.max(w, r[c].length), h.length));
  const line = (row: string[] | string) => (typeof row === 'string' ? row : row.map((cell, c) => cell.padStart(widths[c])).join('  '));
  return [line(header), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}
