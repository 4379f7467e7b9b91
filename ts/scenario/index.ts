/**
 * Scenarios: the JSON file format, its validation, the built-in scenarios, and compilation to the
 * numeric form the engines consume (`CompiledScenario`, see compiled.ts).
 *
 * The format is documented in docs/scenario-format.md and described by schema/scenario.schema.json.
 * Everything is validated before any computation; an invalid scenario is refused with a
 * `ScenarioError` naming the offending field as a JSON path and the reason.
 */
import { HarmHorizonError } from '../core/errors.js';
import { approx } from '../report/format.js';
import { readFileSync } from 'node:fs';
import type { CompiledScenario } from './compiled.js';
import { SplitMix64, softmax } from './random.js';

// ---------------------------------------------------------------------------------------------
// Types

/** A validated scenario, in canonical form. It is itself a valid scenario file object. */
export interface Scenario {
  name: string;
  description?: string;
  /** Token names (index = token id). */
  tokens: string[];
  /** Response length T ≥ 1. */
  length: number;
  /** Name of the end token, if any. */
  endToken?: string;
  /** Context order n ≥ 1. */
  contextOrder: number;
  /** Recovery tokens R (possibly empty). */
  recoveryTokens: string[];
  /** Base conditionals: one row (V probabilities) per reachable, not-ended context, keyed by the
   *  context key, in canonical order (by number of tokens in the context, then token order). */
  base: Record<string, number[]>;
  harm: HarmAutomaton;
  defaults: ScenarioDefaults;
}

export interface HarmAutomaton {
  /** Automaton state names (index = automaton state id). */
  states: string[];
  /** Start state name. */
  start: string;
  /** Harm per state in [0, 1]; unlisted states have harm 0. */
  values: Record<string, number>;
  /** Per state: token → next state. Unlisted tokens (and unlisted states) keep the state. */
  transitions: Record<string, Record<string, string>>;
}

export interface ScenarioDefaults {
  lambda: number;
  mu: number;
  gamma: number;
}

export interface ScenarioOptions {
  /** Memory budget for the exact engines, in bytes (default 4 GiB). A scenario whose estimated
   *  engine memory exceeds it is refused. Use Infinity to disable the check. */
  memoryBudgetBytes?: number;
  /** How the budget is named in messages (default "memoryBudgetBytes"; the CLI says "--memory-budget"). */
  memoryBudgetName?: string;
  /** Monte Carlo only: the budget bounds the base table alone, and the exact engine is tried
   *  separately (and skipped when it does not fit), so a scenario too large for it is still accepted. */
  samplingOnly?: boolean;
}

export interface RandomScenarioOptions {
  /** Seed (safe integer ≥ 0 or bigint), default 1. */
  seed?: number | bigint;
  /** Vocabulary size V, default 8. */
  vocab?: number;
  /** Context order n, default 1. */
  order?: number;
  /** Response length T, default 16. */
  length?: number;
  /** Number of automaton states D (≥ 2), default 8. */
  states?: number;
  /** Standard deviation σ of the logits, default 1.5. */
  sigma?: number;
  /** If true the last token is "<eos>" and is the end token. Default false. */
  endToken?: boolean;
}

/** Size estimate of a scenario's exact state space (see docs/scenario-format.md, "Size limits"). */
export interface ScenarioSizeEstimate {
  /** Contexts that exact states can have (depths 0..T, ended ones included). */
  reachableContexts: number;
  /** Automaton states D. */
  automatonStates: number;
  /** Σ_{t=0..T} V^t (number of token sequences of length ≤ T). */
  sequenceBound: number;
  /** Upper bound on the number S of exact states: min(reachableContexts · D, sequenceBound). */
  stateBound: number;
  /** Estimated engine memory in bytes: 3·(T+1)·S·8 + S·V·16. */
  engineBytes: number;
  /** Size of the compiled base table in bytes: (V+1)^n · V · 8. */
  baseBytes: number;
}

export type ScenarioErrorCode = 'HH_SCENARIO_INVALID' | 'HH_FILE_NOT_FOUND' | 'HH_STATE_SPACE_TOO_LARGE';

/** A refused scenario. `field` is a JSON path into the scenario file ("" for the whole document). */
export class ScenarioError extends HarmHorizonError {
  declare readonly code: ScenarioErrorCode;
  declare readonly field: string;
  readonly reason: string;
  /** File name or other description of where the scenario came from, if known. */
  readonly source?: string;

  constructor(field: string, reason: string, options: { source?: string; code?: ScenarioErrorCode } = {}) {
    const where = options.source ? ` (${options.source})` : '';
    const code = options.code ?? 'HH_SCENARIO_INVALID';
    const prefix = { HH_FILE_NOT_FOUND: 'scenario file not found', HH_SCENARIO_INVALID: 'invalid scenario', HH_STATE_SPACE_TOO_LARGE: 'scenario too large' }[code];
    const message = `${prefix}${where}: ${code === 'HH_FILE_NOT_FOUND' || field === '' ? '' : `${field}: `}${reason}`;
    super(code, message, field);
    this.name = 'ScenarioError';
    this.reason = reason;
    if (options.source !== undefined) this.source = options.source;
  }
}

export const DEFAULT_MEMORY_BUDGET_BYTES = 4 * 1024 * 1024 * 1024;
export const BOS = '<bos>';
/** Tolerance on row sums. */
export const ROW_SUM_TOLERANCE = 1e-9;

const DEFAULT_DEFAULTS: ScenarioDefaults = { lambda: 1, mu: 10, gamma: 1 };

