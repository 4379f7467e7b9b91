/**
 * Plots: Vega-Lite specifications with the rows they plot (rendered by render.ts, each written with
 * its data beside it as CSV).
 *
 * A {@link Plot} is a Vega-Lite specification without its data plus the rows it plots; the rows are
 * exactly what the CSV holds. Log axes drop values that are zero up to rounding (a log axis cannot show
 * them); the CSV keeps every value.
 */
import { dejaVuTextWidth } from './text-width.js';
import type { AnalyzeReport } from './analysis.js';
import type { TrainRecord } from '../workflows/train.js';

/** A plot: a Vega-Lite specification without its data, and the rows it plots. */
export interface Plot {
  /** File stem: <name>.svg and <name>.csv. */
  name: string;
  title: string;
  spec: Record<string, unknown>;
  data: Record<string, number | string | null>[];
}

type Row = Record<string, number | string | null>;
type Spec = Record<string, unknown>;

/** Values at most this fraction of a plot's largest value count as zero on its log axis. */
export const LOG_FLOOR_RELATIVE = 1e-12;

export const WIDTH = 440;
export const HEIGHT = 260;
export const ACCENT = '#c0392b';

/** Shared look: legible fonts, left-anchored titles, white background. */
const CONFIG = {
  background: 'white',
  font: 'DejaVu Sans, Helvetica, Arial, sans-serif',
  title: { fontSize: 14, subtitleFontSize: 11, subtitleColor: '#555', anchor: 'start', offset: 8 },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 11, titleFontWeight: 'normal', labelLimit: 260 },
  view: { stroke: '#bbb' },
};

/** Tick values at the powers of ten spanning [min, max] (a clean log axis). */
export function decades(values: number[]): number[] | undefined {
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  if (positive.length === 0) return undefined;
  const lo = Math.floor(Math.log10(Math.min(...positive)) + 1e-9);
  const hi = Math.ceil(Math.log10(Math.max(...positive)) - 1e-9);
  const step = Math.max(1, Math.ceil((hi - lo) / 8));
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e += step) ticks.push(Number(`1e${e}`));
  return ticks;
}

/** A field name as Vega-Lite reads it: dots and brackets would otherwise mean nested access. */
export function fieldRef(name: string): string {
  return name.replace(/([.[\]\\])/g, '\\$1');
}

/** A field read in a Vega expression. */
function datum(name: string): string {
  return `datum[${JSON.stringify(name)}]`;
}

function slug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'value'
  );
}

function finite(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

/** The log-axis floor for these values: LOG_FLOOR_RELATIVE of the largest (0 when none is positive). */
function logFloor(values: unknown[], extra = 0): number {
  const max = Math.max(0, ...values.filter(finite));
  return Math.max(max * LOG_FLOOR_RELATIVE, extra);
}

export function top(title: string, subtitle: string | string[] | undefined, body: Spec): Spec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: subtitle ? { text: title, subtitle } : { text: title },
    config: CONFIG,
    ...body,
  };
}

const positionAxis = (length: number) => ({
  field: 't',
  type: 'quantitative',
  title: 'position t (token index)',
  scale: { domain: [1, Math.max(length, 2)], nice: false },
  axis: { tickMinStep: 1, format: 'd' },
});

/**
 * A dashed rule at the horizon, labelled: the harm horizon when it lies inside the plot, else the
 * effective horizon when that does (a rule on the border marks nothing), else no rule.
 */
function horizonLayers(report: AnalyzeReport): Spec[] {
  const length = report.positions.length;
  const inside = (k: number | undefined): k is number => k !== undefined && k > 1 && k < length;
  const effective = report.effectiveHorizon;
  const [k, label] = inside(report.horizon)
    ? [report.horizon, `horizon k = ${report.horizon}`]
    : inside(effective?.k)
      ? [effective!.k, `effective horizon k = ${effective!.k} (${100 * effective!.fraction}% of Var H)`]
      : [undefined, ''];
  if (k === undefined) return [];
  const right = k > length / 2;
  return [
    { data: { values: [{}] }, mark: { type: 'rule', strokeDash: [6, 4], color: ACCENT, strokeWidth: 1.5 }, encoding: { x: { datum: k, type: 'quantitative' } } },
    {
      data: { values: [{}] },
      mark: { type: 'text', align: right ? 'right' : 'left', dx: right ? -5 : 5, baseline: 'top', color: ACCENT, fontSize: 11 },
      encoding: { x: { datum: k, type: 'quantitative' }, y: { value: 4 }, text: { value: label } },
    },
  ];
}

