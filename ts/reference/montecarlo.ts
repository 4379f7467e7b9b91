/**
 * Pure-TypeScript reference of the Rust Monte Carlo pipeline (crate/core/src/sampling.rs and
 * estimate.rs) for the base policy and tabular policies on the exact state space.
 *
 * It draws the very same random numbers as the Rust core (ts/reference/philox.ts), so samples are
 * identical and estimates agree with the Rust ones up to rounding (the reductions below follow the
 * Rust summation order, so in practice they agree to the last bits; only exp/ln may differ by an ulp).
 *
 * Conventions (see ts/compiled.ts, ts/reference/exact.ts and /work/shared/THEORY.md):
 *  - response n of a batch uses RNG index firstIndex + n; the token at position t (1-based) is drawn
 *    with the first uniform of key (index, t, stream 0, substream 0), by inverse CDF over π(·|prefix);
 *  - rollouts from the prefix of length k of response n, set j ∈ {0, 1}, rollout m, use keys
 *    (index, position, 1 + 2k + j, m);
 *  - per-position arrays are N × T (index n·T + t − 1); state and harm paths are N × (T+1) (index n·(T+1) + t);
 *  - NO_TOKEN = 0xFFFFFFFF marks positions after a response ended.
 *
 * Plain loops over typed arrays; no allocation per token.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import type { RefStateSpace } from './exact.js';
import { drawIndex, firstUniform, seedKey } from './philox.js';

/** The Rust run (crate/core/src/monte_carlo.rs) draws its teacher-forced base responses with
 *  seed XOR this constant (response indices from 0). */
export const TEACHER_FORCED_SEED_MIX = 0x9e3779b97f4a7c15n;

/** The seed of the teacher-forced base responses of a run with this seed. */
export function teacherForcedSeed(seed: number): bigint {
  return BigInt(seed) ^ TEACHER_FORCED_SEED_MIX;
}

/** Marks positions after a response has ended (and prefix entries that are not forced). */
export const NO_TOKEN = 0xffffffff;
/** Exact state index of a walk sampled without a state space. */
export const NO_STATE = 0xffffffff;
/** Responses per chunk in the Rust core's chunked reductions (the order of sums here is the same). */
const DOT_CHUNK = 512;

/** N sampled responses, field for field as the Rust core's `Samples`. */
export interface RefSamples {
  count: number;
  /** RNG index of the first response. */
  firstIndex: number;
  /** T. */
  length: number;
  /** N × T token ids, NO_TOKEN after the end. */
  tokens: Uint32Array;
  /** N × T, ln π(y_t | y_<t) (0 after the end). */
  logProbs: Float64Array;
  /** H per response. */
  harm: Float64Array;
  /** Tokens emitted per response. */
  emitted: Uint32Array;
  /** N × (T+1) exact state after t tokens (the sink state repeated after the end); empty when
   *  sampled without a state space. */
  states: Uint32Array;
}

export interface RefSampleOptions {
  count: number;
  /** Integer in [0, 2^53), or any u64 as a bigint. */
  seed: number | bigint;
  /** Forced first tokens: k entries (shared) or N·k entries (per response, row n = response n), with
   *  NO_TOKEN for entries that are not forced. */
  prefix?: { tokens: ArrayLike<number>; length: number };
  /** RNG index of the first response (default 0). */
  firstIndex?: number;
}

/** Per-position estimates (length T). */
export interface RefEstimate {
  mean: Float64Array;
  se: Float64Array;
  /** (Σc²)²/Σc⁴ over the per-sample deviation terms c of the SE, truncated (0 when all vanish). */
  support: Uint32Array;
}

/** One estimate (Rust `Scalar`). */
export interface RefScalar {
  mean: number;
  se: number;
  support: number;
}

/** h is settled within this distance of 0 or 1 (Rust `SETTLED_TOLERANCE`). */
const SETTLED = 1e-12;

/** ĥ_t along each response, N × (T+1); with rollouts, two independent sets. */
export interface RefHarmPaths {
  first: Float64Array;
  second?: Float64Array;
}

export type RefCoefficient = 'reinforce' | 'leave-one-out' | 'innovation';

export interface RefGradientEstimate {
  /** Ĝ_t blocks, T × (S·V), block t−1 at index (t−1)·S·V + s·V + a. */
  blocks: Float64Array;
  blockLength: number;
  /** ||Ĝ_t||, length T. */
  norm: Float64Array;
  /** (1/N) Σ c²‖s‖² − ‖Ĝ_t‖², clamped at 0, length T. */
  variance: Float64Array;
  /** ⟨Ĝ_t, u_t⟩ with SE and support, when directions are given. */
  projection?: RefEstimate;
}