const TOP_KEYS = [
  '$schema',
  'name',
  'description',
  'tokens',
  'length',
  'endToken',
  'contextOrder',
  'recoveryTokens',
  'base',
  'harm',
  'defaults',
];
const HARM_KEYS = ['states', 'start', 'values', 'transitions'];
const DEFAULTS_KEYS = ['lambda', 'mu', 'gamma'];

// ---------------------------------------------------------------------------------------------
// Helpers: paths, suggestions, type checks

type Seg = string | number;

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

function didYouMean(word: string, candidates: Iterable<string>): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` (did you mean ${JSON.stringify(s)}?)`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isFinite(v) ? `the number ${v}` : String(v);
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function hasOwn(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** Sets an own enumerable property (safe for keys such as "__proto__"). */
function setOwn<T>(o: Record<string, T>, k: string, v: T): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function fmtCount(x: number): string {
  if (!Number.isFinite(x)) return 'more than 1e308';
  return Number.isSafeInteger(x) ? String(x) : x.toExponential(3);
}

function fmtBytes(b: number): string {
  if (!Number.isFinite(b)) return 'unboundedly many bytes';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let x = b;
  let u = 0;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  const s = u === 0 ? String(Math.round(x)) : x.toPrecision(4);
  return `${s} ${units[u]}${u > 0 ? ` (${fmtCount(Math.round(b))} bytes)` : ''}`;
}

class Checker {
  constructor(readonly source: string | undefined) {}

  fail(path: readonly Seg[] | string, reason: string, code?: ScenarioErrorCode): never {
    throw new ScenarioError(typeof path === 'string' ? path : formatPath(path), reason, { ...sourceOpt(this.source), ...(code ? { code } : {}) });
  }

  object(v: unknown, path: Seg[]): Record<string, unknown> {
    if (!isPlainObject(v)) this.fail(path, `expected an object, got ${describe(v)}`);
    return v;
  }

  array(v: unknown, path: Seg[]): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected an array, got ${describe(v)}`);
    return v;
  }

  string(v: unknown, path: Seg[], nonEmpty = true): string {
    if (typeof v !== 'string') this.fail(path, `expected a string, got ${describe(v)}`);
    if (nonEmpty && v.length === 0) this.fail(path, 'must not be empty');
    return v;
  }

  finite(v: unknown, path: Seg[]): number {
    if (typeof v !== 'number') this.fail(path, `expected a number, got ${describe(v)}`);
    if (!Number.isFinite(v)) this.fail(path, `must be a finite number, got ${v}`);
    return v;
  }

  integer(v: unknown, path: Seg[], min: number): number {
    if (typeof v !== 'number') this.fail(path, `expected an integer ≥ ${min}, got ${describe(v)}`);
    if (!Number.isInteger(v) || v < min) this.fail(path, `must be an integer ≥ ${min}, got ${v}`);
    return v;
  }

  /** Refuses keys not in `allowed`. */
  keys(o: Record<string, unknown>, allowed: readonly string[], path: Seg[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) {
        this.fail([...path, k], `unknown key ${JSON.stringify(k)}${didYouMean(k, allowed)}; allowed keys: ${allowed.join(', ')}`);
      }
    }
  }

  required(o: Record<string, unknown>, key: string, path: Seg[]): unknown {
    if (!hasOwn(o, key) || o[key] === undefined) this.fail([...path, key], 'required field is missing');
    return o[key];
  }

  /** A list of distinct non-empty names. */
  names(v: unknown, path: Seg[], what: string, minItems: number): string[] {
    const arr = this.array(v, path);
    if (arr.length < minItems) this.fail(path, `must list at least ${minItems} ${what}${minItems === 1 ? '' : 's'}`);
    const seen = new Map<string, number>();
    const out: string[] = [];
    arr.forEach((x, i) => {
      const s = this.string(x, [...path, i]);
      const prev = seen.get(s);
      if (prev !== undefined) this.fail([...path, i], `duplicate ${what} ${JSON.stringify(s)} (same as ${formatPath([...path, prev])})`);
      seen.set(s, i);
      out.push(s);
    });
    return out;
  }
}

function sourceOpt(source: string | undefined): { source?: string } {
  return source === undefined ? {} : { source };
}

// ---------------------------------------------------------------------------------------------
// Contexts

interface Dims {
  V: number;
  /** Token id of the end token or -1. */
  end: number;
  n: number;
  T: number;
  D: number;
}

/** Number of non-end tokens. */
function nonEnd(d: Dims): number {
  return d.end >= 0 ? d.V - 1 : d.V;
}

/** Number of contexts that need a base row: Σ_{t=0}^{min(n, T−1)} W^t, W = number of non-end tokens. */
function requiredRowCount(d: Dims): number {
  const W = nonEnd(d);
  let total = 0;
  for (let t = 0; t <= Math.min(d.n, d.T - 1); t++) total += Math.pow(W, t);
  return total;
}

/** Estimates the exact state space of a scenario with the given dimensions. */
function estimateDims(d: Dims): ScenarioSizeEstimate {
  const W = nonEnd(d);
  const e = d.end >= 0 ? 1 : 0;
  // Contexts after exactly t tokens: sequences with the end token at most as the last token.
  const c = (t: number): number => (t === 0 ? 1 : Math.pow(W, t - 1) * (W + e));
  let contexts = 0;
  for (let t = 0; t <= Math.min(d.T, d.n - 1); t++) contexts += c(t);
  if (d.T >= d.n) contexts += c(d.n);
  let seq = 0;
  for (let t = 0; t <= d.T; t++) {
    seq += Math.pow(d.V, t);
    if (!Number.isFinite(seq)) break;
  }
  const S = Math.min(contexts * d.D, seq);
  const engineBytes = 3 * (d.T + 1) * S * 8 + S * d.V * 16;
  const baseBytes = Math.pow(d.V + 1, d.n) * d.V * 8;
  return {
    reachableContexts: contexts,
    automatonStates: d.D,
    sequenceBound: seq,
    stateBound: S,
    engineBytes,
    baseBytes,
  };
}

function checkBudget(d: Dims, budget: Budget, ck: Checker): void {
  const over = `over the memory budget of ${fmtBytes(budget.bytes)} (${budget.name})`;
  const est = estimateDims(d);
  if (est.baseBytes > budget.bytes) {
    ck.fail(
      'contextOrder',
      `base table too large: (V+1)^n · V = ${d.V + 1}^${d.n} · ${d.V} entries need ${fmtBytes(est.baseBytes)}, ` +
        over,
      'HH_STATE_SPACE_TOO_LARGE',
    );
  }
  if (est.engineBytes > budget.bytes && !budget.samplingOnly) {
    const field = est.sequenceBound <= est.reachableContexts * d.D ? 'length' : 'harm.states';
    ck.fail(
      field,
      `state space too large: estimated ${fmtCount(est.stateBound)} exact states ` +
        `(min(${fmtCount(est.reachableContexts)} reachable contexts × ${d.D} automaton states, ` +
        `Σ_{t=0..${d.T}} ${d.V}^t = ${fmtCount(est.sequenceBound)})) need about ` +
        `3·(T+1)·S·8 + S·V·16 = ${fmtBytes(est.engineBytes)}, ${over}`,
      'HH_STATE_SPACE_TOO_LARGE',
    );
  }
}

/** Context key from token ids (−1 = "<bos>"). */
function contextKey(ids: readonly number[], tokens: readonly string[]): string {
  return ids.map((i) => (i < 0 ? BOS : tokens[i]!)).join(' ');
}

/** Enumerates the contexts that need a base row, in canonical order: by number t of real tokens
 *  (0..min(n, T−1)), then lexicographically by token id. Yields token ids, −1 for "<bos>". */
function* requiredContexts(d: Dims): Generator<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < d.V; i++) if (i !== d.end) ids.push(i);
  for (let t = 0; t <= Math.min(d.n, d.T - 1); t++) {
    if (t > 0 && ids.length === 0) break;
    const digits = new Array<number>(t).fill(0);
    for (;;) {
      const ctx = new Array<number>(d.n - t).fill(-1);
      for (const x of digits) ctx.push(ids[x]!);
      yield ctx;
      let k = t - 1;
      while (k >= 0 && digits[k] === ids.length - 1) {
        digits[k] = 0;
        k--;
      }
      if (k < 0) break;
      digits[k]!++;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

interface Validated {
  scenario: Scenario;
  dims: Dims;
  tokenIndex: Map<string, number>;
  stateIndex: Map<string, number>;
  /** Context ids (−1 = "<bos>") per base key. */
  contextIds: Map<string, number[]>;
}

interface Budget {
  bytes: number;
  name: string;
  samplingOnly: boolean;
}

function budgetOf(options: ScenarioOptions | undefined): Budget {
  const b = options?.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET_BYTES;
  const name = options?.memoryBudgetName ?? 'memoryBudgetBytes';
  if (typeof b !== 'number' || Number.isNaN(b) || b <= 0) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${name} must be a positive number, got ${String(b)}`, name);
  }
  return { bytes: b, name, samplingOnly: options?.samplingOnly === true };
}

