/**
 * Plots of a rollout log's profile (`harm-horizon profile`): the per-position KL with its uncertainty,
 * the equilibrium-KL law on log–log axes, prefilling success by depth, harm information by block and
 * the conditional-harm martingale. Every band and bar is ±2 bootstrap SEs.
 *
 * A log axis cannot show zero or a negative lower end: values ≤ 0 are left out of log plots (the CSV
 * keeps them) and band ends below the axis floor are drawn at the floor, as the subtitles say.
 */
import type { LogProfile } from '../logs/profile.js';
import { ACCENT, HEIGHT, WIDTH, decades, top, type Plot } from './plots.js';

type Row = Record<string, number | string | null>;

const ON_POLICY = 'on-policy D_t';
const TEACHER_FORCED = 'teacher-forced (harmful responses)';
const COLORS: Record<string, string> = { [ON_POLICY]: '#1f77b4', [TEACHER_FORCED]: '#ff7f0e' };

const positive = (x: number | null | undefined): x is number => typeof x === 'number' && Number.isFinite(x) && x > 0;

/** The floor of a log axis holding `values`: a decade below the smallest positive one. */
function axisFloor(values: (number | null)[]): number {
  const shown = values.filter(positive);
  return shown.length > 0 ? Math.min(...shown) / 10 : 1e-12;
}

/** value ± 2·se as a band, the lower end drawn at `floor` when it falls below it. */
function band(value: number, se: number | null, floor: number): { lo: number; hi: number } {
  const s = typeof se === 'number' && Number.isFinite(se) ? se : 0;
  return { lo: Math.max(value - 2 * s, floor), hi: value + 2 * s };
}

const logY = (title: string, values: number[]) => ({
  type: 'quantitative',
  title,
  scale: { type: 'log' },
  axis: { format: '.0e', ...(decades(values) ? { values: decades(values) } : {}) },
});

/** Per-position KL(policy ‖ reference): on-policy and, where the log allows, teacher-forced, with ±2 SE bands, log y. */
export function profileKlPlot(p: LogProfile, model: { policy: string; reference: string }): Plot | null {
  const data: Row[] = [];
  for (const r of p.klProfile) {
    data.push({ t: r.t, series: ON_POLICY, value: r.klOnPolicy, se: r.klOnPolicySE });
    if (r.klTeacherForced !== null) data.push({ t: r.t, series: TEACHER_FORCED, value: r.klTeacherForced, se: r.klTeacherForcedSE });
  }
  const values = data.map((r) => r.value as number);
  if (!values.some(positive)) return null;
  const floor = axisFloor(values);
  for (const r of data) Object.assign(r, positive(r.value as number) ? band(r.value as number, r.se as number, floor) : { lo: null, hi: null });
  const series = [...new Set(data.map((r) => r.series as string))];
  const kind = p.klTeacherForcedKind === 'lower-bound' ? ' (a lower bound from top-k lists)' : '';
  const title = `Per-position KL(${model.policy} ‖ ${model.reference})`;
  const x = { field: 't', type: 'quantitative', title: 'position t (token index)', axis: { tickMinStep: 1, format: 'd' } };
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: series, range: series.map((s) => COLORS[s]) }, legend: { orient: 'bottom', direction: 'vertical' } };
  return {
    name: 'log-kl-profile',
    title,
    data,
    spec: top(title, [`Bands: ±2 cluster-bootstrap SEs (drawn from the axis floor when the lower end is below it).`, `Teacher-forced along the reference's responses weighted by harm${kind}; zeros are not drawn on the log axis.`], {
      width: WIDTH,
      height: HEIGHT,
      transform: [{ filter: 'isValid(datum.value) && isFinite(datum.value) && datum.value > 0' }],
      layer: [
        { mark: { type: 'area', opacity: 0.18 }, encoding: { x, y: { field: 'lo', ...logY('KL per position, nats (log scale)', values) }, y2: { field: 'hi' }, color } },
        { mark: { type: 'line', point: { size: 24, filled: true }, strokeWidth: 2 }, encoding: { x, y: { field: 'value', ...logY('KL per position, nats (log scale)', values) }, color } },
      ],
    }),
  };
}