/** A policy for the reference: tabular logits (T × S × V) or the base model. */
export type RefMcPolicy = Float64Array | 'base';

// ---------------------------------------------------------------------------------------------
// Small numeric helpers, in the Rust core's order of operations
// ---------------------------------------------------------------------------------------------

/** (Σx²)² / Σx⁴ truncated to an integer, 0 when Σx⁴ = 0 (Rust `effective_support`). */
export function effectiveSupport(sumSq: number, sumFourth: number): number {
  if (!(sumFourth > 0)) return 0;
  const x = (sumSq * sumSq) / sumFourth;
  // Rust `as u32` saturates and maps NaN to 0.
  if (!(x > 0)) return 0;
  return x >= 4294967295 ? 4294967295 : Math.floor(x);
}

/** Mean and standard error of the mean from Σx, Σx², n (Rust `mean_and_se`; SE NaN when n < 2). */
export function meanAndSe(sum: number, sumSq: number, n: number): [number, number] {
  const mean = sum / n;
  if (n < 2) return [mean, NaN];
  const v = (sumSq - n * mean * mean) / (n - 1);
  const variance = v > 0 ? v : 0; // f64::max(v, 0): NaN → 0
  return [mean, Math.sqrt(variance / n)];
}

/** out = softmax(logits[at .. at+V]), shifted by the max (Rust `softmax`). */
function softmaxInto(logits: Float64Array, at: number, v: number, out: Float64Array): void {
  let max = -Infinity;
  for (let a = 0; a < v; a++) {
    const x = logits[at + a]!;
    if (x > max) max = x;
  }
  let sum = 0;
  for (let a = 0; a < v; a++) {
    const e = Math.exp(logits[at + a]! - max);
    out[a] = e;
    sum += e;
  }
  for (let a = 0; a < v; a++) out[a] = out[a]! / sum;
}

/** KL(q ‖ p) = Σ_{q>0} q·ln(q/p), +∞ where q > 0 = p (Rust `kl_divergence`). */
function klDivergence(q: Float64Array, p: Float64Array, v: number): number {
  let sum = 0;
  for (let a = 0; a < v; a++) {
    const qa = q[a]!;
    if (qa > 0) {
      const pa = p[a]!;
      sum += pa > 0 ? qa * Math.log(qa / pa) : Infinity;
    }
  }
  return sum;
}

/** Σ w·x in the Rust core's deterministic order (`dot`: partial sums per 512 entries, then added). */
function dot(w: Float64Array, wAt: number, x: Float64Array, xAt: number, len: number): number {
  let total = 0;
  for (let start = 0; start < len; start += DOT_CHUNK) {
    const end = Math.min(len, start + DOT_CHUNK);
    let part = 0;
    for (let i = start; i < end; i++) part += w[wAt + i]! * x[xAt + i]!;
    total += part;
  }
  return total;
}

/**
 * E[x] from per-sample values x(n) (Rust `reduce`): unweighted, the mean and its SE; weighted, the
 * self-normalised Σw·x/Σw with the delta-method SE sqrt(Σ(w·(x − mean))²)/Σw. The support is
 * (Σc²)²/Σc⁴ over the deviation terms c (x − mean, or w·(x − mean)/Σw).
 */
export function reduce(count: number, weights: ArrayLike<number> | undefined, x: (n: number) => number): RefScalar {
  // Every sample alike: that value exactly, SE 0, support 0 (as Rust).
  let constant = true;
  for (let n = 1; n < count && constant; n++) constant = x(n) === x(0);
  if (constant) return { mean: x(0), se: !weights && count < 2 ? NaN : 0, support: 0 };
  let s2 = 0;
  let s4 = 0;
  const add = (c: number) => {
    const c2 = c * c;
    s2 += c2;
    s4 += c2 * c2;
  };
  if (!weights) {
    let sum = 0;
    for (let n = 0; n < count; n++) sum += x(n);
    const mean = sum / count;
    for (let n = 0; n < count; n++) add(x(n) - mean);
    const se = count < 2 ? NaN : Math.sqrt(s2 / (count - 1) / count);
    return { mean, se, support: effectiveSupport(s2, s4) };
  }
  let total = 0;
  for (let n = 0; n < count; n++) total += weights[n]!;
  let sum = 0;
  for (let n = 0; n < count; n++) sum += weights[n]! * x(n);
  const mean = sum / total;
  for (let n = 0; n < count; n++) add((weights[n]! * (x(n) - mean)) / total);
  return { mean, se: Math.sqrt(s2), support: effectiveSupport(s2, s4) };
}