/**
 * Per-position series folded from wide rows: `series` maps each field to its legend label, `dash` to
 * its stroke dash. Values at or below `floor` are dropped when the axis is logarithmic.
 */
function seriesLayer(series: [field: string, label: string, color: string, dash: number[]][], yTitle: string, floor: number, log: boolean, length: number, values: unknown[]): Spec {
  const ticks = log ? decades(values.filter((v): v is number => finite(v) && v > floor)) : undefined;
  const allZero = values.every((v) => !finite(v) || v === 0);
  const labelOf = series.reduceRight((rest, [field, label]) => `datum.key === ${JSON.stringify(field)} ? ${JSON.stringify(label)} : ${rest}`, 'datum.key');
  return {
    transform: [
      { fold: series.map(([field]) => fieldRef(field)), as: ['key', 'value'] },
      { filter: log ? `isValid(datum.value) && isFinite(datum.value) && datum.value > ${floor}` : 'isValid(datum.value) && isFinite(datum.value)' },
      { calculate: labelOf, as: 'series' },
    ],
    mark: { type: 'line', point: { size: 28, filled: true }, strokeWidth: 2, clip: true },
    encoding: {
      x: positionAxis(length),
      y: { field: 'value', type: 'quantitative', title: yTitle, scale: log ? { type: 'log' } : allZero ? { domain: [0, 1] } : { zero: true }, axis: log ? { format: '.0e', ...(ticks ? { values: ticks } : {}) } : {} },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: series.map((s) => s[1]), range: series.map((s) => s[2]) }, legend: { orient: 'bottom', direction: 'vertical' } },
      strokeDash: { field: 'series', type: 'nominal', title: null, scale: { domain: series.map((s) => s[1]), range: series.map((s) => s[3]) }, legend: { orient: 'bottom', direction: 'vertical' } },
    },
  };
}

/** I_t profile with the horizon marked. */
export function harmInformationPlot(report: AnalyzeReport): Plot {
  const data = report.positions.map((p) => ({ t: p.t, harmInformation: p.harmInformation }));
  const length = report.positions.length;
  const floor = logFloor(
    data.map((r) => r.harmInformation),
    report.horizonTolerance * report.harmVariance,
  );
  const log = data.some((r) => finite(r.harmInformation) && r.harmInformation > floor);
  const title = `Harm information I_t (${report.scenario})`;
  const subtitle = [
    `I_t = E[Δ_t²]; Var H = Σ_t I_t = ${fmt(report.harmVariance)}; horizon k = ${report.horizon}${report.horizon >= length ? ' (= T)' : ''}` +
      (report.effectiveHorizon ? `; effective horizon ${report.effectiveHorizon.k} (${100 * report.effectiveHorizon.fraction}% of Var H)` : ''),
    `(I_t ≤ ${report.horizonTolerance}·Var H counts as 0${log ? '; zeros are not drawn on the log axis' : ''}).`,
  ].filter(Boolean);
  return {
    name: 'harm-information',
    title,
    data,
    spec: top(title, subtitle, {
      width: WIDTH,
      height: HEIGHT,
      layer: [
        seriesLayer([['harmInformation', 'I_t (base model)', '#1f77b4', [1, 0]]], log ? 'I_t (log scale)' : 'I_t', floor, log, length, data.map((r) => r.harmInformation)),
        ...horizonLayers(report),
      ],
    }),
  };
}

/** Per-position gradient norm against its bound sqrt(I_t·F̄_t). */
export function gradientPlot(report: AnalyzeReport): Plot {
  const data = report.positions.map((p) => ({ t: p.t, gradNorm: p.gradNorm, gradBound: p.gradBound }));
  const length = report.positions.length;
  const floor = logFloor(data.flatMap((r) => [r.gradNorm, r.gradBound]));
  const log = data.some((r) => (finite(r.gradNorm) && r.gradNorm > floor) || (finite(r.gradBound) && r.gradBound > floor));
  const title = `Per-position gradient of E[H] and its bound (${report.scenario})`;
  return {
    name: 'gradient-norm',
    title,
    data,
    spec: top(title, ['G_t = ∂E[H]/∂θ_t at the base; ‖G_t‖² ≤ I_t·F̄_t;', 'G_t = 0 beyond the horizon.'], {
      width: WIDTH,
      height: HEIGHT,
      layer: [
        seriesLayer(
          [
            ['gradNorm', '‖G_t‖ (gradient norm)', '#1f77b4', [1, 0]],
            ['gradBound', 'bound √(I_t·F̄_t)', '#7f7f7f', [6, 3]],
          ],
          log ? 'norm (log scale)' : 'norm',
          floor,
          log,
          length,
          data.flatMap((r) => [r.gradNorm, r.gradBound]),
        ),
        ...horizonLayers(report),
      ],
    }),
  };
}

