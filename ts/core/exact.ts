/**
 * The exact engine: every quantity of the theory by dynamic programming over a scenario's reachable
 * states (context, automaton state), in the Rust core.
 *
 * Sync methods run on the calling thread (fine up to ~10^4 states). The `…Async` methods run the
 * computation on the libuv thread pool (the core then uses all cores through rayon), so the event
 * loop stays free; their inputs are copied before the work starts, so the caller may reuse its
 * arrays at once. Arrays returned are Float64Arrays owned by JavaScript, handed over without copies.
 *
 * Conventions: per-position arrays have length T, index t − 1 for position t = 1..T; tables over
 * positions have (T+1) × S entries at t·S + s; logit tables have T × S × V entries at
 * ((t − 1)·S + s)·V + a. State numbering is described in `compiled.ts`.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { withSignal, type AbortOptions } from './abort.js';
import { callNative } from './errors.js';
import { native, type AnalysisOutput, type ProfileOutput } from './native.js';
import { BASE, nativeScenario, toInput, type MlpShape, type Policy } from './policy.js';

export { BASE, type Policy };

/** Default relative tolerance of the harm horizon: I_t ≤ 1e-12 · Var(H) counts as zero. */
export const DEFAULT_HORIZON_TOLERANCE = 1e-12;

/** The harm martingale of one policy. */
export interface HarmProfile {
  /** E[H]. */
  expectedHarm: number;
  /** Var(H) = Σ_t I_t. */
  harmVariance: number;
  /** I_t = E[(h_t − h_{t−1})²]. */
  harmInformation: Float64Array;
  /** ||G_t||: norm of the gradient of E[H] with respect to position t's softmax logits. */
  gradNorm: Float64Array;
  /** F̄_t = max over reachable states of tr F_t = 1 − Σ_a π_t(a|s)². */
  fisherMax: Float64Array;
  /** sqrt(I_t · F̄_t), an upper bound of ||G_t||. */
  gradBound: Float64Array;
  /** Smallest k with I_t ≤ tolerance·Var(H) (+1e-30 for rounding) for every t > k. */
  horizon: number;
  /** P(τ = t) for t = 0..T, τ the first position at which h_t is 0 or 1 (within 1e-12). */
  decisionTime: Float64Array;
  /** P(τ > T): responses whose harm is never settled (possible only for non-binary harm). */
  undecided: number;
  /** G_t(s, a), T × S × V, when asked for with `gradient: true`. */
  gradient?: Float64Array;
  /** h_t(s), (T+1) × S, when asked for with `conditionalHarm: true`. */
  conditionalHarm?: Float64Array;
}

export interface ProfileOptions {
  /** Relative tolerance of the horizon (default 1e-12). */
  tolerance?: number;
  /** Return the full logit-gradient table (T × S × V). */
  gradient?: boolean;
  /** Return the conditional-harm table ((T+1) × S). */
  conditionalHarm?: boolean;
}

/** The exact analysis of a scenario at one λ. */
export interface Analysis {
  lambda: number;
  /** The base policy's harm profile (gradients are taken at the base). */
  base: HarmProfile;
  /** E[H] under the Gibbs optimum at λ. */
  alignedExpectedHarm: number;
  /** D_t: per-position KL of the Gibbs policy to the base on its own prefixes. */
  klOnPolicy: Float64Array;
  /** The same KL on harmful prefixes of the base (teacher-forced); NaN when E_base[H] = 0. */
  klTeacherForced: Float64Array;
  /** (λ²/2)·I_t, the small-λ prediction of D_t. */
  klPredicted: Float64Array;
  /** Prefilling success ASR_k, k = 0..T, against the base and the Gibbs policy. */
  asrBase: Float64Array;
  asrAligned: Float64Array;
}

export interface EngineOptions {
  /** Refuse state spaces whose engine memory would exceed this many bytes (default 4 GiB). */
  memoryBudgetBytes?: number;
  /**
   * One state per prefix (numbered breadth-first, children in token order) instead of one per
   * (context, automaton state): the state space on which a transformer policy is exact.
   */
  prefixTree?: boolean;
  /**
   * Count one T × S × V table of logits per state in the budget: sampling on the engine, training
   * and attacks build one (the base or a tabular policy as logits, a logit gradient).
   */
  policyTables?: boolean;
}

/** The exact state space of a scenario, built once in the core and analysed many times. */
export class ExactEngine {
  readonly scenario: CompiledScenario;
  /** Whether the states are the prefixes (see EngineOptions.prefixTree). */
  readonly prefixTree: boolean;
  readonly #model: InstanceType<typeof native.ExactModel>;