/** Reduces count × width values to per-column estimates, responses in order (Rust `per_position`). */
function perPosition(values: Float64Array, count: number, width: number, weights?: ArrayLike<number>): RefEstimate {
  const mean = new Float64Array(width);
  const se = new Float64Array(width);
  const support = new Uint32Array(width);
  for (let t = 0; t < width; t++) {
    const r = reduce(count, weights, (n) => values[n * width + t]!);
    mean[t] = r.mean;
    se[t] = r.se;
    support[t] = r.support;
  }
  return { mean, se, support };
}

// ---------------------------------------------------------------------------------------------
// Walks
// ---------------------------------------------------------------------------------------------

/** A walk through the scenario: where a prefix stands (Rust `Walk`, without its token buffer). */
interface Walk {
  emitted: number;
  context: number;
  automaton: number;
  /** Exact state index (NO_STATE without a state space). */
  state: number;
  ended: boolean;
}

/** The scenario (and optionally its state space) walks move through (Rust `Track`). */
class Track {
  readonly v: number;
  readonly tMax: number;
  readonly numContexts: number;
  /** Base rows as the Rust core holds them: with a state space, the rows of contexts of live
   *  states divided by their sum (Rust `Model::new`); without, every non-zero row (`prepared`). */
  readonly base: Float64Array;

  constructor(
    readonly sc: CompiledScenario,
    readonly space: RefStateSpace | null,
  ) {
    const v = sc.tokens.length;
    this.v = v;
    this.tMax = sc.length;
    this.numContexts = (v + 1) ** sc.order;
    this.base = normalisedBase(sc, space);
  }

  start(): Walk {
    return { emitted: 0, context: this.numContexts - 1, automaton: this.sc.start, state: this.space ? 0 : NO_STATE, ended: false };
  }

  reset(w: Walk): void {
    w.emitted = 0;
    w.context = this.numContexts - 1;
    w.automaton = this.sc.start;
    w.state = this.space ? 0 : NO_STATE;
    w.ended = false;
  }

  copy(to: Walk, from: Walk): void {
    to.emitted = from.emitted;
    to.context = from.context;
    to.automaton = from.automaton;
    to.state = from.state;
    to.ended = from.ended;
  }

  finished(w: Walk): boolean {
    return w.ended || w.emitted >= this.tMax;
  }

  advance(w: Walk, token: number): void {
    const v = this.v;
    if (this.space) w.state = this.space.next[w.state * v + token]!;
    w.context = (w.context * (v + 1) + token) % this.numContexts;
    w.automaton = this.sc.transitions[w.automaton * v + token]!;
    w.ended = this.sc.endToken === token;
    w.emitted++;
  }

  harm(w: Walk): number {
    return this.sc.harm[w.automaton]!;
  }

  /** π(· | walk) for the token at position walk.emitted + 1, into out. */
  probs(policy: RefMcPolicy, w: Walk, out: Float64Array): void {
    const v = this.v;
    if (policy === 'base') {
      const at = w.context * v;
      for (let a = 0; a < v; a++) out[a] = this.base[at + a]!;
    } else {
      const S = this.space!.numStates;
      softmaxInto(policy, (w.emitted * S + w.state) * v, v, out);
    }
  }
}

/**
 * The base rows as the Rust core holds them: each row that is used (with a state space: the contexts
 * of live states, as Rust `Model::new`; without: every non-zero row, as `ScenarioSpec::prepared`) is
 * divided by its sum once more.
 */
function normalisedBase(sc: CompiledScenario, space: RefStateSpace | null): Float64Array {
  const v = sc.tokens.length;
  const base = Float64Array.from(sc.base);
  const rows = base.length / v;
  const used = new Uint8Array(rows);
  if (space) {
    for (let s = 0; s < space.numStates; s++) if (space.live[s]) used[space.context[s]!] = 1;
  } else {
    for (let c = 0; c < rows; c++) for (let a = 0; a < v; a++) if (base[c * v + a] !== 0) used[c] = 1;
  }
  for (let c = 0; c < rows; c++) {
    if (!used[c]) continue;
    let sum = 0;
    for (let a = 0; a < v; a++) sum += base[c * v + a]!;
    for (let a = 0; a < v; a++) base[c * v + a] = base[c * v + a]! / sum;
  }
  return base;
}