/** Per-position KL: on-policy, teacher-forced and predicted (λ²/2)·I_t. */
export function klPlot(report: AnalyzeReport): Plot {
  const data = report.positions.map((p) => ({ t: p.t, klOnPolicy: p.klOnPolicy, klTeacherForced: p.klTeacherForced, klPredicted: p.klPredicted }));
  const length = report.positions.length;
  const floor = logFloor(data.flatMap((r) => [r.klOnPolicy, r.klTeacherForced, r.klPredicted]));
  const log = data.some((r) => [r.klOnPolicy, r.klTeacherForced, r.klPredicted].some((v) => finite(v) && v > floor));
  const aligned = (report as AnalyzeReport & { aligned?: string }).aligned ?? `Gibbs optimum, λ = ${report.lambda}`;
  const title = `Per-position KL(P_aligned ‖ P_base) (${report.scenario})`;
  const series: [string, string, string, number[]][] = [
    ['klOnPolicy', 'on-policy D_t', '#1f77b4', [1, 0]],
    ['klTeacherForced', 'teacher-forced (harmful prefixes)', '#ff7f0e', [2, 2]],
    ['klPredicted', `predicted (λ²/2)·I_t, λ = ${report.lambda}`, '#2ca02c', [6, 3]],
  ];
  return {
    name: 'kl-per-position',
    title,
    data,
    spec: top(title, [`aligned: ${aligned}. For small λ, D_t ≈ (λ²/2)·I_t;`, 'D_t = 0 beyond the horizon.'], {
      width: WIDTH,
      height: HEIGHT,
      layer: [seriesLayer(series, log ? 'KL per position, nats (log scale)' : 'KL per position, nats', floor, log, length, data.flatMap((r) => [r.klOnPolicy, r.klTeacherForced, r.klPredicted])), ...horizonLayers(report)],
    }),
  };
}

/** Options shared by the curve plots that can appear more than once on a page. */
export interface PlotNaming {
  /** File stem (default per builder). */
  name?: string;
  /** Title (default per builder). */
  title?: string;
  subtitle?: string;
  /**
   * Every label the page colours, in order: plots given the same list colour each label alike
   * (default: this plot's own labels).
   */
  colorDomain?: string[];
}

/** A categorical colour scale over `labels`, shared between plots through `domain`. */
function categoryColor(field: string, title: string, labels: string[], domain?: string[]): Spec {
  const all = domain ? [...domain, ...labels.filter((l) => !domain.includes(l))] : labels;
  const used = all.filter((l) => labels.includes(l));
  const palette = all.length <= 10 ? 'category10' : 'category20';
  return {
    field,
    type: 'nominal',
    title,
    // Each label keeps its index in the shared domain, so its colour is the same on every plot.
    scale: { domain: used, range: used.map((l) => PALETTES[palette][all.indexOf(l) % PALETTES[palette].length]) },
    legend: { orient: 'bottom', direction: 'vertical' },
  };
}

const PALETTES: Record<string, string[]> = {
  category10: ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'],
  category20: [
    '#1f77b4', '#aec7e8', '#ff7f0e', '#ffbb78', '#2ca02c', '#98df8a', '#d62728', '#ff9896', '#9467bd', '#c5b0d5',
    '#8c564b', '#c49c94', '#e377c2', '#f7b6d2', '#7f7f7f', '#c7c7c7', '#bcbd22', '#dbdb8d', '#17becf', '#9edae5',
  ],
};

