/**
 * Typed wrapper of the core's log statistics (crate/core/src/log_stats.rs): per-token KL estimators,
 * the two-stage cluster bootstrap over prompts, and the fit of D ≈ (λ²/2)·I. Synchronous, as the
 * inputs are small next to the model runs that produce a log, except the bootstrap, whose cost grows
 * with replicates × units: it also has an async form that takes an AbortSignal.
 */
import { withSignal, type AbortOptions } from './abort.js';
import { callNative } from './errors.js';
import { native } from './native.js';

/** k1 = log p − log q and k3 = (r − 1) − log r, r = q/p, for tokens drawn from p. */
export function klTokenEstimates(logP: Float64Array, logQ: Float64Array): { k1: Float64Array; k3: Float64Array } {
  return callNative(() => native.klTokenEstimates(logP, logQ));
}

/** KL(p ‖ q) per row of full distributions (log-probabilities, rows × width). */
export function klFullRows(logP: Float64Array, logQ: Float64Array, width: number): Float64Array {
  return callNative(() => native.klFullRows(logP, logQ, width));
}

/** A lower bound of KL(p ‖ q) per row from tokens known under both models (row r: offsets[r]..offsets[r+1]). */
export function klLowerBoundRows(pKnown: Float64Array, qKnown: Float64Array, offsets: Uint32Array): Float64Array {
  return callNative(() => native.klLowerBoundRows(pKnown, qKnown, offsets));
}

export interface BootstrapInput {
  /** Prompt number per unit. */
  prompt: Uint32Array;
  /** Record kind per unit; units are resampled within (prompt, kind). */
  stratum: Uint32Array;
  /** units × columns values and weights (weight 0: the unit does not inform that column). */
  values: Float64Array;
  weights: Float64Array;
  columns: number;
  replicates: number;
  seed: number;
}

export interface BootstrapResult {
  /** Mean over prompts of the within-prompt weighted means (NaN: no data). */
  estimate: Float64Array;
  se: Float64Array;
  /** Effective number of units carrying the variance. */
  support: Float64Array;
  /** replicates × columns. */
  replicates: Float64Array;
}

/** Estimates with two-stage cluster-bootstrap standard errors (prompts, then units within each). */
export function clusterBootstrap(input: BootstrapInput): BootstrapResult {
  return callNative(() => native.clusterBootstrap(input));
}

/** `clusterBootstrap` off the main thread; `signal` aborts it between replicates (HH_ABORTED). */
export async function clusterBootstrapAsync(input: BootstrapInput, options: AbortOptions = {}): Promise<BootstrapResult> {
  return withSignal(options.signal, (flag) => native.clusterBootstrapAsync(input, flag));
}

export interface LawFit {
  lambda: number;
  lambdaSE: number;
  /** c = λ²/2. */
  scale: number;
  scaleSE: number;
  rSquared: number;
  chiSquared: number;
  dof: number;
  blocks: number;
}

/** Least-squares fit of D ≈ (λ²/2)·I over blocks; λ's SE from the bootstrap replicates (replicates × blocks). */
export function fitKlLaw(d: Float64Array, dSE: Float64Array, i: Float64Array, iSE: Float64Array, dReplicates: Float64Array, iReplicates: Float64Array): LawFit {
  const f = callNative(() => native.fitKlLaw(d, dSE, i, iSE, dReplicates, iReplicates));
  return { lambda: f.lambda, lambdaSE: f.lambdaSe, scale: f.scale, scaleSE: f.scaleSe, rSquared: f.rSquared, chiSquared: f.chiSquared, dof: f.dof, blocks: f.blocks };
}
