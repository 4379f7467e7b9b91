/**
 * `report` on rollout logs: a log is profiled exactly as `profile` profiles it, and its plots carry the
 * profile's numbers (KL profile with ±2 SE bands, the KL law on log–log axes at the fitted λ̂, prefill
 * ASR by depth, I by block, h by depth); a saved `profile --json` gives the same page; the findings are
 * computed from the numbers (two profiles whose conclusions differ get different sentences); a bad
 * log exits 2 naming its line. On `refusal` and on our own `graded` scenario (order 2, harm in
 * {0, 0.2, 0.5, 1}, undecided mass at T). One browser check opens the page at real size.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { scenarioToJson } from '../ts/index.js';
import { readLog } from '../ts/logs/format.js';
import { profileLog, type LogProfile } from '../ts/logs/profile.js';
import { profileFindings } from '../ts/report/profile-findings.js';
import { browserTest, launchBrowser } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { gradedScenario } from './helpers/graded.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-report-profile-'));
const PLOTS = ['log-kl-profile', 'log-kl-law', 'log-prefill-asr', 'log-harm-information', 'log-conditional-harm'];

function run(args: string[]) {
  const r = runCli(args);
  if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** A toy rollout log of `target`, and its report; returns the log's path and the report's plot names. */
function logAndReport(name: string, target: string, extra: string[] = []): { log: string; plots: string[]; out: string } {
  run(['rollouts', target, '--samples', '1500', '--rollouts', '6', '--seed', '3', '--out', join(scratch, `${name}-log`), ...extra]);
  const log = join(scratch, `${name}-log`, 'log.jsonl');
  const out = join(scratch, `${name}-report`);
  return { log, plots: JSON.parse(run(['report', log, '--out', out, '--json'])).plots, out };
}

/** The rows of a CSV written by the report (plain numbers and labels: no quoted fields here). */
function csvRows(path: string): Record<string, string>[] {
  const [head, ...lines] = readFileSync(path, 'utf8').trim().split(/\r?\n/);
  const keys = head.split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [keys[i], v])));
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b));

function plotsCarryTheProfile(t: import('ava').ExecutionContext, out: string, p: LogProfile) {
  // KL profile: one row per position and series, the values and bands of the profile.
  const kl = csvRows(join(out, 'data', 'log-kl-profile.csv'));
  for (const r of p.klProfile) {
    const row = kl.find((x) => Number(x.t) === r.t && x.series.startsWith('on-policy'))!;
    t.true(close(Number(row.value), r.klOnPolicy) && close(Number(row.se), r.klOnPolicySE), `D_${r.t}`);
    if (r.klOnPolicy > 0) t.true(close(Number(row.hi), r.klOnPolicy + 2 * r.klOnPolicySE), `band at ${r.t}`);
  }
  t.is(kl.filter((x) => x.series.startsWith('teacher')).length, p.klProfile.filter((r) => r.klTeacherForced !== null).length);
  // KL law: x = (λ̂²/2)·I per block at the fitted λ̂, y = D.
  const law = csvRows(join(out, 'data', 'log-kl-law.csv'));
  const c = p.fit!.lambda ** 2 / 2;
  t.is(law.length, p.positions.length);
  p.positions.forEach((r, i) => {
    t.true(close(Number(law[i].predicted), c * r.harmInformation!), `predicted D over ${r.tStart}..${r.tEnd}`);
    t.true(close(Number(law[i].kl), r.klOnPolicy));
  });
  const svg = readFileSync(join(out, 'plots', 'log-kl-law.svg'), 'utf8');
  t.true(svg.includes(`λ̂ = ${p.fit!.lambda.toPrecision(3)}`), 'the subtitle names the fitted λ̂');
  const prefill = csvRows(join(out, 'data', 'log-prefill-asr.csv'));
  t.deepEqual(prefill.map((r) => Number(r.k)), p.prefill.map((r) => r.k));
  prefill.forEach((r, i) => t.true(close(Number(r.asr), p.prefill[i].asr) && close(Number(r.lo), Math.max(0, p.prefill[i].asr - 2 * p.prefill[i].asrSE))));
  const info = csvRows(join(out, 'data', 'log-harm-information.csv'));
  info.forEach((r, i) => t.true(close(Number(r.harmInformation), p.positions[i].harmInformation!), `I over block ${i}`));
  const h = csvRows(join(out, 'data', 'log-conditional-harm.csv'));
  t.deepEqual(h.map((r) => Number(r.h)), p.conditionalHarm.map((r) => r.h));
}

let refusal: { log: string; plots: string[]; out: string };
test.before(() => {
  refusal = logAndReport('refusal', 'refusal');
});

