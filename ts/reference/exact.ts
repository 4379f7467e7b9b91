/**
 * Pure-TypeScript reference of the exact engine.
 *
 * Plain loops over Float64Array, written to be read and trusted: tests use it as ground truth for the
 * Rust core and benchmarks use it as the baseline. Product code never imports this folder.
 *
 * Conventions (see ts/compiled.ts and /work/shared/THEORY.md):
 *  - states are numbered breadth-first exactly as in ts/compiled.ts (and the Rust core);
 *  - positions t run 1..T; per-position outputs have length T, index t − 1;
 *  - state tables have (T+1) × S entries, row-major, index t·S + s (t = 0..T);
 *  - tabular logits and gradients have T × S × V entries, index ((t−1)·S + s)·V + a.
 */
import type { CompiledScenario } from '../scenario/compiled.js';

/** The reachable exact state space. */
export interface RefStateSpace {
  numStates: number;
  /** Context number per state. */
  context: Uint32Array;
  /** Automaton state per state. */
  automaton: Uint32Array;
  /** 1 = expanded and not ended (emits tokens); 0 = sink. */
  live: Uint8Array;
  /** S × V: next[s·V + a] = state after emitting a at live s (s itself at sinks, like the Rust core). */
  next: Uint32Array;
}

/** A policy π_t(a | s), t = 1..T, at live states. */
export type RefPolicy =
  | { kind: 'base' }
  | { kind: 'tabular'; logits: Float64Array /* T×S×V, index ((t−1)·S + s)·V + a, softmax over a */ }
  | { kind: 'gibbs'; lambda: number };

/** h_t(s) ≤ SETTLED or ≥ 1 − SETTLED counts as "harm decided". */
const SETTLED = 1e-12;

// ---------------------------------------------------------------------------------------------
// State space
// ---------------------------------------------------------------------------------------------

