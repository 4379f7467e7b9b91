/** The context space of a scenario: its dimensions, the contexts that need a base row, the exact
 *  state-space estimate and the memory budget it is checked against. */
import { HarmHorizonError } from '../core/errors.js';
import { BOS, DEFAULT_MEMORY_BUDGET_BYTES, type Scenario, type ScenarioOptions, type ScenarioSizeEstimate } from './types.js';
import type { Checker } from './check.js';

export function fmtCount(x: number): string {
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

export interface Dims {
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
export function requiredRowCount(d: Dims): number {
  const W = nonEnd(d);
  let total = 0;
  for (let t = 0; t <= Math.min(d.n, d.T - 1); t++) total += Math.pow(W, t);
  return total;
}

/** Estimates the exact state space of a scenario with the given dimensions. */
export function estimateDims(d: Dims): ScenarioSizeEstimate {
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

export function checkBudget(d: Dims, budget: Budget, ck: Checker): void {
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
export function contextKey(ids: readonly number[], tokens: readonly string[]): string {
  return ids.map((i) => (i < 0 ? BOS : tokens[i]!)).join(' ');
}

/** Enumerates the contexts that need a base row, in canonical order: by number t of real tokens
 *  (0..min(n, T−1)), then lexicographically by token id. Yields token ids, −1 for "<bos>". */
export function* requiredContexts(d: Dims): Generator<number[]> {
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

export interface Budget {
  bytes: number;
  name: string;
  samplingOnly: boolean;
}

export function budgetOf(options: ScenarioOptions | undefined): Budget {
  const b = options?.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET_BYTES;
  const name = options?.memoryBudgetName ?? 'memoryBudgetBytes';
  if (typeof b !== 'number' || Number.isNaN(b) || b <= 0) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${name} must be a positive number, got ${String(b)}`, name);
  }
  return { bytes: b, name, samplingOnly: options?.samplingOnly === true };
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
