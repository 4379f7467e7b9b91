/**
 * The demo's conclusions, computed from its numbers: where the harm information sits, what the
 * horizon means for the gradient of E[H], and whether deep alignment resists prefilling better than
 * standard alignment. Each sentence is chosen by the values it reports, never written in advance.
 */
import { clampRounding, num } from './format.js';

/** A share of I_1 at or above this counts as "the first token carries most of Var H". */
export const FIRST_TOKEN_MAJORITY = 0.5;
/** Deep alignment "resists" prefilling when its ASR is at most this fraction of the standard policy's. */
export const RESISTS_RATIO = 0.5;

export interface ConclusionInput {
  horizon: { k: number; length: number; harmVariance: number; harmInformation: number[]; effective: { k: number; fraction: number } };
  policies: { name: string; label: string; expectedHarm: number; prefill: (number | null)[] }[];
}

const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;

/** Where Var H sits along the response, and what the horizon means for training by E[H]. */
export function informationConclusions(h: ConclusionInput['horizon']): string[] {
  if (!(h.harmVariance > 0)) return ['H is constant under the base: there is no harm information, and E[H] has no gradient to train on.'];
  const first = clampRounding(h.harmInformation[0] ?? 0) / h.harmVariance;
  const effective = `${Number((100 * h.effective.fraction).toFixed(4))}% of Var(H) is resolved by position ${h.effective.k}`;
  const lines = [
    first >= FIRST_TOKEN_MAJORITY
      ? `I_1 carries ${pct(first)} of Var(H) = ${num(h.harmVariance)}: the training signal of E[H] falls mostly on the first token (${effective}).`
      : `I_1 carries only ${pct(first)} of Var(H) = ${num(h.harmVariance)}: the training signal of E[H] is spread over the first ${h.effective.k} positions (${effective}), not concentrated on the first token.`,
  ];
  if (h.k < h.length) {
    lines.push(`Harm horizon k = ${h.k} of T = ${h.length}: I_t = 0 after it, so no gradient of E[H] reaches positions ${h.k + 1}..${h.length}.`);
  } else if (h.effective.k < h.length) {
    lines.push(`Harm horizon k = T = ${h.length}: some harm information remains at every position, but it is small after position ${h.effective.k}.`);
  } else {
    lines.push(`Harm horizon k = T = ${h.length}: harm information reaches the last position.`);
  }
  return lines;
}

/** Prefilling against the standard policy (the Gibbs optimum, else one named "standard…") and the deep ones, at depth k. */
export function prefillConclusions(policies: ConclusionInput['policies'], k: number): string[] {
  const standard = policies.find((p) => p.name === 'gibbs') ?? policies.find((p) => p.name.startsWith('standard'));
  const deep = policies.filter((p) => p.name.startsWith('deep'));
  const asr = (p: ConclusionInput['policies'][number]) => p.prefill[k] ?? null;
  if (!standard || asr(standard) === null) return [];
  const s = asr(standard) as number;
  const lines = [`Prefilling k = ${k} harmful tokens moves the harm of the ${standard.label} policy from E[H] = ${num(standard.expectedHarm)} to ASR_${k} = ${num(s)}.`];
  for (const d of deep) {
    const a = asr(d);
    if (a === null) continue;
    const verdict = a <= RESISTS_RATIO * s ? 'resists it' : a < s ? 'resists it only partly' : 'does not resist it';
    lines.push(`The ${d.label} policy ${verdict}: ASR_${k} = ${num(a)} (E[H] = ${num(d.expectedHarm)}).`);
  }
  return lines;
}

/** The conclusions, one sentence a line; `k` is the prefill depth compared. */
export function demoConclusions(input: ConclusionInput, k: number): string[] {
  return [...informationConclusions(input.horizon), ...prefillConclusions(input.policies, k)];
}
