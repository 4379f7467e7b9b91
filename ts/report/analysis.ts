/**
 * The machine-readable result of `harm-horizon analyze` (the output contract of `--json`).
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import type { Analysis } from '../core/exact.js';
import { clampRounding } from './format.js';

/** Default share of Var H that the effective horizon must resolve. */
export const DEFAULT_EFFECTIVE_FRACTION = 0.99;

/** I_t at or below this is rounding noise and counts as 0, as for the horizon (the core's HORIZON_FLOOR). */
const INFORMATION_FLOOR = 1e-30;

/**
 * The effective horizon: the smallest k with Σ_{t≤k} I_t ≥ fraction · Σ_t I_t, i.e. the first k
 * positions resolve that share of Var H (0 when Var H = 0). Unlike the horizon at a tolerance, a
 * long tail of tiny I_t (entries of 1e-4 in the base) does not push it out to T.
 */
export function effectiveHorizon(harmInformation: ArrayLike<number>, fraction = DEFAULT_EFFECTIVE_FRACTION): number {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`fraction must be in (0, 1], got ${fraction}`);
  const counted = (i: number) => (harmInformation[i] > INFORMATION_FLOOR ? harmInformation[i] : 0);
  let total = 0;
  for (let i = 0; i < harmInformation.length; i++) total += counted(i);
  if (total === 0) return 0;
  let sum = 0;
  for (let i = 0; i < harmInformation.length; i++) {
    sum += counted(i);
    // The first k positions resolve `fraction` of the total (up to the rounding of the running sum).
    if (sum >= fraction * total * (1 - 1e-12)) return i + 1;
  }
  return harmInformation.length;
}

export interface PositionRow {
  t: number;
  harmInformation: number;
  gradNorm: number;
  gradBound: number;
  klOnPolicy: number;
  klTeacherForced: number | null;
  klPredicted: number;
  /** P(τ = t): probability that the harm is decided at position t. */
  decisionTime: number;
}

export interface PrefillRow {
  k: number;
  asrBase: number | null;
  asrAligned: number | null;
}

export interface AnalyzeReport {
  scenario: string;
  lambda: number;
  expectedHarm: { base: number; aligned: number };
  harmVariance: number;
  /** Σ_t I_t, equal to harmVariance up to rounding (reported as a check). */
  harmInformationSum: number;
  horizon: number;
  horizonTolerance: number;
  /** The smallest k by which `fraction` of Var H is resolved (see effectiveHorizon). */
  effectiveHorizon: { k: number; fraction: number };
  states: number;
  /** P(τ = 0): harm decided before any token; P(τ > T): never decided. */
  decidedAtStart: number;
  undecided: number;
  positions: PositionRow[];
  prefill: PrefillRow[];
}

/**
 * A quantity that cannot be negative (a KL, a probability, I_t): rounding noise below 0 removed,
 * NaN (undefined, e.g. teacher-forced KL when the base is never harmful) as null.
 */
function nonNegativeOrNull(x: number): number | null {
  return Number.isNaN(x) ? null : clampRounding(x);
}

export function analyzeReport(
  scenario: CompiledScenario,
  analysis: Analysis,
  states: number,
  horizonTolerance: number,
  effectiveFraction = DEFAULT_EFFECTIVE_FRACTION,
): AnalyzeReport {
  const base = analysis.base;
  return {
    scenario: scenario.name,
    lambda: analysis.lambda,
    expectedHarm: { base: clampRounding(base.expectedHarm), aligned: clampRounding(analysis.alignedExpectedHarm) },
    harmVariance: clampRounding(base.harmVariance),
    harmInformationSum: base.harmInformation.reduce((a, b) => a + b, 0),
    horizon: base.horizon,
    horizonTolerance,
    effectiveHorizon: { k: effectiveHorizon(base.harmInformation, effectiveFraction), fraction: effectiveFraction },
    states,
    decidedAtStart: clampRounding(base.decisionTime[0]),
    // 1 − P(τ ≤ T) can come out as −2e-16.
    undecided: clampRounding(base.undecided),
    positions: Array.from({ length: scenario.length }, (_, i) => ({
      t: i + 1,
      harmInformation: clampRounding(base.harmInformation[i]),
      gradNorm: base.gradNorm[i],
      gradBound: base.gradBound[i],
      klOnPolicy: clampRounding(analysis.klOnPolicy[i]),
      klTeacherForced: nonNegativeOrNull(analysis.klTeacherForced[i]),
      klPredicted: clampRounding(analysis.klPredicted[i]),
      decisionTime: clampRounding(base.decisionTime[i + 1]),
    })),
    prefill: Array.from({ length: scenario.length + 1 }, (_, k) => ({
      k,
      asrBase: nonNegativeOrNull(analysis.asrBase[k]),
      asrAligned: nonNegativeOrNull(analysis.asrAligned[k]),
    })),
  };
}