function validate(json: unknown, source: string | undefined, options: ScenarioOptions | undefined): Validated {
  const ck: Checker = new Checker(source);
  const budget = budgetOf(options);
  if (!isPlainObject(json)) ck.fail('', `a scenario must be a JSON object, got ${describe(json)}`);
  const root = json;
  ck.keys(root, TOP_KEYS, []);
  if (hasOwn(root, '$schema')) ck.string(root['$schema'], ['$schema'], false);

  const name = ck.string(ck.required(root, 'name', []), ['name']);
  let description: string | undefined;
  if (hasOwn(root, 'description') && root['description'] !== undefined) {
    description = ck.string(root['description'], ['description'], false);
  }

  // tokens
  const tokens = ck.names(ck.required(root, 'tokens', []), ['tokens'], 'token', 1);
  tokens.forEach((t, i) => {
    if (t === BOS) ck.fail(['tokens', i], `"${BOS}" is reserved for the start-of-response padding and cannot be a token`);
    if (t.includes(' ')) ck.fail(['tokens', i], `token names must not contain spaces (context keys join tokens with spaces), got ${JSON.stringify(t)}`);
  });
  const tokenIndex = new Map<string, number>();
  tokens.forEach((t, i) => tokenIndex.set(t, i));
  const V = tokens.length;
  const tokenRef = (v: unknown, path: Seg[]): number => {
    const s = ck.string(v, path);
    const i = tokenIndex.get(s);
    if (i === undefined) ck.fail(path, `unknown token ${JSON.stringify(s)}${didYouMean(s, tokens)}`);
    return i;
  };

  // length, endToken, contextOrder, recoveryTokens
  const T = ck.integer(ck.required(root, 'length', []), ['length'], 1);
  let endToken: string | undefined;
  let end = -1;
  if (hasOwn(root, 'endToken') && root['endToken'] !== undefined) {
    end = tokenRef(root['endToken'], ['endToken']);
    endToken = tokens[end]!;
  }
  let n = 1;
  if (hasOwn(root, 'contextOrder') && root['contextOrder'] !== undefined) {
    n = ck.integer(root['contextOrder'], ['contextOrder'], 1);
  }
  const recoveryTokens: string[] = [];
  if (hasOwn(root, 'recoveryTokens') && root['recoveryTokens'] !== undefined) {
    const arr = ck.array(root['recoveryTokens'], ['recoveryTokens']);
    const seen = new Map<number, number>();
    arr.forEach((x, i) => {
      const id = tokenRef(x, ['recoveryTokens', i]);
      const prev = seen.get(id);
      if (prev !== undefined) {
        ck.fail(['recoveryTokens', i], `duplicate recovery token ${JSON.stringify(tokens[id])} (same as recoveryTokens[${prev}])`);
      }
      seen.set(id, i);
      recoveryTokens.push(tokens[id]!);
    });
  }

  // harm automaton
  const harmJson = ck.object(ck.required(root, 'harm', []), ['harm']);
  ck.keys(harmJson, HARM_KEYS, ['harm']);
  const states = ck.names(ck.required(harmJson, 'states', ['harm']), ['harm', 'states'], 'state', 1);
  const stateIndex = new Map<string, number>();
  states.forEach((s, i) => stateIndex.set(s, i));
  const stateRef = (v: unknown, path: Seg[]): string => {
    const s = ck.string(v, path);
    if (!stateIndex.has(s)) ck.fail(path, `unknown automaton state ${JSON.stringify(s)}${didYouMean(s, states)}`);
    return s;
  };
  const start = stateRef(ck.required(harmJson, 'start', ['harm']), ['harm', 'start']);
  const valuesJson = ck.object(ck.required(harmJson, 'values', ['harm']), ['harm', 'values']);
  const valueByState = new Map<string, number>();
  for (const k of Object.keys(valuesJson)) {
    const p: Seg[] = ['harm', 'values', k];
    if (!stateIndex.has(k)) ck.fail(p, `unknown automaton state ${JSON.stringify(k)}${didYouMean(k, states)}`);
    const v = ck.finite(valuesJson[k], p);
    if (v < 0 || v > 1) ck.fail(p, `harm value must be in [0, 1], got ${v}`);
    valueByState.set(k, v);
  }
  const transJson = ck.object(ck.required(harmJson, 'transitions', ['harm']), ['harm', 'transitions']);
  const transByState = new Map<string, Map<number, string>>();
  for (const k of Object.keys(transJson)) {
    const p: Seg[] = ['harm', 'transitions', k];
    if (!stateIndex.has(k)) ck.fail(p, `unknown automaton state ${JSON.stringify(k)}${didYouMean(k, states)}`);
    const row = ck.object(transJson[k], p);
    const m = new Map<number, string>();
    for (const tk of Object.keys(row)) {
      const tp: Seg[] = [...p, tk];
      const id = tokenIndex.get(tk);
      if (id === undefined) ck.fail(tp, `unknown token ${JSON.stringify(tk)}${didYouMean(tk, tokens)}`);
      m.set(id, stateRef(row[tk], tp));
    }
    transByState.set(k, m);
  }
  const D = states.length;

  // defaults
  const defaults: ScenarioDefaults = { ...DEFAULT_DEFAULTS };
  if (hasOwn(root, 'defaults') && root['defaults'] !== undefined) {
    const dj = ck.object(root['defaults'], ['defaults']);
    ck.keys(dj, DEFAULTS_KEYS, ['defaults']);
    if (dj['lambda'] !== undefined) {
      const v = ck.finite(dj['lambda'], ['defaults', 'lambda']);
      if (v < 0) ck.fail(['defaults', 'lambda'], `must be ≥ 0, got ${v}`);
      defaults.lambda = v;
    }
    if (dj['mu'] !== undefined) {
      const v = ck.finite(dj['mu'], ['defaults', 'mu']);
      if (v < 0) ck.fail(['defaults', 'mu'], `must be ≥ 0, got ${v}`);
      defaults.mu = v;
    }
    if (dj['gamma'] !== undefined) {
      const v = ck.finite(dj['gamma'], ['defaults', 'gamma']);
      if (!(v > 0 && v <= 1)) ck.fail(['defaults', 'gamma'], `must be in (0, 1], got ${v}`);
      defaults.gamma = v;
    }
  }

  // size limits, before touching the base table
  const dims: Dims = { V, end, n, T, D };
  checkBudget(dims, budget, ck);

  // base
  const baseJson = ck.object(ck.required(root, 'base', []), ['base']);
  const rows = new Map<string, number[]>();
  const contextIds = new Map<string, number[]>();
  const contextHint = `a context key is the last ${n} token${n === 1 ? '' : 's'} joined by single spaces, padded on the left with "${BOS}"`;
  for (const key of Object.keys(baseJson)) {
    const p: Seg[] = ['base', key];
    const parts = key.split(' ');
    if (parts.length !== n) {
      ck.fail(p, `unknown context ${JSON.stringify(key)}: ${contextHint} (contextOrder ${n}), got ${parts.length} part${parts.length === 1 ? '' : 's'}`);
    }
    const ids: number[] = [];
    let sawToken = false;
    parts.forEach((part) => {
      if (part === BOS) {
        if (sawToken) ck.fail(p, `unknown context ${JSON.stringify(key)}: "${BOS}" can only pad the context on the left`);
        ids.push(-1);
        return;
      }
      const id = tokenIndex.get(part);
      if (id === undefined) {
        ck.fail(p, `unknown context ${JSON.stringify(key)}: unknown token ${JSON.stringify(part)}${didYouMean(part, [BOS, ...tokens])}`);
      }
      sawToken = true;
      ids.push(id);
    });
    const real = ids.filter((i) => i >= 0).length;
    if (end >= 0) {
      const at = ids.indexOf(end);
      if (at === ids.length - 1) {
        ck.fail(p, `context ${JSON.stringify(key)} ends with the end token ${JSON.stringify(endToken)}: the response has ended there, so no row is needed or allowed`);
      } else if (at >= 0) {
        ck.fail(p, `unknown context ${JSON.stringify(key)}: unreachable, the end token ${JSON.stringify(endToken)} can only be the last token of a context`);
      }
    }
    if (real > T - 1) {
      ck.fail(p, `unknown context ${JSON.stringify(key)}: unreachable, it needs ${real} emitted token${real === 1 ? '' : 's'} but rows are only used before position T = ${T} (at most ${T - 1} tokens emitted)`);
    }
    rows.set(key, parseRow(baseJson[key], p, tokens, tokenIndex, ck));
    contextIds.set(key, ids);
  }
  // Every given row is a distinct reachable context, so if some row is missing, one of the first
  // rows.size + 1 contexts enumerated is missing: the loop stops early even when `needed` is huge.
  const needed = requiredRowCount(dims);
  const canonicalBase: Record<string, number[]> = {};
  for (const ids of requiredContexts(dims)) {
    const key = contextKey(ids, tokens);
    const row = rows.get(key);
    if (row === undefined) {
      ck.fail(
        ['base', key],
        `missing row for reachable context ${JSON.stringify(key)} (${fmtCount(needed - rows.size)} of ${fmtCount(needed)} reachable contexts have no row)`,
      );
    }
    setOwn(canonicalBase, key, row);
  }

  // canonical harm
  const values: Record<string, number> = {};
  const transitions: Record<string, Record<string, string>> = {};
  for (const s of states) {
    const v = valueByState.get(s);
    if (v !== undefined) setOwn(values, s, v);
    const m = transByState.get(s);
    if (m !== undefined) {
      const r: Record<string, string> = {};
      for (let a = 0; a < V; a++) {
        const to = m.get(a);
        if (to !== undefined) setOwn(r, tokens[a]!, to);
      }
      setOwn(transitions, s, r);
    }
  }

  const scenario: Scenario = {
    name,
    ...(description !== undefined ? { description } : {}),
    tokens: [...tokens],
    length: T,
    ...(endToken !== undefined ? { endToken } : {}),
    contextOrder: n,
    recoveryTokens,
    base: canonicalBase,
    harm: { states: [...states], start, values, transitions },
    defaults,
  };
  return { scenario, dims, tokenIndex, stateIndex, contextIds };
}

