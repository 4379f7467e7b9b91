/**
 * The Monte Carlo engine: sampled responses and estimates with standard errors, in the Rust core.
 *
 * Draws come from a counter-based generator (Philox4x32-10) keyed by (seed, response index,
 * position, stream), so the same seed gives bit-identical samples whatever the thread count or
 * batch split. Sync methods run on the calling thread; `estimateAsync` copies its inputs and runs
 * on the libuv thread pool (the core uses all cores), leaving the event loop free.
 *
 * Tabular and Gibbs policies live on exact states and need the scenario's ExactEngine; the base and
 * mlp policies can be sampled on scenarios too large to enumerate.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { withSignal, type AbortOptions } from './abort.js';
import { callNative, HarmHorizonError } from './errors.js';
import type { ExactEngine } from './exact.js';
import { native, type SamplesOutput } from './native.js';
import { nativeScenario, toInput, type Policy } from './policy.js';

/** Marks token slots after a response has ended. */
export const NO_TOKEN = 0xffffffff;

export interface SampleOptions {
  /** Number of responses N. */
  count: number;
  /** Seed (a whole number below 2^53). */
  seed: number;
  /** Forced first tokens: k shared by all responses, or N·k (a row per response). */
  prefix?: Uint32Array;
  /** k (default: prefix.length). */
  prefixLength?: number;
  /** RNG index of the first response (default 0): a batch at offset b reproduces rows b.. of one big sample. */
  firstIndex?: number;
  /**
   * Sample the rank-assisted attacker against the policy instead: at each step, of the policy's top
   * r tokens, the one leading to the highest base conditional harm (needs the exact engine).
   */
  rankAssisted?: number;
}

/** N sampled responses; per-position arrays are N × T (row n = response n). */
export interface SampleBatch {
  count: number;
  length: number;
  firstIndex: number;
  /** Token ids, NO_TOKEN after the end. */
  tokens: Uint32Array;
  /** log π(y_t | y_<t), 0 after the end. */
  logProbs: Float64Array;
  harm: Float64Array;
  /** Tokens emitted. */
  emitted: Uint32Array;
  /** Exact state after t tokens, N × (T+1), when the exact engine is used. */
  states?: Uint32Array;
}

/** Per-position estimates (length T) with standard errors. */
export interface Estimate {
  mean: Float64Array;
  se: Float64Array;
  /**
   * Effective number of samples carrying the variance, (Σc²)²/Σc⁴ over the per-sample deviation
   * terms c of the SE: trust the SE only when it is not small (rare events drawn a few times, or not at all).
   */
  support: Uint32Array;
}

/** One estimate with its standard error and effective support. */
export interface ScalarEstimate {
  mean: number;
  se: number;
  support: number;
}

/**
 * Where `estimate` draws responses from: the policy, the policy tilted toward harm, or the
 * information proposal aimed at the innovations behind each I_t (importance sampling).
 */
export type Proposal = 'policy' | 'tilted' | 'information';

/** κ of the tilted proposal when `tilt` is not given (the core's DEFAULT_TILT). */
export const DEFAULT_TILT = 3;

export type GradientEstimator = 'reinforce' | 'leave-one-out' | 'innovation';

export interface EstimateOptions {
  /** Number of sampled responses N. */
  samples: number;
  seed: number;
  /** Where h_t comes from: "exact" (needs the ExactEngine), "rollouts" (nested), or none (no I_t). */
  harm?: 'exact' | 'rollouts';
  /** Rollouts M per prefix and set (default 16). */
  rollouts?: number;
  /** Estimate the per-position gradients of E[H] with this estimator. */
  gradient?: GradientEstimator;
  /** Unit directions (T × blockLength) to project the gradient on, with standard errors. */
  directions?: Float64Array;
  /** Also estimate the KL on harmful base responses (teacher forcing; Q = base reweighted by H). */
  teacherForced?: boolean;
  /**
   * "tilted": draw the responses from q ∝ P·e^{κH} (exactly through the exact states with the
   * ExactEngine, else per token by the harm of the automaton state each token leads to) and reweight
   * by P/q, self-normalised. Not with `gradient`.
   * "information" (needs the ExactEngine): draw from the defensive mixture q = (p + Σ_{t∈S} q_t)/K,
   * q_t = p·Δ_t²/I_t the zero-variance proposal for I_t, S the positions with I_t > 0, K = |S| + 1.
   * The weights w = p/q = K/(1 + Σ_{t∈S} Δ_t²/I_t) are exact and at most K. Estimates are
   * self-normalised, gradients (allowed here) the unnormalised (1/N)·Σ w·c·s.
   */
  proposal?: Proposal;
  /** κ of the tilted proposal (default DEFAULT_TILT), |κ| ≤ 700. */
  tilt?: number;
}

