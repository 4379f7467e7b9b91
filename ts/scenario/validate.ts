/** Validation of a scenario object: structure, names, rows, automaton; returns it in canonical form. */
import { approx } from '../report/format.js';
import { firstSchemaError } from '../io/schema-check.js';
import { Checker, didYouMean, hasOwn, setOwn, type Seg } from './check.js';
import { budgetOf, checkBudget, contextKey, fmtCount, requiredContexts, requiredRowCount, type Dims } from './contexts.js';
import type { TextPosition } from './json-text.js';
import { BOS, ROW_SUM_TOLERANCE, ScenarioFileSchema, type Scenario, type ScenarioDefaults, type ScenarioFile, type ScenarioOptions } from './types.js';

const DEFAULT_DEFAULTS: ScenarioDefaults = { lambda: 1, mu: 10, gamma: 1 };

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
  // The shape (types, required and unknown keys, ranges, token names, distinct names) is the schema's;
  // what follows checks what depends on other fields: names that must exist, rows, reachability.
  const shape = firstSchemaError(ScenarioFileSchema, json);
  if (shape) ck.fail(shape.path, shape.reason);
  const root = json as ScenarioFile;
  const { name, description, tokens } = root;

  const tokenIndex = new Map<string, number>();
  tokens.forEach((t, i) => tokenIndex.set(t, i));
  const V = tokens.length;
  const tokenRef = (s: string, path: Seg[]): number => {
    const i = tokenIndex.get(s);
    if (i === undefined) ck.fail(path, `unknown token ${JSON.stringify(s)}${didYouMean(s, tokens)}`);
    return i;
  };

  // length, endToken, contextOrder, recoveryTokens
  const T = root.length;
  const end = root.endToken === undefined ? -1 : tokenRef(root.endToken, ['endToken']);
  const endToken = root.endToken;
  const n = root.contextOrder ?? 1;
  const recoveryTokens = (root.recoveryTokens ?? []).map((x, i) => tokens[tokenRef(x, ['recoveryTokens', i])]!);

  // harm automaton
  const { states, start } = root.harm;
  const stateIndex = new Map<string, number>();
  states.forEach((s, i) => stateIndex.set(s, i));
  const stateRef = (s: string, path: Seg[]): string => {
    if (!stateIndex.has(s)) ck.fail(path, `unknown automaton state ${JSON.stringify(s)}${didYouMean(s, states)}`);
    return s;
  };
  stateRef(start, ['harm', 'start']);
  for (const k of Object.keys(root.harm.values)) stateRef(k, ['harm', 'values', k]);
  const transByState = new Map<string, Map<number, string>>();
  for (const [k, row] of Object.entries(root.harm.transitions)) {
    const p: Seg[] = ['harm', 'transitions', k];
    stateRef(k, p);
    const m = new Map<number, string>();
    for (const [tk, to] of Object.entries(row)) m.set(tokenRef(tk, [...p, tk]), stateRef(to, [...p, tk]));
    transByState.set(k, m);
  }
  const D = states.length;
  const given = Object.entries(root.defaults ?? {}).filter(([, v]) => v !== undefined);
  const defaults: ScenarioDefaults = { ...DEFAULT_DEFAULTS, ...Object.fromEntries(given) };

  // size limits, before touching the base table
  const dims: Dims = { V, end, n, T, D };
  checkBudget(dims, budget, ck);

  // base
  const baseJson = root.base;
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
    rows.set(key, canonicalRow(baseJson[key]!, p, tokens, tokenIndex, ck));
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
    const v = root.harm.values[s];
    if (hasOwn(root.harm.values, s) && v !== undefined) setOwn(values, s, v);
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

/** A row as V probabilities in token order (the schema has checked each is in [0, 1]): its
 *  length or token names, and its sum. */
function canonicalRow(v: number[] | Record<string, number>, p: Seg[], tokens: readonly string[], tokenIndex: Map<string, number>, ck: Checker): number[] {
  const V = tokens.length;
  let row: number[];
  if (Array.isArray(v)) {
    if (v.length !== V) ck.fail(p, `row must have ${V} probabilities (one per token: ${tokens.join(', ')}), got ${v.length}`);
    row = [...v];
  } else {
    row = new Array<number>(V).fill(0);
    for (const [k, x] of Object.entries(v)) {
      const id = tokenIndex.get(k);
      if (id === undefined) ck.fail([...p, k], `unknown token ${JSON.stringify(k)}${didYouMean(k, tokens)}`);
      row[id] = x;
    }
  }
  let sum = 0;
  for (const x of row) sum += x;
  if (!(Math.abs(sum - 1) <= ROW_SUM_TOLERANCE)) {
    ck.fail(p, `row must sum to 1 (within ${ROW_SUM_TOLERANCE}), sums to ${approx(sum)}`);
  }
  return row;
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