function parseRow(
  v: unknown,
  p: Seg[],
  tokens: readonly string[],
  tokenIndex: Map<string, number>,
  ck: Checker,
): number[] {
  const V = tokens.length;
  const row = new Array<number>(V).fill(0);
  if (Array.isArray(v)) {
    if (v.length !== V) ck.fail(p, `row must have ${V} probabilities (one per token: ${tokens.join(', ')}), got ${v.length}`);
    v.forEach((x, i) => {
      row[i] = probability(x, [...p, i], ck);
    });
  } else if (isPlainObject(v)) {
    for (const k of Object.keys(v)) {
      const id = tokenIndex.get(k);
      if (id === undefined) ck.fail([...p, k], `unknown token ${JSON.stringify(k)}${didYouMean(k, tokens)}`);
      row[id] = probability(v[k], [...p, k], ck);
    }
  } else {
    ck.fail(p, `a row must be an array of ${V} probabilities or an object {token: probability}, got ${describe(v)}`);
  }
  let sum = 0;
  for (const x of row) sum += x;
  if (!(Math.abs(sum - 1) <= ROW_SUM_TOLERANCE)) {
    ck.fail(p, `row must sum to 1 (within ${ROW_SUM_TOLERANCE}), sums to ${approx(sum)}`);
  }
  return row;
}

