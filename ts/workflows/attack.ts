/**
 * Attacks on an aligned policy: prefilling, rank-assisted prefilling and fine-tuning on harmful
 * responses (with Qi et al.'s token-wise constrained objective as the defence). Exact on enumerable
 * scenarios; prefilling is also estimated by sampling when the state space is too large.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { throwIfAborted, type AbortOptions } from '../core/abort.js';
import { HarmHorizonError } from '../core/errors.js';
import type { ExactEngine } from '../core/exact.js';
import { MonteCarlo, NO_TOKEN, type SampleOptions } from '../core/montecarlo.js';
import { Optimizer } from '../core/optimizer.js';
import { BASE, type Policy } from '../core/policy.js';
import { baseLogits, fineTuneLoss, fineTuneLossAsync, harmfulResponseLogits, policyLogits, rankAssistedLogits, rankAssistedLogitsAsync, type FineTuneOutput } from '../core/training.js';
import { call, runAsync, runSync, type Call, type Calls } from './calls.js';

/** Default r of rank-assisted prefilling (capped at V). */
export const DEFAULT_RANK = 20;

/** Prefilling success ASR_k, k = 0..T: force the first k tokens of a harmful base response. */
export function prefillAttack(engine: ExactEngine, policy: Policy): Float64Array {
  return engine.onHarmfulPrefixes(policy).asr;
}

/** `prefillAttack` off the main thread; `signal` aborts it (HH_ABORTED). */
export async function prefillAttackAsync(engine: ExactEngine, policy: Policy, options: AbortOptions = {}): Promise<Float64Array> {
  return (await engine.onHarmfulPrefixesAsync(policy, options)).asr;
}

/** The rank-assisted attacker against a policy, as a tabular policy. */
export function rankAssistedAttacker(engine: ExactEngine, policy: Policy, rank = DEFAULT_RANK): Policy {
  return { kind: 'tabular', logits: rankAssistedLogits(engine, policy, rank) };
}

/** Rank-assisted prefilling success, k = 0..T. */
export function rankAssistedAttack(engine: ExactEngine, policy: Policy, rank = DEFAULT_RANK): Float64Array {
  return engine.onHarmfulPrefixes(rankAssistedAttacker(engine, policy, rank)).asr;
}

/** `rankAssistedAttack` off the main thread; `signal` aborts it (HH_ABORTED). */
export async function rankAssistedAttackAsync(engine: ExactEngine, policy: Policy, rank = DEFAULT_RANK, options: AbortOptions = {}): Promise<Float64Array> {
  const attacker: Policy = { kind: 'tabular', logits: await rankAssistedLogitsAsync(engine, policy, rank, options) };
  return prefillAttackAsync(engine, attacker, options);
}

/** Most batches of N base responses drawn in search of N with H > 0. */
const MAX_PREFIX_BATCHES = 64;

/**
 * Prefilling by sampling, for policies on scenarios too large to enumerate. Q is the distribution the
 * exact path uses: base responses reweighted by H (the base conditioned on H = 1 when harm is binary).
 * The first N base responses with H > 0 (in RNG order; at most 64·N are drawn) give the prefixes,
 * each weighted by its H; for each k the policy continues every prefix of length k once, and ASR_k is
 * the self-normalised Σ H_n·X_{n,k} / Σ H_n, X the continuation's harm, with its delta-method SE and
 * effective support. `effectivePrefixes` is Kish's (ΣH)²/ΣH²: how many equally weighted prefixes the
 * weighted ones are worth. With `rank` (and `engine`, the scenario's exact engine, for the base's
 * conditional harm), the continuation is the rank-assisted attacker against the policy instead:
 * sampled rank-assisted prefilling, for policies that cannot be tabulated on the exact states.
 */
export function sampledPrefillAttack(scenario: CompiledScenario, policy: Policy, options: SampledPrefillOptions): SampledPrefillResult {
  const attack = sampledAttackSetup(scenario, options);
  for (let k = 0; k <= scenario.length; k++) attack.record(attack.mc.sample(policy, attack.continuation(k)).harm);
  return attack.out;
}

/** `sampledPrefillAttack` with its sampling on the libuv thread pool; `signal` aborts it (HH_ABORTED). */
export async function sampledPrefillAttackAsync(scenario: CompiledScenario, policy: Policy, options: SampledPrefillOptions & AbortOptions): Promise<SampledPrefillResult> {
  throwIfAborted(options.signal);
  const attack = sampledAttackSetup(scenario, options);
  for (let k = 0; k <= scenario.length; k++) attack.record((await attack.mc.sampleAsync(policy, attack.continuation(k), { signal: options.signal })).harm);
  return attack.out;
}

export interface SampledPrefillOptions {
  samples: number;
  seed: number;
  rank?: number;
  engine?: ExactEngine;
}

export interface SampledPrefillResult {
  asr: number[];
  se: number[];
  support: number[];
  prefixes: number;
  effectivePrefixes: number;
}