export interface Estimates {
  samples: number;
  expectedHarm: number;
  expectedHarmSE: number;
  expectedHarmSupport: number;
  /**
   * P̂(τ = t) for t = 0..T (length T + 1), τ the first t with h_t ∈ {0, 1} (tolerance 1e-12, as the
   * exact engine). With rollouts, the first t at which all 2M continuations from y_≤t have the same
   * harm, 0 or 1: never later than τ, equal to it as M grows. Present when h_t is (`harm` given).
   * A plain array of the estimates (as in earlier versions, which tools read), with the SEs and
   * supports beside it, as for E[H].
   */
  decisionTime?: Float64Array;
  decisionTimeSE?: Float64Array;
  decisionTimeSupport?: Uint32Array;
  /** P̂(τ > T): the harm never settles (non-binary harm). */
  undecided?: ScalarEstimate;
  /** I_t: mean of Δ_t² (exact h) or of Δ¹_t·Δ²_t from two independent rollout sets (unbiased). */
  harmInformation?: Estimate;
  /** KL(π ‖ base) per position on the policy's own prefixes. */
  klOnPolicy: Estimate;
  klTeacherForced?: Estimate;
  gradient?: {
    /** Ĝ_t, T × blockLength (tabular: the position's S × V logits; mlp: all P parameters). */
    blocks: Float64Array;
    blockLength: number;
    norm: Float64Array;
    /** Per-sample variance tr Cov(c·s_t) of the estimator. */
    variance: Float64Array;
    projection?: Estimate;
  };
  /** With the tilted proposal: how it was built, κ, and Kish's effective sample size (Σw)²/Σw². */
  importance?: { method: 'exact' | 'per-token'; tilt: number; effectiveSampleSize: number };
  /** With the information proposal: its components and its weights w = p/q (mean 1, at most weightBound). */
  information?: InformationProposalSummary;
}

export interface InformationProposalSummary {
  /** The positions S of the mixture's components (1-based). */
  positions: number[];
  /** Responses drawn from each component: the policy first, then q_t for t in S. */
  counts: number[];
  /** The mean of w with its SE and support: 1 in expectation. */
  meanWeight: ScalarEstimate;
  maxWeight: number;
  /** K = |S| + 1: no weight exceeds it. */
  weightBound: number;
  /** Kish's effective sample size (Σw)²/Σw². */
  effectiveSampleSize: number;
}

export class MonteCarlo {
  readonly scenario: CompiledScenario;
  readonly #engine: InstanceType<typeof native.MonteCarlo>;

  /** `exact`: the scenario's ExactEngine, for tabular/Gibbs policies and exact h_t. */
  constructor(scenario: CompiledScenario, options: { exact?: ExactEngine } = {}) {
    this.scenario = scenario;
    this.#engine = callNative(() => new native.MonteCarlo(nativeScenario(scenario), options.exact?.native));
  }

  /** The native engine, for training steps. @internal */
  get native(): InstanceType<typeof native.MonteCarlo> {
    return this.#engine;
  }

