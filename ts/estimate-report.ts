/**
 * `harm-horizon estimate`: Monte Carlo estimates of a policy's harm martingale, KL and gradients,
 * with the exact values beside them wherever the exact engine applies.
 */
import type { CompiledScenario } from './scenario/compiled.js';
import type { AbortOptions } from './core/abort.js';
import { HarmHorizonError } from './core/errors.js';
import { ExactEngine } from './core/exact.js';
import { num, table } from './report/format.js';
import { DEFAULT_TILT, MonteCarlo, type Estimates, type GradientEstimator, type InformationProposalSummary, type Proposal } from './core/montecarlo.js';
import type { Policy } from './core/policy.js';

export interface EstimateRequest {
  samples: number;
  seed: number;
  /** Nested rollouts per prefix and set; when absent, h_t is exact if the exact engine applies, else 16 rollouts. */
  rollouts?: number;
  estimator: GradientEstimator;
  /** Draw from the policy (default), from the policy tilted toward harm (no gradients then), or from the information proposal; reweighted. */
  proposal?: Proposal;
  /** κ of the tilted proposal (default DEFAULT_TILT). */
  tilt?: number;
}

/** A table cell whose SE rests on fewer effective samples than this is marked. */
export const MIN_SUPPORT = 30;

export interface EstimatePosition {
  t: number;
  harmInformation: number | null;
  harmInformationSE: number | null;
  harmInformationSupport: number | null;
  klOnPolicy: number;
  klOnPolicySE: number | null;
  klOnPolicySupport: number;
  klTeacherForced: number | null;
  klTeacherForcedSE: number | null;
  klTeacherForcedSupport: number | null;
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
  /** With the tilted proposal: its method ("exact" or "per-token"), κ and Kish's effective sample size. */
  /** With the information proposal: its positions, component counts and weights (mean w with SE, max w ≤ K). */
  proposal: { kind: 'tilted'; method: 'exact' | 'per-token'; tilt: number; effectiveSampleSize: number } | ({ kind: 'information' } & InformationProposalSummary) | null;
  expectedHarm: number;
  expectedHarmSE: number;
  expectedHarmSupport: number;
  exactExpectedHarm: number | null;
  /**
   * P̂(τ = t), t = 0..T, τ the first t with h_t ∈ {0, 1} (with rollouts: the first t at which all
   * continuations agree on harm 0 or 1, never later than τ), with SEs, supports and the exact values.
   */
  decisionTime: number[];
  decisionTimeSE: number[];
  decisionTimeSupport: number[];
  exactDecisionTime: number[] | null;
  /** P̂(τ > T): the harm never settles (only for non-binary harm); the histogram sums to 1 − this. */
  undecided: number;
  undecidedSE: number;
  undecidedSupport: number;
  exactUndecided: number | null;
  positions: EstimatePosition[];
}

const finite = (x: number | undefined): number | null => (x === undefined || !Number.isFinite(x) ? null : x);

/** Runs the estimates (off the main thread) and the exact counterparts where they exist. */
export async function estimateReport(scenario: CompiledScenario, policy: Policy, request: EstimateRequest, exact: ExactEngine | null, call: AbortOptions = {}): Promise<EstimateReport> {
  if (!exact && request.proposal === 'information') {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', '--proposal information needs the exact engine (h_t exact on the exact states), and this scenario is over the memory budget');
  }
  if (!exact && (policy.kind === 'tabular' || policy.kind === 'gibbs')) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `a ${policy.kind} policy lives on exact states, and this scenario's state space is too large to build`);
  }
  const harmSource = request.rollouts !== undefined || !exact ? 'rollouts' : 'exact';
  const rollouts = harmSource === 'rollouts' ? (request.rollouts ?? 16) : null;
  const differentiable = policy.kind === 'tabular' || policy.kind === 'mlp' || (policy.kind === 'base' && exact !== null);
  const mc = new MonteCarlo(scenario, exact ? { exact } : {});
  const tilted = request.proposal === 'tilted';
  const est: Estimates = await mc.estimateAsync(policy, {
    samples: request.samples,
    seed: request.seed,
    harm: harmSource,
    rollouts: rollouts ?? undefined,
    gradient: differentiable && !tilted ? request.estimator : undefined,
    teacherForced: true,
    ...(tilted ? { proposal: 'tilted' as const, tilt: request.tilt ?? DEFAULT_TILT } : {}),
    ...(request.proposal === 'information' ? { proposal: 'information' as const } : {}),
  }, call);
  let exactPositions: EstimatePosition['exact'][] | null = null;
  let exactExpectedHarm: number | null = null;
  let exactDecisionTime: number[] | null = null;
  let exactUndecided: number | null = null;
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
    exactDecisionTime = Array.from(profile.decisionTime);
    exactUndecided = profile.undecided;
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
    proposal: est.importance ? { kind: 'tilted', ...est.importance } : est.information ? { kind: 'information', ...est.information } : null,
    expectedHarm: est.expectedHarm,
    expectedHarmSE: est.expectedHarmSE,
    expectedHarmSupport: est.expectedHarmSupport,
    exactExpectedHarm,
    decisionTime: Array.from(est.decisionTime!),
    decisionTimeSE: Array.from(est.decisionTimeSE!),
    decisionTimeSupport: Array.from(est.decisionTimeSupport!),
    exactDecisionTime,
    undecided: est.undecided!.mean,
    undecidedSE: est.undecided!.se,
    undecidedSupport: est.undecided!.support,
    exactUndecided,
    positions: Array.from({ length: scenario.length }, (_, i) => {
      const row: EstimatePosition = {
        t: i + 1,
        harmInformation: finite(est.harmInformation?.mean[i]),
        harmInformationSE: finite(est.harmInformation?.se[i]),
        harmInformationSupport: est.harmInformation ? est.harmInformation.support[i] : null,
        klOnPolicy: est.klOnPolicy.mean[i],
        klOnPolicySE: finite(est.klOnPolicy.se[i]),
        klOnPolicySupport: est.klOnPolicy.support[i],
        klTeacherForced: finite(est.klTeacherForced?.mean[i]),
        klTeacherForcedSE: finite(est.klTeacherForced?.se[i]),
        klTeacherForcedSupport: est.klTeacherForced ? est.klTeacherForced.support[i] : null,
        gradNorm: finite(est.gradient?.norm[i]),
        gradVariance: finite(est.gradient?.variance[i]),
      };
      if (exactPositions) row.exact = exactPositions[i];
      return row;
    }),
  };
}