function checkPolicy(sc: CompiledScenario, space: RefStateSpace | null, policy: RefMcPolicy): void {
  if (policy === 'base') return;
  if (!space) throw new Error('a tabular policy needs the state space');
  const expected = sc.length * space.numStates * sc.tokens.length;
  if (policy.length !== expected) throw new Error(`tabular logits have ${policy.length} entries, expected T × S × V = ${expected}`);
}

// ---------------------------------------------------------------------------------------------
// Sampling
// ---------------------------------------------------------------------------------------------

/**
 * `tilt`: sample the per-token tilt of the policy instead (Rust `TokenTilt`): each row multiplied by
 * e^{κ·harm(automaton state the token leads to)} and divided by its sum.
 */
function sampleWith(sc: CompiledScenario, space: RefStateSpace | null, policy: RefMcPolicy, options: RefSampleOptions, tilt?: number): RefSamples {
  checkPolicy(sc, space, policy);
  const track = new Track(sc, space);
  const { count, seed } = options;
  const firstIndex = options.firstIndex ?? 0;
  const tMax = sc.length;
  const v = sc.tokens.length;
  if (!Number.isInteger(count) || count < 1) throw new Error('the number of samples must be at least 1');
  if (firstIndex + count > 0xffffffff) throw new Error('at most 2^32 − 1 responses per seed');
  const prefix = options.prefix;
  let shared = true;
  if (prefix) {
    if (prefix.length > tMax) throw new Error(`prefix length ${prefix.length} exceeds T = ${tMax}`);
    if (prefix.tokens.length !== prefix.length && prefix.tokens.length !== prefix.length * count) {
      throw new Error(`prefix tokens: ${prefix.tokens.length} entries, expected k = ${prefix.length} or N·k = ${prefix.length * count}`);
    }
    shared = prefix.tokens.length === prefix.length;
    for (let i = 0; i < prefix.tokens.length; i++) {
      const a = prefix.tokens[i]! >>> 0;
      if (a !== NO_TOKEN && a >= v) throw new Error(`prefix token ${a} is not below V = ${v}`);
    }
  }
  const [k0, k1] = seedKey(seed);

  const tokens = new Uint32Array(count * tMax).fill(NO_TOKEN);
  const logProbs = new Float64Array(count * tMax);
  const harm = new Float64Array(count);
  const emitted = new Uint32Array(count);
  const stride = tMax + 1;
  const states = space ? new Uint32Array(count * stride).fill(NO_STATE) : new Uint32Array(0);

  const factor = tilt === undefined ? null : Float64Array.from(sc.transitions, (d) => Math.exp(tilt * sc.harm[d]!));
  const walk = track.start();
  const row = new Float64Array(v);
  for (let n = 0; n < count; n++) {
    track.reset(walk);
    const index = firstIndex + n;
    for (let t = 0; t <= tMax; t++) {
      if (space) states[n * stride + t] = walk.state;
      if (track.finished(walk)) {
        // A finished response stays in its (sink) state for the remaining positions.
        if (space) states.fill(walk.state, n * stride + t, (n + 1) * stride);
        break;
      }
      let forced = NO_TOKEN;
      if (prefix && t < prefix.length) {
        const at = shared ? t : n * prefix.length + t;
        forced = prefix.tokens[at]! >>> 0;
      }
      track.probs(policy, walk, row);
      if (factor) {
        let total = 0;
        for (let a = 0; a < v; a++) total += (row[a] = row[a]! * factor[walk.automaton * v + a]!);
        for (let a = 0; a < v; a++) row[a] = row[a]! / total;
      }
      const token = forced !== NO_TOKEN ? forced : drawIndex(row, firstUniform(k0, k1, index, t + 1, 0, 0));
      tokens[n * tMax + t] = token;
      logProbs[n * tMax + t] = Math.log(row[token]!);
      track.advance(walk, token);
    }
    harm[n] = track.harm(walk);
    emitted[n] = walk.emitted;
  }
  return { count, firstIndex, length: tMax, tokens, logProbs, harm, emitted, states };
}

/** Samples N responses of a tabular policy (logits T × S × V), as Rust `sample` with an exact model. */
export function sampleTabular(sc: CompiledScenario, space: RefStateSpace, logits: Float64Array, options: RefSampleOptions): RefSamples {
  return sampleWith(sc, space, logits, options);
}

/** Samples N responses of the base model (rows by context; same draws as any other policy). With a
 *  state space the states are recorded and the base rows are those of the Rust exact model. */
/** Samples N responses from the per-token tilt of a policy by κ (Rust `TokenTilt`), log q recorded. */
export function sampleTokenTilt(sc: CompiledScenario, space: RefStateSpace | null, policy: RefMcPolicy, kappa: number, options: RefSampleOptions): RefSamples {
  return sampleWith(sc, space, policy, options, kappa);
}