  /** Samples N responses (synchronous). */
  sample(policy: Policy, options: SampleOptions): SampleBatch {
    return toBatch(callNative(() => this.#engine.sample(toInput(policy), options)));
  }

  /**
   * `sample` into the arrays of an earlier batch of the same N (synchronous): they are overwritten
   * with the responses `sample(policy, options)` returns, bit for bit, and returned as a new batch
   * that shares them. Tabular and Gibbs policies (with the ExactEngine) are drawn straight into
   * them: repeated calls allocate no N × T outputs to fault in and collect. Other policies' samples
   * are copied in.
   */
  sampleInto(policy: Policy, options: SampleOptions, into: SampleBatch): SampleBatch {
    if (options.count !== into.count) {
      throw new HarmHorizonError('HH_INVALID_ARGUMENT', `count: ${options.count}, but the batch to sample into holds ${into.count} responses`, 'count');
    }
    callNative(() => this.#engine.sampleInto(toInput(policy), options, into));
    return { ...into, firstIndex: options.firstIndex ?? 0 };
  }

  /** `sample` on the libuv thread pool; `signal` aborts it (HH_ABORTED). */
  async sampleAsync(policy: Policy, options: SampleOptions, call: AbortOptions = {}): Promise<SampleBatch> {
    return toBatch(await withSignal(call.signal, (flag) => this.#engine.sampleAsync(toInput(policy), options, flag)));
  }

  /**
   * log π(y_t | y_<t) of given responses (tokens N × T, NO_TOKEN after the end) under a policy:
   * N × T, 0 after the end.
   */
  replayLogProbs(policy: Policy, tokens: Uint32Array, count: number): Float64Array {
    return callNative(() => this.#engine.replayLogProbs(toInput(policy), tokens, count));
  }

  /**
   * The covariance kernel on given responses: Ĝ_t = (1/N) Σ_n c_{n,t}·∇θ log π(y_{n,t} | y_{n,<t}) for
   * coefficients c (N × T), accumulated per distinct (input, token) without materialising per-sample
   * scores (sparse rows for tabular policies, one backward pass per distinct input for an mlp);
   * with ||Ĝ_t|| and the per-sample variance tr Cov(c·s_t).
   */
  accumulateScores(policy: Policy, tokens: Uint32Array, count: number, coefficients: Float64Array): NonNullable<Estimates['gradient']> {
    const g = callNative(() => this.#engine.accumulateScores(toInput(policy), tokens, count, coefficients));
    return { blocks: g.blocks, blockLength: g.blockLength, norm: g.norm, variance: g.variance };
  }

  /** Samples and estimates (synchronous). */
  estimate(policy: Policy, options: EstimateOptions): Estimates {
    return toEstimates(callNative(() => this.#engine.estimate(toInput(policy), options)));
  }

  /** `estimate` off the main thread; `signal` aborts it (HH_ABORTED). */
  async estimateAsync(policy: Policy, options: EstimateOptions, call: AbortOptions = {}): Promise<Estimates> {
    return toEstimates(await withSignal(call.signal, (flag) => this.#engine.estimateAsync(toInput(policy), options, flag)));
  }
}

type NativeEstimates = ReturnType<InstanceType<typeof native.MonteCarlo>['estimate']>;

function toEstimates(e: NativeEstimates): Estimates {
  const out: Estimates = {
    samples: e.samples,
    expectedHarm: e.expectedHarm.mean,
    expectedHarmSE: e.expectedHarm.se,
    expectedHarmSupport: e.expectedHarm.support,
    klOnPolicy: e.klOnPolicy,
  };
  if (e.decisionTime) {
    out.decisionTime = e.decisionTime.mean;
    out.decisionTimeSE = e.decisionTime.se;
    out.decisionTimeSupport = e.decisionTime.support;
  }
  if (e.undecided) out.undecided = e.undecided;
  if (e.importance) out.importance = { method: e.importance.method as 'exact' | 'per-token', tilt: e.importance.tilt, effectiveSampleSize: e.importance.effectiveSampleSize };
  if (e.information) out.information = { ...e.information };
  if (e.harmInformation) out.harmInformation = e.harmInformation;
  if (e.klTeacherForced) out.klTeacherForced = e.klTeacherForced;
  if (e.gradient) {
    out.gradient = { blocks: e.gradient.blocks, blockLength: e.gradient.blockLength, norm: e.gradient.norm, variance: e.gradient.variance };
    if (e.gradient.projection) out.gradient.projection = e.gradient.projection;
  }
  return out;
}

function toBatch(out: SamplesOutput): SampleBatch {
  const batch: SampleBatch = {
    count: out.count,
    length: out.length,
    firstIndex: out.firstIndex,
    tokens: out.tokens,
    logProbs: out.logProbs,
    harm: out.harm,
    emitted: out.emitted,
  };
  if (out.states) batch.states = out.states;
  return batch;
}
