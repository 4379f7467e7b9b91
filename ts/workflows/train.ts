/**
 * Training small policies: the standard RLHF objective, the deep-alignment objectives and Qi et al.'s
 * augmentation, by exact gradient descent (tabular and enumerable mlp policies) or by sampled
 * REINFORCE/PPO. The loop lives here; every heavy step (exact passes, sampling, score kernels,
 * optimiser updates) runs in the Rust core.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { HarmHorizonError } from '../core/errors.js';
import type { ExactEngine } from '../core/exact.js';
import { harmfulBaseResponses } from './attack.js';
import { MonteCarlo } from '../core/montecarlo.js';
import { Optimizer } from '../core/optimizer.js';
import { throwIfAborted } from '../core/abort.js';
import { baseLogits, DEFAULT_MIX, fixedPoint, fixedPointAsync, objectiveValue, objectiveValueAsync, policyLogits, rlStep, rlStepAsync } from '../core/training.js';
import { LazyTabular } from '../core/lazy-tabular.js';
import { BASE, DEFAULT_TRANSFORMER, fitMlpToBase, fitMlpToBaseAsync, fitTransformerToBase, fitTransformerToBaseAsync, initMlp, initTransformer, type MlpShape, type Policy, type TransformerFit, type TransformerLayout } from '../core/policy.js';
import { call, callWith, runSync, runWith, type Calls } from './calls.js';

export type ObjectiveKind = 'standard' | 'deep' | 'deep-anchored' | 'augment';
/**
 * exact: gradient descent on the exact objective; fixed-point: the per-state fixed point (tabular;
 * standard and deep-anchored objectives); reinforce / reinforce-innovation / ppo: sampled batches
 * (standard objective).
 */
export type Algorithm = 'exact' | 'fixed-point' | 'reinforce' | 'reinforce-innovation' | 'ppo';

export interface ObjectiveOptions {
  kind: ObjectiveKind;
  /** λ of λ·E[H] (default: the scenario's). */
  lambda: number;
  /** μ of the recovery penalty (default: the scenario's). */
  mu: number;
  /** w_t = γ^{t−1} (default: the scenario's). */
  gamma: number;
  /** α, the weight of the augment objective's recovery term (default DEFAULT_MIX = 0.2, Qi et al.'s). */
  mix?: number;
  /** The augment objective's KL anchor: P_init, the policy training starts from (default), or P_base. */
  anchor?: 'init' | 'base';
}

/** α of the augment objective when none is given (Qi et al.'s 0.2; the one constant, from the core). */
export { DEFAULT_MIX };

export interface TrainOptions {
  objective: ObjectiveOptions;
  algorithm: Algorithm;
  /**
   * The policy family to train, or a policy to start from. A family starts at the base, except that
   * a tabular policy trained on the augment objective starts at the Gibbs policy at λ (Qi et al.
   * augment an already aligned model). A transformer is fitted to the base first; its exact
   * analysis needs `engine` built with `prefixTree` (or no engine: sampled training only). Without
   * an engine a tabular policy is keyed lazily (see core/lazy-tabular.ts); with one, a lazy-tabular
   * policy trains as the tabular policy it stands for.
   */
  policy: 'tabular' | 'mlp' | 'transformer' | Policy;
  /** Shape of a new mlp (default one hidden layer of 32 tanh units reading the scenario's context). */
  mlp?: MlpShape;
  /** Layout of a new transformer (default DEFAULT_TRANSFORMER). */
  transformer?: TransformerLayout;
  steps: number;
  seed: number;
  optimizer: 'adam' | 'sgd';
  learningRate: number;
  /** Responses per batch (sampled algorithms). */
  samples: number;
  /** PPO clip ε and epochs per batch. */
  clip: number;
  epochs: number;
  /** Compute the prefilling ASR curve and teacher-forced KL every this many steps (and at the end). */
  evalEvery: number;
  /** Learning-rate schedule: constant, or cosine decay to 0 over the run (settles Adam's oscillation). */
  schedule: 'constant' | 'cosine';
  /**
   * Bytes the rows of a lazy tabular policy (a tabular policy without an exact engine) may take, and
   * the rollout buffers of reinforce-innovation (2 × samples × (T+1) f64) (default 4 GiB).
   */
  memoryBudget?: number;
  /**
   * reinforce-innovation: estimate h_t by M nested rollouts of the policy per prefix and set
   * (default: exact h_t when the exact engine applies, else DEFAULT_TRAINING_ROLLOUTS = 4 rollouts).
   */
  rollouts?: number;
}

