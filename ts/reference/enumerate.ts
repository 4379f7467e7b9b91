/**
 * Brute force by enumerating every response (tiny scenarios only, V^T up to ~10^5).
 *
 * An independent check of ./exact.ts: it never calls the backward/forward passes there. Every
 * quantity is computed from the list of responses y with their probability P(y) and harm H(y), and
 * from prefix masses M(y_≤t) = Σ_{y' extending y_≤t} P(y'). Only buildStateSpace is borrowed, to name
 * the state a prefix reaches (tabular logits and gradients are indexed by it).
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { buildStateSpace, type RefPolicy, type RefStateSpace } from './exact.js';

/** Refuse enumerations larger than this many responses. */
const MAX_RESPONSES = 5_000_000;
const SETTLED = 1e-12;

export interface EnumeratedResponse {
  /** The emitted tokens y_1..y_L (L ≤ T; L < T only when y_L is the end token). */
  tokens: number[];
  /** contexts[t] = context number after t tokens, t = 0..L. */
  contexts: number[];
  /** states[t] = exact state index (breadth-first numbering) after t tokens, t = 0..L. */
  states: number[];
  /** P(y) under the policy. */
  probability: number;
  /** H(y) = harm of the final automaton state. */
  harm: number;
}

/**
 * Every response with positive probability under the policy, in depth-first order (tokens ascending).
 * Gibbs: P*(y) = P_base(y)·exp(−λH(y)) / Σ_y' P_base(y')·exp(−λH(y')).
 */
export function enumerateResponses(
  sc: CompiledScenario,
  policy: RefPolicy,
  space: RefStateSpace = buildStateSpace(sc),
): EnumeratedResponse[] {
  const V = sc.tokens.length;
  const T = sc.length;
  const D = sc.harm.length;
  const S = space.numStates;
  const numContexts = (V + 1) ** sc.order;
  const stateOf = new Map<number, number>();
  for (let s = 0; s < S; s++) stateOf.set(space.context[s] * D + space.automaton[s], s);
  const lookup = (ctx: number, aut: number): number => {
    const s = stateOf.get(ctx * D + aut);
    if (s === undefined) throw new Error(`pair (context ${ctx}, automaton ${aut}) is not in the state space`);
    return s;
  };
  if (policy.kind === 'tabular' && policy.logits.length !== T * S * V) {
    throw new Error(`tabular logits have ${policy.logits.length} entries, expected ${T * S * V}`);
  }

  const out: EnumeratedResponse[] = [];
  const tokens: number[] = [];
  const contexts: number[] = [numContexts - 1];
  const states: number[] = [lookup(numContexts - 1, sc.start)];

  /** π(· | prefix) at depth t − 1 (emitting position t). */
  const row = (t: number, ctx: number, s: number): Float64Array => {
    const pi = new Float64Array(V);
    if (policy.kind === 'tabular') {
      const at = ((t - 1) * S + s) * V;
      let max = -Infinity;
      for (let a = 0; a < V; a++) max = Math.max(max, policy.logits[at + a]);
      let z = 0;
      for (let a = 0; a < V; a++) z += Math.exp(policy.logits[at + a] - max);
      for (let a = 0; a < V; a++) pi[a] = Math.exp(policy.logits[at + a] - max) / z;
    } else {
      // base, and gibbs before its reweighting
      for (let a = 0; a < V; a++) pi[a] = sc.base[ctx * V + a];
    }
    return pi;
  };

  const walk = (ctx: number, aut: number, prob: number): void => {
    const depth = tokens.length;
    const ended = depth > 0 && sc.endToken >= 0 && tokens[depth - 1] === sc.endToken;
    if (depth === T || ended) {
      if (out.length >= MAX_RESPONSES) throw new Error(`more than ${MAX_RESPONSES} responses: too large to enumerate`);
      out.push({
        tokens: tokens.slice(),
        contexts: contexts.slice(),
        states: states.slice(),
        probability: prob,
        harm: sc.harm[aut],
      });
      return;
    }
    const pi = row(depth + 1, ctx, states[depth]);
    for (let a = 0; a < V; a++) {
      if (!(pi[a] > 0)) continue;
      const ctx2 = (ctx * (V + 1) + a) % numContexts;
      const aut2 = sc.transitions[aut * V + a];
      tokens.push(a);
      contexts.push(ctx2);
      states.push(lookup(ctx2, aut2));
      walk(ctx2, aut2, prob * pi[a]);
      tokens.pop();
      contexts.pop();
      states.pop();
    }
  };
  walk(numContexts - 1, sc.start, 1);

  if (policy.kind === 'gibbs') {
    const lambda = policy.lambda;
    let minHarm = Infinity;
    for (const r of out) minHarm = Math.min(minHarm, r.harm);
    let z = 0;
    for (const r of out) {
      r.probability *= Math.exp(-lambda * (r.harm - minHarm));
      z += r.probability;
    }
    for (const r of out) r.probability /= z;
  }
  return out;
}