/**
 * The equilibrium-KL law on log–log axes: each block's summed on-policy KL D against (λ̂²/2)·I, so
 * that the law is the diagonal y = x; dotted lines are the law at λ̂ ± SE. Blocks whose D or I is not
 * positive cannot be drawn and are counted in the subtitle.
 */
export function klLawPlot(p: LogProfile): Plot | null {
  const fit = p.fit;
  if (!fit || !positive(fit.lambda)) return null;
  const c = fit.lambda ** 2 / 2;
  const data: Row[] = p.positions.map((r) => ({
    tStart: r.tStart,
    tEnd: r.tEnd,
    block: r.tStart === r.tEnd ? String(r.tStart) : `${r.tStart}–${r.tEnd}`,
    predicted: r.harmInformation === null ? null : c * r.harmInformation,
    predictedSE: r.harmInformationSE === null ? null : c * r.harmInformationSE,
    kl: r.klOnPolicy,
    klSE: r.klOnPolicySE,
  }));
  const drawn = data.filter((r) => positive(r.predicted as number) && positive(r.kl as number));
  if (drawn.length === 0) return null;
  const all = drawn.flatMap((r) => [r.predicted as number, r.kl as number]);
  const floor = axisFloor(all);
  for (const r of drawn) {
    const x = band(r.predicted as number, r.predictedSE as number, floor);
    const y = band(r.kl as number, r.klSE as number, floor);
    Object.assign(r, { predictedLo: x.lo, predictedHi: x.hi, klLo: y.lo, klHi: y.hi });
  }
  const lo = Math.max(floor, Math.min(...drawn.map((r) => Math.min(r.predictedLo as number, r.klLo as number)))) / 1.5;
  const hi = Math.max(...drawn.map((r) => Math.max(r.predictedHi as number, r.klHi as number))) * 1.5;
  const lines = [
    { line: 'law at λ̂ (y = x)', factor: 1, dash: [1, 0] },
    { line: 'law at λ̂ ± SE', factor: ((fit.lambda + fit.lambdaSE) / fit.lambda) ** 2, dash: [2, 3] },
    { line: 'law at λ̂ ± SE', factor: (Math.max(fit.lambda - fit.lambdaSE, 0) / fit.lambda) ** 2, dash: [2, 3] },
  ].filter((l) => l.factor > 0);
  const lawRows = lines.flatMap((l, i) => [lo, hi].map((x) => ({ segment: i, line: l.line, x, y: x * l.factor })));
  const scale = { type: 'log', domain: [lo, hi], nice: false };
  const axis = { format: '.0e', ...(decades([lo, hi]) ? { values: decades([lo, hi]) } : {}) };
  const left = data.length - drawn.length;
  const title = 'Equilibrium-KL law: D against (λ̂²/2)·I, per block';
  const fmt = (x: number) => (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toPrecision(3) : x.toExponential(2));
  return {
    name: 'log-kl-law',
    title,
    data,
    spec: top(
      title,
      [
        `λ̂ = ${fmt(fit.lambda)} ± ${fmt(fit.lambdaSE)}, R² = ${fmt(fit.rSquared)}, χ² = ${fmt(fit.chiSquared)} on ${fit.dof} dof; bars ±2 SE.`,
        `The law D ≈ (λ²/2)·I is the diagonal${left > 0 ? `; ${left} block(s) with D or I ≤ 0 cannot be drawn on log axes` : ''}.`,
      ],
      {
        width: WIDTH,
        height: HEIGHT,
        layer: [
          {
            data: { values: lawRows },
            mark: { type: 'line', color: '#7f7f7f', strokeWidth: 1.2 },
            encoding: {
              x: { field: 'x', type: 'quantitative', scale, axis, title: '(λ̂²/2)·I over the block (log scale)' },
              y: { field: 'y', type: 'quantitative', scale, axis, title: 'on-policy KL D over the block (log scale)' },
              detail: { field: 'segment', type: 'nominal' },
              strokeDash: { field: 'line', type: 'nominal', title: null, scale: { domain: [...new Set(lines.map((l) => l.line))], range: [...new Set(lines.map((l) => l.line))].map((n) => lines.find((l) => l.line === n)!.dash) }, legend: { orient: 'bottom', direction: 'vertical' } },
            },
          },
          {
            transform: [{ filter: 'isValid(datum.predictedLo) && isValid(datum.klLo)' }],
            mark: { type: 'rule', color: ACCENT, opacity: 0.6 },
            encoding: { x: { field: 'predictedLo', type: 'quantitative', scale }, x2: { field: 'predictedHi' }, y: { field: 'kl', type: 'quantitative', scale } },
          },
          {
            transform: [{ filter: 'isValid(datum.predictedLo) && isValid(datum.klLo)' }],
            mark: { type: 'rule', color: ACCENT, opacity: 0.6 },
            encoding: { x: { field: 'predicted', type: 'quantitative', scale }, y: { field: 'klLo', type: 'quantitative', scale }, y2: { field: 'klHi' } },
          },
          {
            transform: [{ filter: 'isValid(datum.predictedLo) && isValid(datum.klLo)' }],
            mark: { type: 'point', filled: true, size: 40, color: ACCENT },
            encoding: { x: { field: 'predicted', type: 'quantitative', scale }, y: { field: 'kl', type: 'quantitative', scale }, tooltip: [{ field: 'block', title: 'positions' }] },
          },
          {
            transform: [{ filter: 'isValid(datum.predictedLo) && isValid(datum.klLo)' }],
            mark: { type: 'text', dx: 6, dy: -6, align: 'left', fontSize: 10, color: '#555' },
            encoding: { x: { field: 'predicted', type: 'quantitative', scale }, y: { field: 'kl', type: 'quantitative', scale }, text: { field: 'block' } },
          },
        ],
      },
    ),
  };
}