export const TRAIN_DEFAULTS = {
  optimizer: 'adam' as const,
  learningRate: 0.05,
  samples: 1024,
  clip: 0.2,
  epochs: 4,
  evalEvery: 25,
  seed: 0,
  schedule: 'cosine' as const,
};

/** One line of the training log. */
export interface TrainRecord {
  step: number;
  objective: number;
  parts: { expectedHarm: number; kl: number; penalty: number; anchorKl: number; sftLoss: number };
  expectedHarm: number;
  kl: number;
  klOnPolicy: number[];
  klTeacherForced?: number[];
  /** Per-position norm of the objective's gradient (logit space) or of the sampled gradient. */
  gradNorm: number[];
  /** ||∂J/∂θ|| of the exact objective over all parameters (exact runs: every step; sampled runs: first and last). */
  totalGradNorm?: number;
  /** Mean recovery probability π_t(R | y<t) on harmful prefixes, per position (null where Q has none). */
  recovery: (number | null)[];
  /** Prefilling success ASR_k, k = 0..T (every evalEvery steps). */
  asr?: number[];
  /** Sampled algorithms: the batch's mean harm and per-token KL. */
  batch?: { meanHarm: number; meanKl: number };
  /** Step 0 of a new transformer: how well it was fitted to the base (exactKl on the prefix tree). */
  fit?: TransformerFit & { exactKl?: number };
  seconds: number;
}

const nulls = (a: ArrayLike<number>) => Array.from(a, (x) => (Number.isFinite(x) ? x : null));

/** The policy's parameter vector (the array that is trained in place). */
function parameters(policy: Policy): Float64Array {
  if (policy.kind === 'tabular') return policy.logits;
  if (policy.kind === 'mlp' || policy.kind === 'transformer') return policy.params;
  throw new HarmHorizonError('HH_INVALID_ARGUMENT', `a ${policy.kind} policy has no parameters to train`);
}

/** A fresh policy of the family, equal (tabular) or fitted (mlp; transformer: see `initialTransformer`) to the base. */
export function initialPolicy(scenario: CompiledScenario, engine: ExactEngine | null, family: 'tabular' | 'mlp', shape: MlpShape | undefined, seed: number): Policy {
  return runSync(initialPolicyCalls(scenario, engine, family, shape, seed));
}

function* initialPolicyCalls(scenario: CompiledScenario, engine: ExactEngine | null, family: 'tabular' | 'mlp', shape: MlpShape | undefined, seed: number): Calls<Policy> {
  if (family === 'tabular') {
    if (!engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'a tabular policy needs the exact state space, which is too large here');
    return { kind: 'tabular', logits: baseLogits(engine) };
  }
  const mlp = initMlp(scenario, shape ?? { order: scenario.order, hidden: [32], activation: 'tanh' }, seed);
  const fit = { steps: 400 };
  const fitted = yield* call({ sync: () => fitMlpToBase(scenario, mlp, fit), async: (signal) => fitMlpToBaseAsync(scenario, mlp, { ...fit, signal }) });
  return fitted.policy;
}

/**
 * A seeded transformer fitted to the base, and the fit's KL(P_base ‖ P_θ): sampled, and exact when
 * `engine` is the prefix tree.
 */
export function initialTransformer(scenario: CompiledScenario, engine: ExactEngine | null, layout: TransformerLayout, seed: number): InitialTransformer {
  return runSync(initialTransformerCalls(scenario, engine, layout, seed));
}

type InitialTransformer = { policy: Policy; fit: TransformerFit & { exactKl?: number } };

function* initialTransformerCalls(scenario: CompiledScenario, engine: ExactEngine | null, layout: TransformerLayout, seed: number): Calls<InitialTransformer> {
  const start = initTransformer(scenario, layout, seed);
  const { policy, fit } = yield* call({ sync: () => fitTransformerToBase(scenario, start, { seed }), async: (signal) => fitTransformerToBaseAsync(scenario, start, { seed, signal }) });
  if (!engine?.prefixTree) return { policy, fit };
  const kl = yield* call({ sync: () => engine.klBetween(BASE, policy), async: (signal) => engine.klBetweenAsync(BASE, policy, { signal }) });
  return { policy, fit: { ...fit, exactKl: kl.reduce((a, b) => a + b, 0) } };
}

