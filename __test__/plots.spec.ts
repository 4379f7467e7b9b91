/**
 * Plots: every builder's Vega-Lite specification renders headless to an SVG with marks and no Vega
 * warnings, and its CSV holds exactly the rows it plots.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExactEngine, analyzeReport, builtinScenario, compileScenario, type AnalyzeReport } from '../ts/index.js';
import {
  gradientPlot,
  harmInformationPlot,
  heatmapPlot,
  klPlot,
  lambdaScalingPlot,
  plotsForAnalysis,
  prefillPlot,
  toCsv,
  trainingPlot,
  type Plot,
} from '../ts/report/plots.js';
import { renderPlot, writePlot } from '../ts/report/render.js';
import { train, TRAIN_DEFAULTS, type TrainRecord } from '../ts/workflows/train.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-plots-'));

function report(name: string, lambda = 5): AnalyzeReport {
  const compiled = compileScenario(builtinScenario(name));
  const engine = new ExactEngine(compiled);
  return analyzeReport(compiled, engine.analyze(lambda), engine.numStates, 1e-12);
}

/** Minimal RFC 4180 reader (quoted fields may hold commas, quotes and line breaks). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field), rows.push(row), (row = []), (field = ''), i++;
    } else field += c;
  }
  if (field !== '' || row.length > 0) row.push(field), rows.push(row);
  return rows;
}

function count(svg: string, markClass: string): number {
  return svg.split(`mark-${markClass} role-mark`).length - 1;
}

/** Renders, checks the SVG and CSV on disk, returns the SVG and the parsed CSV. */
async function check(t: import('ava').ExecutionContext, plot: Plot, marks: string[]) {
  const { svg, warnings } = await renderPlot(plot);
  t.deepEqual(warnings, [], `${plot.name}: Vega warnings`);
  t.true(svg.startsWith('<svg'), plot.name);
  const width = Number(/width="(\d+)"/.exec(svg)?.[1]);
  t.true(width > 100 && width < 1400, `${plot.name}: width ${width}`);
  for (const mark of marks) t.true(count(svg, mark) > 0, `${plot.name}: has ${mark} marks`);
  t.true(svg.includes(plot.title.replace(/&/g, '&amp;').slice(0, 20)) || svg.includes('<text'), `${plot.name}: has text`);
  const dir = join(scratch, t.title.replace(/\W+/g, '-'));
  const written = await writePlot(dir, plot);
  t.is(written, svg);
  t.is(readFileSync(join(dir, `${plot.name}.svg`), 'utf8'), svg);
  const csv = parseCsv(readFileSync(join(dir, `${plot.name}.csv`), 'utf8'));
  return { svg, header: csv[0], rows: csv.slice(1) };
}

for (const name of ['refusal', 'horizon']) {
  test(`the per-position plots of ${name} render, with one CSV row per position`, async (t) => {
    const r = report(name);
    const plots = plotsForAnalysis(r);
    t.deepEqual(
      plots.map((p) => p.name),
      ['harm-information', 'gradient-norm', 'kl-per-position'],
    );
    const it = await check(t, harmInformationPlot(r), ['line', 'symbol', 'rule', 'text']);
    t.deepEqual(it.header, ['t', 'harmInformation']);
    t.is(it.rows.length, r.positions.length);
    t.deepEqual(
      it.rows.map((row) => Number(row[1])),
      r.positions.map((p) => p.harmInformation),
      'the CSV keeps full precision',
    );
    t.true(it.svg.includes(`horizon k = ${r.horizon}`), 'the horizon is marked');

    const g = await check(t, gradientPlot(r), ['line', 'symbol', 'rule']);
    t.deepEqual(g.header, ['t', 'gradNorm', 'gradBound']);
    t.is(g.rows.length, r.positions.length);

    const kl = await check(t, klPlot(r), ['line', 'symbol', 'rule']);
    t.deepEqual(kl.header, ['t', 'klOnPolicy', 'klTeacherForced', 'klPredicted']);
    t.is(kl.rows.length, r.positions.length);
    if (name === 'horizon') {
      // Beyond the horizon I_t is zero up to rounding: not drawn on the log axis, but kept in the CSV.
      const drawn = (it.svg.match(/mark-symbol role-mark[\s\S]*?<\/g>/)?.[0].match(/<path/g) ?? []).length;
      t.is(drawn, r.horizon, 'one I_t point per position inside the horizon');
    }
  });
}

test('a report with every value zero renders on linear axes without warnings', async (t) => {
  const r = report('horizon');
  const zero: AnalyzeReport = {
    ...r,
    positions: r.positions.map((p) => ({ ...p, harmInformation: 0, gradNorm: 0, gradBound: 0, klOnPolicy: 0, klTeacherForced: null, klPredicted: 0 })),
  };
  for (const plot of plotsForAnalysis(zero)) await check(t, plot, ['line']);
});