export function sampleBase(sc: CompiledScenario, space: RefStateSpace | null, options: RefSampleOptions): RefSamples {
  return sampleWith(sc, space, 'base', options);
}

// ---------------------------------------------------------------------------------------------
// Harm paths, E[H], I_t
// ---------------------------------------------------------------------------------------------

/** E[H] with its standard error and support (weighted: self-normalised). */
export function expectedHarm(samples: RefSamples, weights?: ArrayLike<number>): RefScalar {
  return reduce(samples.count, weights, (n) => samples.harm[n]!);
}

/** h_t along each response from the exact table hTable ((T+1) × S) of the sampled policy. */
export function harmPathsExact(sc: CompiledScenario, space: RefStateSpace, samples: RefSamples, hTable: Float64Array): RefHarmPaths {
  const stride = samples.length + 1;
  const S = space.numStates;
  if (samples.states.length !== samples.count * stride) throw new Error('exact h needs samples drawn with the state space');
  if (hTable.length !== stride * S) throw new Error(`h table has ${hTable.length} entries, expected (T+1) × S = ${stride * S}`);
  void sc;
  const first = new Float64Array(samples.count * stride);
  for (let i = 0; i < first.length; i++) first[i] = hTable[(i % stride) * S + samples.states[i]!]!;
  return { first };
}

/**
 * ĥ_t by nested rollouts: from the prefix of length k = 0..T of each response, two independent sets
 * of M continuations under `policy`; ĥ^j_k is their mean harm.
 */
export function harmPathsRollouts(
  sc: CompiledScenario,
  space: RefStateSpace | null,
  policy: RefMcPolicy,
  samples: RefSamples,
  rollouts: number,
  seed: number | bigint,
): RefHarmPaths {
  checkPolicy(sc, space, policy);
  if (!Number.isInteger(rollouts) || rollouts < 1) throw new Error('rollouts must be at least 1');
  const track = new Track(sc, space);
  const [k0, k1] = seedKey(seed);
  const tMax = samples.length;
  const stride = tMax + 1;
  const sets = [new Float64Array(samples.count * stride), new Float64Array(samples.count * stride)];
  const prefix = track.start();
  const walk = track.start();
  const row = new Float64Array(sc.tokens.length);
  for (let n = 0; n < samples.count; n++) {
    const index = samples.firstIndex + n;
    track.reset(prefix);
    for (let k = 0; k <= tMax; k++) {
      for (let set = 0; set < 2; set++) {
        let total = 0;
        for (let m = 0; m < rollouts; m++) {
          track.copy(walk, prefix);
          while (!track.finished(walk)) {
            track.probs(policy, walk, row);
            const token = drawIndex(row, firstUniform(k0, k1, index, walk.emitted + 1, 1 + 2 * k + set, m));
            track.advance(walk, token);
          }
          total += track.harm(walk);
        }
        sets[set]![n * stride + k] = total / rollouts;
      }
      const token = k < tMax ? samples.tokens[n * tMax + k]! : NO_TOKEN;
      if (token !== NO_TOKEN) track.advance(prefix, token);
    }
  }
  return { first: sets[0]!, second: sets[1]! };
}

/** I_t: mean of Δ_t² (exact h) or of Δ¹_t·Δ²_t (two rollout sets), with SE and support. */
export function harmInformation(samples: RefSamples, paths: RefHarmPaths, weights?: ArrayLike<number>): RefEstimate {
  const tMax = samples.length;
  const stride = tMax + 1;
  const values = new Float64Array(samples.count * tMax);
  const h1 = paths.first;
  const h2 = paths.second;
  for (let n = 0; n < samples.count; n++) {
    for (let t = 1; t <= tMax; t++) {
      const d1 = h1[n * stride + t]! - h1[n * stride + t - 1]!;
      const d2 = h2 ? h2[n * stride + t]! - h2[n * stride + t - 1]! : d1;
      values[n * tMax + t - 1] = d1 * d2;
    }
  }
  return perPosition(values, samples.count, tMax, weights);
}

const settled = (h: number) => h <= SETTLED || h >= 1 - SETTLED;

/**
 * τ per response, the first t with ĥ_t ∈ {0, 1} (both rollout sets, when there are two), or T + 1
 * when h never settles (Rust `decision_times`).
 */