function objectiveInput(scenario: CompiledScenario, o: ObjectiveOptions) {
  return { kind: o.kind, lambda: o.lambda, mu: o.mu, gamma: o.gamma, recovery: scenario.recovery, mix: o.mix ?? DEFAULT_MIX, anchor: o.anchor ?? 'init' };
}

/**
 * Evaluates the objective exactly (value, parts, per-position KL and gradient norms, recovery).
 * `init`: P_init, the policy training started from (the augment objective's default anchor).
 */
export function evaluateObjective(engine: ExactEngine, policy: Policy, objective: ObjectiveOptions, gradient = false, init?: Policy) {
  return objectiveValue(engine, policy, objectiveInput(engine.scenario, objective), gradient, init);
}

/** A run has converged when its final gradient norm is at most this fraction of its initial one. */
export const CONVERGENCE_THRESHOLD = 1e-3;

/** Whether a run converged, judged by the exact gradient norm at its last step against its first. */
export interface Convergence {
  initialGradNorm: number | null;
  finalGradNorm: number | null;
  /** finalGradNorm / initialGradNorm. */
  ratio: number | null;
  threshold: number;
  /** null when no exact gradient was computed (sampled training without the exact state space). */
  converged: boolean | null;
  message: string;
}

/**
 * Judges convergence from a run's first and last records: converged when ||∇J|| fell to at most
 * CONVERGENCE_THRESHOLD of its initial value (or to rounding level, 1e-12). The change of J over
 * the last steps says little here: the default cosine schedule takes the learning rate to 0, so J
 * stops moving whether or not it reached its optimum.
 */
export function convergence(first: TrainRecord | undefined, last: TrainRecord | undefined): Convergence {
  const initial = first?.totalGradNorm ?? null;
  const final = last?.totalGradNorm ?? null;
  if (initial === null || final === null) {
    return { initialGradNorm: initial, finalGradNorm: final, ratio: null, threshold: CONVERGENCE_THRESHOLD, converged: null, message: 'convergence not checked: no exact gradient (sampled training without the exact state space)' };
  }
  const ratio = initial > 0 ? final / initial : 0;
  const converged = ratio <= CONVERGENCE_THRESHOLD || final <= 1e-12;
  const shown = ratio.toPrecision(2);
  const message = converged
    ? `converged: the gradient norm fell to ${shown} of its initial value (threshold ${CONVERGENCE_THRESHOLD})`
    : `NOT CONVERGED: the gradient norm is still ${shown} of its initial value (threshold ${CONVERGENCE_THRESHOLD}); J may still be above its optimum — train for more steps or with a larger learning rate`;
  return { initialGradNorm: initial, finalGradNorm: final, ratio, threshold: CONVERGENCE_THRESHOLD, converged, message };
}

const norm = (g: Float64Array) => Math.sqrt(g.reduce((a, x) => a + x * x, 0));

/** `evaluateObjective` off the main thread; `signal` aborts it (HH_ABORTED). */
export function evaluateObjectiveAsync(engine: ExactEngine, policy: Policy, objective: ObjectiveOptions, gradient: boolean, init: Policy | undefined, signal?: AbortSignal) {
  return objectiveValueAsync(engine, policy, objectiveInput(engine.scenario, objective), gradient, init, { signal });
}

/**
 * Trains a policy; calls `onRecord` after every step with the log line (write it out there). Returns
 * the trained policy. `shouldStop` is polled between steps (Ctrl-C keeps what is done). `signal`
 * aborts the run instead (rejecting with HH_ABORTED): between steps, and inside a step, which then
 * runs off the main thread with the same numbers.
 */