test('report on a refusal rollout log: five plots carrying the profile\'s numbers, findings first', (t) => {
  const { log, plots, out } = refusal;
  t.deepEqual(plots, PLOTS);
  // The report profiles with `profile`'s defaults (200 replicates, seed 0).
  const p = profileLog(readLog(log));
  plotsCarryTheProfile(t, out, p);
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  t.true(html.indexOf('id="findings"') < html.indexOf('id="profile"'), 'the findings open the page');
  for (const line of profileFindings(p, { policy: 'policy', reference: 'reference' })) t.true(html.includes(line.replace(/&/g, '&amp;').replace(/'/g, '&#39;')), line);
  t.true(html.includes(`harm-horizon profile ${log} --json`), 'the reproducing command');
});

test('report on a graded (soft-harm, order-2) log, and on its saved profile --json: the same plots and data', (t) => {
  const scenario = join(scratch, 'graded.json');
  writeFileSync(scenario, JSON.stringify(scenarioToJson(gradedScenario())));
  const { log, plots, out } = logAndReport('graded', scenario, ['--depths', '0,1,2,3,4,5,7']);
  t.deepEqual(plots, PLOTS);
  plotsCarryTheProfile(t, out, profileLog(readLog(log)));
  const saved = join(scratch, 'graded-saved');
  writeFileSync(join(scratch, 'profile-graded.json'), run(['profile', log, '--json']));
  const again = JSON.parse(run(['report', join(scratch, 'profile-graded.json'), '--out', saved, '--json']));
  t.deepEqual(again.plots, PLOTS);
  for (const name of PLOTS) t.is(readFileSync(join(saved, 'data', `${name}.csv`), 'utf8'), readFileSync(join(out, 'data', `${name}.csv`), 'utf8'), name);
});

test('a bad rollout log exits 2 naming its line; a profile JSON with a bad field names the field', (t) => {
  const bad = join(scratch, 'bad.jsonl');
  const good = readFileSync(refusal.log, 'utf8').split('\n');
  writeFileSync(bad, [good[0], '{"type":"sample","id":', ...good.slice(1, 4)].join('\n'));
  const r = runCli(['report', bad, '--out', join(scratch, 'bad-report')]);
  t.is(r.status, 2, r.stderr);
  t.regex(r.stderr, /line 2/);
  const profile = JSON.parse(run(['profile', refusal.log, '--json']));
  profile.prefill[1].asr = 'high';
  writeFileSync(join(scratch, 'profile-bad.json'), JSON.stringify(profile));
  const s = runCli(['report', join(scratch, 'profile-bad.json'), '--out', join(scratch, 'bad-profile-report')]);
  t.is(s.status, 2, s.stderr);
  t.regex(s.stderr, /prefill\[1\]/);
});

/** A minimal profile: per-position KL `d`, one I block per position `info`, prefill ASRs and a fit. */
function syntheticProfile(d: number[], asr: number[], fit: { lambda: number; chiSquared: number; dof: number }): LogProfile {
  const se = 0.01;
  return {
    prompts: 3,
    records: { policySamples: 100, referenceSamples: 100, rollouts: 50, prefills: 20 },
    expectedHarm: { policy: 0.1, policySE: se, reference: 0.5, referenceSE: se },
    klTeacherForcedKind: 'exact',
    klProfile: d.map((x, i) => ({ t: i + 1, klOnPolicy: x, klOnPolicySE: se * x, k1: x, k1SE: se, k3: x, k3SE: se, klTeacherForced: x, klTeacherForcedSE: se, lowSupport: false })),
    positions: d.map((x, i) => ({ tStart: i + 1, tEnd: i + 1, klOnPolicy: x, klOnPolicySE: se, klTeacherForced: null, klTeacherForcedSE: null, harmInformation: x / 2, harmInformationSE: se, harmInformationSupport: 100, lowSupport: false })),
    harmInformationModel: 'reference',
    conditionalHarm: [{ depth: 0, h: 0.5, hSE: se }],
    prefill: asr.map((a, k) => ({ k, asr: a, asrSE: se, prefixes: 20, lowSupport: false, passAt: [] })),
    fit: { ...fit, lambdaSE: 0.05, scale: fit.lambda ** 2 / 2, scaleSE: 0.01, rSquared: 0.9, blocks: d.length, perBlock: [] },
    horizon: { estimate: d.length, lower: d.length, upper: d.length },
    bootstrap: { replicates: 200, seed: 0 },
  };
}

test('the findings follow the numbers: shallow against spread KL, rising against flat ASR, law kept against broken', (t) => {
  const model = { policy: 'aligned', reference: 'base' };
  const shallow = profileFindings(syntheticProfile([1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01], [0.05, 0.5, 0.9], { lambda: 1, chiSquared: 3, dof: 7 }), model);
  const spread = profileFindings(syntheticProfile([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [0.05, 0.05, 0.06], { lambda: 1, chiSquared: 70, dof: 7 }), model);
  t.regex(shallow[0], /a shallow profile/);
  t.regex(spread[0], /spread along the response/);
  t.truthy(shallow.find((l) => /raises the harm/.test(l)));
  t.truthy(spread.find((l) => /no significant change/.test(l)));
  t.truthy(shallow.find((l) => /consistent with the law/.test(l) && !/not consistent/.test(l)));
  t.truthy(spread.find((l) => /not consistent with the law/.test(l)));
});

browserTest(test)('the KL-law plot of a log report at real size: bounded, labelled, drawn (screenshot)', async (t) => {
  const { out } = refusal;
  const browser = await launchBrowser(t);
  if (!browser) return;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
    await page.goto(pathToFileURL(join(out, 'index.html')).href);
    for (const name of ['log-kl-law', 'log-kl-profile']) {
      const figure = await page.$(`#plot-${name}`);
      t.truthy(figure, name);
      const box = (await figure!.boundingBox())!;
      t.true(box.width <= 800 && box.height <= 520, `${name}: ${box.width} × ${box.height}`);
      const shot = join(scratch, `${name}.png`);
      await figure!.screenshot({ path: shot });
      t.log(`screenshot: ${shot}`);
      t.true(statSync(shot).size > 5000);
    }
    // One point per drawable block on the law plot, and axis labels at powers of ten.
    const points = await page.$$eval('#plot-log-kl-law svg g.mark-symbol path', (nodes) => nodes.length);
    t.true(points >= 3, `${points} points`);
    const labels = await page.$$eval('#plot-log-kl-law svg g.mark-text.role-axis-label text', (nodes) => nodes.map((n) => n.textContent ?? ''));
    t.true(labels.length > 0 && labels.every((l) => /^1e[+-]\d+$/.test(l)), labels.join(' '));
  } finally {
    await browser.close();
  }
});