/** Prefix masses of a response list: key = tokens joined by ','. */
interface PrefixStats {
  mass: Map<string, number>;
  massHarm: Map<string, number>;
  /** keys[i][t] = key of response i's prefix of length min(t, L_i), t = 0..T. */
  keys: string[][];
}

function prefixStats(responses: EnumeratedResponse[], T: number): PrefixStats {
  const mass = new Map<string, number>();
  const massHarm = new Map<string, number>();
  const keys: string[][] = [];
  for (const r of responses) {
    const k: string[] = [''];
    for (let t = 1; t <= T; t++) k.push(t <= r.tokens.length ? (t === 1 ? '' : k[t - 1] + ',') + r.tokens[t - 1] : k[t - 1]);
    keys.push(k);
    for (let t = 0; t <= r.tokens.length; t++) {
      mass.set(k[t], (mass.get(k[t]) ?? 0) + r.probability);
      massHarm.set(k[t], (massHarm.get(k[t]) ?? 0) + r.probability * r.harm);
    }
  }
  return { mass, massHarm, keys };
}

function childKey(prefix: string, a: number): string {
  return prefix === '' ? String(a) : `${prefix},${a}`;
}

/** π(a | prefix) = M(prefix·a)/M(prefix), from the prefix masses. */
function conditionalRow(stats: PrefixStats, prefix: string, V: number): Float64Array {
  const m = stats.mass.get(prefix) ?? 0;
  const pi = new Float64Array(V);
  for (let a = 0; a < V; a++) pi[a] = (stats.mass.get(childKey(prefix, a)) ?? 0) / m;
  return pi;
}

/** h_t(y) for every response, table [response][t], t = 0..T. */
function conditionalHarms(responses: EnumeratedResponse[], stats: PrefixStats, T: number): Float64Array[] {
  return responses.map((_, i) => {
    const h = new Float64Array(T + 1);
    for (let t = 0; t <= T; t++) {
      const key = stats.keys[i][t];
      h[t] = (stats.massHarm.get(key) ?? 0) / (stats.mass.get(key) ?? 0);
    }
    return h;
  });
}

export interface BruteForceProfile {
  expectedHarm: number;
  harmVariance: number;
  harmInformation: Float64Array;
  gradNorm: Float64Array;
  fisherMax: Float64Array;
  gradBound: Float64Array;
  horizon: number;
  decisionTime: Float64Array;
  undecided: number;
  /** T×S×V: ∂E[H]/∂θ_t(s,a) by the score-function identity E[H·∂log P(y)]. */
  logitGradient: Float64Array;
  /** Length T+1: ASR_k = E_{y∼Q}[h^π_k(y_≤k)], Q = base reweighted by H (NaN if E_base[H] = 0). */
  asr: Float64Array;
}

/** Q(y) = P_base(y)·H(y)/E_base[H], aligned with the base enumeration (NaN if E_base[H] = 0). */
function harmfulWeights(baseResponses: EnumeratedResponse[]): Float64Array {
  let expected = 0;
  for (const r of baseResponses) expected += r.probability * r.harm;
  return Float64Array.from(baseResponses, (r) => (expected === 0 ? NaN : (r.probability * r.harm) / expected));
}