export async function train(
  scenario: CompiledScenario,
  engine: ExactEngine | null,
  options: TrainOptions,
  onRecord: (record: TrainRecord) => void,
  shouldStop: () => boolean = () => false,
  signal?: AbortSignal,
): Promise<Policy> {
  const o = options.objective;
  if (options.algorithm === 'fixed-point') return solveFixedPoint(scenario, engine, options, onRecord, signal);
  const isTransformer = options.policy === 'transformer' || (typeof options.policy === 'object' && options.policy.kind === 'transformer');
  if (options.algorithm !== 'exact' && o.kind !== 'standard' && !(o.kind === 'deep' && isTransformer)) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `the sampled algorithms train the standard objective (and deep, for transformers); use --algorithm exact for ${o.kind}`);
  }
  if (options.algorithm === 'exact' && !engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'exact descent needs the exact state space, which is too large here');
  if (options.rollouts !== undefined && options.algorithm !== 'reinforce-innovation') throw new HarmHorizonError('HH_INVALID_ARGUMENT', `rollouts: only reinforce-innovation reads h_t (the algorithm is ${options.algorithm})`);
  if (o.kind !== 'standard' && scenario.recovery.length === 0) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `the ${o.kind} objective needs recovery tokens (the scenario has none)`);
  const fitted = options.policy === 'transformer' ? await runWith(initialTransformerCalls(scenario, engine, options.transformer ?? DEFAULT_TRANSFORMER, options.seed), signal) : null;
  // Beyond the exact budget a tabular policy is keyed lazily (rows per visited key, the base elsewhere).
  const isLazy = typeof options.policy === 'object' && options.policy.kind === 'lazy-tabular';
  const lazy = !engine && (options.policy === 'tabular' || isLazy) ? new LazyTabular(scenario, { from: isLazy ? (options.policy as Policy) : undefined, memoryBudget: options.memoryBudget }) : null;
  const policy: Policy =
    options.policy === 'tabular' && o.kind === 'augment' && engine
      ? { kind: 'tabular', logits: policyLogits(engine, { kind: 'gibbs', lambda: o.lambda }) }
      : fitted
        ? fitted.policy
        : lazy
          ? lazy.policy()
          : typeof options.policy === 'string'
            ? await runWith(initialPolicyCalls(scenario, engine, options.policy as 'tabular' | 'mlp', options.mlp, options.seed), signal)
            : isLazy && engine
              ? { kind: 'tabular', logits: policyLogits(engine, options.policy as Policy) }
              : structuredClone(options.policy);
  const init = structuredClone(policy);
  // The lazy policy's parameters live in its handle, and its optimiser's state grows with its rows.
  const params = lazy ? new Float64Array(0) : parameters(policy);
  const optimizer = new Optimizer(options.optimizer, params.length, options.learningRate);
  const mc = options.algorithm === 'exact' ? null : new MonteCarlo(scenario, engine ? { exact: engine } : {});
  const penalty = mc && o.kind === 'deep' ? recoveryPenalty(scenario, o, options) : undefined;
  const started = performance.now();
  for (let step = 0; step <= options.steps && !shouldStop(); step++) {
    throwIfAborted(signal);
    const last = step === options.steps;
    if (options.schedule === 'cosine') optimizer.learningRate = 0.5 * options.learningRate * (1 + Math.cos((Math.PI * step) / options.steps)) + 1e-12;
    const evaluate = step % options.evalEvery === 0 || last;
    let record: TrainRecord;
    if (engine) {
      const wantGradient = options.algorithm === 'exact' && !last;
      const withGradient = options.algorithm === 'exact' || step === 0 || last;
      const value = await objectiveWith(engine, policy, o, withGradient, init, signal);
      const prefixes = evaluate ? await harmfulPrefixesWith(engine, policy, signal) : null;
      record = exactRecord(step, value, prefixes, started);
      if (wantGradient && value.gradient) optimizer.step(params, value.gradient);
    } else {
      record = { step, objective: NaN, parts: { expectedHarm: NaN, kl: NaN, penalty: 0, anchorKl: 0, sftLoss: 0 }, expectedHarm: NaN, kl: NaN, klOnPolicy: [], gradNorm: [], recovery: [], seconds: 0 };
    }
    if (step === 0 && fitted) record.fit = fitted.fit;
    if (mc && !last && options.algorithm !== 'exact') {
      const rl = {
        algorithm: options.algorithm,
        samples: options.samples,
        seed: options.seed,
        firstIndex: step * options.samples,
        lambda: o.lambda,
        clip: options.clip,
        epochs: options.epochs,
        penalty,
        rollouts: options.rollouts,
        memoryBudget: options.memoryBudget,
      };
      const out = lazy
        ? await callWith({ sync: () => lazy.rlStep(mc, optimizer, rl), async: (s) => lazy.rlStepAsync(mc, optimizer, rl, { signal: s }) }, signal)
        : await callWith({ sync: () => rlStep(mc, policy, params, optimizer, rl), async: (s) => rlStepAsync(mc, policy, params, optimizer, rl, { signal: s }) }, signal);
      record.batch = { meanHarm: out.meanHarm, meanKl: out.meanKl };
      if (!engine) {
        record.objective = out.objective;
        record.expectedHarm = out.meanHarm;
        record.kl = out.meanKl;
      }
      // A transformer's sampled step gives no per-position norms (T backward passes): keep the exact ones.
      if (out.gradNorm.length > 0 || !engine) record.gradNorm = Array.from(out.gradNorm);
    }
    record.seconds = (performance.now() - started) / 1000;
    onRecord(record);
    // Let the event loop breathe (progress output, Ctrl-C) between steps.
    if (step % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return lazy ? lazy.policy() : policy;
}

/**
 * The deep objective's recovery penalty for sampled training of a transformer: Q as `samples` harmful
 * base responses drawn once (seeded), weighted by their harm; w_t = γ^{t−1}.
 */
function recoveryPenalty(scenario: CompiledScenario, o: ObjectiveOptions, options: TrainOptions) {
  const { prefixes, weights } = harmfulBaseResponses(scenario, { samples: options.samples, seed: options.seed + 1 });
  const responses = new Uint32Array(prefixes.length * scenario.length);
  prefixes.forEach((p, n) => responses.set(p, n * scenario.length));
  const positionWeights = Float64Array.from({ length: scenario.length }, (_, t) => o.gamma ** t);
  return { responses, weights: Float64Array.from(weights), mu: o.mu, positionWeights, recovery: scenario.recovery };
}

/** The fixed-point "training": one solve, logged as step 0 (the base) and step 1 (the optimum). */
async function solveFixedPoint(scenario: CompiledScenario, engine: ExactEngine | null, options: TrainOptions, onRecord: (record: TrainRecord) => void, signal?: AbortSignal): Promise<Policy> {
  if (!engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'the fixed point needs the exact state space, which is too large here');
  if (options.policy !== 'tabular') throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'the fixed point gives a tabular policy: use --policy tabular');
  const started = performance.now();
  const o = options.objective;
  const input = objectiveInput(scenario, o);
  const iterations = Math.max(options.steps, 1);
  const solved = await callWith({ sync: () => fixedPoint(engine, input, iterations, 1e-14), async: (s) => fixedPointAsync(engine, input, iterations, 1e-14, { signal: s }) }, signal);
  const base: Policy = { kind: 'tabular', logits: baseLogits(engine) };
  const policy: Policy = { kind: 'tabular', logits: solved.logits };
  for (const [step, p] of [base, policy].entries()) {
    onRecord(exactRecord(step, await objectiveWith(engine, p, o, true, undefined, signal), await harmfulPrefixesWith(engine, p, signal), started));
  }
  return policy;
}

