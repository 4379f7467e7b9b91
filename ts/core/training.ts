/**
 * Training and attack quantities on the native engines, typed: exact objectives and their
 * gradients, the fixed point, fine-tuning losses, the rank-assisted attacker and sampled RL steps.
 * The loops that use them live in ts/workflows/; this is their only door to the addon.
 */
import { withSignal, type AbortOptions } from './abort.js';
import { callNative } from './errors.js';
import type { ExactEngine } from './exact.js';
import type { MonteCarlo } from './montecarlo.js';
import {
  native,
  type FineTuneName,
  type FineTuneOptions,
  type FineTuneOutput,
  type FixedPointOutput,
  type ObjectiveInput,
  type ObjectiveOutput,
  type RlOptions,
  type RlStepOutput,
} from './native.js';
import type { Optimizer } from './optimizer.js';
import { toInput, type Policy } from './policy.js';

export type { FineTuneName, FineTuneOptions, FineTuneOutput, FixedPointOutput, ObjectiveInput, ObjectiveOutput, RlOptions, RlStepOutput };

/** α of the augment objective when none is given (Qi et al.'s 0.2; the one constant, from the core). */
export const DEFAULT_MIX: number = native.DEFAULT_MIX;

/** The base as tabular logits: log p at every (position, live state), T × S × V. */
export function baseLogits(engine: ExactEngine): Float64Array {
  return callNative(() => engine.native.baseLogits());
}

/** Any exact-engine policy (the Gibbs optimum among them) as tabular logits, T × S × V. */
export function policyLogits(engine: ExactEngine, policy: Policy): Float64Array {
  return callNative(() => engine.native.policyLogits(toInput(policy)));
}

/**
 * An objective at a policy, with its exact gradient when `gradient` is set (over the logits for a
 * tabular policy, over the parameters for a network). `init`: P_init, the augment objective's anchor.
 */
export function objectiveValue(engine: ExactEngine, policy: Policy, objective: ObjectiveInput, gradient: boolean, init?: Policy): ObjectiveOutput {
  return callNative(() => engine.native.objective(toInput(policy), objective, gradient, init ? toInput(init) : undefined, undefined));
}

/** `objectiveValue` off the main thread (one exact training step); `signal` aborts it (HH_ABORTED). */
export async function objectiveValueAsync(engine: ExactEngine, policy: Policy, objective: ObjectiveInput, gradient: boolean, init?: Policy, options: AbortOptions = {}): Promise<ObjectiveOutput> {
  return withSignal(options.signal, (flag) => engine.native.objectiveAsync(toInput(policy), objective, gradient, init ? toInput(init) : undefined, undefined, flag));
}

/** The per-state fixed point of an objective (tabular). */
export function fixedPoint(engine: ExactEngine, objective: ObjectiveInput, maxIterations: number, tolerance: number): FixedPointOutput {
  return callNative(() => engine.native.solveFixedPoint(objective, maxIterations, tolerance));
}

/** `fixedPoint` off the main thread; `signal` aborts it between iterations (HH_ABORTED). */
export async function fixedPointAsync(engine: ExactEngine, objective: ObjectiveInput, maxIterations: number, tolerance: number, options: AbortOptions = {}): Promise<FixedPointOutput> {
  return withSignal(options.signal, (flag) => engine.native.solveFixedPointAsync(objective, maxIterations, tolerance, flag));
}

/** The rank-assisted attacker against a policy, as tabular logits. */
export function rankAssistedLogits(engine: ExactEngine, policy: Policy, rank: number): Float64Array {
  return callNative(() => engine.native.rankAssisted(toInput(policy), rank));
}

/** `rankAssistedLogits` off the main thread; `signal` aborts it (HH_ABORTED). */
export async function rankAssistedLogitsAsync(engine: ExactEngine, policy: Policy, rank: number, options: AbortOptions = {}): Promise<Float64Array> {
  return withSignal(options.signal, (flag) => engine.native.rankAssistedAsync(toInput(policy), rank, flag));
}

/** Q, the base's harmful responses, as a tabular policy's logits (for sampling fine-tuning batches). */
export function harmfulResponseLogits(engine: ExactEngine): Float64Array {
  return callNative(() => engine.native.harmfulResponsePolicy());
}

/** The fine-tuning loss on harmful responses and its gradient; `constrained` is against `aligned`. */
export function fineTuneLoss(engine: ExactEngine, policy: Policy, kind: FineTuneName, aligned?: Policy, options?: FineTuneOptions): FineTuneOutput {
  return callNative(() => engine.native.fineTuneLoss(toInput(policy), kind, aligned ? toInput(aligned) : undefined, options));
}

/** `fineTuneLoss` off the main thread (one step of the fine-tuning attack); `signal` aborts it (HH_ABORTED). */
export async function fineTuneLossAsync(engine: ExactEngine, policy: Policy, kind: FineTuneName, aligned?: Policy, options?: FineTuneOptions & AbortOptions): Promise<FineTuneOutput> {
  const { signal, ...loss } = options ?? {};
  return withSignal(signal, (flag) => engine.native.fineTuneLossAsync(toInput(policy), kind, aligned ? toInput(aligned) : undefined, loss, flag));
}

/**
 * One sampled training step of a tabular, mlp or transformer policy: samples a batch, estimates the
 * gradient and updates `params` in place with `optimizer`.
 */
export function rlStep(mc: MonteCarlo, policy: Policy, params: Float64Array, optimizer: Optimizer, options: RlOptions): RlStepOutput {
  const { kind, shape, layout } = family(policy);
  return callNative(() => mc.native.rlStep(kind, shape, params, optimizer.native, options, layout));
}

/**
 * `rlStep` off the main thread: `params` and the optimizer are updated when the promise resolves
 * (the same numbers as `rlStep`). `signal` aborts it (HH_ABORTED), leaving both unchanged.
 */
export async function rlStepAsync(mc: MonteCarlo, policy: Policy, params: Float64Array, optimizer: Optimizer, options: RlOptions, call: AbortOptions = {}): Promise<RlStepOutput> {
  const { kind, shape, layout } = family(policy);
  return withSignal(call.signal, (flag) => mc.native.rlStepAsync(kind, shape, params, optimizer.native, options, layout, flag));
}

function family(policy: Policy) {
  const kind = policy.kind === 'mlp' || policy.kind === 'transformer' ? policy.kind : ('tabular' as const);
  const shape = policy.kind === 'mlp' ? policy.mlp : undefined;
  const layout = policy.kind === 'transformer' ? policy.transformer : undefined;
  return { kind, shape, layout };
}