function probability(x: unknown, p: Seg[], ck: Checker): number {
  if (typeof x !== 'number') ck.fail(p, `expected a probability (number), got ${describe(x)}`);
  if (!Number.isFinite(x)) ck.fail(p, `probability must be finite, got ${x}`);
  if (x < 0) ck.fail(p, `probability must be ≥ 0, got ${x}`);
  if (x > 1) ck.fail(p, `probability must be ≤ 1, got ${x}`);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Validates a scenario given as parsed JSON (or any JS value) and returns it in canonical form:
 * rows as arrays in canonical context order, defaults filled in. Throws `ScenarioError` if invalid.
 * `source` (e.g. a file name) is quoted in error messages.
 */
export function parseScenario(json: unknown, source?: string, options?: ScenarioOptions): Scenario {
  return validate(json, source, options).scenario;
}

/**
 * Compiles a scenario to the numeric form the engines consume. The scenario is validated again
 * (so hand-built objects are checked too). Each row is normalised to sum to 1 by dividing by its
 * sum; rows of unreachable and ended contexts are zero.
 */
export function compileScenario(s: Scenario, options?: ScenarioOptions): CompiledScenario {
  const { scenario, dims, tokenIndex, stateIndex, contextIds } = validate(
    s,
    isPlainObject(s) && typeof s.name === 'string' ? `scenario ${JSON.stringify(s.name)}` : undefined,
    options,
  );
  const { V, n, D } = dims;
  const base = new Float64Array(Math.pow(V + 1, n) * V);
  for (const [key, row] of Object.entries(scenario.base)) {
    const ids = contextIds.get(key)!;
    let c = 0;
    for (const id of ids) c = c * (V + 1) + (id < 0 ? V : id);
    let sum = 0;
    for (const x of row) sum += x;
    for (let a = 0; a < V; a++) base[c * V + a] = row[a]! / sum;
  }
  const transitions = new Uint32Array(D * V);
  for (let d = 0; d < D; d++) for (let a = 0; a < V; a++) transitions[d * V + a] = d;
  for (const [from, row] of Object.entries(scenario.harm.transitions)) {
    const d = stateIndex.get(from)!;
    for (const [tok, to] of Object.entries(row)) transitions[d * V + tokenIndex.get(tok)!] = stateIndex.get(to)!;
  }
  const harm = new Float64Array(D);
  for (const [st, v] of Object.entries(scenario.harm.values)) harm[stateIndex.get(st)!] = v;
  return {
    name: scenario.name,
    tokens: [...scenario.tokens],
    length: scenario.length,
    endToken: dims.end,
    order: n,
    base,
    automatonStates: [...scenario.harm.states],
    transitions,
    harm,
    start: stateIndex.get(scenario.harm.start)!,
    recovery: scenario.recoveryTokens.map((t) => tokenIndex.get(t)!),
    defaults: { ...scenario.defaults },
  };
}

/** Size estimate of a (valid) scenario's exact state space and engine memory. */
export function estimateScenarioSize(s: Scenario): ScenarioSizeEstimate {
  const V = s.tokens.length;
  return estimateDims({
    V,
    end: s.endToken === undefined ? -1 : s.tokens.indexOf(s.endToken),
    n: s.contextOrder,
    T: s.length,
    D: s.harm.states.length,
  });
}

/** The scenario in the file format (rows as arrays, all fields explicit); round-trips through
 *  `parseScenario`. */
export function scenarioToJson(s: Scenario): Record<string, unknown> {
  const base: Record<string, number[]> = {};
  for (const [k, row] of Object.entries(s.base)) setOwn(base, k, [...row]);
  const values: Record<string, number> = {};
  for (const [k, v] of Object.entries(s.harm.values)) setOwn(values, k, v);
  const transitions: Record<string, Record<string, string>> = {};
  for (const [k, row] of Object.entries(s.harm.transitions)) {
    const r: Record<string, string> = {};
    for (const [tk, to] of Object.entries(row)) setOwn(r, tk, to);
    setOwn(transitions, k, r);
  }
  return {
    name: s.name,
    ...(s.description !== undefined ? { description: s.description } : {}),
    tokens: [...s.tokens],
    length: s.length,
    ...(s.endToken !== undefined ? { endToken: s.endToken } : {}),
    contextOrder: s.contextOrder,
    recoveryTokens: [...s.recoveryTokens],
    base,
    harm: { states: [...s.harm.states], start: s.harm.start, values, transitions },
    defaults: { ...s.defaults },
  };
}

/**
 * Reads, parses and validates a scenario file (JSON). Throws `ScenarioError` with code
 * 'HH_FILE_NOT_FOUND' if the file does not exist, and with field "" if the text is not valid JSON
 * (the reason quotes the parser's error and the line/column). Repeated keys in a JSON object are
 * refused too (JSON.parse would silently keep the last one).
 */
export function loadScenarioFile(path: string, options?: ScenarioOptions): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new ScenarioError('', `no such file: ${path}`, { source: path, code: 'HH_FILE_NOT_FOUND' });
    }
    throw new ScenarioError('', `cannot read the file: ${e.message}`, { source: path });
  }
  return parseScenarioText(text, path, options);
}