/** `evaluateObjective`, off the main thread when there is a signal. */
function objectiveWith(engine: ExactEngine, policy: Policy, o: ObjectiveOptions, gradient: boolean, init: Policy | undefined, signal: AbortSignal | undefined) {
  return callWith({ sync: () => evaluateObjective(engine, policy, o, gradient, init), async: (s) => evaluateObjectiveAsync(engine, policy, o, gradient, init, s) }, signal);
}

/** The teacher-forced KL and ASR_k on harmful prefixes, off the main thread when there is a signal. */
function harmfulPrefixesWith(engine: ExactEngine, policy: Policy, signal: AbortSignal | undefined) {
  return callWith({ sync: () => engine.onHarmfulPrefixes(policy), async: (s) => engine.onHarmfulPrefixesAsync(policy, { signal: s }) }, signal);
}

/** A log line from an exact evaluation, with the ASR curve and teacher-forced KL when given. */
function exactRecord(
  step: number,
  value: ReturnType<typeof evaluateObjective>,
  prefixes: { klTeacherForced: Float64Array; asr: Float64Array } | null,
  started: number,
): TrainRecord {
  const record: TrainRecord = {
    step,
    objective: value.total,
    parts: { expectedHarm: value.expectedHarm, kl: value.kl, penalty: value.penalty, anchorKl: value.anchorKl, sftLoss: value.sftLoss },
    expectedHarm: value.expectedHarm,
    kl: value.kl,
    klOnPolicy: Array.from(value.klPerPosition),
    gradNorm: Array.from(value.gradNorm),
    recovery: nulls(value.recovery),
    seconds: (performance.now() - started) / 1000,
  };
  if (value.gradient) record.totalGradNorm = norm(value.gradient);
  if (prefixes) {
    record.klTeacherForced = nulls(prefixes.klTeacherForced) as number[];
    record.asr = nulls(prefixes.asr) as number[];
  }
  return record;
}