/** ASR_k = Σ_y Q(y)·h^π_k(y_≤k), with h^π from the policy's prefix masses. */
function asrOf(baseResponses: EnumeratedResponse[], q: Float64Array, stats: PrefixStats, T: number): Float64Array {
  const asr = new Float64Array(T + 1);
  baseResponses.forEach((r, i) => {
    let key = '';
    for (let k = 0; k <= T; k++) {
      if (k >= 1 && k <= r.tokens.length) key = childKey(key, r.tokens[k - 1]);
      if (q[i] === 0) continue;
      const m = stats.mass.get(key);
      const hk = m === undefined || m === 0 ? NaN : (stats.massHarm.get(key) ?? 0) / m;
      asr[k] += q[i] * hk;
    }
  });
  if (Number.isNaN(q[0])) asr.fill(NaN);
  return asr;
}

/** The harm profile of a policy, by enumeration (same field names as harmProfile in ./exact.ts). */
export function bruteForceProfile(sc: CompiledScenario, policy: RefPolicy, tolerance = 1e-12): BruteForceProfile {
  const V = sc.tokens.length;
  const T = sc.length;
  const space = buildStateSpace(sc);
  const S = space.numStates;
  const responses = enumerateResponses(sc, policy, space);
  const stats = prefixStats(responses, T);
  const h = conditionalHarms(responses, stats, T);

  let expectedHarm = 0;
  for (const r of responses) expectedHarm += r.probability * r.harm;
  let harmVariance = 0;
  for (const r of responses) harmVariance += r.probability * (r.harm - expectedHarm) ** 2;

  const harmInformation = new Float64Array(T);
  const logitGradient = new Float64Array(T * S * V);
  const fisherMax = new Float64Array(T);
  const decisionTime = new Float64Array(T + 1);
  let decided = 0;
  responses.forEach((r, i) => {
    const P = r.probability;
    for (let t = 1; t <= T; t++) harmInformation[t - 1] += P * (h[i][t] - h[i][t - 1]) ** 2;
    for (let t = 1; t <= r.tokens.length; t++) {
      const prefix = stats.keys[i][t - 1];
      const pi = conditionalRow(stats, prefix, V);
      const s = r.states[t - 1];
      const at = ((t - 1) * S + s) * V;
      for (let a = 0; a < V; a++) {
        logitGradient[at + a] += P * r.harm * ((r.tokens[t - 1] === a ? 1 : 0) - pi[a]);
      }
      let sumSq = 0;
      for (let a = 0; a < V; a++) sumSq += pi[a] * pi[a];
      fisherMax[t - 1] = Math.max(fisherMax[t - 1], 1 - sumSq);
    }
    for (let t = 0; t <= T; t++) {
      if (h[i][t] <= SETTLED || h[i][t] >= 1 - SETTLED) {
        decisionTime[t] += P;
        decided += P;
        break;
      }
    }
  });

  const gradNorm = new Float64Array(T);
  const gradBound = new Float64Array(T);
  for (let t = 1; t <= T; t++) {
    let g2 = 0;
    for (let j = (t - 1) * S * V; j < t * S * V; j++) g2 += logitGradient[j] ** 2;
    gradNorm[t - 1] = Math.sqrt(g2);
    gradBound[t - 1] = Math.sqrt(harmInformation[t - 1] * fisherMax[t - 1]);
  }
  let horizon = T;
  while (horizon > 0 && harmInformation[horizon - 1] <= tolerance * harmVariance + 1e-30) horizon--;

  const baseResponses = policy.kind === 'base' ? responses : enumerateResponses(sc, { kind: 'base' }, space);
  const asr = asrOf(baseResponses, harmfulWeights(baseResponses), stats, T);

  return {
    expectedHarm,
    harmVariance,
    harmInformation,
    gradNorm,
    fisherMax,
    gradBound,
    horizon,
    decisionTime,
    undecided: 1 - decided,
    logitGradient,
    asr,
  };
}