/** Prefilling success by forced depth k with ±2 SE bars (k on its own scale: the depths need not be evenly spaced). */
export function prefillDepthPlot(p: LogProfile): Plot | null {
  if (p.prefill.length === 0) return null;
  const data: Row[] = p.prefill.map((r) => ({ k: r.k, asr: r.asr, asrSE: r.asrSE, lo: Math.max(0, r.asr - 2 * r.asrSE), hi: Math.min(1, r.asr + 2 * r.asrSE), prefixes: r.prefixes }));
  const title = 'Prefilling attack on the log: ASR by forced depth k';
  const x = { field: 'k', type: 'quantitative', title: 'forced harmful tokens k', axis: { tickMinStep: 1, format: 'd' } };
  return {
    name: 'log-prefill-asr',
    title,
    data,
    spec: top(title, ['Mean judge harm of the policy\'s continuations after the first k tokens of a harmful response; bars ±2 SE.'], {
      width: WIDTH,
      height: HEIGHT,
      layer: [
        { mark: { type: 'rule', color: ACCENT, opacity: 0.6 }, encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
        {
          mark: { type: 'line', point: { size: 30, filled: true, color: ACCENT }, strokeWidth: 2, color: ACCENT },
          encoding: { x, y: { field: 'asr', type: 'quantitative', title: 'attack success rate ASR_k', scale: { domain: [0, 1] }, axis: { format: '.0%' } } },
        },
      ],
    }),
  };
}

/** Harm information I over each block of positions (a horizontal segment over the block), ±2 SE, log y. */
export function informationBlocksPlot(p: LogProfile): Plot | null {
  const data: Row[] = p.positions.map((r) => ({ tStart: r.tStart, tEnd: r.tEnd, harmInformation: r.harmInformation, harmInformationSE: r.harmInformationSE, support: r.harmInformationSupport }));
  const values = data.map((r) => r.harmInformation as number | null);
  if (!values.some(positive)) return null;
  const floor = axisFloor(values);
  for (const r of data) {
    const value = r.harmInformation as number | null;
    // A block covers positions tStart..tEnd: drawn from tStart − ½ to tEnd + ½, so a single position has width 1.
    const extent = { from: (r.tStart as number) - 0.5, to: (r.tEnd as number) + 0.5, mid: ((r.tStart as number) + (r.tEnd as number)) / 2 };
    Object.assign(r, positive(value) ? { ...band(value, r.harmInformationSE as number, floor), ...extent } : { lo: null, hi: null, ...extent });
  }
  const y = logY('I over the block (log scale)', values.filter(positive));
  const drawn = 'isValid(datum.lo) && datum.harmInformation > 0';
  const horizon = p.horizon ? [{ data: { values: [{}] }, mark: { type: 'rule', strokeDash: [6, 4], color: '#555' }, encoding: { x: { datum: p.horizon.estimate, type: 'quantitative' } } }] : [];
  const title = `Harm information by block (rollouts of ${p.harmInformationModel ?? 'the policy'})`;
  return {
    name: 'log-harm-information',
    title,
    data,
    spec: top(title, ['Σ over each block of I_t = E[Δ_t²], from two independent rollout sets; bars ±2 SE.', `${p.horizon ? `Dashed: the horizon estimate, t = ${p.horizon.estimate}. ` : ''}Blocks whose estimate is ≤ 0 are not drawn on the log axis.`], {
      width: WIDTH,
      height: HEIGHT,
      layer: [
        { transform: [{ filter: drawn }], mark: { type: 'rule', strokeWidth: 3, color: '#1f77b4' }, encoding: { x: { field: 'from', type: 'quantitative', title: 'position t (token index)', axis: { tickMinStep: 1, format: 'd' } }, x2: { field: 'to' }, y: { field: 'harmInformation', ...y } } },
        { transform: [{ filter: drawn }], mark: { type: 'rule', color: '#1f77b4', opacity: 0.6 }, encoding: { x: { field: 'mid', type: 'quantitative' }, y: { field: 'lo', ...y }, y2: { field: 'hi' } } },
        { transform: [{ filter: drawn }], mark: { type: 'point', filled: true, size: 24, color: '#1f77b4' }, encoding: { x: { field: 'mid', type: 'quantitative' }, y: { field: 'harmInformation', ...y } } },
        ...horizon,
      ],
    }),
  };
}

/** The conditional harm h_d estimated by rollout depth: a martingale, so constant in expectation (a check of the log). */
export function conditionalHarmPlot(p: LogProfile): Plot | null {
  if (p.conditionalHarm.length < 2) return null;
  const data: Row[] = p.conditionalHarm.map((r) => ({ depth: r.depth, h: r.h, hSE: r.hSE, lo: r.h - 2 * r.hSE, hi: r.h + 2 * r.hSE }));
  const title = 'Conditional harm h_d by rollout depth (a martingale: flat in expectation)';
  const x = { field: 'depth', type: 'quantitative', title: 'prefix depth d', axis: { tickMinStep: 1, format: 'd' } };
  return {
    name: 'log-conditional-harm',
    title,
    data,
    spec: top(title, ['Mean over samples of the rollouts\' harm after d tokens; bars ±2 SE.', 'A trend would mean that the rollouts do not follow the sampling model.'], {
      width: WIDTH,
      height: HEIGHT,
      layer: [
        { mark: { type: 'rule', color: '#2ca02c', opacity: 0.6 }, encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
        { mark: { type: 'line', point: { size: 30, filled: true, color: '#2ca02c' }, color: '#2ca02c' }, encoding: { x, y: { field: 'h', type: 'quantitative', title: 'estimated h_d', scale: { zero: true } } } },
      ],
    }),
  };
}

/** The profile's plots, those that have something to show. */
export function plotsForProfile(p: LogProfile, model: { policy: string; reference: string }): Plot[] {
  return [profileKlPlot(p, model), klLawPlot(p), prefillDepthPlot(p), informationBlocksPlot(p), conditionalHarmPlot(p)].filter((x): x is Plot => x !== null);
}
