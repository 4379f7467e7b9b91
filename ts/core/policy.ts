/**
 * Policies: the base model, the Gibbs optimum, tabular softmax logits per (position, state), the
 * `mlp` family (one network shared by all positions; see crate/core/src/mlp.rs for the layout) and
 * the `transformer` family (a decoder-only transformer reading the whole prefix; see
 * crate/core/src/transformer.rs). The exact engine analyses a transformer on the prefix tree
 * (`new ExactEngine(scenario, { prefixTree: true })`), where it is a function of the state.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { withSignal, type AbortOptions } from './abort.js';
import { callNative } from './errors.js';
import { native, type PolicyInput, type SparseRows } from './native.js';

/** The shape of an mlp: it reads the last `order` tokens ("<bos>"-padded) and the position. */
export interface MlpShape {
  order: number;
  /** Widths of the one or two hidden layers. */
  hidden: number[];
  activation: 'tanh' | 'relu';
}

export type Policy =
  | { kind: 'base' }
  | { kind: 'gibbs'; lambda: number }
  /** Softmax logits per (position, state), T × S × V at ((t − 1)·S + s)·V + a. */
  | { kind: 'tabular'; logits: Float64Array }
  /** Parameters of an mlp, a flat vector (Float64Array, handed to the core without copying). */
  | { kind: 'mlp'; mlp: MlpShape; params: Float64Array }
  /** Parameters of a transformer (layout in ts/transformer.ts), a flat vector. */
  | { kind: 'transformer'; transformer: TransformerLayout; params: Float64Array }
  /** Tabular logits stored per visited (position, context, automaton state), the base elsewhere (see lazy-tabular.ts). */
  | { kind: 'lazy-tabular'; rows: SparseRows };

export type { SparseRows };

/** The layout of a transformer policy; its vocabulary and length are the scenario's. */
export interface TransformerLayout {
  layers: number;
  width: number;
  /** Attention heads (dividing the width). */
  heads: number;
  /** Width of each layer's MLP block. */
  mlpWidth: number;
}

/** One layer of width 16, 2 heads, MLP width 32: small enough to train exactly on `horizon` in minutes. */
export const DEFAULT_TRANSFORMER: TransformerLayout = { layers: 1, width: 16, heads: 2, mlpWidth: 32 };

export const BASE: Policy = { kind: 'base' };

export const DEFAULT_MLP: MlpShape = { order: 1, hidden: [32], activation: 'tanh' };

/** Number of parameters of an mlp over a scenario. */
export function mlpNumParams(scenario: CompiledScenario, shape: MlpShape): number {
  return callNative(() => native.mlpNumParams(scenario.tokens.length, scenario.length, shape));
}

/** A seeded mlp (weights N(0, 1/fan-in), biases 0). */
export function initMlp(scenario: CompiledScenario, shape: MlpShape = DEFAULT_MLP, seed = 0): Policy & { kind: 'mlp' } {
  return { kind: 'mlp', mlp: shape, params: callNative(() => native.mlpInit(scenario.tokens.length, scenario.length, shape, seed)) };
}

/** A seeded transformer (see `Transformer.initParams`). */
export function initTransformer(scenario: CompiledScenario, layout: TransformerLayout = DEFAULT_TRANSFORMER, seed = 0): Policy & { kind: 'transformer' } {
  const net = callNative(() => new native.Transformer({ vocab: scenario.tokens.length, length: scenario.length, ...layout }));
  return { kind: 'transformer', transformer: { ...layout }, params: callNative(() => net.initParams(seed)) };
}

/** What fitting a transformer to the base reached: KL(P_base ‖ P_θ) over whole responses. */
export interface TransformerFit {
  /** Estimated on `klSamples` fresh base responses, with its standard error. */
  sampledKl: number;
  sampledKlSE: number;
  steps: number;
  batch: number;
}

/**
 * Fits a transformer to the base by teacher forcing: Adam (cosine-decayed rate) on the
 * cross-entropy of fresh base responses each step, an unbiased gradient of KL(P_base ‖ P_θ).
 * Works on scenarios too large to enumerate; the exact KL is `engine.klBetween`'s on the prefix tree.
 */