/** "x ± se", marked with † when fewer than MIN_SUPPORT effective samples carry the SE. */
function pm(x: number | null, se: number | null, support: number | null): string {
  if (x === null) return '—';
  return `${num(x)} ± ${num(se)}${support !== null && support < MIN_SUPPORT ? ' †' : ''}`;
}

export const SUPPORT_LEGEND = `† the SE rests on fewer than ${MIN_SUPPORT} effective samples (rare events drawn a few times, or not at all): it may understate the error`;

export function renderEstimateReport(r: EstimateReport): string {
  const source = r.harmSource === 'exact' ? 'exact' : `from ${r.rollouts} rollouts per prefix and set`;
  const proposal = !r.proposal
    ? ''
    : r.proposal.kind === 'tilted'
      ? `, proposal tilted (κ = ${r.proposal.tilt}, ${r.proposal.method}; Kish effective sample size ${num(r.proposal.effectiveSampleSize, 1)})`
      : `, proposal information (${r.proposal.positions.length} components + the policy; mean weight ${num(r.proposal.meanWeight.mean)} ± ${num(r.proposal.meanWeight.se)}, max ${num(r.proposal.maxWeight)} ≤ ${r.proposal.weightBound}; Kish effective sample size ${num(r.proposal.effectiveSampleSize, 1)})`;
  const exactOf = (x: number | null) => (x === null ? '' : `   (exact ${num(x)})`);
  const lines = [
    `scenario ${r.scenario}, policy ${r.policy}: ${r.samples} samples, seed ${r.seed}, h_t ${source}${proposal}` + (r.estimator ? `, gradient estimator ${r.estimator}` : ''),
    `E[H] = ${pm(r.expectedHarm, r.expectedHarmSE, r.expectedHarmSupport)}` + exactOf(r.exactExpectedHarm),
    '',
  ];
  const hasExact = r.positions.some((p) => p.exact);
  const header = ['t', 'I_t (MC)', ...(hasExact ? ['exact'] : []), 'KL on-policy (MC)', ...(hasExact ? ['exact'] : []), 'KL teacher-forced (MC)', ...(hasExact ? ['exact'] : []), '‖Ĝ_t‖', ...(hasExact ? ['exact'] : []), 'var'];
  const rows = r.positions.map((p) => [
    String(p.t),
    pm(p.harmInformation, p.harmInformationSE, p.harmInformationSupport),
    ...(hasExact ? [num(p.exact?.harmInformation ?? null)] : []),
    pm(p.klOnPolicy, p.klOnPolicySE, p.klOnPolicySupport),
    ...(hasExact ? [num(p.exact?.klOnPolicy ?? null)] : []),
    pm(p.klTeacherForced, p.klTeacherForcedSE, p.klTeacherForcedSupport),
    ...(hasExact ? [num(p.exact?.klTeacherForced ?? null)] : []),
    num(p.gradNorm),
    ...(hasExact ? [num(p.exact?.gradNorm ?? null)] : []),
    num(p.gradVariance),
  ]);
  lines.push(table(header, rows));
  const tau = r.harmSource === 'exact' ? 'τ = first t with h_t ∈ {0, 1}' : 'τ̂ = first t at which every rollout agrees on harm 0 or 1 (never later than τ)';
  const tauRows = r.decisionTime.map((p, t) => [String(t), pm(p, r.decisionTimeSE[t], r.decisionTimeSupport[t]), ...(r.exactDecisionTime ? [num(r.exactDecisionTime[t])] : [])]);
  tauRows.push([`> ${r.decisionTime.length - 1}`, pm(r.undecided, r.undecidedSE, r.undecidedSupport), ...(r.exactUndecided === null ? [] : [num(r.exactUndecided)])]);
  lines.push('', `decision time, ${tau}:`, table(['t', 'P(τ = t) (MC)', ...(r.exactDecisionTime ? ['exact'] : [])], tauRows), '', SUPPORT_LEGEND);
  return lines.join('\n');
}
