/** Validation of a scenario object: structure, names, rows, automaton; returns it in canonical form. */
import { approx } from '../report/format.js';
import { Checker, describe, didYouMean, hasOwn, isPlainObject, setOwn, type Seg } from './check.js';
import { budgetOf, checkBudget, contextKey, fmtCount, requiredContexts, requiredRowCount, type Dims } from './contexts.js';
import type { TextPosition } from './json-text.js';
import { BOS, ROW_SUM_TOLERANCE, type Scenario, type ScenarioDefaults, type ScenarioOptions } from './types.js';

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

export interface Validated {
  scenario: Scenario;
  dims: Dims;
  tokenIndex: Map<string, number>;
  stateIndex: Map<string, number>;
  /** Context ids (−1 = "<bos>") per base key. */
  contextIds: Map<string, number[]>;
}

export function validate(json: unknown, source: string | undefined, options: ScenarioOptions | undefined, locate?: (path: readonly Seg[]) => TextPosition | undefined): Validated {
  const ck: Checker = new Checker(source, locate);
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


/**
 * Validates a scenario given as parsed JSON (or any JS value) and returns it in canonical form:
 * rows as arrays in canonical context order, defaults filled in. Throws `ScenarioError` if invalid.
 * `source` (e.g. a file name) is quoted in error messages.
 */
export function parseScenario(json: unknown, source?: string, options?: ScenarioOptions): Scenario {
  return validate(json, source, options).scenario;
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