export function decisionTimes(paths: RefHarmPaths, count: number, length: number): Uint32Array {
  const stride = length + 1;
  const out = new Uint32Array(count).fill(stride);
  for (let n = 0; n < count; n++) {
    for (let t = 0; t <= length; t++) {
      const at = n * stride + t;
      if (settled(paths.first[at]!) && (!paths.second || settled(paths.second[at]!))) {
        out[n] = t;
        break;
      }
    }
  }
  return out;
}

/** P̂(τ = t) for t = 0..T and P̂(τ > T) (Rust `decision_time_histogram`). */
export function decisionTimeHistogram(times: Uint32Array, length: number, weights?: ArrayLike<number>): { histogram: RefEstimate; undecided: RefScalar } {
  const count = times.length;
  const width = length + 2;
  const values = new Float64Array(count * width);
  for (let n = 0; n < count; n++) values[n * width + times[n]!] = 1;
  const all = perPosition(values, count, width, weights);
  return {
    histogram: { mean: all.mean.slice(0, length + 1), se: all.se.slice(0, length + 1), support: all.support.slice(0, length + 1) },
    undecided: { mean: all.mean[length + 1]!, se: all.se[length + 1]!, support: all.support[length + 1]! },
  };
}

/** Δ̂_t(n) = ĥ_t − ĥ_{t−1} (the mean of the two sets with rollouts). */
function innovation(paths: RefHarmPaths, n: number, t: number, stride: number): number {
  const d1 = paths.first[n * stride + t]! - paths.first[n * stride + t - 1]!;
  if (!paths.second) return d1;
  const d2 = paths.second[n * stride + t]! - paths.second[n * stride + t - 1]!;
  return 0.5 * (d1 + d2);
}

// ---------------------------------------------------------------------------------------------
// Gradient of E[H] with respect to the tabular logits
// ---------------------------------------------------------------------------------------------

/**
 * Ĝ_t = (1/N) Σ_n c_{n,t}·(e_{y_t} − π_t(·|s)) on the row of the sampled state s, per position, with
 * c = H (REINFORCE), H − mean of the others' H (leave-one-out) or Δ̂_t (innovation, needs paths).
 * Contributions are summed per (state, token) in response order, states in increasing order — the
 * Rust covariance kernel's order.
 */