/** Parses scenario JSON text (as `loadScenarioFile` does after reading the file). */
export function parseScenarioText(text: string, source?: string, options?: ScenarioOptions): Scenario {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    let pos = jsonErrorPosition(text);
    if (pos === undefined) {
      const m = /position (\d+)/.exec(msg);
      if (m) pos = Number(m[1]);
    }
    let where = '';
    if (pos !== undefined) {
      const before = text.slice(0, pos);
      const line = before.split('\n').length;
      const col = pos - before.lastIndexOf('\n');
      where = ` at line ${line}, column ${col} (position ${pos})`;
    }
    throw new ScenarioError('', `invalid JSON${where}: ${msg}`, sourceOpt(source));
  }
  checkDuplicateKeys(text, new Checker(source));
  return parseScenario(json, source, options);
}

/** Offset of the first syntax error in `text` under the strict JSON grammar (RFC 8259), or
 *  undefined if the text is valid JSON. Used to locate JSON.parse errors precisely. */
export function jsonErrorPosition(text: string): number | undefined {
  let i = 0;
  class Bad {
    constructor(readonly at: number) {}
  }
  const fail = (): never => {
    throw new Bad(i);
  };
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const digits = (): void => {
    if (!/[0-9]/.test(text[i] ?? '')) fail();
    while (/[0-9]/.test(text[i] ?? '')) i++;
  };
  const str = (): void => {
    i++;
    for (;;) {
      if (i >= text.length) fail();
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        const esc = text[i] ?? '';
        if (esc === 'u') {
          i++;
          for (let k = 0; k < 4; k++, i++) if (!/[0-9a-fA-F]/.test(text[i] ?? '')) fail();
          continue;
        }
        if (!'"\\/bfnrt'.includes(esc) || esc === '') fail();
      }
      i++;
    }
  };
  const value = (): void => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] !== '}') fail();
        i++;
        return;
      }
    } else if (ch === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] !== ']') fail();
        i++;
        return;
      }
    } else if (ch === '"') {
      str();
    } else if (ch === '-' || /[0-9]/.test(ch ?? '')) {
      if (ch === '-') i++;
      if (text[i] === '0') i++;
      else digits();
      if (text[i] === '.') {
        i++;
        digits();
      }
      if (text[i] === 'e' || text[i] === 'E') {
        i++;
        if (text[i] === '+' || text[i] === '-') i++;
        digits();
      }
    } else {
      for (const lit of ['true', 'false', 'null']) {
        if (text.startsWith(lit, i)) {
          i += lit.length;
          return;
        }
      }
      fail();
    }
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return undefined;
  } catch (e) {
    if (e instanceof Bad) return Math.min(e.at, text.length);
    throw e;
  }
}