/** Prefilling ASR against k, one line per labelled policy. */
export function prefillPlot(curves: { label: string; asr: ArrayLike<number | null> }[], naming: PlotNaming = {}): Plot {
  const data: Row[] = curves.flatMap((c) => Array.from(c.asr, (asr, k) => ({ policy: c.label, k, asr: finite(asr) ? asr : null })));
  const title = naming.title ?? 'Prefilling attack: ASR_k against the prefill length k';
  const kMax = Math.max(1, ...curves.map((c) => c.asr.length - 1));
  return {
    name: naming.name ?? 'prefill-asr',
    title,
    data,
    spec: top(title, [naming.subtitle ?? 'ASR_k = E_{prefix∼Q_k}[P(H = 1 | prefix)]; k = 0 is the policy\'s own E[H].'], {
      width: WIDTH,
      height: HEIGHT,
      transform: [{ filter: 'isValid(datum.asr) && isFinite(datum.asr)' }],
      mark: { type: 'line', point: { size: 28, filled: true }, strokeWidth: 2 },
      encoding: {
        x: { field: 'k', type: 'quantitative', title: 'prefilled harmful tokens k', scale: { domain: [0, kMax], nice: false }, axis: { tickMinStep: 1, format: 'd' } },
        y: { field: 'asr', type: 'quantitative', title: 'attack success rate ASR_k', scale: { domain: [0, 1] }, axis: { format: '.0%' } },
        color: categoryColor('policy', 'policy', curves.map((c) => c.label), naming.colorDomain),
      },
    }),
  };
}

/** Training curves (objective, E[H], KL against step), one series per labelled run. */
export function trainingPlot(runs: { label: string; records: TrainRecord[]; objective?: string }[], options: { colorDomain?: string[] } = {}): Plot {
  const data: Row[] = runs.flatMap((r) =>
    r.records.map((rec) => ({ run: r.label, step: rec.step, objective: finite(rec.objective) ? rec.objective : null, expectedHarm: finite(rec.expectedHarm) ? rec.expectedHarm : null, kl: finite(rec.kl) ? rec.kl : null })),
  );
  const title = 'Training curves';
  // J of different objectives (standard, deep, …) are different functions: one axis would compare them.
  const objectives = [...new Set(runs.map((r) => r.objective ?? 'unknown'))];
  const oneObjective = objectives.length === 1;
  // A log axis when a panel's values are positive and span more than a decade and a half.
  const logField = (field: string) => {
    const v = data.map((r) => r[field]).filter(finite);
    return v.length > 0 && Math.min(...v) > 0 && Math.max(...v) / Math.min(...v) > 30;
  };
  // Runs of very different lengths share the step axis on a symlog scale, so that short runs show.
  const lengths = runs.map((r) => Math.max(1, ...r.records.map((rec) => rec.step)));
  const maxStep = Math.max(1, ...lengths);
  const symlog = runs.length > 1 && maxStep / Math.min(...lengths) > 10;
  const stepTicks = symlog ? [0, ...Array.from({ length: Math.ceil(Math.log10(maxStep)) + 1 }, (_, e) => 10 ** e).filter((v) => v <= maxStep * 1.0001)] : undefined;
  const stepAxis = { tickMinStep: 1, format: maxStep >= 10_000 ? '~s' : 'd', ...(stepTicks ? { values: stepTicks } : {}) };
  const panel = (field: string, yTitle: string, panelTitle: string): Spec => ({
    title: { text: panelTitle, fontSize: 12, fontWeight: 'normal' },
    width: 250,
    height: 190,
    transform: [{ filter: `isValid(${datum(field)}) && isFinite(${datum(field)})` }],
    mark: { type: 'line', strokeWidth: 2 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: symlog ? 'optimisation step (symlog scale)' : 'optimisation step', scale: symlog ? { type: 'symlog', domain: [0, maxStep] } : { domain: [0, maxStep] }, axis: stepAxis },
      y: logField(field)
        ? { field, type: 'quantitative', title: `${yTitle} (log scale)`, scale: { type: 'log' }, axis: { format: '.0e', values: decades(data.map((r) => r[field]).filter(finite)) } }
        : { field, type: 'quantitative', title: yTitle },
      color: categoryColor('run', 'run', runs.map((r) => r.label), options.colorDomain),
    },
  });
  return {
    name: 'training',
    title,
    data,
    spec: top(
      title,
      oneObjective
        ? ['The objective being minimised, the expected harm and KL(P_θ ‖ P_base), per optimisation step.']
        : [`The expected harm and KL(P_θ ‖ P_base), per optimisation step. J is not drawn: the runs minimise different objectives`, `(${objectives.join(', ')}), whose values are not on one scale.`],
      {
        hconcat: [
          ...(oneObjective ? [panel('objective', 'objective J', 'objective J(θ)')] : []),
          panel('expectedHarm', 'E[H] under P_θ', 'expected harm E[H]'),
          panel('kl', 'KL, nats', 'KL(P_θ ‖ P_base)'),
        ],
      },
    ),
  };
}