export function fitTransformerToBase(
  scenario: CompiledScenario,
  policy: Policy & { kind: 'transformer' },
  options: TransformerFitOptions = {},
): { policy: Policy & { kind: 'transformer' }; fit: TransformerFit } {
  const settings = transformerFitSettings(options);
  const out = callNative(() => native.transformerFitBase(nativeScenario(scenario), policy.transformer, policy.params, settings));
  return { policy: { ...policy, params: out.params }, fit: { sampledKl: out.sampledKl, sampledKlSE: out.sampledKlSe, steps: settings.steps, batch: settings.batch } };
}

/** `fitTransformerToBase` off the main thread; `signal` aborts it (HH_ABORTED). */
export async function fitTransformerToBaseAsync(
  scenario: CompiledScenario,
  policy: Policy & { kind: 'transformer' },
  options: TransformerFitOptions & AbortOptions = {},
): Promise<{ policy: Policy & { kind: 'transformer' }; fit: TransformerFit }> {
  const settings = transformerFitSettings(options);
  const out = await withSignal(options.signal, (flag) => native.transformerFitBaseAsync(nativeScenario(scenario), policy.transformer, policy.params, settings, flag));
  return { policy: { ...policy, params: out.params }, fit: { sampledKl: out.sampledKl, sampledKlSE: out.sampledKlSe, steps: settings.steps, batch: settings.batch } };
}

export interface TransformerFitOptions {
  /** Adam steps (default 300). */
  steps?: number;
  /** Fresh base responses per step (default 256). */
  batch?: number;
  /** Adam's initial rate, cosine-decayed to 0 (default 0.01). */
  learningRate?: number;
  /** Seed of the base responses (default 0). */
  seed?: number;
  /** Fresh base responses of the final KL estimate (default 4096). */
  klSamples?: number;
}

function transformerFitSettings(options: TransformerFitOptions) {
  return { steps: options.steps ?? 300, batch: options.batch ?? 256, learningRate: options.learningRate ?? 0.01, seed: options.seed ?? 0, klSamples: options.klSamples };
}

/** Numeric scenario in the form the core takes. */
export function nativeScenario(scenario: CompiledScenario) {
  return {
    vocab: scenario.tokens.length,
    length: scenario.length,
    endToken: scenario.endToken,
    order: scenario.order,
    base: scenario.base,
    transitions: scenario.transitions,
    harm: scenario.harm,
    start: scenario.start,
  };
}

/**
 * Fits an mlp to the base model: full-batch Adam on the cross-entropy to the base conditionals,
 * weighted by how often the base visits each (position, context). Returns the fitted policy and
 * KL(P_base ‖ P_mlp) over whole responses. Needs `shape.order` ≥ the scenario's context order.
 */
export function fitMlpToBase(scenario: CompiledScenario, policy: Policy & { kind: 'mlp' }, options: MlpFitOptions = {}): { policy: Policy & { kind: 'mlp' }; sequenceKl: number } {
  const out = callNative(() => native.mlpFitBase(nativeScenario(scenario), policy.mlp, policy.params, options.steps ?? 500, options.learningRate ?? 0.05));
  return { policy: { ...policy, params: out.params }, sequenceKl: out.sequenceKl };
}

/** `fitMlpToBase` off the main thread; `signal` aborts it (HH_ABORTED). */
export async function fitMlpToBaseAsync(scenario: CompiledScenario, policy: Policy & { kind: 'mlp' }, options: MlpFitOptions & AbortOptions = {}): Promise<{ policy: Policy & { kind: 'mlp' }; sequenceKl: number }> {
  const out = await withSignal(options.signal, (flag) => native.mlpFitBaseAsync(nativeScenario(scenario), policy.mlp, policy.params, options.steps ?? 500, options.learningRate ?? 0.05, flag));
  return { policy: { ...policy, params: out.params }, sequenceKl: out.sequenceKl };
}

export interface MlpFitOptions {
  /** Adam steps (default 500). */
  steps?: number;
  /** Adam's rate (default 0.05). */
  learningRate?: number;
}

/** The policy as the core takes it. */
export function toInput(policy: Policy): PolicyInput {
  return policy as PolicyInput;
}

/**
 * Logits of an mlp for a batch of inputs: positions t ∈ 1..T and contexts (the last `order` tokens
 * as a number in base V+1, oldest first, V standing for "<bos>"). Returns B × V.
 */
export function mlpLogits(scenario: CompiledScenario, policy: Policy & { kind: 'mlp' }, positions: Uint32Array, contexts: Uint32Array): Float64Array {
  return callNative(() => native.mlpLogits(scenario.tokens.length, scenario.length, policy.mlp, policy.params, positions, contexts));
}