export function estimateGradientTabular(
  sc: CompiledScenario,
  space: RefStateSpace,
  logits: Float64Array,
  samples: RefSamples,
  coefficient: RefCoefficient,
  paths?: RefHarmPaths,
  directions?: Float64Array,
): RefGradientEstimate {
  checkPolicy(sc, space, logits);
  const { count, length: tMax } = samples;
  const v = sc.tokens.length;
  const S = space.numStates;
  const blockLength = S * v;
  const stride = tMax + 1;
  if (coefficient === 'innovation' && !paths) throw new Error('the innovation estimator needs h_t (exact or rollouts)');
  if (coefficient === 'leave-one-out' && count < 2) throw new Error('the leave-one-out baseline needs at least 2 samples');
  if (directions && directions.length !== tMax * blockLength) {
    throw new Error(`directions: ${directions.length} entries, expected T × block = ${tMax * blockLength}`);
  }

  // States along each response (replayed, so any samples with these tokens will do).
  const keys = new Uint32Array(count * tMax);
  for (let n = 0; n < count; n++) {
    let s = 0;
    for (let t = 0; t < tMax; t++) {
      const token = samples.tokens[n * tMax + t]!;
      if (token === NO_TOKEN) break;
      keys[n * tMax + t] = s;
      s = space.next[s * v + token]!;
    }
  }
  let harmTotal = 0;
  for (let n = 0; n < count; n++) harmTotal += samples.harm[n]!;
  const coef = (n: number, t: number): number => {
    if (coefficient === 'reinforce') return samples.harm[n]!;
    if (coefficient === 'leave-one-out') return samples.harm[n]! - (harmTotal - samples.harm[n]!) / (count - 1);
    return innovation(paths!, n, t + 1, stride);
  };

  const blocks = new Float64Array(tMax * blockLength);
  const norm = new Float64Array(tMax);
  const variance = new Float64Array(tMax);
  const projection: RefEstimate = { mean: new Float64Array(tMax).fill(NaN), se: new Float64Array(tMax).fill(NaN), support: new Uint32Array(tMax) };

  // Per-(state, token) sums of c, c², c³, c⁴ at the current position, and the states visited there.
  const sumC = new Float64Array(blockLength);
  const sumC2 = new Float64Array(blockLength);
  const sumC3 = new Float64Array(blockLength);
  const sumC4 = new Float64Array(blockLength);
  const want = new Uint8Array(blockLength);
  const seen = new Uint8Array(S);
  const visited = new Uint32Array(Math.min(S, count));
  const pi = new Float64Array(v);

  for (let t = 0; t < tMax; t++) {
    let nVisited = 0;
    for (let n = 0; n < count; n++) {
      const a = samples.tokens[n * tMax + t]!;
      if (a === NO_TOKEN) continue;
      const s = keys[n * tMax + t]!;
      const c = coef(n, t);
      const i = s * v + a;
      sumC[i] = sumC[i]! + c;
      sumC2[i] = sumC2[i]! + c * c;
      sumC3[i] = sumC3[i]! + c * c * c;
      sumC4[i] = sumC4[i]! + c * c * c * c;
      want[i] = 1;
      if (!seen[s]) {
        seen[s] = 1;
        visited[nVisited++] = s;
      }
    }
    const order = visited.subarray(0, nVisited).sort();
    const blockAt = t * blockLength;
    let sqNormSum = 0;
    let projSum = 0;
    let projSqSum = 0;
    let projCubeSum = 0;
    let projFourthSum = 0;
    for (const s of order) {
      softmaxInto(logits, (t * S + s) * v, v, pi);
      let total = 0;
      for (let a = 0; a < v; a++) total += sumC[s * v + a]!;
      for (let a = 0; a < v; a++) blocks[blockAt + s * v + a] = blocks[blockAt + s * v + a]! + (sumC[s * v + a]! - total * pi[a]!);
      // ∇log π(a) = e_a − π on this state's logits: ||·||² = 1 − 2π_a + Σπ², ⟨·, u⟩ = u_a − ⟨π, u⟩.
      let purity = 0;
      for (let a = 0; a < v; a++) purity += pi[a]! * pi[a]!;
      const meanU = directions ? dot(pi, 0, directions, blockAt + s * v, v) : 0;
      for (let a = 0; a < v; a++) {
        const i = s * v + a;
        if (!want[i]) continue;
        const sqNorm = 1 - 2 * pi[a]! + purity;
        const proj = directions ? directions[blockAt + i]! - meanU : 0;
        sqNormSum += sumC2[i]! * sqNorm;
        projSum += sumC[i]! * proj;
        const p2 = proj * proj;
        projSqSum += sumC2[i]! * p2;
        projCubeSum += sumC3[i]! * (p2 * proj);
        projFourthSum += sumC4[i]! * (p2 * p2);
        sumC[i] = 0;
        sumC2[i] = 0;
        sumC3[i] = 0;
        sumC4[i] = 0;
        want[i] = 0;
      }
      seen[s] = 0;
    }
    for (let i = blockAt; i < blockAt + blockLength; i++) blocks[i] = blocks[i]! / count;
    const normSq = dot(blocks, blockAt, blocks, blockAt, blockLength);
    norm[t] = Math.sqrt(normSq);
    const varT = sqNormSum / count - normSq;
    variance[t] = varT > 0 ? varT : 0;
    if (directions) {
      const [m, se] = meanAndSe(projSum, projSqSum, count);
      projection.mean[t] = m;
      projection.se[t] = se;
      // Central moments of the projections from their power sums.
      const central2 = Math.max(projSqSum - count * m * m, 0);
      const central4 = Math.max(projFourthSum - 4 * m * projCubeSum + 6 * m * m * projSqSum - 3 * count * (m * m * (m * m)), 0);
      projection.support[t] = effectiveSupport(central2, central4);
    }
  }
  return { blocks, blockLength, norm, variance, ...(directions ? { projection } : {}) };
}

// ---------------------------------------------------------------------------------------------
// KL along sampled prefixes
// ---------------------------------------------------------------------------------------------

/**
 * Per-position KL(π(·|prefix) ‖ ρ(·|prefix)) on the sampled prefixes, ρ the base row of the prefix's
 * context, exactly over the vocabulary; 0 at positions after a response ended. Unweighted: mean and
 * SE over all N responses. Weighted (e.g. weights H_n for teacher forcing on harmful responses):
 * mean Σw·x/Σw and the delta-method SE sqrt(Σ(w(x − mean))²)/Σw.
 */