/** Readable ticks for a log axis of ratios around 1: 1-2-5 steps, finer (0.1 apart) near 1 when the range is narrow. */
function ratioTicks(lo: number, hi: number): number[] {
  const decadesSpanned = Math.log10(hi / lo);
  const mantissas = decadesSpanned > 2 ? [1] : decadesSpanned > 0.8 ? [1, 2, 5] : [1, 1.2, 1.5, 2, 3, 5, 7];
  const ticks = new Set<number>();
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mantissas) ticks.add(Number((m * 10 ** e).toPrecision(6)));
  }
  if (decadesSpanned <= 0.8) for (let v = 0.1; v < 2; v += 0.1) ticks.add(Number(v.toFixed(1)));
  let inside = [...ticks].filter((v) => v >= lo && v <= hi).sort((a, b) => a - b);
  // Near 1 the 0.1 steps crowd together: keep at most ~8 labels.
  while (inside.length > 9) inside = inside.filter((_, i) => i % 2 === 0 || inside[i] === 1);
  return inside;
}

/** The λ-scaling check: D_t/((λ²/2)·I_t) against λ on log axes, one line per position. */
export function lambdaScalingPlot(rows: { lambda: number; t: number; ratio: number }[]): Plot {
  const data: Row[] = rows.map((r) => ({ lambda: r.lambda, t: r.t, ratio: finite(r.ratio) ? r.ratio : null }));
  const valid = data.filter((r) => finite(r.lambda) && (r.lambda as number) > 0 && finite(r.ratio) && (r.ratio as number) > 0);
  const log = valid.length > 0;
  // Domains hug the data (log "nice" domains would add whole decades around ratios near 1); the y domain includes 1.
  const ratios = valid.map((r) => r.ratio as number);
  const lambdas = valid.map((r) => r.lambda as number);
  const yDomain = log ? [Math.min(1, ...ratios) / 1.15, Math.max(1, ...ratios) * 1.15] : [0, 2];
  const xDomain = log ? [Math.min(...lambdas) / 1.5, Math.max(...lambdas) * 1.5] : [0, 1];
  const yTicks = log ? ratioTicks(yDomain[0], yDomain[1]) : undefined;
  const title = 'λ-scaling of the equilibrium KL: D_t / ((λ²/2)·I_t)';
  return {
    name: 'lambda-scaling',
    title,
    data,
    spec: top(title, ['The ratio tends to 1 (dashed) as λ → 0 at every position inside the horizon; D_t = 0 beyond it.'], {
      width: WIDTH,
      height: HEIGHT,
      layer: [
        {
          transform: [{ filter: log ? 'isValid(datum.ratio) && isFinite(datum.ratio) && datum.ratio > 0 && datum.lambda > 0' : 'isValid(datum.ratio) && isFinite(datum.ratio)' }],
          mark: { type: 'line', point: { size: 20, filled: true }, strokeWidth: 1.5 },
          encoding: {
            x: { field: 'lambda', type: 'quantitative', title: log ? 'alignment strength λ (log scale)' : 'alignment strength λ', scale: log ? { type: 'log', domain: xDomain, nice: false } : { domain: xDomain }, axis: { format: '~g' } },
            y: { field: 'ratio', type: 'quantitative', title: log ? 'D_t / ((λ²/2)·I_t) (log scale)' : 'D_t / ((λ²/2)·I_t)', scale: log ? { type: 'log', domain: yDomain, nice: false } : { domain: yDomain }, axis: { format: '~g', ...(yTicks ? { values: yTicks } : {}) } },
            color: { field: 't', type: 'ordinal', title: 'position t', scale: { scheme: 'viridis' } },
          },
        },
        { data: { values: [{}] }, mark: { type: 'rule', strokeDash: [6, 4], color: ACCENT }, encoding: { y: { datum: 1, type: 'quantitative' } } },
      ],
    }),
  };
}

