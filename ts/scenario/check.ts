/** Field paths, typo suggestions and the failure reporter shared by the scenario validator. */
import type { TextPosition } from './json-text.js';
import { ScenarioError, type ScenarioErrorCode } from './error.js';

export type Seg = string | number;

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Formats a JSON path: `harm.transitions.count0.step`, `tokens[2]`, `base["Sure"][2]`.
 *  Keys below `base` are always bracketed (they are context keys and token names). */
export function formatPath(segs: readonly Seg[]): string {
  let out = '';
  const bracketAll = segs[0] === 'base';
  segs.forEach((s, i) => {
    if (typeof s === 'number') out += `[${s}]`;
    else if (i === 0) out += IDENT.test(s) ? s : `[${JSON.stringify(s)}]`;
    else if (!bracketAll && IDENT.test(s)) out += `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  });
  return out;
}

/** Optimal-string-alignment distance (Levenshtein with adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = [];
  for (let i = 0; i <= m; i++) {
    const row = new Array<number>(n + 1).fill(0);
    row[0] = i;
    d.push(row);
  }
  for (let j = 0; j <= n; j++) d[0]![j] = j;
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

/** The closest candidate to `word`, if it is close enough to be a plausible typo. */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  let seen = 0;
  for (const c of candidates) {
    if (++seen > 5000) break;
    if (c === word) continue;
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(1, Math.floor(word.length / 3));
  return bestD <= limit && bestD < Math.max(word.length, best.length) ? best : undefined;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` (did you mean ${JSON.stringify(s)}?)`;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isFinite(v) ? `the number ${v}` : String(v);
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function hasOwn(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** Sets an own enumerable property (safe for keys such as "__proto__"). */
export function setOwn<T>(o: Record<string, T>, k: string, v: T): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

export class Checker {
  constructor(
    readonly source: string | undefined,
    /** Maps a path to its place in the scenario text, when there is one. */
    private readonly locate?: (path: readonly Seg[]) => TextPosition | undefined,
  ) {}

  fail(path: readonly Seg[] | string, reason: string, code?: ScenarioErrorCode): never {
    const position = typeof path === 'string' ? undefined : this.locate?.(path);
    throw new ScenarioError(typeof path === 'string' ? path : formatPath(path), reason, {
      ...sourceOpt(this.source),
      ...(code ? { code } : {}),
      ...(position ? { position } : {}),
    });
  }
}

export function sourceOpt(source: string | undefined): { source?: string } {
  return source === undefined ? {} : { source };
}