  constructor(scenario: CompiledScenario, options: EngineOptions = {}) {
    this.scenario = scenario;
    this.prefixTree = options.prefixTree ?? false;
    this.#model = callNative(
      () =>
        new native.ExactModel({ ...nativeScenario(scenario), memoryBudget: options.memoryBudgetBytes, prefixTree: this.prefixTree, policyTables: options.policyTables }),
    );
  }

  /** Number of reachable states S. */
  get numStates(): number {
    return this.#model.numStates;
  }

  /** The state space: context number and automaton state per state, liveness, successor table. */
  states(): { context: Uint32Array; automaton: Uint32Array; live: Uint8Array; next: Uint32Array } {
    return {
      context: this.#model.stateContexts(),
      automaton: this.#model.stateAutomaton(),
      live: this.#model.stateLive(),
      next: this.#model.stateNext(),
    };
  }

  /** The harm martingale of a policy: h_t, I_t, horizon, gradients and their bound, decision times. */
  harmProfile(policy: Policy = BASE, options: ProfileOptions = {}): HarmProfile {
    return toProfile(callNative(() => this.#model.harmProfile(toInput(policy), options)));
  }

  /** `harmProfile` off the main thread; `signal` aborts it (HH_ABORTED). */
  async harmProfileAsync(policy: Policy = BASE, options: ProfileOptions & AbortOptions = {}): Promise<HarmProfile> {
    const { signal, ...profile } = options;
    return toProfile(await withSignal(signal, (flag) => this.#model.harmProfileAsync(toInput(policy), profile, flag)));
  }

  /** The full analysis at λ: base profile, Gibbs optimum's KL profiles, prefilling success. */
  analyze(lambda: number, tolerance = DEFAULT_HORIZON_TOLERANCE): Analysis {
    return toAnalysis(callNative(() => this.#model.analyze(lambda, tolerance)));
  }

  /** `analyze` off the main thread; `signal` aborts it (HH_ABORTED). */
  async analyzeAsync(lambda: number, tolerance = DEFAULT_HORIZON_TOLERANCE, options: AbortOptions = {}): Promise<Analysis> {
    return toAnalysis(await withSignal(options.signal, (flag) => this.#model.analyzeAsync(lambda, tolerance, flag)));
  }

  /** h_t(s) = E[H | state s after t tokens] under a policy, (T+1) × S. */
  conditionalHarm(policy: Policy = BASE): Float64Array {
    return callNative(() => this.#model.conditionalHarm(toInput(policy)));
  }

  /** On-policy per-position KL of a policy to the base (length T). */
  klOnPolicy(policy: Policy): Float64Array {
    return callNative(() => this.#model.klOnPolicy(toInput(policy)));
  }

  /** An mlp's logits at every (position, live state): its tabular form (T × S × V). */
  mlpTabulate(shape: MlpShape, params: Float64Array): Float64Array {
    return callNative(() => this.#model.mlpTabulate(shape, params));
  }

  /**
   * Pulls a gradient with respect to tabulated logits (T × S × V) back to an mlp's parameters:
   * summed over positions (length P), or per position (T × P) with `perPosition`.
   */
  mlpPullBack(shape: MlpShape, params: Float64Array, logitGradient: Float64Array, perPosition = false): Float64Array {
    return callNative(() => this.#model.mlpPullBack(shape, params, logitGradient, perPosition));
  }

  /** Per-position KL(π_a ‖ π_b) on π_a's prefixes; their sum is the KL over whole responses. */
  klBetween(a: Policy, b: Policy): Float64Array {
    return callNative(() => this.#model.klBetween(toInput(a), toInput(b)));
  }

  /** `klBetween` off the main thread; `signal` aborts it (HH_ABORTED). */
  async klBetweenAsync(a: Policy, b: Policy, options: AbortOptions = {}): Promise<Float64Array> {
    return withSignal(options.signal, (flag) => this.#model.klBetweenAsync(toInput(a), toInput(b), flag));
  }

  /** The native model, for the Monte Carlo engine. @internal */
  get native(): InstanceType<typeof native.ExactModel> {
    return this.#model;
  }

  /** Teacher-forced per-position KL on the base's harmful responses, and prefilling success ASR_k. */
  onHarmfulPrefixes(policy: Policy): { klTeacherForced: Float64Array; asr: Float64Array } {
    return callNative(() => this.#model.onHarmfulPrefixes(toInput(policy)));
  }

  /** `onHarmfulPrefixes` off the main thread (the prefilling attack); `signal` aborts it (HH_ABORTED). */
  async onHarmfulPrefixesAsync(policy: Policy, options: AbortOptions = {}): Promise<{ klTeacherForced: Float64Array; asr: Float64Array }> {
    return withSignal(options.signal, (flag) => this.#model.onHarmfulPrefixesAsync(toInput(policy), flag));
  }
}

function toProfile(p: ProfileOutput): HarmProfile {
  const profile: HarmProfile = {
    expectedHarm: p.expectedHarm,
    harmVariance: p.harmVariance,
    harmInformation: p.harmInformation,
    gradNorm: p.gradNorm,
    fisherMax: p.fisherMax,
    gradBound: p.gradBound,
    horizon: p.horizon,
    decisionTime: p.decisionTime,
    undecided: p.undecided,
  };
  if (p.gradient) profile.gradient = p.gradient;
  if (p.conditionalHarm) profile.conditionalHarm = p.conditionalHarm;
  return profile;
}

function toAnalysis(a: AnalysisOutput): Analysis {
  return {
    lambda: a.lambda,
    base: toProfile(a.base),
    alignedExpectedHarm: a.alignedExpectedHarm,
    klOnPolicy: a.klOnPolicy,
    klTeacherForced: a.klTeacherForced,
    klPredicted: a.klPredicted,
    asrBase: a.asrBase,
    asrAligned: a.asrAligned,
  };
}