/** Refuses objects that repeat a key. `text` must be valid JSON. */
function checkDuplicateKeys(text: string, ck: Checker): void {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    const startPos = i;
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(startPos, i)) as string;
  };
  const value = (path: Seg[]): void => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const key = str();
        if (seen.has(key)) ck.fail([...path, key], `duplicate key ${JSON.stringify(key)} in a JSON object (each key may appear once)`);
        seen.add(key);
        ws();
        i++; // ':'
        value([...path, key]);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        i++; // '}'
        return;
      }
    } else if (ch === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let k = 0; ; k++) {
        value([...path, k]);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        i++; // ']'
        return;
      }
    } else if (ch === '"') {
      str();
    } else {
      while (i < text.length && !',]} \t\n\r'.includes(text[i]!)) i++;
    }
  };
  value([]);
}

// ---------------------------------------------------------------------------------------------
// Built-in scenarios

const BUILTINS = ['refusal', 'horizon', 'random'] as const;

/** Names of the built-in scenarios. */
export function builtinNames(): string[] {
  return [...BUILTINS];
}

/**
 * A built-in scenario by name: "refusal", "horizon" (exactly as in THEORY.md), or "random"
 * (seeded; see `RandomScenarioOptions`). A name of the form "random(seed=3,V=4,n=2,T=8,D=5)"
 * (as produced by the random scenario's own `name`; keys seed, V, n, T, D, sigma, eos) is accepted
 * too; explicit `options` override values given in the name.
 */
export function builtinScenario(name: string, options: RandomScenarioOptions & ScenarioOptions = {}): Scenario {
  const budgetOpts: ScenarioOptions = {
    ...(options.memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes: options.memoryBudgetBytes }),
    ...(options.memoryBudgetName === undefined ? {} : { memoryBudgetName: options.memoryBudgetName }),
    ...(options.samplingOnly === undefined ? {} : { samplingOnly: options.samplingOnly }),
  };
  if (name === 'refusal') return parseScenario(refusalJson(), 'built-in refusal', budgetOpts);
  if (name === 'horizon') return parseScenario(horizonJson(), 'built-in horizon', budgetOpts);
  if (name === 'random') return randomScenario(options);
  const m = /^random\((.*)\)$/.exec(name.trim());
  if (m) return randomScenario({ ...parseRandomName(m[1]!), ...definedOnly(options) });
  throw new ScenarioError('name', `unknown built-in scenario ${JSON.stringify(name)}${didYouMean(name, BUILTINS)}; built-ins: ${BUILTINS.join(', ')}`);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function parseRandomName(args: string): RandomScenarioOptions {
  const out: RandomScenarioOptions = {};
  const keys: Record<string, keyof RandomScenarioOptions> = {
    seed: 'seed',
    V: 'vocab',
    vocab: 'vocab',
    n: 'order',
    order: 'order',
    T: 'length',
    length: 'length',
    D: 'states',
    states: 'states',
    sigma: 'sigma',
    eos: 'endToken',
    endToken: 'endToken',
  };
  for (const part of args.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const [k, v] = part.split('=').map((x) => x.trim());
    const key = k === undefined ? undefined : keys[k];
    if (key === undefined || v === undefined || v === '') {
      throw new ScenarioError('name', `cannot read random scenario parameter ${JSON.stringify(part)}; expected key=value with keys ${Object.keys(keys).join(', ')}`);
    }
    if (key === 'endToken') {
      if (v !== 'true' && v !== 'false') throw new ScenarioError('name', `eos must be true or false, got ${JSON.stringify(v)}`);
      out.endToken = v === 'true';
    } else if (key === 'seed' && /^\d+$/.test(v) && !Number.isSafeInteger(Number(v))) {
      out.seed = BigInt(v);
    } else {
      const x = Number(v);
      if (!Number.isFinite(x)) throw new ScenarioError('name', `parameter ${k} must be a number, got ${JSON.stringify(v)}`);
      out[key] = x as never;
    }
  }
  return out;
}

function refusalJson(): Record<string, unknown> {
  const e = 1e-4;
  const counts = ['count0', 'count1', 'count2', 'count3'];
  const transitions: Record<string, Record<string, string>> = {};
  counts.forEach((c, i) => {
    transitions[c] = { step: i < 3 ? counts[i + 1]! : 'HARMFUL', Sorry: 'REFUSED' };
  });
  return {
    name: 'refusal',
    description:
      'A refusal at the first token: H = 1 iff the response holds at least 4 "step" tokens before its first "Sorry" ' +
      '(THEORY.md, built-in scenario "refusal").',
    tokens: ['Sure', 'Sorry', 'step', 'fine', '<eos>'],
    length: 16,
    endToken: '<eos>',
    contextOrder: 1,
    recoveryTokens: ['Sorry'],
    base: {
      '<bos>': [0.7, 0.15, 0.02, 0.12, 0.01],
      Sure: [e, e, 1 - 4 * e, e, e],
      Sorry: [e, e, e, (1 - 3 * e) / 2, (1 - 3 * e) / 2],
      step: [e, e, 1 - 4 * e, e, e],
      fine: [0.02, 0.03, 0.05, 0.6, 0.3],
    },
    harm: {
      states: [...counts, 'HARMFUL', 'REFUSED'],
      start: 'count0',
      values: { HARMFUL: 1 },
      transitions,
    },
    defaults: { lambda: 5, mu: 10, gamma: 1 },
  };
}