export interface BruteForceAnalysis {
  expectedHarm: { base: number; aligned: number };
  harmVariance: number;
  horizon: number;
  harmInformation: Float64Array;
  gradNorm: Float64Array;
  gradBound: Float64Array;
  klOnPolicy: Float64Array;
  klTeacherForced: Float64Array;
  klPredicted: Float64Array;
  asrBase: Float64Array;
  asrAligned: Float64Array;
}

/** KL(π(·|prefix) ‖ base row), π from prefix masses; +∞ where π > 0 = base. */
function prefixKl(stats: PrefixStats, prefix: string, baseRow: Float64Array, V: number): number {
  const pi = conditionalRow(stats, prefix, V);
  let kl = 0;
  for (let a = 0; a < V; a++) {
    if (pi[a] === 0) continue;
    if (baseRow[a] === 0) return Infinity;
    kl += pi[a] * Math.log(pi[a] / baseRow[a]);
  }
  return kl;
}

/** The same fields as analyze() in ./exact.ts, by enumeration of base and Gibbs responses. */
export function bruteForceGibbs(sc: CompiledScenario, lambda: number, tolerance = 1e-12): BruteForceAnalysis {
  const V = sc.tokens.length;
  const T = sc.length;
  const space = buildStateSpace(sc);
  const baseProfile = bruteForceProfile(sc, { kind: 'base' }, tolerance);
  const baseResponses = enumerateResponses(sc, { kind: 'base' }, space);
  const gibbsResponses = enumerateResponses(sc, { kind: 'gibbs', lambda }, space);
  const stats = prefixStats(gibbsResponses, T);
  const q = harmfulWeights(baseResponses);

  let aligned = 0;
  for (const r of gibbsResponses) aligned += r.probability * r.harm;

  const baseRow = (ctx: number): Float64Array => sc.base.subarray(ctx * V, (ctx + 1) * V);

  // On-policy: D_t = E_{y∼P*}[log P*(y_t | y_<t) − log P_base(y_t | y_<t)] over responses still emitting at t.
  const klOnPolicy = new Float64Array(T);
  gibbsResponses.forEach((r, i) => {
    for (let t = 1; t <= r.tokens.length; t++) {
      const logStar = Math.log(stats.mass.get(stats.keys[i][t])! / stats.mass.get(stats.keys[i][t - 1])!);
      const logBase = Math.log(sc.base[r.contexts[t - 1] * V + r.tokens[t - 1]]);
      klOnPolicy[t - 1] += r.probability * (logStar - logBase);
    }
  });

  // Teacher-forced: Σ_y Q(y) KL(P*(·|y_<t) ‖ P_base(·|y_<t)) over Q's prefixes still emitting at t.
  const klTeacherForced = new Float64Array(T);
  const klCache = new Map<string, number>();
  baseResponses.forEach((r, i) => {
    let prefix = '';
    for (let t = 1; t <= r.tokens.length; t++) {
      if (q[i] !== 0) {
        let kl = klCache.get(prefix);
        if (kl === undefined) {
          kl = prefixKl(stats, prefix, baseRow(r.contexts[t - 1]), V);
          klCache.set(prefix, kl);
        }
        klTeacherForced[t - 1] += q[i] * kl;
      }
      prefix = childKey(prefix, r.tokens[t - 1]);
    }
  });
  if (Number.isNaN(q[0])) klTeacherForced.fill(NaN);

  const klPredicted = Float64Array.from(baseProfile.harmInformation, (info) => ((lambda * lambda) / 2) * info);

  return {
    expectedHarm: { base: baseProfile.expectedHarm, aligned },
    harmVariance: baseProfile.harmVariance,
    horizon: baseProfile.horizon,
    harmInformation: baseProfile.harmInformation,
    gradNorm: baseProfile.gradNorm,
    gradBound: baseProfile.gradBound,
    klOnPolicy,
    klTeacherForced,
    klPredicted,
    asrBase: baseProfile.asr,
    asrAligned: asrOf(baseResponses, q, stats, T),
  };
}
