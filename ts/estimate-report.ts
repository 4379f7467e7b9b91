/**
 * `harm-horizon estimate`: Monte Carlo estimates of a policy's harm martingale, KL and gradients,
 * with the exact values beside them wherever the exact engine applies.
 */
import type { CompiledScenario } from './compiled.js';
import { HarmHorizonError } from './errors.js';
import { ExactEngine } from './exact.js';
import { num, table } from './format.js';
import { MonteCarlo, type Estimates, type GradientEstimator } from './montecarlo.js';
import type { Policy } from './policy.js';

export interface EstimateRequest {
  samples: number;
  seed: number;
  /** Nested rollouts per prefix and set; when absent, h_t is exact if the exact engine applies, else 16 rollouts. */
  rollouts?: number;
  estimator: GradientEstimator;
}

export interface EstimatePosition {
  t: number;
  harmInformation: number | null;
  harmInformationSE: number | null;
  harmInformationSupport: number | null;
  klOnPolicy: number;
  klOnPolicySE: number | null;
  klTeacherForced: number | null;
  klTeacherForcedSE: number | null;
  gradNorm: number | null;
  gradVariance: number | null;
  /** Exact values, when the exact engine applies. */
  exact?: { harmInformation: number; klOnPolicy: number; klTeacherForced: number | null; gradNorm: number | null };
}

export interface EstimateReport {
  scenario: string;
  policy: Policy['kind'];
  samples: number;
  seed: number;
  harmSource: 'exact' | 'rollouts';
  rollouts: number | null;
  estimator: GradientEstimator | null;
  expectedHarm: number;
  expectedHarmSE: number;
  exactExpectedHarm: number | null;
  /** P̂(τ = t), t = 0..T. */
  decisionTime: number[];
  positions: EstimatePosition[];
}

const finite = (x: number | undefined): number | null => (x === undefined || !Number.isFinite(x) ? null : x);

/** Runs the estimates (off the main thread) and the exact counterparts where they exist. */
export async function estimateReport(scenario: CompiledScenario, policy: Policy, request: EstimateRequest, exact: ExactEngine | null): Promise<EstimateReport> {
  if (!exact && (policy.kind === 'tabular' || policy.kind === 'gibbs')) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `a ${policy.kind} policy lives on exact states, and this scenario's state space is too large to build`);
  }
  const harmSource = request.rollouts !== undefined || !exact ? 'rollouts' : 'exact';
  const rollouts = harmSource === 'rollouts' ? (request.rollouts ?? 16) : null;
  const differentiable = policy.kind === 'tabular' || policy.kind === 'mlp' || (policy.kind === 'base' && exact !== null);
  const mc = new MonteCarlo(scenario, exact ? { exact } : {});
  const est: Estimates = await mc.estimateAsync(policy, {
    samples: request.samples,
    seed: request.seed,
    harm: harmSource,
    rollouts: rollouts ?? undefined,
    gradient: differentiable ? request.estimator : undefined,
    teacherForced: true,
  });
  let exactPositions: EstimatePosition['exact'][] | null = null;
  let exactExpectedHarm: number | null = null;
  if (exact) {
    const profile = exact.harmProfile(policy, { gradient: policy.kind === 'mlp' });
    const kl = exact.klOnPolicy(policy);
    const tf = exact.onHarmfulPrefixes(policy).klTeacherForced;
    let gradNorms: ArrayLike<number> | null = policy.kind === 'gibbs' ? null : profile.gradNorm;
    if (policy.kind === 'mlp' && profile.gradient) {
      const perPosition = exact.mlpPullBack(policy.mlp, policy.params, profile.gradient, true);
      const p = policy.params.length;
      gradNorms = Array.from({ length: scenario.length }, (_, t) => Math.hypot(...perPosition.subarray(t * p, (t + 1) * p)));
    }
    exactExpectedHarm = profile.expectedHarm;
    exactPositions = Array.from({ length: scenario.length }, (_, i) => ({
      harmInformation: profile.harmInformation[i],
      klOnPolicy: kl[i],
      klTeacherForced: finite(tf[i]),
      gradNorm: gradNorms ? gradNorms[i] : null,
    }));
  }
  return {
    scenario: scenario.name,
    policy: policy.kind,
    samples: request.samples,
    seed: request.seed,
    harmSource,
    rollouts,
    estimator: est.gradient ? request.estimator : null,
    expectedHarm: est.expectedHarm,
    expectedHarmSE: est.expectedHarmSE,
    exactExpectedHarm,
    decisionTime: Array.from(est.decisionTime),
    positions: Array.from({ length: scenario.length }, (_, i) => {
      const row: EstimatePosition = {
        t: i + 1,
        harmInformation: finite(est.harmInformation?.mean[i]),
        harmInformationSE: finite(est.harmInformation?.se[i]),
        harmInformationSupport: est.harmInformation ? est.harmInformation.support[i] : null,
        klOnPolicy: est.klOnPolicy.mean[i],
        klOnPolicySE: finite(est.klOnPolicy.se[i]),
        klTeacherForced: finite(est.klTeacherForced?.mean[i]),
        klTeacherForcedSE: finite(est.klTeacherForced?.se[i]),
        gradNorm: finite(est.gradient?.norm[i]),
        gradVariance: finite(est.gradient?.variance[i]),
      };
      if (exactPositions) row.exact = exactPositions[i];
      return row;
    }),
  };
}

const pm = (x: number | null, se: number | null) => (x === null ? '—' : `${num(x)} ± ${num(se)}`);

export function renderEstimateReport(r: EstimateReport): string {
  const lines = [
    `scenario ${r.scenario}, policy ${r.policy}: ${r.samples} samples, seed ${r.seed}, h_t ${r.harmSource === 'exact' ? 'exact' : `from ${r.rollouts} rollouts per prefix and set`}` +
      (r.estimator ? `, gradient estimator ${r.estimator}` : ''),
    `E[H] = ${pm(r.expectedHarm, r.expectedHarmSE)}` + (r.exactExpectedHarm === null ? '' : `   (exact ${num(r.exactExpectedHarm)})`),
    '',
  ];
  const hasExact = r.positions.some((p) => p.exact);
  const header = ['t', 'I_t (MC)', ...(hasExact ? ['exact'] : []), 'KL on-policy (MC)', ...(hasExact ? ['exact'] : []), 'KL teacher-forced (MC)', ...(hasExact ? ['exact'] : []), '‖Ĝ_t‖', ...(hasExact ? ['exact'] : []), 'var'];
  const rows = r.positions.map((p) => [
    String(p.t),
    pm(p.harmInformation, p.harmInformationSE),
    ...(hasExact ? [num(p.exact?.harmInformation ?? null)] : []),
    pm(p.klOnPolicy, p.klOnPolicySE),
    ...(hasExact ? [num(p.exact?.klOnPolicy ?? null)] : []),
    pm(p.klTeacherForced, p.klTeacherForcedSE),
    ...(hasExact ? [num(p.exact?.klTeacherForced ?? null)] : []),
    num(p.gradNorm),
    ...(hasExact ? [num(p.exact?.gradNorm ?? null)] : []),
    num(p.gradVariance),
  ]);
  lines.push(table(header, rows));
  return lines.join('\n');
}
