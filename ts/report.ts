/**
 * The machine-readable result of `harm-horizon analyze` (the output contract of `--json`).
 */
import type { CompiledScenario } from './compiled.js';
import type { Analysis } from './exact.js';

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
  states: number;
  /** P(τ = 0): harm decided before any token; P(τ > T): never decided. */
  decidedAtStart: number;
  undecided: number;
  positions: PositionRow[];
  prefill: PrefillRow[];
}

/** NaN (undefined quantities, e.g. teacher-forced KL when the base is never harmful) becomes null. */
function finiteOrNull(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

export function analyzeReport(
  scenario: CompiledScenario,
  analysis: Analysis,
  states: number,
  horizonTolerance: number,
): AnalyzeReport {
  const base = analysis.base;
  return {
    scenario: scenario.name,
    lambda: analysis.lambda,
    expectedHarm: { base: base.expectedHarm, aligned: analysis.alignedExpectedHarm },
    harmVariance: base.harmVariance,
    harmInformationSum: base.harmInformation.reduce((a, b) => a + b, 0),
    horizon: base.horizon,
    horizonTolerance,
    states,
    decidedAtStart: base.decisionTime[0],
    // 1 − P(τ ≤ T) can come out as −2e-16: clamp rounding below zero.
    undecided: Math.max(0, base.undecided),
    positions: Array.from({ length: scenario.length }, (_, i) => ({
      t: i + 1,
      harmInformation: base.harmInformation[i],
      gradNorm: base.gradNorm[i],
      gradBound: base.gradBound[i],
      klOnPolicy: analysis.klOnPolicy[i],
      klTeacherForced: finiteOrNull(analysis.klTeacherForced[i]),
      klPredicted: analysis.klPredicted[i],
      decisionTime: base.decisionTime[i + 1],
    })),
    prefill: Array.from({ length: scenario.length + 1 }, (_, k) => ({
      k,
      asrBase: finiteOrNull(analysis.asrBase[k]),
      asrAligned: finiteOrNull(analysis.asrAligned[k]),
    })),
  };
}
