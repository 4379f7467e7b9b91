/**
 * Sweep reports scale: a 1-D sweep is a line plot; a 400 × 4 grid is a heat map of bounded size with
 * rounded, non-overlapping axis labels (checked on a screenshot at real size in Chromium); per-position
 * results are drawn across the swept parameter. Also: plots only where they say something (no
 * horizon marker on the border, no J of different objectives on one axis).
 */
import test from 'ava';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { harmInformationPlot, trainingPlot } from '../ts/report/plots.js';
import type { AnalyzeReport } from '../ts/report/analysis.js';
import { browserTest, launchBrowser } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-sweep-report-'));

function sweepReport(name: string, yaml: string): string[] {
  const file = join(scratch, `${name}.yaml`);
  writeFileSync(file, yaml);
  const run = runCli(['sweep', file, '--out', join(scratch, `${name}-run`)]);
  if (run.status !== 0) throw new Error(run.stderr);
  const report = runCli(['report', file, '--results', join(scratch, `${name}-run`), '--out', join(scratch, `${name}-report`), '--json']);
  if (report.status !== 0) throw new Error(report.stderr);
  return JSON.parse(report.stdout).plots;
}

// λ on 400 values × 4 random scenarios (order 1, V = 3, T = 6, graded by λ): 1600 analyze cells.
const GRID = `command: analyze
scenario: random
fixed: { vocab: 3, length: 6, states: 4 }
grid:
  lambda: { linear: [0.01, 4, 400] }
  scenarioSeed: [1, 2, 3, 4]
`;

test('a 1-D sweep is drawn as line plots against its parameter, with per-position maps', (t) => {
  const plots = sweepReport('one-d', 'command: analyze\nscenario: refusal\ngrid:\n  lambda: { log: [0.01, 100, 12] }\n');
  t.true(plots.includes('line-expectedharm-aligned-by-lambda'), plots.join(', '));
  t.false(plots.some((p) => p.startsWith('heatmap-expectedharm')), 'no one-row heat map');
  // Per-position results vary with λ and are drawn as position × λ maps; the base's I_t does not vary and is not.
  t.true(plots.includes('heatmap-klonpolicy-by-lambda-position'));
  t.false(plots.includes('heatmap-harminformation-by-lambda-position'));
  const csv = readFileSync(join(scratch, 'one-d-report', 'data', 'line-expectedharm-aligned-by-lambda.csv'), 'utf8').trim().split('\n');
  t.is(csv.length, 13, 'one row per λ');
  // E[H] under the Gibbs optimum falls as λ grows.
  const values = csv.slice(1).map((line) => Number(line.split(',')[1]));
  t.true(values.every((v, i) => i === 0 || v <= values[i - 1] + 1e-12), values.join(' '));
});

browserTest(test)('a 400 × 4 heat map has a bounded size and rounded, non-overlapping labels (screenshot at real size)', async (t) => {
  const plots = sweepReport('grid', GRID);
  const name = 'heatmap-expectedharm-aligned-by-lambda-scenarioseed';
  t.true(plots.includes(name), plots.join(', '));
  t.true(plots.includes('heatmap-klonpolicy-by-lambda-position'), 'per-position KL across λ');
  const browser = await launchBrowser(t);
  if (!browser) return;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
    await page.goto(pathToFileURL(join(scratch, 'grid-report', 'index.html')).href);
    const figure = await page.$(`#plot-${name}`);
    t.truthy(figure);
    const box = (await figure!.boundingBox())!;
    t.true(box.width <= 1100 && box.height <= 400, `figure ${box.width} × ${box.height}`);
    const shot = join(scratch, `${name}.png`);
    await figure!.screenshot({ path: shot });
    t.log(`screenshot: ${shot}`);
    t.true(statSync(shot).size > 5000);
    // The x-axis labels: rounded numbers, none overlapping another.
    const labels = await page.$$eval(`#plot-${name} svg g.mark-text.role-axis-label text`, (nodes) =>
      nodes
        // Labels that would overlap are kept in the SVG with opacity 0.
        .filter((n) => Number(getComputedStyle(n).opacity) > 0 && Number(n.getAttribute('opacity') ?? 1) > 0)
        .map((n) => {
          const r = (n as SVGGraphicsElement).getBoundingClientRect();
          return { text: n.textContent ?? '', left: r.left, right: r.right, top: r.top };
        }),
    );
    const xLabels = labels.filter((l) => Math.abs(l.top - Math.max(...labels.map((m) => m.top))) < 2).sort((a, b) => a.left - b.left);
    t.true(xLabels.length >= 10 && xLabels.length <= 60, `${xLabels.length} x labels`);
    t.true(xLabels.every((l) => /^\d+(\.\d{1,3})?$/.test(l.text)), xLabels.map((l) => l.text).join(' '));
    t.true(xLabels.every((l, i) => i === 0 || l.left >= xLabels[i - 1].right), 'labels do not overlap');
  } finally {
    await browser.close();
  }
});

function report(horizon: number, effective: number, length = 8): AnalyzeReport {
  const positions = Array.from({ length }, (_, i) => ({
    t: i + 1,
    harmInformation: 0.5 ** (i + 1),
    gradNorm: 0,
    gradBound: 0,
    klOnPolicy: 0,
    klTeacherForced: null,
    klPredicted: 0,
    decisionTime: 0,
  }));
  return {
    scenario: 'x',
    lambda: 1,
    expectedHarm: { base: 0.5, aligned: 0.4 },
    harmVariance: 1,
    harmInformationSum: 1,
    horizon,
    horizonTolerance: 1e-12,
    effectiveHorizon: { k: effective, fraction: 0.99 },
    states: 3,
    decidedAtStart: 0,
    undecided: 0,
    positions,
    prefill: [],
  };
}

const rules = (spec: unknown) => JSON.stringify(spec).match(/"type":"rule"/g)?.length ?? 0;

test('the horizon rule is drawn only inside the plot: the horizon, else the effective horizon, else none', (t) => {
  const inside = harmInformationPlot(report(5, 4));
  t.is(rules(inside.spec), 1);
  t.regex(JSON.stringify(inside.spec), /"horizon k = 5"/);
  const atT = harmInformationPlot(report(8, 6));
  t.is(rules(atT.spec), 1);
  t.regex(JSON.stringify(atT.spec), /effective horizon k = 6/);
  t.is(rules(harmInformationPlot(report(8, 8)).spec), 0, 'no rule on the border');
  t.is(rules(harmInformationPlot(report(1, 1)).spec), 0, 'no rule on the left border');
});

test('J is drawn on one axis only for runs of one objective', (t) => {
  const records = (j: number) => [0, 1, 2].map((step) => ({ step, objective: j - step, expectedHarm: 0.5, kl: 0.1 }) as never);
  const same = trainingPlot([
    { label: 'a', records: records(3), objective: 'standard' },
    { label: 'b', records: records(4), objective: 'standard' },
  ]);
  t.regex(JSON.stringify(same.spec), /objective J\(θ\)/);
  const mixed = trainingPlot([
    { label: 'a', records: records(3), objective: 'standard' },
    { label: 'b', records: records(40), objective: 'deep' },
  ]);
  t.notRegex(JSON.stringify(mixed.spec), /objective J\(θ\)/);
  t.regex(JSON.stringify(mixed.spec), /J is not drawn: the runs minimise different objectives/);
});
