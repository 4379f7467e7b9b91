/** The sections of a report page built from its results: analyses, attacks, training runs, the λ scaling. */
import { dirname, relative } from 'node:path';
import { clampRounding, num } from './format.js';
import { gradientPlot, harmInformationPlot, klPlot, lambdaScalingPlot, prefillPlot, trainingPlot, type Plot } from './plots.js';
import { DEFAULT_EFFECTIVE_FRACTION, effectiveHorizon } from './analysis.js';
import type { Cell, Section, Table } from './types.js';
import type { TrainRecord } from '../workflows/train.js';
import { esc } from './escape.js';
import { isObject, type Results, type TrainRunInput } from './load.js';

export const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Flattens nested objects to dotted keys (arrays are kept as JSON text). */
export function flatten(value: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(value)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isObject(v) && Object.keys(v).length > 0) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

export function scalar(v: unknown): Cell {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number' || typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** The k columns of the ASR tables: 0..4 and the last. */
function asrColumns(curves: { asr: (number | null)[] }[]): number[] {
  const kMax = Math.max(0, ...curves.map((c) => c.asr.length - 1));
  const ks = Array.from({ length: Math.min(kMax, 4) + 1 }, (_, k) => k);
  if (kMax > 4) ks.push(kMax);
  return ks;
}

/** A measured value, always in the same compact form (an integer-valued measurement is not a count). */
export function m(x: unknown): Cell {
  return typeof x === 'number' ? num(x) : x === null || x === undefined ? null : String(x);
}

function asrTable(caption: string, curves: { label: string; asr: (number | null)[] }[]): Table {
  const ks = asrColumns(curves);
  return { caption, header: ['policy', ...ks.map((k) => (k === 0 ? 'k = 0 (E[H])' : `k = ${k}`))], rows: curves.map((c) => [c.label, ...ks.map((k) => m(c.asr[k]))]) };
}

export function analysisSections(results: Results): Section[] {
  const many = results.analyses.length > 1;
  return results.analyses.map((a, i) => {
    const r = a.report;
    const suffix = many ? `-${slug(a.label || String(i + 1))}` : '';
    const label = many ? ` (${a.label || a.report.scenario})` : '';
    const rename = (p: Plot): Plot => ({ ...p, name: `${p.name}${suffix}` });
    const summary: Table = {
      caption: 'Exact analysis',
      header: ['quantity', 'value'],
      rows: [
        ['scenario', r.scenario],
        ['λ (alignment strength)', r.lambda],
        ['aligned policy', r.aligned ?? `Gibbs optimum (λ = ${r.lambda})`],
        ['E[H] under the base', m(r.expectedHarm?.base)],
        ['E[H] under the aligned policy', m(r.expectedHarm?.aligned)],
        ['Var H', m(r.harmVariance)],
        ['Σ_t I_t (= Var H)', m(r.harmInformationSum)],
        ['harm horizon k', r.horizon],
        [`effective horizon k (${100 * (r.effectiveHorizon?.fraction ?? DEFAULT_EFFECTIVE_FRACTION)}% of Var H resolved)`, r.effectiveHorizon?.k ?? effectiveHorizon(r.positions.map((p) => p.harmInformation))],
        ['horizon tolerance (relative)', r.horizonTolerance ?? null],
        ['exact states', r.states ?? null],
        ['P(τ = 0): decided before any token', m(r.decidedAtStart)],
        ['P(τ > T): never decided', m(r.undecided)],
      ],
    };
    const positions: Table = {
      caption: 'Per position',
      header: ['t', 'I_t', '‖G_t‖', 'bound √(I_t·F̄_t)', 'KL on-policy D_t', 'KL teacher-forced', '(λ²/2)·I_t', 'P(τ = t)'],
      // Every column is non-negative by definition: rounding noise below 0 (older analyze.json files) prints as 0.
      rows: r.positions.map((p) => [p.t, ...[p.harmInformation, p.gradNorm, p.gradBound, p.klOnPolicy, p.klTeacherForced, p.klPredicted, p.decisionTime].map((x) => m(clampRounding(x ?? null)))]),
      collapsed: true,
    };
    return {
      id: `analysis${suffix}`,
      title: `Exact analysis${label}`,
      intro: `Harm information, gradients and per-position KL of ${esc(r.scenario)} at λ = ${esc(r.lambda)} (${esc(shown(results, a.file))}).`,
      tables: [summary, positions],
      plots: [harmInformationPlot(r), gradientPlot(r), klPlot(r)].map(rename),
    };
  });
}

function inputDir(results: Results): string {
  return results.kind === 'folder' ? results.input : dirname(results.input);
}

/** A path relative to the input when it lies inside it, else as given. */
export function shown(results: Results, path: string): string {
  const r = relative(inputDir(results), path);
  return r && !r.startsWith('..') ? r : path;
}

/** Policy labels in page order, so that each policy has one colour on every plot. */
function colorDomain(results: Results): string[] {
  const labels = ['base', ...results.attacks.map((a) => a.label), ...results.runs.map((r) => r.label)];
  return [...new Set(labels)];
}

export function attackSection(results: Results): Section | null {
  const curves: { label: string; asr: (number | null)[] }[] = [];
  const has = (label: string) => curves.some((c) => c.label === label);
  for (const a of results.attacks) curves.push({ label: a.label, asr: a.prefill });
  for (const run of results.runs) {
    const last = [...run.records].reverse().find((r) => Array.isArray(r.asr));
    if (last && !has(run.label)) curves.push({ label: run.label, asr: last.asr!.map((x) => (finite(x) ? x : null)) });
  }
  const many = results.analyses.length > 1;
  for (const a of results.analyses) {
    const prefix = many ? `${a.label || a.report.scenario}: ` : '';
    const rows = a.report.prefill ?? [];
    if (rows.length === 0) continue;
    const base = `${prefix}base`;
    if (!has(base)) curves.push({ label: base, asr: rows.map((p) => p.asrBase) });
    const aligned = `${prefix}${a.report.aligned ? `aligned: ${a.report.aligned}` : `Gibbs optimum (λ = ${a.report.lambda})`}`;
    // The Gibbs optimum attacked from a policy file (the demo's attack-gibbs.json) is the same curve.
    const gibbsAttacked = (a.report.aligned ?? 'gibbs').startsWith('gibbs') && results.attacks.some((x) => /gibbs/i.test(x.label));
    if (!has(aligned) && !gibbsAttacked) curves.push({ label: aligned, asr: rows.map((p) => p.asrAligned) });
  }
  if (curves.length === 0) return null;
  curves.sort((a, b) => Number(b.label === 'base') - Number(a.label === 'base'));
  const rap = results.attacks.filter((a) => a.rap).map((a) => ({ label: a.label, asr: a.rap! }));
  const ranks = [...new Set(results.attacks.filter((a) => a.rap && a.rank !== undefined).map((a) => a.rank))];
  const plots = [prefillPlot(curves, { colorDomain: colorDomain(results) })];
  const tables = [asrTable('Prefilling attack success ASR_k', curves)];
  // A rank-assisted curve that is the same for every policy says nothing about the policies (with
  // r ≥ V every token is a candidate and the attacker ignores the ranking): a note instead of a plot.
  const rapIdentical = rap.length > 1 && rap.every((c) => c.asr.every((x, k) => Math.abs((x ?? NaN) - (rap[0].asr[k] ?? NaN)) <= 1e-12 || (x === null && rap[0].asr[k] === null)));
  let rapNote = '';
  if (rapIdentical) {
    const r = ranks.length === 1 ? `r = ${ranks[0]}` : 'its rank';
    rapNote = ` Rank-assisted prefilling (${r}) gives the same ASR_k curve against every policy (when r is at least V, every token is a candidate, so the attacker ignores the policy's ranking): it is listed in the table but not plotted.`;
    tables.push(asrTable(`Rank-assisted prefilling ASR_k (${r}, the same for every policy)`, rap.slice(0, 1).map((c) => ({ ...c, label: 'every policy' }))));
  } else if (rap.length > 0) {
    const r = ranks.length === 1 ? `r = ${ranks[0]}` : 'top r';
    plots.push(
      prefillPlot(rap, {
        colorDomain: colorDomain(results),
        name: 'rank-assisted-asr',
        title: `Rank-assisted prefilling (${r}): ASR against k`,
        subtitle: `Each next token: the highest-ranked harmful one among the policy's ${r}.`,
      }),
    );
    tables.push(asrTable(`Rank-assisted prefilling ASR_k (${r})`, rap));
  }
  for (const a of results.attacks) {
    if (!a.finetune || a.finetune.steps.length === 0) continue;
    tables.push({
      caption: `Fine-tuning attack on ${a.label} (${a.finetune.objective ?? 'sft'}, learning rate ${a.finetune.learningRate ?? '—'})`,
      header: ['step', 'E[H]', 'ASR_1', 'loss'],
      rows: a.finetune.steps.map((s) => [s.step, m(s.asr?.[0]), m(s.asr?.[1]), m(s.loss)]),
    });
  }
  return {
    id: 'attacks',
    title: 'Attacks',
    intro: `Prefilling: the first k tokens are forced from a harmful response (Q) and the policy continues; ASR_k is the probability the response is harmful.${rapNote}`,
    tables,
    plots,
  };
}

/** The objective a run minimised, from its summary.json (undefined when not recorded). */
function objectiveOf(run: TrainRunInput): string | undefined {
  const o = isObject(run.summary.options) ? run.summary.options : {};
  return isObject(o.objective) && typeof o.objective.kind === 'string' ? o.objective.kind : undefined;
}

export function trainingSection(results: Results): Section | null {
  if (results.runs.length === 0) return null;
  const rows: Cell[][] = results.runs.map((run) => {
    const o = isObject(run.summary.options) ? run.summary.options : {};
    const obj = isObject(o.objective) ? o.objective : {};
    const final = (isObject(run.summary.final) ? run.summary.final : run.records[run.records.length - 1]) as TrainRecord | undefined;
    return [
      run.label,
      scalar(run.summary.scenario),
      scalar(obj.kind),
      scalar(o.algorithm),
      scalar(o.policy),
      scalar(obj.lambda),
      obj.kind && obj.kind !== 'standard' ? scalar(obj.mu) : null,
      obj.kind && obj.kind !== 'standard' ? scalar(obj.gamma) : null,
      scalar(o.steps),
      m(final?.objective),
      m(final?.expectedHarm),
      m(final?.kl),
      run.summary.interrupted ? 'yes' : 'no',
    ];
  });
  const plotted = results.runs.filter((r) => r.records.length > 0);
  return {
    id: 'training',
    title: 'Training',
    intro: 'Alignment runs (harm-horizon train): the objective, its parameters and the final values.',
    tables: [{ caption: 'Training runs', header: ['run', 'scenario', 'objective', 'algorithm', 'policy', 'λ', 'μ', 'γ', 'steps', 'final J', 'final E[H]', 'final KL', 'interrupted'], rows }],
    plots: plotted.length > 0 ? [trainingPlot(plotted.map((r) => ({ label: r.label, records: r.records, objective: objectiveOf(r) })), { colorDomain: colorDomain(results) })] : [],
  };
}

export function lambdaSection(results: Results): Section | null {
  const ls = results.lambdaScaling;
  if (!ls) return null;
  const lambdas = [...new Set(ls.rows.map((r) => r.lambda))].sort((a, b) => a - b);
  const rows: Cell[][] = lambdas.map((lambda) => {
    const ratios = ls.rows.filter((r) => r.lambda === lambda && finite(r.ratio)).map((r) => r.ratio);
    return [String(lambda), ratios.length, ratios.length ? m(Math.min(...ratios)) : null, ratios.length ? m(Math.max(...ratios)) : null];
  });
  return {
    id: 'lambda-scaling',
    title: 'λ-scaling of the equilibrium KL',
    intro: 'At the Gibbs optimum D_t = (λ²/2)·I_t + O(λ³): the ratio D_t/((λ²/2)·I_t) tends to 1 as λ → 0.',
    tables: [{ caption: 'Ratio D_t/((λ²/2)·I_t) over the positions inside the horizon', header: ['λ', 'positions', 'min ratio', 'max ratio'], rows }],
    plots: [lambdaScalingPlot(ls.rows)],
  };
}

/** A name usable in element ids and file names. */
export function slug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'x'
  );
}