function compareValues(a: number | string | null, b: number | string | null): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}

/** Heat maps aim at this size in pixels; cells stay within MIN_CELL..MAX_CELL on each axis. */
const MAP_WIDTH = 800;
const MAP_HEIGHT = 480;
const MIN_CELL = 2;
const MAX_CELL = 48;
/** Axis labels of numeric sweep parameters: 4 significant digits, trailing zeros dropped. */
const AXIS_NUMBER_FORMAT = '.4~g';

/**
 * A 1-D sweep: `value` against the one swept parameter `x`, rows sharing an x averaged (their number
 * n is in the data). A numeric x is a quantitative axis (logarithmic when positive and spanning more
 * than two decades); otherwise the values are categories in sweep order.
 */
export function sweepLinePlot(rows: Record<string, number | string | null>[], x: string, value: string, title: string): Plot {
  const groups = new Map<string, { x: number | string; sum: number; n: number }>();
  for (const row of rows) {
    const xv = row[x];
    const v = row[value];
    if (xv === null || xv === undefined || !finite(v)) continue;
    const key = JSON.stringify(xv);
    const g = groups.get(key) ?? { x: xv, sum: 0, n: 0 };
    g.sum += v;
    g.n += 1;
    groups.set(key, g);
  }
  const countField = [x, value].includes('n') ? 'n_rows' : 'n';
  const data: Row[] = [...groups.values()].sort((a, b) => compareValues(a.x, b.x)).map((g) => ({ [x]: g.x, [value]: g.sum / g.n, [countField]: g.n }));
  const xsNumeric = data.every((r) => finite(r[x]));
  const xv = data.map((r) => r[x]).filter(finite);
  const logX = xsNumeric && xv.length > 1 && Math.min(...xv) > 0 && Math.max(...xv) / Math.min(...xv) > 100;
  const averaged = data.some((r) => (r[countField] as number) > 1);
  return {
    name: `line-${slug(value)}-by-${slug(x)}`,
    title,
    data,
    spec: top(title, averaged ? 'Each point is the mean of its rows (their number n is in the CSV).' : undefined, {
      width: WIDTH,
      height: HEIGHT,
      mark: { type: 'line', point: { size: 28, filled: true }, strokeWidth: 2 },
      encoding: {
        x: xsNumeric
          ? { field: fieldRef(x), type: 'quantitative', title: logX ? `${x} (log scale)` : x, scale: logX ? { type: 'log' } : { zero: false }, axis: { format: AXIS_NUMBER_FORMAT, labelOverlap: 'greedy' } }
          : { field: fieldRef(x), type: 'ordinal', title: x, sort: null, axis: { labelAngle: 0, labelOverlap: 'greedy' } },
        y: { field: fieldRef(value), type: 'quantitative', title: value, axis: { format: '~g' } },
      },
    }),
  };
}

/**
 * A sweep heat map of `value` over two parameters. Rows sharing an (x, y) cell are averaged; the plot's
 * data (and CSV) has one row per cell: x, y, the mean of `value` and the number of rows `n`.
 */