/** Q's prefixes, the sampling request that continues them at each k, and the ASR_k accumulator. */
function sampledAttackSetup(scenario: CompiledScenario, options: SampledPrefillOptions) {
  if (options.rank !== undefined && !options.engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'sampled rank-assisted prefilling needs the exact engine of the scenario');
  const mc = new MonteCarlo(scenario, options.engine ? { exact: options.engine } : {});
  const { prefixes, weights } = harmfulBaseResponses(scenario, options);
  const count = prefixes.length;
  const out: SampledPrefillResult = { asr: [], se: [], support: [], prefixes: count, effectivePrefixes: kish(weights) };
  const continuation = (k: number): SampleOptions => {
    const prefix = new Uint32Array(count * Math.max(k, 1)).fill(NO_TOKEN);
    for (let n = 0; n < count; n++) prefix.set(prefixes[n].subarray(0, k), n * Math.max(k, 1));
    return { count, seed: options.seed + 1, prefix: k > 0 ? prefix : undefined, prefixLength: k > 0 ? k : undefined, rankAssisted: options.rank };
  };
  const record = (harm: Float64Array) => {
    const e = weightedMean(harm, weights);
    out.asr.push(e.mean);
    out.se.push(e.se);
    out.support.push(e.support);
  };
  return { mc, continuation, record, out };
}

/**
 * Q by sampling: the first N base responses with H > 0 (in RNG order; at most 64·N are drawn), each
 * with its weight H. Throws when none is drawn.
 */
export function harmfulBaseResponses(scenario: CompiledScenario, options: { samples: number; seed: number }): { prefixes: Uint32Array[]; weights: number[] } {
  const mc = new MonteCarlo(scenario);
  const t = scenario.length;
  const prefixes: Uint32Array[] = [];
  const weights: number[] = [];
  for (let batch = 0; prefixes.length < options.samples && batch < MAX_PREFIX_BATCHES; batch++) {
    const s = mc.sample(BASE, { count: options.samples, seed: options.seed, firstIndex: batch * options.samples });
    for (let n = 0; n < s.count && prefixes.length < options.samples; n++) {
      if (s.harm[n] > 0) {
        prefixes.push(s.tokens.slice(n * t, (n + 1) * t));
        weights.push(s.harm[n]);
      }
    }
  }
  if (prefixes.length === 0) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'no harmful base response was drawn: nothing to prefill');
  return { prefixes, weights };
}

/** Kish's effective sample size (Σw)²/Σw². */
function kish(w: readonly number[]): number {
  const s = w.reduce((a, b) => a + b, 0);
  return (s * s) / w.reduce((a, b) => a + b * b, 0);
}

/**
 * Σw·x/Σw with its delta-method SE sqrt(Σ(w·(x − mean))²)/Σw and effective support (Σc²)²/Σc⁴ over
 * the deviation terms c = w·(x − mean)/Σw (0 when every x is alike), as the Rust estimates.
 */
function weightedMean(x: ArrayLike<number>, w: readonly number[]): { mean: number; se: number; support: number } {
  const total = w.reduce((a, b) => a + b, 0);
  let sum = 0;
  for (let n = 0; n < w.length; n++) sum += w[n] * x[n];
  const mean = sum / total;
  let s2 = 0;
  let s4 = 0;
  for (let n = 0; n < w.length; n++) {
    const c2 = ((w[n] * (x[n] - mean)) / total) ** 2;
    s2 += c2;
    s4 += c2 * c2;
  }
  return { mean, se: Math.sqrt(s2), support: s4 > 0 ? Math.floor((s2 * s2) / s4) : 0 };
}

export interface FineTuneStep {
  step: number;
  /** Prefilling success ASR_k after this many steps (ASR_0 = E[H]). */
  asr: number[];
  /** Per-position loss (Eq. 3 for the constrained objective) on all of Q, and its total. */
  lossPerPosition: number[];
  loss: number;
  /** ||∂loss_t/∂θ_t|| per position on all of Q. */
  gradNorm: number[];
  /** Qi et al.'s logged loss on all of Q: the token mean of −w_t·log π(y_t), w_t detached and floored. */
  loggedLoss: number;
  /** Their per-token gradient statistic: per position, the mean over harmful responses of ||∇ℓ_t|| (logit space). */
  tokenGradNorm: (number | null)[];
  /** Their Fig. 3c quantity: per-position KL(π_θ ‖ π_aligned) on the fine-tuned policy's own prefixes. */
  klToAligned: number[];
  /** With minibatches: the logged loss on the batch this step descends on (what their code prints). */
  batchLoggedLoss?: number;
}

