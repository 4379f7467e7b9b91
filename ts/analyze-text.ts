/** The human-readable rendering of an analysis report (what `analyze` prints without --json). */
import { bar, num, sparkline, table } from './format.js';
import type { AnalyzeReport } from './report.js';

export function renderAnalyzeReport(r: AnalyzeReport): string {
  const out: string[] = [];
  const p = r.positions;
  out.push(`scenario ${r.scenario}: ${r.states} states, T = ${p.length}, λ = ${r.lambda}`);
  out.push(
    `E[H]: base ${num(r.expectedHarm.base)}, Gibbs-aligned ${num(r.expectedHarm.aligned)}   ` +
      `Var(H) ${num(r.harmVariance)} = Σ I_t ${num(r.harmInformationSum)}   harm horizon k = ${r.horizon}`,
  );
  out.push('');
  const maxInfo = Math.max(...p.map((x) => x.harmInformation));
  const columns: [string, (x: (typeof p)[number]) => number | null][] = [
    ['I_t', (x) => x.harmInformation],
    ['‖G_t‖', (x) => x.gradNorm],
    ['bound', (x) => x.gradBound],
    ['KL on-policy', (x) => x.klOnPolicy],
    ['KL teacher-forced', (x) => x.klTeacherForced],
    ['(λ²/2)·I_t', (x) => x.klPredicted],
  ];
  const rows = p.map((x) => [
    String(x.t),
    ...columns.map(([, get]) => num(get(x))),
    bar(x.harmInformation, maxInfo),
    x.t <= r.horizon ? '' : 'beyond horizon',
  ]);
  rows.push(['shape', ...columns.map(([, get]) => sparkline(p.map(get))), '', '']);
  out.push(table(['t', ...columns.map(([name]) => name), 'I_t'.padEnd(12), ''], rows));
  out.push('');
  out.push('Prefilling attack: success after forcing the first k tokens of a harmful response');
  const maxAsr = 1;
  out.push(
    table(
      ['k', 'ASR base', '', 'ASR aligned', ''],
      r.prefill.map((x) => [String(x.k), num(x.asrBase), bar(x.asrBase, maxAsr), num(x.asrAligned), bar(x.asrAligned, maxAsr)]),
    ),
  );
  return out.join('\n');
}