export function heatmapPlot(rows: Record<string, number | string | null>[], x: string, y: string, value: string, title: string): Plot {
  const cells = new Map<string, { x: number | string | null; y: number | string | null; sum: number; n: number }>();
  for (const row of rows) {
    const v = row[value];
    const key = JSON.stringify([row[x] ?? null, row[y] ?? null]);
    let cell = cells.get(key);
    if (!cell) cells.set(key, (cell = { x: row[x] ?? null, y: row[y] ?? null, sum: 0, n: 0 }));
    if (finite(v)) {
      cell.sum += v;
      cell.n += 1;
    }
  }
  const countField = [x, y, value].includes('n') ? 'n_rows' : 'n';
  const sorted = [...cells.values()].sort((a, b) => compareValues(a.y, b.y) || compareValues(a.x, b.x));
  const data: Row[] = sorted.map((c) => ({ [x]: c.x, [y]: c.y, [value]: c.n > 0 ? c.sum / c.n : null, [countField]: c.n }));
  const values = data.map((r) => r[value]).filter(finite);
  const min = Math.min(...values);
  const max = Math.max(...values);
  const logColor = values.length > 0 && min > 0 && max / min > 1e3;
  const mid = logColor ? Math.sqrt(min * max) : (min + max) / 2;
  const averaged = sorted.some((c) => c.n > 1);
  const format = values.some((v) => v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) ? '.2~e' : '.3~g';
  const showText = data.length <= 150;
  // Numbers as axis labels are rounded (a grid value 0.30000000000000004 reads 0.3); labels that
  // would overlap are dropped, so a 400-value axis stays legible.
  const axisOf = (field: string) => ({
    field: fieldRef(field),
    type: 'ordinal',
    title: field,
    sort: 'ascending',
    axis: { labelAngle: 0, labelOverlap: 'greedy', labelSeparation: 6, labelExpr: `isNumber(datum.value) ? format(datum.value, '${AXIS_NUMBER_FORMAT}') : datum.label` },
  });
  const valueRef = fieldRef(value);
  const xs = new Set(data.map((r) => String(r[x]))).size;
  const ys = new Set(data.map((r) => String(r[y]))).size;
  // Each axis fits its own count: a 400 × 4 grid is 400 narrow columns by 4 rows, not 400 squares.
  const fit = (n: number, span: number) => Math.max(MIN_CELL, Math.min(MAX_CELL, Math.floor(span / Math.max(n, 1))));
  const cellHeight = Math.max(showText ? 14 : MIN_CELL, fit(ys, MAP_HEIGHT));
  // Cells wide enough for their labels (the longest formatted value, 10px text).
  const label = (v: number) => (format === '.2~e' ? v.toExponential(2).replace(/\.?0+e/, 'e') : String(Number(v.toPrecision(3))));
  const textWidth = showText ? Math.max(0, ...values.map((v) => dejaVuTextWidth({ fontSize: 10 }, label(v)))) + 8 : 0;
  const cellWidth = Math.max(fit(xs, MAP_WIDTH), Math.min(90, textWidth));
  const layers: Spec[] = [
    {
      // White cell borders help wide cells and stripe narrow ones: none below 6 px.
      mark: { type: 'rect', ...(cellWidth >= 6 && cellHeight >= 6 ? { stroke: 'white', strokeWidth: 0.5 } : {}) },
      encoding: {
        x: axisOf(x),
        y: axisOf(y),
        color: { field: valueRef, type: 'quantitative', title: value, scale: { scheme: 'viridis', ...(logColor ? { type: 'log' } : {}) }, legend: { format } },
      },
    },
  ];
  if (showText && values.length > 0) {
    layers.push({
      mark: { type: 'text', fontSize: 10 },
      encoding: {
        x: axisOf(x),
        y: axisOf(y),
        text: { field: valueRef, type: 'quantitative', format },
        color: { condition: { test: `${datum(value)} < ${mid}`, value: 'white' }, value: 'black' },
      },
    });
  }
  const subtitle = averaged ? 'Each cell is the mean of its rows (their number n is in the CSV).' : undefined;
  return {
    name: `heatmap-${slug(value)}-by-${slug(x)}-${slug(y)}`,
    title,
    data,
    spec: top(title, subtitle, {
      width: { step: cellWidth },
      height: { step: cellHeight },
      transform: [{ filter: `isValid(${datum(value)}) && isFinite(${datum(value)})` }],
      layer: layers,
    }),
  };
}

/** The three per-position plots of an analysis: I_t, gradient norm against its bound, per-position KL. */
export function plotsForAnalysis(report: AnalyzeReport): Plot[] {
  return [harmInformationPlot(report), gradientPlot(report), klPlot(report)];
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e5 ? x.toFixed(4) : x.toExponential(2);
}

/** One CSV field, quoted as RFC 4180 says when it holds a comma, a quote or a line break. */
function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isNaN(value) ? '' : String(value);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /[",\r\n]/.test(text) || /^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Rows as CSV (RFC 4180: CRLF line ends, quoted fields); the header is the union of the rows' keys in order of appearance. */
export function toCsv(rows: Record<string, unknown>[]): string {
  const header: string[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    for (const key of Object.keys(row)) {
      if (!seen.has(key)) {
        seen.add(key);
        header.push(key);
      }
    }
  }
  const lines = [header.map(csvField).join(','), ...rows.map((row) => header.map((key) => csvField(row[key])).join(','))];
  return `${lines.join('\r\n')}\r\n`;
}

/** A plot's data as CSV. */
export function plotCsv(plot: Plot): string {
  return toCsv(plot.data);
}