/** Breadth-first construction of the reachable (context, automaton state) pairs (ts/compiled.ts). */
export function buildStateSpace(sc: CompiledScenario): RefStateSpace {
  const V = sc.tokens.length;
  const T = sc.length;
  const D = sc.harm.length;
  const numContexts = (V + 1) ** sc.order;
  if (!Number.isSafeInteger(numContexts * D)) {
    throw new Error(`state keys overflow: (V+1)^order × D = ${numContexts} × ${D}`);
  }
  const startContext = numContexts - 1;
  const index = new Map<number, number>();
  const context: number[] = [startContext];
  const automaton: number[] = [sc.start];
  const depth: number[] = [0];
  const live: number[] = [];
  const next: number[] = [];
  index.set(startContext * D + sc.start, 0);

  for (let s = 0; s < context.length; s++) {
    const c = context[s];
    const d = automaton[s];
    const ended = sc.endToken >= 0 && c % (V + 1) === sc.endToken;
    if (depth[s] >= T || ended) {
      live.push(0);
      for (let a = 0; a < V; a++) next.push(s);
      continue;
    }
    live.push(1);
    for (let a = 0; a < V; a++) {
      const c2 = (c * (V + 1) + a) % numContexts;
      const d2 = sc.transitions[d * V + a];
      const key = c2 * D + d2;
      let id = index.get(key);
      if (id === undefined) {
        id = context.length;
        index.set(key, id);
        context.push(c2);
        automaton.push(d2);
        depth.push(depth[s] + 1);
      }
      next.push(id);
    }
  }
  return {
    numStates: context.length,
    context: Uint32Array.from(context),
    automaton: Uint32Array.from(automaton),
    live: Uint8Array.from(live),
    next: Uint32Array.from(next),
  };
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/** A policy made concrete on a state space: fills π_t(·|s) rows and KL(π_t(·|s) ‖ base(·|s)). */
interface ResolvedPolicy {
  /** Writes π_t(· | s) into out (length V). Only called at live states, t = 1..T. */
  row(t: number, s: number, out: Float64Array): void;
  /** KL(π_t(· | s) ‖ base(· | s)); scratch has length V. */
  kl(t: number, s: number, scratch: Float64Array): number;
}

/** Gibbs values W_t(s) = −log E_base[exp(−λH) | state s at position t], table (T+1)×S. */
function gibbsValues(sc: CompiledScenario, space: RefStateSpace, lambda: number): Float64Array {
  if (!(lambda >= 0 && Number.isFinite(lambda))) {
    throw new Error(`lambda must be a finite number ≥ 0, got ${lambda}`);
  }
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const W = new Float64Array((T + 1) * S);
  for (let s = 0; s < S; s++) W[T * S + s] = lambda * sc.harm[space.automaton[s]];
  for (let t = T; t >= 1; t--) {
    const later = t * S;
    const earlier = (t - 1) * S;
    for (let s = 0; s < S; s++) {
      if (!space.live[s]) {
        W[earlier + s] = W[later + s];
        continue;
      }
      const p = space.context[s] * V;
      let shift = Infinity;
      for (let a = 0; a < V; a++) {
        if (sc.base[p + a] > 0) shift = Math.min(shift, W[later + space.next[s * V + a]]);
      }
      let sum = 0;
      for (let a = 0; a < V; a++) {
        const pa = sc.base[p + a];
        if (pa > 0) sum += pa * Math.exp(shift - W[later + space.next[s * V + a]]);
      }
      W[earlier + s] = shift - Math.log(sum);
    }
  }
  return W;
}

function resolvePolicy(sc: CompiledScenario, space: RefStateSpace, policy: RefPolicy): ResolvedPolicy {
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const base = sc.base;
  switch (policy.kind) {
    case 'base':
      return {
        row(_t, s, out) {
          const p = space.context[s] * V;
          for (let a = 0; a < V; a++) out[a] = base[p + a];
        },
        kl() {
          return 0;
        },
      };
    case 'tabular': {
      const logits = policy.logits;
      if (logits.length !== T * S * V) {
        throw new Error(`tabular logits have ${logits.length} entries, expected T×S×V = ${T}×${S}×${V} = ${T * S * V}`);
      }
      const row = (t: number, s: number, out: Float64Array): void => {
        const at = ((t - 1) * S + s) * V;
        let max = -Infinity;
        for (let a = 0; a < V; a++) max = Math.max(max, logits[at + a]);
        let sum = 0;
        for (let a = 0; a < V; a++) {
          out[a] = Math.exp(logits[at + a] - max);
          sum += out[a];
        }
        for (let a = 0; a < V; a++) out[a] /= sum;
      };
      return {
        row,
        kl(t, s, scratch) {
          row(t, s, scratch);
          const p = space.context[s] * V;
          let kl = 0;
          for (let a = 0; a < V; a++) {
            const q = scratch[a];
            if (q === 0) continue;
            const pa = base[p + a];
            if (pa === 0) return Infinity;
            kl += q * (Math.log(q) - Math.log(pa));
          }
          return kl;
        },
      };
    }
    case 'gibbs': {
      const W = gibbsValues(sc, space, policy.lambda);
      return {
        row(t, s, out) {
          const p = space.context[s] * V;
          const w0 = W[(t - 1) * S + s];
          for (let a = 0; a < V; a++) {
            const pa = base[p + a];
            out[a] = pa > 0 ? pa * Math.exp(w0 - W[t * S + space.next[s * V + a]]) : 0;
          }
        },
        kl(t, s) {
          // Exact log-ratio form: log(π*/p) = r_a = W_{t−1}(s) − W_t(next(s,a)).
          const p = space.context[s] * V;
          const w0 = W[(t - 1) * S + s];
          let kl = 0;
          for (let a = 0; a < V; a++) {
            const pa = base[p + a];
            if (pa === 0) continue;
            const r = w0 - W[t * S + space.next[s * V + a]];
            kl += pa * Math.exp(r) * r;
          }
          return kl;
        },
      };
    }
    default: {
      const never: never = policy;
      throw new Error(`unknown policy ${JSON.stringify(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward and forward passes
// ---------------------------------------------------------------------------------------------

function conditionalHarmResolved(sc: CompiledScenario, space: RefStateSpace, pol: ResolvedPolicy): Float64Array {
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const h = new Float64Array((T + 1) * S);
  const pi = new Float64Array(V);
  for (let s = 0; s < S; s++) h[T * S + s] = sc.harm[space.automaton[s]];
  for (let t = T; t >= 1; t--) {
    const later = t * S;
    const earlier = (t - 1) * S;
    for (let s = 0; s < S; s++) {
      if (!space.live[s]) {
        h[earlier + s] = h[later + s];
        continue;
      }
      pol.row(t, s, pi);
      let sum = 0;
      for (let a = 0; a < V; a++) sum += pi[a] * h[later + space.next[s * V + a]];
      h[earlier + s] = sum;
    }
  }
  return h;
}

function forwardResolved(sc: CompiledScenario, space: RefStateSpace, pol: ResolvedPolicy): Float64Array {
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const p = new Float64Array((T + 1) * S);
  const pi = new Float64Array(V);
  p[0] = 1;
  for (let t = 1; t <= T; t++) {
    const prev = (t - 1) * S;
    const cur = t * S;
    for (let s = 0; s < S; s++) {
      const mass = p[prev + s];
      if (!space.live[s]) {
        p[cur + s] += mass;
        continue;
      }
      if (mass === 0) continue;
      pol.row(t, s, pi);
      for (let a = 0; a < V; a++) p[cur + space.next[s * V + a]] += mass * pi[a];
    }
  }
  return p;
}

/** h table, (T+1)×S: h_t(s) = E_π[H | state s after t tokens]. */
export function conditionalHarm(sc: CompiledScenario, space: RefStateSpace, policy: RefPolicy): Float64Array {
  return conditionalHarmResolved(sc, space, resolvePolicy(sc, space, policy));
}

/** p table, (T+1)×S: p_t(s) = P_π(state s after t tokens). */
export function forwardProbabilities(sc: CompiledScenario, space: RefStateSpace, policy: RefPolicy): Float64Array {
  return forwardResolved(sc, space, resolvePolicy(sc, space, policy));
}

// ---------------------------------------------------------------------------------------------
// Harm profile and gradients
// ---------------------------------------------------------------------------------------------

export interface RefHarmProfile {
  /** h_0(0) = E[H]. */
  expectedHarm: number;
  /** Σ_s p_T(s)·(harm(s) − E[H])². */
  harmVariance: number;
  /** I_t = E[(h_t − h_{t−1})²], length T. */
  harmInformation: Float64Array;
  /** ||G_t||, G_t(s,a) = p_{t−1}(s)·π_t(a|s)·(h_t(next(s,a)) − h_{t−1}(s)), length T. */
  gradNorm: Float64Array;
  /** F̄_t = max over live s with p_{t−1}(s) > 0 of 1 − Σ_a π_t(a|s)² (0 if none), length T. */
  fisherMax: Float64Array;
  /** sqrt(I_t · F̄_t), length T. */
  gradBound: Float64Array;
  /** Smallest k in 0..T with I_t ≤ tol·Var(H) for all t > k. */
  horizon: number;
  /** Length T+1: P(τ = t), τ = first t with h_t settled at 0 or 1. */
  decisionTime: Float64Array;
  /** 1 − P(τ ≤ T). */
  undecided: number;
}

export function harmProfile(
  sc: CompiledScenario,
  space: RefStateSpace,
  policy: RefPolicy,
  tolerance = 1e-12,
): RefHarmProfile {
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const pol = resolvePolicy(sc, space, policy);
  const h = conditionalHarmResolved(sc, space, pol);
  const p = forwardResolved(sc, space, pol);
  const pi = new Float64Array(V);

  const expectedHarm = h[0];
  let harmVariance = 0;
  for (let s = 0; s < S; s++) {
    const dev = sc.harm[space.automaton[s]] - expectedHarm;
    harmVariance += p[T * S + s] * dev * dev;
  }

  const harmInformation = new Float64Array(T);
  const gradNorm = new Float64Array(T);
  const fisherMax = new Float64Array(T);
  const gradBound = new Float64Array(T);
  for (let t = 1; t <= T; t++) {
    const prev = (t - 1) * S;
    const cur = t * S;
    let info = 0;
    let grad2 = 0;
    let fisher = 0;
    for (let s = 0; s < S; s++) {
      const mass = p[prev + s];
      if (!space.live[s] || mass === 0) continue;
      pol.row(t, s, pi);
      const h0 = h[prev + s];
      let local = 0;
      let sumSq = 0;
      for (let a = 0; a < V; a++) {
        const delta = h[cur + space.next[s * V + a]] - h0;
        local += pi[a] * delta * delta;
        const g = mass * pi[a] * delta;
        grad2 += g * g;
        sumSq += pi[a] * pi[a];
      }
      info += mass * local;
      if (mass > 0) fisher = Math.max(fisher, 1 - sumSq);
    }
    harmInformation[t - 1] = info;
    gradNorm[t - 1] = Math.sqrt(grad2);
    fisherMax[t - 1] = fisher;
    gradBound[t - 1] = Math.sqrt(info * fisher);
  }

  // The absolute floor treats rounding noise as zero (a constant harm has horizon 0), as the Rust core does.
  const threshold = tolerance * harmVariance + 1e-30;
  let horizon = T;
  while (horizon > 0 && harmInformation[horizon - 1] <= threshold) horizon--;

  const decisionTime = new Float64Array(T + 1);
  let previous = 0;
  for (let t = 0; t <= T; t++) {
    let settled = 0;
    for (let s = 0; s < S; s++) {
      const v = h[t * S + s];
      if (v <= SETTLED || v >= 1 - SETTLED) settled += p[t * S + s];
    }
    decisionTime[t] = settled - previous;
    previous = settled;
  }
  return {
    expectedHarm,
    harmVariance,
    harmInformation,
    gradNorm,
    fisherMax,
    gradBound,
    horizon,
    decisionTime,
    undecided: 1 - previous,
  };
}

/** T×S×V table of G_t(s,a) = ∂E[H]/∂θ_t(s,a) for per-(t,s) softmax logits θ (zero at sinks). */
export function logitGradient(sc: CompiledScenario, space: RefStateSpace, policy: RefPolicy): Float64Array {
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const pol = resolvePolicy(sc, space, policy);
  const h = conditionalHarmResolved(sc, space, pol);
  const p = forwardResolved(sc, space, pol);
  const pi = new Float64Array(V);
  const G = new Float64Array(T * S * V);
  for (let t = 1; t <= T; t++) {
    const prev = (t - 1) * S;
    const cur = t * S;
    for (let s = 0; s < S; s++) {
      const mass = p[prev + s];
      if (!space.live[s] || mass === 0) continue;
      pol.row(t, s, pi);
      const h0 = h[prev + s];
      const at = (prev + s) * V;
      for (let a = 0; a < V; a++) G[at + a] = mass * pi[a] * (h[cur + space.next[s * V + a]] - h0);
    }
  }
  return G;
}

// ---------------------------------------------------------------------------------------------
// KL, harmful prefixes, prefilling
// ---------------------------------------------------------------------------------------------

/**
 * Per position t (length T): Σ_{live s} weights[(t−1)·S + s] · KL(π_t(·|s) ‖ base(·|s)).
 * States with weight exactly 0 are skipped (so an infinite KL at an unvisited state does not give NaN).
 */
export function klToBase(
  sc: CompiledScenario,
  space: RefStateSpace,
  policy: RefPolicy,
  weights: Float64Array,
): Float64Array {
  const expected = (sc.length + 1) * space.numStates;
  if (weights.length !== expected) {
    throw new Error(`weights have ${weights.length} entries, expected (T+1)×S = ${expected}`);
  }
  return klToBaseResolved(sc, space, resolvePolicy(sc, space, policy), weights);
}

function klToBaseResolved(
  sc: CompiledScenario,
  space: RefStateSpace,
  pol: ResolvedPolicy,
  weights: Float64Array,
): Float64Array {
  const V = sc.tokens.length;
  const T = sc.length;
  const S = space.numStates;
  const scratch = new Float64Array(V);
  const out = new Float64Array(T);
  for (let t = 1; t <= T; t++) {
    let sum = 0;
    for (let s = 0; s < S; s++) {
      const w = weights[(t - 1) * S + s];
      if (!space.live[s] || w === 0) continue;
      sum += w * pol.kl(t, s, scratch);
    }
    out[t - 1] = sum;
  }
  return out;
}

/**
 * State distribution table (T+1)×S of Q = base conditioned on H = 1 (for non-binary harm, base
 * reweighted by H): q_t(s) = p^base_t(s)·h^base_t(s)/E_base[H]. All NaN when E_base[H] = 0.
 */
export function harmfulPrefixWeights(sc: CompiledScenario, space: RefStateSpace): Float64Array {
  const pol = resolvePolicy(sc, space, { kind: 'base' });
  const h = conditionalHarmResolved(sc, space, pol);
  const p = forwardResolved(sc, space, pol);
  const q = new Float64Array(h.length);
  const expected = h[0];
  if (expected === 0) return q.fill(NaN);
  for (let i = 0; i < q.length; i++) q[i] = (p[i] * h[i]) / expected;
  return q;
}

function prefillAsrFromQ(q: Float64Array, h: Float64Array, T: number, S: number): Float64Array {
  const asr = new Float64Array(T + 1);
  for (let k = 0; k <= T; k++) {
    let sum = 0;
    for (let s = 0; s < S; s++) sum += q[k * S + s] * h[k * S + s];
    asr[k] = sum;
  }
  return asr;
}

/** Length T+1: ASR_k = Σ_s q_k(s)·h^π_k(s), the policy's harm after a k-token harmful prefill. */
export function prefillAsr(sc: CompiledScenario, space: RefStateSpace, policy: RefPolicy): Float64Array {
  const q = harmfulPrefixWeights(sc, space);
  const h = conditionalHarm(sc, space, policy);
  return prefillAsrFromQ(q, h, sc.length, space.numStates);
}

// ---------------------------------------------------------------------------------------------
// Full analysis
// ---------------------------------------------------------------------------------------------

export interface RefAnalysis {
  expectedHarm: { base: number; aligned: number };
  harmVariance: number;
  horizon: number;
  /** Length T each. */
  harmInformation: Float64Array;
  gradNorm: Float64Array;
  gradBound: Float64Array;
  klOnPolicy: Float64Array;
  klTeacherForced: Float64Array;
  klPredicted: Float64Array;
  /** Length T+1 each. */
  asrBase: Float64Array;
  asrAligned: Float64Array;
}

/** Base harm profile plus the Gibbs optimum at λ: KL profiles (on-policy, teacher-forced, predicted) and ASR. */
export function analyze(sc: CompiledScenario, lambda: number, tolerance = 1e-12): RefAnalysis {
  const space = buildStateSpace(sc);
  const T = sc.length;
  const S = space.numStates;
  const base: RefPolicy = { kind: 'base' };
  const gibbs: RefPolicy = { kind: 'gibbs', lambda };
  const profile = harmProfile(sc, space, base, tolerance);
  const gibbsResolved = resolvePolicy(sc, space, gibbs);
  const hGibbs = conditionalHarmResolved(sc, space, gibbsResolved);
  const pGibbs = forwardResolved(sc, space, gibbsResolved);
  const q = harmfulPrefixWeights(sc, space);
  const hBase = conditionalHarm(sc, space, base);
  const klPredicted = new Float64Array(T);
  for (let t = 0; t < T; t++) klPredicted[t] = ((lambda * lambda) / 2) * profile.harmInformation[t];
  return {
    expectedHarm: { base: profile.expectedHarm, aligned: hGibbs[0] },
    harmVariance: profile.harmVariance,
    horizon: profile.horizon,
    harmInformation: profile.harmInformation,
    gradNorm: profile.gradNorm,
    gradBound: profile.gradBound,
    klOnPolicy: klToBaseResolved(sc, space, gibbsResolved, pGibbs),
    klTeacherForced: klToBaseResolved(sc, space, gibbsResolved, q),
    klPredicted,
    asrBase: prefillAsrFromQ(q, hBase, T, S),
    asrAligned: prefillAsrFromQ(q, hGibbs, T, S),
  };
}
