/**
 * The findings of a rollout log's profile, computed from its numbers with their uncertainty: where
 * the per-position KL sits, where the harm information sits and the horizon, how prefilling success
 * grows with depth, and whether the equilibrium-KL law holds. Each sentence is chosen by the values.
 */
import { num } from './format.js';
import type { LogProfile } from '../logs/profile.js';

/** "Most of" the on-policy KL: the first positions that carry this share of Σ_t D_t are named. */
export const KL_SHARE = 0.5;
/** The law "fits within its SEs" when χ²/dof is at most this (about the 95% point for a few dof). */
export const LAW_CHI2_PER_DOF = 2;
/** A growth of ASR with depth is "significant" when it exceeds this many combined SEs. */
export const SIGNIFICANT_SE = 2;

const pm = (x: number, se: number) => `${num(x)} ± ${num(se)}`;
const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;

/** The smallest t whose first t positions carry `share` of the summed positive values (0 when none). */
function coveringPrefix(values: number[], share: number): number {
  const total = values.reduce((s, v) => s + Math.max(v, 0), 0);
  if (!(total > 0)) return 0;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += Math.max(values[i], 0);
    if (sum >= share * total * (1 - 1e-12)) return i + 1;
  }
  return values.length;
}

function klFinding(p: LogProfile, policy: string, reference: string): string | null {
  const d = p.klProfile.map((r) => r.klOnPolicy);
  const total = d.reduce((s, v) => s + Math.max(v, 0), 0);
  if (d.length === 0 || !(total > 0)) return null;
  const k = coveringPrefix(d, KL_SHARE);
  const first = Math.max(d[0], 0) / total;
  const head = `On-policy KL(${policy} ‖ ${reference}) sums to ${num(total)} nats over ${d.length} positions; D_1 = ${pm(p.klProfile[0].klOnPolicy, p.klProfile[0].klOnPolicySE)} carries ${pct(first)} of it`;
  if (k === 1) return `${head}: a shallow profile, the policies differ mostly at the first position.`;
  return k <= Math.floor(d.length / 4)
    ? `${head}; the first ${k} positions carry ${pct(KL_SHARE)} of it: a shallow profile, the policies differ mostly at the start of the response.`
    : `${head}; ${pct(KL_SHARE)} of it is reached only by position ${k}: the difference is spread along the response, not concentrated at its start.`;
}

function informationFinding(p: LogProfile): string[] {
  const blocks = p.positions.filter((r) => r.harmInformation !== null);
  if (p.harmInformationModel === null || blocks.length === 0) return [];
  const total = blocks.reduce((s, r) => s + (r.harmInformation ?? 0), 0);
  const lines: string[] = [];
  if (total > 0) {
    const first = blocks[0];
    const share = (first.harmInformation ?? 0) / total;
    const span = first.tStart === first.tEnd ? `position ${first.tStart} carries` : `positions ${first.tStart}–${first.tEnd} carry`;
    lines.push(`Harm information (rollouts of ${p.harmInformationModel}): Σ I = ${num(total)}; ${span} ${pct(share)} of it (I = ${pm(first.harmInformation ?? 0, first.harmInformationSE ?? 0)}).`);
  } else {
    lines.push(`Harm information (rollouts of ${p.harmInformationModel}): Σ I = ${num(total)}, no positive information: the judge's score does not vary along the rollouts.`);
  }
  if (p.horizon && total > 0) {
    lines.push(
      `Harm horizon estimated at t = ${p.horizon.estimate} (information significant at 2 SE up to positions ${p.horizon.lower}–${p.horizon.estimate}; blocks that may still carry 1% of Σ I reach ${p.horizon.upper}).`,
    );
  }
  return lines;
}

function prefillFinding(p: LogProfile): string | null {
  if (p.prefill.length < 2) return null;
  const a = p.prefill[0];
  const b = p.prefill[p.prefill.length - 1];
  const gap = b.asr - a.asr;
  const se = Math.hypot(a.asrSE, b.asrSE);
  const verdict = gap > SIGNIFICANT_SE * se ? 'forcing a harmful start raises the harm of the continuation' : gap < -SIGNIFICANT_SE * se ? 'the policy recovers more often after a longer harmful start' : 'no significant change with depth at these sample sizes';
  return `Prefilling: ASR goes from ${pm(a.asr, a.asrSE)} at k = ${a.k} to ${pm(b.asr, b.asrSE)} at k = ${b.k}: ${verdict}.`;
}

function lawFinding(p: LogProfile): string | null {
  const f = p.fit;
  if (!f) return null;
  if (!Number.isFinite(f.lambda)) return 'KL law D ≈ (λ²/2)·I: no fit, I is 0 in every block.';
  const fits = f.dof > 0 && f.chiSquared / f.dof <= LAW_CHI2_PER_DOF;
  return (
    `KL law D ≈ (λ²/2)·I over ${f.blocks} blocks: λ̂ = ${pm(f.lambda, f.lambdaSE)}, R² = ${num(f.rSquared)}, χ² = ${num(f.chiSquared)} on ${f.dof} dof: ` +
    (f.dof === 0 ? 'one block, so the fit cannot be judged.' : fits ? 'consistent with the law within the SEs.' : `not consistent with the law (χ²/dof > ${LAW_CHI2_PER_DOF}).`)
  );
}

/** One sentence per finding of the profile. */
export function profileFindings(p: LogProfile, model: { policy: string; reference: string }): string[] {
  return [klFinding(p, model.policy, model.reference), ...informationFinding(p), prefillFinding(p), lawFinding(p)].filter((x): x is string => x !== null);
}
