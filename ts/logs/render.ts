/** The terminal report of `profile`. */
import { num, sparkline, table } from '../report/format.js';
import type { LogProfile } from './profile.js';

const pm = (x: number | null, se: number | null) => (x === null ? '—' : `${num(x)} ± ${num(se)}`);

/** `header`: the log's policy and reference, and its judge as `name (scores)`. */
export function renderProfile(file: string, header: { policy: string; reference: string; judge: string }, p: LogProfile): string {
  const out: string[] = [];
  out.push(`${file}: policy ${header.policy} against reference ${header.reference}, judge ${header.judge}`);
  out.push(
    `${p.prompts} prompt(s); ${p.records.policySamples} policy and ${p.records.referenceSamples} reference samples, ${p.records.rollouts} rollout sets, ${p.records.prefills} prefills; SEs: ${p.bootstrap.replicates} cluster-bootstrap replicates over prompts`,
  );
  out.push(`E[H]: policy ${pm(p.expectedHarm.policy, p.expectedHarm.policySE)}, reference ${pm(p.expectedHarm.reference, p.expectedHarm.referenceSE)}`);
  out.push('');
  out.push(`Per-position KL(policy ‖ reference)   on-policy ${sparkline(p.klProfile.map((r) => r.klOnPolicy))}   teacher-forced (${p.klTeacherForcedKind}) ${sparkline(p.klProfile.map((r) => r.klTeacherForced))}`);
  out.push(
    table(
      ['t', 'on-policy D_t', 'k1', 'k3', 'teacher-forced', ''],
      p.klProfile.map((r) => [String(r.t), pm(r.klOnPolicy, r.klOnPolicySE), pm(r.k1, r.k1SE), pm(r.k3, r.k3SE), pm(r.klTeacherForced, r.klTeacherForcedSE), r.lowSupport ? 'few samples' : '']),
    ),
  );
  if (p.harmInformationModel !== null) {
    out.push('');
    out.push(`Harm information I by block (rollouts of ${p.harmInformationModel}), with the on-policy KL summed over each block`);
    out.push(
      table(
        ['positions', 'I', 'D (sum)', 'support', ''],
        p.positions.map((r) => [r.tStart === r.tEnd ? String(r.tStart) : `${r.tStart}–${r.tEnd}`, pm(r.harmInformation, r.harmInformationSE), pm(r.klOnPolicy, r.klOnPolicySE), num(r.harmInformationSupport, 0), r.lowSupport ? 'few samples' : '']),
      ),
    );
    if (p.horizon) out.push(`Harm horizon: ${p.horizon.estimate} (information significant up to positions ${p.horizon.lower}–${p.horizon.estimate}; none ≥ 1% of Var H excluded before ${p.horizon.upper})`);
    if (p.fit && Number.isFinite(p.fit.lambda)) out.push(`KL law D ≈ (λ²/2)·I: λ = ${pm(p.fit.lambda, p.fit.lambdaSE)}, R² = ${num(p.fit.rSquared)}, χ² = ${num(p.fit.chiSquared)} on ${p.fit.dof} dof`);
    else if (p.fit) out.push('KL law D ≈ (λ²/2)·I: no fit, I is 0 in every block (the judge\'s score never varies along the rollouts)');
  }
  if (p.prefill.length > 0) {
    out.push('');
    out.push('Prefilling attack: ASR by forced depth k, pass@n over repeated continuations');
    out.push(
      table(
        ['k', 'ASR', 'prefixes', ...p.prefill[0].passAt.map((x) => `pass@${x.attempts}`)],
        p.prefill.map((r) => [String(r.k), pm(r.asr, r.asrSE), String(r.prefixes), ...r.passAt.map((x) => num(x.value))]),
      ),
    );
  }
  return out.join('\n');
}