export interface FineTuneOptions {
  steps: number;
  learningRate: number;
  objective: 'sft' | 'constrained';
  /** β_t per position (default Qi et al.'s 0.5, 2, 2, 2, 2, 0.1, …). */
  beta?: Float64Array;
  /** Plain gradient descent (default) or AdamW (β1 = 0.5 as in Qi et al.'s attacks, weight decay 0 unless set). */
  optimizer?: 'sgd' | 'adamw';
  weightDecay?: number;
  /** Harmful responses per minibatch, sampled from Q (default: the exact full batch, all of Q). */
  batch?: number;
  /** Seed of the minibatches (step s draws responses s·batch.. of one stream, so runs are reproducible). */
  seed?: number;
  /** Floor of the logged loss's token weights (default 1e-3, as theirs). */
  floor?: number;
}

/**
 * The fine-tuning attack: `steps` steps of descent on the chosen loss over the base's harmful responses,
 * starting from `policy`: exact full batches, or seeded minibatches of sampled harmful responses.
 * `constrained` is Qi et al.'s token-wise objective against the frozen starting policy. Every step
 * is evaluated exactly on all of Q.
 */
export function fineTuneAttack(engine: ExactEngine, policy: Policy, options: FineTuneOptions): FineTuneResult {
  return runSync(fineTuneCalls(engine, policy, options));
}

/**
 * `fineTuneAttack` off the main thread (the same numbers): every loss, ASR and KL evaluation runs on
 * the libuv pool, and `signal` aborts the attack inside one of them or between steps (HH_ABORTED).
 */
export async function fineTuneAttackAsync(engine: ExactEngine, policy: Policy, options: FineTuneOptions & AbortOptions): Promise<FineTuneResult> {
  return runAsync(fineTuneCalls(engine, policy, options), options.signal);
}

export interface FineTuneResult {
  /** The fine-tuned policy. */
  policy: Policy;
  /** One record per step, step 0 being the starting policy. */
  trace: FineTuneStep[];
}

/** The fine-tuning attack as a loop of native calls (see calls.ts). */
function* fineTuneCalls(engine: ExactEngine, policy: Policy, options: FineTuneOptions): Calls<FineTuneResult> {
  const start: Policy = policy.kind === 'tabular' || policy.kind === 'mlp' ? structuredClone(policy) : asTabular(engine, policy);
  const aligned = structuredClone(start);
  const params = start.kind === 'tabular' ? start.logits : (start as Policy & { kind: 'mlp' }).params;
  const kind = options.optimizer ?? 'sgd';
  const optimizer = new Optimizer(kind, params.length, options.learningRate, { weightDecay: options.weightDecay });
  const sampler = options.batch ? { mc: new MonteCarlo(engine.scenario, { exact: engine }), q: { kind: 'tabular' as const, logits: harmfulResponseLogits(engine) } } : null;
  // The policy is evaluated before each call returns: its parameters change only between calls.
  const loss = (responses?: Uint32Array): Call<FineTuneOutput> => {
    const settings = { beta: options.beta, floor: options.floor, responses };
    return {
      sync: () => fineTuneLoss(engine, start, options.objective, aligned, settings),
      async: (signal) => fineTuneLossAsync(engine, start, options.objective, aligned, { ...settings, signal }),
    };
  };
  const trace: FineTuneStep[] = [];
  for (let step = 0; step <= options.steps; step++) {
    const value = yield* call(loss());
    const asr = yield* call({ sync: () => prefillAttack(engine, start), async: (signal) => prefillAttackAsync(engine, start, { signal }) });
    const kl = yield* call({ sync: () => engine.klBetween(start, aligned), async: (signal) => engine.klBetweenAsync(start, aligned, { signal }) });
    const record: FineTuneStep = {
      step,
      asr: Array.from(asr),
      lossPerPosition: Array.from(value.lossPerPosition),
      loss: value.loss,
      gradNorm: Array.from(value.gradNorm),
      loggedLoss: value.loggedLoss,
      tokenGradNorm: Array.from(value.tokenGradNorm, (x) => (Number.isFinite(x) ? x : null)),
      klToAligned: Array.from(kl),
    };
    trace.push(record);
    if (step === options.steps) break;
    let gradient = value.gradient;
    if (sampler) {
      const draw: SampleOptions = { count: options.batch!, seed: options.seed ?? 0, firstIndex: step * options.batch! };
      const { tokens } = yield* call({ sync: () => sampler.mc.sample(sampler.q, draw), async: (signal) => sampler.mc.sampleAsync(sampler.q, draw, { signal }) });
      const batch = yield* call(loss(tokens));
      record.batchLoggedLoss = batch.loggedLoss;
      gradient = batch.gradient;
    }
    optimizer.step(params, gradient);
  }
  return { policy: start, trace };
}

/** Any policy as tabular logits over the exact states (log-probabilities). */
export function asTabular(engine: ExactEngine, policy: Policy): Policy & { kind: 'tabular' } {
  if (policy.kind === 'tabular') return policy;
  if (policy.kind === 'mlp') return { kind: 'tabular', logits: engine.mlpTabulate(policy.mlp, policy.params) };
  if (policy.kind === 'base') return { kind: 'tabular', logits: baseLogits(engine) };
  // The Gibbs optimum, read row by row as log-probabilities.
  return { kind: 'tabular', logits: policyLogits(engine, policy) };
}