export function klAlong(
  sc: CompiledScenario,
  space: RefStateSpace | null,
  policy: RefMcPolicy,
  samples: RefSamples,
  weights?: ArrayLike<number>,
): RefEstimate {
  checkPolicy(sc, space, policy);
  const track = new Track(sc, space);
  const { count, length: tMax } = samples;
  const v = sc.tokens.length;
  const values = new Float64Array(count * tMax);
  const walk = track.start();
  const p = new Float64Array(v);
  const q = new Float64Array(v);
  for (let n = 0; n < count; n++) {
    track.reset(walk);
    for (let t = 0; t < tMax; t++) {
      const token = samples.tokens[n * tMax + t]!;
      if (token === NO_TOKEN) break;
      track.probs(policy, walk, p);
      track.probs('base', walk, q);
      values[n * tMax + t] = klDivergence(p, q, v);
      track.advance(walk, token);
    }
  }
  if (weights) {
    let total = 0;
    for (let n = 0; n < count; n++) total += weights[n]!;
    if (!(total > 0)) throw new Error('the weights of the prefixes sum to 0 (no harmful sample)');
  }
  return perPosition(values, count, tMax, weights);
}

// ---------------------------------------------------------------------------------------------
// Importance sampling: the exact tilt q ∝ P·e^{κH} and the likelihood ratios
// ---------------------------------------------------------------------------------------------

/** π_t(·|s) of a policy at a live state (base rows as the Rust exact model holds them). */
function rowAt(track: Track, policy: RefMcPolicy, t: number, s: number, out: Float64Array): void {
  const space = track.space!;
  track.probs(policy, { emitted: t - 1, context: space.context[s]!, automaton: space.automaton[s]!, state: s, ended: false }, out);
}

/**
 * The exact tilt of a policy (Rust `ExactTilt`) as tabular logits T × S × V: q_t(a|s) =
 * π_t(a|s)·Z_t(s·a)/Z_{t−1}(s), Z_t(s) = E_π[e^{κH} | s at t] by backward induction.
 */
export function exactTiltLogits(sc: CompiledScenario, space: RefStateSpace, policy: RefMcPolicy, kappa: number): Float64Array {
  checkPolicy(sc, space, policy);
  const track = new Track(sc, space);
  const S = space.numStates;
  const v = sc.tokens.length;
  const tMax = sc.length;
  const z = new Float64Array((tMax + 1) * S);
  for (let s = 0; s < S; s++) z[tMax * S + s] = Math.exp(kappa * sc.harm[space.automaton[s]!]!);
  const row = new Float64Array(v);
  for (let t = tMax; t >= 1; t--) {
    for (let s = 0; s < S; s++) {
      if (!space.live[s]) {
        z[(t - 1) * S + s] = z[t * S + s]!;
        continue;
      }
      rowAt(track, policy, t, s, row);
      let sum = 0;
      for (let a = 0; a < v; a++) sum += row[a]! * z[t * S + space.next[s * v + a]!]!;
      z[(t - 1) * S + s] = sum;
    }
  }
  const logits = new Float64Array(tMax * S * v);
  for (let t = 1; t <= tMax; t++) {
    for (let s = 0; s < S; s++) {
      if (!space.live[s]) continue;
      rowAt(track, policy, t, s, row);
      for (let a = 0; a < v; a++) logits[((t - 1) * S + s) * v + a] = Math.log(row[a]! * (z[t * S + space.next[s * v + a]!]! / z[(t - 1) * S + s]!));
    }
  }
  return logits;
}

/**
 * Likelihood ratios w_n ∝ P(y_n)/q(y_n) of responses drawn from a proposal (their logProbs are
 * log q), scaled so that the largest is 1 (Rust `importance_weights`).
 */
export function importanceWeights(sc: CompiledScenario, space: RefStateSpace | null, target: RefMcPolicy, samples: RefSamples): Float64Array {
  const track = new Track(sc, space);
  const tMax = samples.length;
  const row = new Float64Array(sc.tokens.length);
  const walk = track.start();
  const logW = new Float64Array(samples.count);
  for (let n = 0; n < samples.count; n++) {
    track.reset(walk);
    let acc = 0;
    for (let t = 0; t < tMax; t++) {
      const token = samples.tokens[n * tMax + t]!;
      if (token === NO_TOKEN) {
        acc += 0 - samples.logProbs[n * tMax + t]!;
        continue;
      }
      track.probs(target, walk, row);
      acc += Math.log(row[token]!) - samples.logProbs[n * tMax + t]!;
      track.advance(walk, token);
    }
    logW[n] = acc;
  }
  let top = -Infinity;
  for (const l of logW) top = Math.max(top, l);
  return logW.map((l) => Math.exp(l - top));
}

/** Kish's effective sample size (Σw)²/Σw². */
export function effectiveSampleSize(weights: Float64Array): number {
  let s = 0;
  let s2 = 0;
  for (const w of weights) {
    s += w;
    s2 += w * w;
  }
  return (s * s) / s2;
}