function horizonJson(): Record<string, unknown> {
  const K = 4;
  const states: string[] = [];
  for (let i = 0; i < K; i++) for (let b = 0; b <= Math.min(i, 1); b++) states.push(`i${i}b${b}`);
  states.push('HARM', 'SAFE');
  const transitions: Record<string, Record<string, string>> = {};
  for (let i = 0; i < K; i++) {
    for (let b = 0; b <= Math.min(i, 1); b++) {
      const row: Record<string, string> = {};
      for (const tok of ['a', 'b', 'c']) {
        const nb = b + (tok === 'b' ? 1 : 0);
        row[tok] = nb >= 2 ? 'HARM' : i + 1 === K ? 'SAFE' : `i${i + 1}b${nb}`;
      }
      transitions[`i${i}b${b}`] = row;
    }
  }
  return {
    name: 'horizon',
    description:
      'H = 1 iff at least 2 of the first 4 tokens are "b": harm horizon exactly 4 (THEORY.md, built-in scenario "horizon").',
    tokens: ['a', 'b', 'c'],
    length: 10,
    contextOrder: 1,
    recoveryTokens: [],
    base: {
      '<bos>': [0.5, 0.3, 0.2],
      a: [0.6, 0.3, 0.1],
      b: [0.3, 0.4, 0.3],
      c: [0.2, 0.3, 0.5],
    },
    harm: { states, start: 'i0b0', values: { HARM: 1 }, transitions },
    defaults: { lambda: 1, mu: 10, gamma: 1 },
  };
}

/**
 * The seeded random scenario. Generation, with one SplitMix64 stream seeded with `seed`:
 * 1. base rows, for each context that needs a row in canonical order (by number of tokens in the
 *    context, then lexicographic by token id): V normals z_a (a = 0..V−1), row = softmax(σ·z);
 * 2. transitions, for d = 0..D−1, a = 0..V−1: next state = nextInt(D);
 * 3. harm, for d = 0..D−1: nextInt(2); then if all are 0, state nextInt(D) gets harm 1, and if all
 *    are 1, state nextInt(D) gets harm 0.
 * Tokens "t0".."t{V−1}" (the last is "<eos>" if endToken), states "d0".."d{D−1}", start d0,
 * defaults λ = 1, μ = 10, γ = 1, no recovery tokens.
 */
export function randomScenario(options: RandomScenarioOptions & ScenarioOptions = {}): Scenario {
  const seed = options.seed ?? 1;
  const V = options.vocab ?? 8;
  const n = options.order ?? 1;
  const T = options.length ?? 16;
  const D = options.states ?? 8;
  const sigma = options.sigma ?? 1.5;
  const eos = options.endToken ?? false;
  const bad = (field: string, reason: string): never => {
    throw new ScenarioError(field, reason, { source: 'built-in random' });
  };
  if (typeof seed === 'number' && (!Number.isSafeInteger(seed) || seed < 0)) bad('seed', `must be a safe integer ≥ 0, got ${seed}`);
  if (!Number.isInteger(V) || V < (eos ? 2 : 1)) bad('vocab', `must be an integer ≥ ${eos ? 2 : 1}, got ${V}`);
  if (!Number.isInteger(n) || n < 1) bad('order', `must be an integer ≥ 1, got ${n}`);
  if (!Number.isInteger(T) || T < 1) bad('length', `must be an integer ≥ 1, got ${T}`);
  if (!Number.isInteger(D) || D < 2) bad('states', `must be an integer ≥ 2 (harm values need a 0 and a 1), got ${D}`);
  if (!Number.isFinite(sigma) || sigma < 0) bad('sigma', `must be a finite number ≥ 0, got ${sigma}`);

  const tokens = Array.from({ length: V }, (_, i) => (eos && i === V - 1 ? '<eos>' : `t${i}`));
  const states = Array.from({ length: D }, (_, i) => `d${i}`);
  const dims: Dims = { V, end: eos ? V - 1 : -1, n, T, D };
  const budget = budgetOf(options);
  checkBudget(dims, budget, new Checker('built-in random'));

  const rng = new SplitMix64(seed);
  const base: Record<string, number[]> = {};
  for (const ids of requiredContexts(dims)) {
    const logits: number[] = [];
    for (let a = 0; a < V; a++) logits.push(sigma * rng.nextNormal());
    setOwn(base, contextKey(ids, tokens), softmax(logits));
  }
  const transitions: Record<string, Record<string, string>> = {};
  for (let d = 0; d < D; d++) {
    const row: Record<string, string> = {};
    for (let a = 0; a < V; a++) row[tokens[a]!] = states[rng.nextInt(D)]!;
    transitions[states[d]!] = row;
  }
  const h: number[] = [];
  for (let d = 0; d < D; d++) h.push(rng.nextInt(2));
  if (!h.includes(1)) h[rng.nextInt(D)] = 1;
  else if (!h.includes(0)) h[rng.nextInt(D)] = 0;
  const values: Record<string, number> = {};
  h.forEach((x, d) => {
    if (x !== 0) values[states[d]!] = x;
  });

  const extra = `${sigma !== 1.5 ? `,sigma=${sigma}` : ''}${eos ? ',eos=true' : ''}`;
  const name = `random(seed=${seed},V=${V},n=${n},T=${T},D=${D}${extra})`;
  const json = {
    name,
    description:
      `Seeded random scenario: order-${n} base model over ${V} tokens (softmax of N(0, ${sigma}²) logits per context), ` +
      `random harm automaton with ${D} states and harm values in {0, 1}.`,
    tokens,
    length: T,
    ...(eos ? { endToken: '<eos>' } : {}),
    contextOrder: n,
    recoveryTokens: [],
    base,
    harm: { states, start: 'd0', values, transitions },
    defaults: { lambda: 1, mu: 10, gamma: 1 },
  };
  return parseScenario(json, 'built-in random', { memoryBudgetBytes: budget.bytes, memoryBudgetName: budget.name, samplingOnly: budget.samplingOnly });
}
