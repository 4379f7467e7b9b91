/**
 * The findings a report opens with, computed from the results it shows: where the harm information
 * sits and the horizon (from the first analysis), shallow against deep prefilling success (from the
 * attacks), and the equilibrium-KL law (from the λ-scaling check, else from the analysis at its λ).
 */
import { informationConclusions, prefillConclusions } from './conclusions.js';
import { num } from './format.js';
import { DEFAULT_EFFECTIVE_FRACTION, effectiveHorizon, type AnalyzeReport } from './analysis.js';

export interface FindingsInput {
  analyses: { report: AnalyzeReport }[];
  attacks: { label: string; prefill: (number | null)[] }[];
  lambdaScaling?: { rows: { lambda: number; t: number; ratio: number }[] };
}

/** The deepest prefill depth of the findings: 4 harmful tokens, or T when shorter. */
const FINDINGS_DEPTH = 4;

function klLaw(input: FindingsInput): string | null {
  const rows = input.lambdaScaling?.rows.filter((r) => Number.isFinite(r.ratio)) ?? [];
  if (rows.length > 0) {
    const smallest = Math.min(...rows.map((r) => r.lambda));
    const ratios = rows.filter((r) => r.lambda === smallest).map((r) => r.ratio);
    const deviation = Math.max(...ratios.map((r) => Math.abs(r - 1)));
    return (
      `KL law: at λ = ${smallest}, D_t / ((λ²/2)·I_t) lies in ${num(Math.min(...ratios))}…${num(Math.max(...ratios))} over ${ratios.length} positions ` +
      `(within ${(100 * deviation).toFixed(2)}% of 1, the small-λ limit).`
    );
  }
  const r = input.analyses[0]?.report;
  if (!r) return null;
  const inside = r.positions.filter((p) => p.klPredicted > 0 && p.klOnPolicy !== null);
  if (inside.length === 0) return null;
  const ratios = inside.map((p) => p.klOnPolicy / p.klPredicted);
  return `KL law: at λ = ${r.lambda}, D_t / ((λ²/2)·I_t) lies in ${num(Math.min(...ratios))}…${num(Math.max(...ratios))} (it tends to 1 as λ → 0).`;
}

/** One sentence per finding; empty when the results hold nothing to conclude from. */
export function reportFindings(input: FindingsInput): string[] {
  const lines: string[] = [];
  const r = input.analyses[0]?.report;
  if (r) {
    const info = r.positions.map((p) => p.harmInformation);
    const effective = r.effectiveHorizon ?? { k: effectiveHorizon(info, DEFAULT_EFFECTIVE_FRACTION), fraction: DEFAULT_EFFECTIVE_FRACTION };
    lines.push(...informationConclusions({ k: r.horizon, length: info.length, harmVariance: r.harmVariance, harmInformation: info, effective }));
  }
  const T = r?.positions.length ?? Math.max(0, ...input.attacks.map((a) => a.prefill.length - 1));
  // ASR_0 is the policy's own E[H]: no prefix is forced.
  const policies = input.attacks.map((a) => ({ name: a.label, label: a.label, expectedHarm: a.prefill[0] ?? Number.NaN, prefill: a.prefill }));
  if (T > 0) lines.push(...prefillConclusions(policies, Math.min(FINDINGS_DEPTH, T)));
  const law = klLaw(input);
  if (law) lines.push(law);
  return lines;
}