test('prefillPlot: one line per policy, one CSV row per (policy, k), nulls kept as empty fields', async (t) => {
  const r = report('refusal');
  const curves = [
    { label: 'base', asr: r.prefill.map((p) => p.asrBase) },
    { label: 'aligned, "Gibbs"', asr: r.prefill.map((p) => p.asrAligned) },
    { label: 'partial', asr: [0.5, null, 0.7] },
  ];
  const { header, rows } = await check(t, prefillPlot(curves), ['line', 'symbol']);
  t.deepEqual(header, ['policy', 'k', 'asr']);
  t.is(rows.length, 2 * r.prefill.length + 3);
  t.deepEqual(rows[r.prefill.length], ['aligned, "Gibbs"', '0', String(r.prefill[0].asrAligned)], 'RFC 4180 quoting round-trips');
  t.deepEqual(rows[rows.length - 2], ['partial', '1', '']);
  const named = prefillPlot(curves.slice(0, 1), { name: 'rank-assisted-asr', title: 'Rank-assisted' });
  t.is(named.name, 'rank-assisted-asr');
  t.is(named.title, 'Rank-assisted');
});

test('trainingPlot: curves from a real training run, one CSV row per logged step', async (t) => {
  const sc = compileScenario(builtinScenario('refusal'));
  const engine = new ExactEngine(sc);
  const runs: { label: string; records: TrainRecord[] }[] = [];
  for (const kind of ['standard', 'deep'] as const) {
    const records: TrainRecord[] = [];
    await train(
      sc,
      engine,
      { ...TRAIN_DEFAULTS, objective: { kind, lambda: 5, mu: 10, gamma: 1, mix: 0.2 }, algorithm: 'exact', policy: 'tabular', steps: 12, evalEvery: 1000 },
      (rec) => records.push(rec),
    );
    runs.push({ label: kind, records });
  }
  const { header, rows, svg } = await check(t, trainingPlot(runs), ['line']);
  t.deepEqual(header, ['run', 'step', 'objective', 'expectedHarm', 'kl']);
  t.is(rows.length, runs[0].records.length + runs[1].records.length);
  t.deepEqual(new Set(svg.match(/mark-line role-mark concat_\d_marks/g)).size, 3, 'three panels');
  t.is(count(svg, 'line'), 6, 'one line per run in each panel');
  t.deepEqual(rows[0], ['standard', '0', String(runs[0].records[0].objective), String(runs[0].records[0].expectedHarm), String(runs[0].records[0].kl)]);
});

test('lambdaScalingPlot: log axes with a rule at 1; null and non-positive ratios are dropped from the plot, kept in the CSV', async (t) => {
  const rows: { lambda: number; t: number; ratio: number }[] = [];
  for (const lambda of [0.01, 0.1, 1, 10]) for (let p = 1; p <= 5; p++) rows.push({ lambda, t: p, ratio: p === 5 ? NaN : p === 4 ? 0 : 1 + lambda * p });
  const plot = lambdaScalingPlot(rows);
  const spec = JSON.stringify(plot.spec);
  t.true(spec.includes('"type":"log"'));
  const { header, rows: csv } = await check(t, plot, ['line', 'symbol', 'rule']);
  t.deepEqual(header, ['lambda', 't', 'ratio']);
  t.is(csv.length, rows.length);
  t.deepEqual(csv[4], ['0.01', '5', ''], 'NaN ratio is an empty field');
  // An empty table still renders cleanly.
  await check(t, lambdaScalingPlot([]), []);
});

test('heatmapPlot: one CSV row per (x, y) cell with the mean and the count; dotted field names work', async (t) => {
  const rows: Record<string, number | string | null>[] = [];
  for (const lambda of [0.1, 1, 10]) for (const gamma of [0.5, 1]) for (const seed of [0, 1, 2]) rows.push({ 'objective.lambda': lambda, gamma, seed, 'result.eh': lambda * gamma + seed, label: 'x, "y"' });
  rows.push({ 'objective.lambda': 10, gamma: 1, seed: 3, 'result.eh': null });
  const plot = heatmapPlot(rows, 'objective.lambda', 'gamma', 'result.eh', 'E[H] over λ × γ');
  const { header, rows: csv, svg } = await check(t, plot, ['rect', 'text']);
  t.deepEqual(header, ['objective.lambda', 'gamma', 'result.eh', 'n']);
  t.is(csv.length, 6);
  const cell = csv.find((r) => r[0] === '10' && r[1] === '1')!;
  t.deepEqual(cell, ['10', '1', String(10 + 1), '3'], 'mean over seeds; the null row is not counted');
  t.is(count(svg, 'rect'), 1);
  t.true((svg.match(/mark-rect role-mark[\s\S]*?<\/g>/)?.[0].match(/<path/g) ?? []).length === 6, 'one rect per cell');
});

test('toCsv: header from the union of keys, RFC 4180 quoting, CRLF line ends', (t) => {
  const text = toCsv([{ a: 1, b: 'plain' }, { b: 'has, comma', c: 'say "hi"' }, { a: null, c: 'two\nlines' }]);
  t.is(text, 'a,b,c\r\n1,plain,\r\n,"has, comma","say ""hi"""\r\n,,"two\nlines"\r\n');
  t.deepEqual(parseCsv(text), [
    ['a', 'b', 'c'],
    ['1', 'plain', ''],
    ['', 'has, comma', 'say "hi"'],
    ['', '', 'two\nlines'],
  ]);
});

test('writePlot creates its folder', async (t) => {
  const dir = join(scratch, 'nested', 'deeper');
  await writePlot(dir, prefillPlot([{ label: 'base', asr: [0.1, 0.2] }]));
  t.true(existsSync(join(dir, 'prefill-asr.svg')) && existsSync(join(dir, 'prefill-asr.csv')));
});
