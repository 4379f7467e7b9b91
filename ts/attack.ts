/**
 * Attacks on an aligned policy: prefilling, rank-assisted prefilling and fine-tuning on harmful
 * responses (with Qi et al.'s token-wise constrained objective as the defence). Exact on enumerable
 * scenarios; prefilling is also estimated by sampling when the state space is too large.
 */
import type { CompiledScenario } from './compiled.js';
import { callNative, HarmHorizonError } from './errors.js';
import type { ExactEngine } from './exact.js';
import { MonteCarlo, NO_TOKEN } from './montecarlo.js';
import { native } from './native.js';
import { BASE, toInput, type Policy } from './policy.js';

/** Default r of rank-assisted prefilling (capped at V). */
export const DEFAULT_RANK = 20;

/** Prefilling success ASR_k, k = 0..T: force the first k tokens of a harmful base response. */
export function prefillAttack(engine: ExactEngine, policy: Policy): Float64Array {
  return engine.onHarmfulPrefixes(policy).asr;
}

/** The rank-assisted attacker against a policy, as a tabular policy. */
export function rankAssistedAttacker(engine: ExactEngine, policy: Policy, rank = DEFAULT_RANK): Policy {
  return { kind: 'tabular', logits: callNative(() => engine.native.rankAssisted(toInput(policy), rank)) };
}

/** Rank-assisted prefilling success, k = 0..T. */
export function rankAssistedAttack(engine: ExactEngine, policy: Policy, rank = DEFAULT_RANK): Float64Array {
  return engine.onHarmfulPrefixes(rankAssistedAttacker(engine, policy, rank)).asr;
}

/**
 * Prefilling by sampling, for policies on scenarios too large to enumerate: for each k, N harmful
 * base responses (rejection sampling on H = 1) give the prefixes, the policy continues. Returns
 * ASR_k with its standard error.
 */
export function sampledPrefillAttack(scenario: CompiledScenario, policy: Policy, options: { samples: number; seed: number }): { asr: number[]; se: number[] } {
  const mc = new MonteCarlo(scenario);
  const t = scenario.length;
  // Harmful base responses: draw until N are harmful (bounded), weighting non-binary harm by acceptance.
  const harmful: Uint32Array[] = [];
  for (let batch = 0; harmful.length < options.samples && batch < 64; batch++) {
    const s = mc.sample(BASE, { count: options.samples, seed: options.seed, firstIndex: batch * options.samples });
    for (let n = 0; n < s.count && harmful.length < options.samples; n++) {
      if (s.harm[n] >= 1) harmful.push(s.tokens.slice(n * t, (n + 1) * t));
    }
  }
  if (harmful.length === 0) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'no harmful base response was drawn: nothing to prefill');
  const count = harmful.length;
  const asr: number[] = [];
  const se: number[] = [];
  for (let k = 0; k <= t; k++) {
    const prefix = new Uint32Array(count * Math.max(k, 1)).fill(NO_TOKEN);
    for (let n = 0; n < count; n++) prefix.set(harmful[n].subarray(0, k), n * Math.max(k, 1));
    const out = mc.sample(policy, { count, seed: options.seed + 1, prefix: k > 0 ? prefix : undefined, prefixLength: k > 0 ? k : undefined });
    const mean = out.harm.reduce((a, b) => a + b, 0) / count;
    const variance = out.harm.reduce((a, h) => a + (h - mean) ** 2, 0) / Math.max(count - 1, 1);
    asr.push(mean);
    se.push(Math.sqrt(variance / count));
  }
  return { asr, se };
}

export interface FineTuneStep {
  step: number;
  /** Prefilling success ASR_k after this many steps (ASR_0 = E[H]). */
  asr: number[];
  /** Per-position loss and gradient norm of the fine-tuning objective. */
  lossPerPosition: number[];
  gradNorm: number[];
  loss: number;
}

/**
 * The fine-tuning attack: `steps` steps of exact (full-batch) gradient descent on the chosen loss over
 * the base's harmful responses, starting from `policy`; `constrained` is Qi et al.'s token-wise
 * objective against the frozen starting policy with per-position β (default 0.5, 2, 2, 2, 2, 0.1, …).
 */
export function fineTuneAttack(
  engine: ExactEngine,
  policy: Policy,
  options: { steps: number; learningRate: number; objective: 'sft' | 'constrained'; beta?: Float64Array },
): { policy: Policy; trace: FineTuneStep[] } {
  const start: Policy = policy.kind === 'tabular' || policy.kind === 'mlp' ? structuredClone(policy) : asTabular(engine, policy);
  const aligned = structuredClone(start);
  const params = start.kind === 'tabular' ? start.logits : (start as Policy & { kind: 'mlp' }).params;
  const optimizer = callNative(() => new native.Optimizer('sgd', params.length, options.learningRate));
  const trace: FineTuneStep[] = [];
  for (let step = 0; step <= options.steps; step++) {
    const value = callNative(() => engine.native.fineTuneLoss(toInput(start), options.objective, toInput(aligned), options.beta));
    trace.push({
      step,
      asr: Array.from(prefillAttack(engine, start)),
      lossPerPosition: Array.from(value.lossPerPosition),
      gradNorm: Array.from(value.gradNorm),
      loss: value.loss,
    });
    if (step < options.steps) callNative(() => optimizer.step(params, value.gradient));
  }
  return { policy: start, trace };
}

/** Any policy as tabular logits over the exact states (log-probabilities). */
export function asTabular(engine: ExactEngine, policy: Policy): Policy & { kind: 'tabular' } {
  if (policy.kind === 'tabular') return policy;
  if (policy.kind === 'mlp') return { kind: 'tabular', logits: engine.mlpTabulate(policy.mlp, policy.params) };
  if (policy.kind === 'base') return { kind: 'tabular', logits: callNative(() => engine.native.baseLogits()) };
  // The Gibbs optimum, read row by row as log-probabilities.
  return { kind: 'tabular', logits: callNative(() => engine.native.policyLogits(toInput(policy))) };
}
