/**
 * `harm-horizon report`: a results folder made by the real command line becomes one self-contained
 * HTML page that renders in headless Chromium with no console errors and every plot present; sweep
 * files become heat maps; bad input exits 2 with a message naming what is wrong.
 *
 * Runs the built CLI (dist/cli/main.js; `npm test` builds it first).
 */
import test, { type ExecutionContext } from 'ava';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeReport } from '../ts/report/html.js';
import { browserTest, browserTestsRun, launchBrowser, SKIP_MESSAGE } from './helpers/browser.js';
import { CLI, runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-report-'));
const results = join(scratch, 'results');
const out = join(scratch, 'report');

/** The command lines that build the results folder, exactly as run. */
const COMMANDS: { args: string[]; stdout?: string }[] = [
  { args: ['analyze', 'refusal', '--json'], stdout: 'analyze.json' },
  { args: ['train', 'refusal', '--objective', 'standard', '--algorithm', 'exact', '--steps', '30', '--out', join(results, 'standard')] },
  { args: ['attack', 'refusal', '--json'], stdout: 'attack-base.json' },
  { args: ['attack', 'refusal', '--policy', join(results, 'standard', 'policy.json'), '--json'], stdout: 'attack-standard.json' },
];
const commandLine = (args: string[]) => ['harm-horizon', ...args].join(' ');

// No rank-assisted plot: at the default rank (r = V) its curve is the same for every policy.
const EXPECTED_PLOTS = ['harm-information', 'gradient-norm', 'kl-per-position', 'prefill-asr', 'training'];

let reportJson: { html: string; plots: string[]; csv: string[] };

function mustRun(args: string[]) {
  const r = runCli(args);
  if (r.status !== 0) throw new Error(`harm-horizon ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

/** No stack traces in user-facing errors. */
function noStack(t: ExecutionContext, stderr: string) {
  t.false(/\n\s+at\s/.test(stderr), `no stack trace in:\n${stderr}`);
}

test.before(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build it with npx tsc -p tsconfig.json`);
  mkdirSync(results, { recursive: true });
  for (const c of COMMANDS) {
    const r = mustRun(c.args);
    if (c.stdout) writeFileSync(join(results, c.stdout), r.stdout);
  }
  writeFileSync(
    join(results, 'manifest.json'),
    JSON.stringify({ title: 'Shallow vs deep: refusal', commands: COMMANDS.map((c) => commandLine(c.args) + (c.stdout ? ` > ${c.stdout}` : '')), parameters: { scenario: 'refusal', lambda: 5, train: { steps: 30, objective: 'standard' } } }),
  );
  writeFileSync(join(results, 'notes.txt'), 'not a result');
  // What the demo adds: its own summary.json (not a training run's) with notes, and a folder holding just a policy.
  writeFileSync(join(results, 'summary.json'), JSON.stringify({ title: 'demo', notes: ['PPO ran fewer steps than usual.'] }));
  mkdirSync(join(results, 'gibbs'));
  writeFileSync(join(results, 'gibbs', 'policy.json'), '{}');
  reportJson = JSON.parse(mustRun(['report', results, '--out', out, '--json']).stdout);
});

test('report --json lists the page, the plots and their CSV files, all under --out', (t) => {
  t.is(reportJson.html, join(out, 'index.html'));
  t.deepEqual(reportJson.plots, EXPECTED_PLOTS);
  t.deepEqual(
    reportJson.csv,
    EXPECTED_PLOTS.map((p) => join(out, 'data', `${p}.csv`)),
  );
  t.deepEqual(readdirSync(out).sort(), ['data', 'index.html', 'plots']);
  t.deepEqual(readdirSync(join(out, 'plots')).sort(), EXPECTED_PLOTS.map((p) => `${p}.svg`).sort());
  t.deepEqual(readdirSync(join(out, 'data')).sort(), EXPECTED_PLOTS.map((p) => `${p}.csv`).sort());
  t.false(existsSync(join(results, 'index.html')), 'nothing written beside the input');
  // The CSVs hold the plotted rows.
  const prefill = readFileSync(join(out, 'data', 'prefill-asr.csv'), 'utf8').trim().split('\r\n');
  t.is(prefill[0], 'policy,k,asr');
  const policies = new Set(prefill.slice(1).map((line) => line.split(',')[0]));
  t.true(policies.has('base') && policies.has('standard'), [...policies].join(' | '));
  const training = readFileSync(join(out, 'data', 'training.csv'), 'utf8').trim().split('\r\n');
  t.is(training[0], 'run,step,objective,expectedHarm,kl');
  t.is(training.length, 1 + 31, 'steps 0..30');
});

test('the page is self-contained: inline SVG and CSS, no scripts, no external resources', (t) => {
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  t.false(/<script/i.test(html));
  t.false(/\b(src|href)="(https?:)?\/\//i.test(html), 'no external links to load');
  t.false(/<link[^>]+rel="stylesheet"/i.test(html));
  t.is((html.match(/<figure id="plot-/g) ?? []).length, EXPECTED_PLOTS.length);
  t.true(html.includes('Shallow vs deep: refusal'));
  // Every inline SVG's ids are unique on the page.
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
  t.is(new Set(ids).size, ids.length);
});

browserTest(test)('the report renders in headless Chromium with no console errors and every plot present', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    page.on('request', (r) => requests.push(r.url()));
    const url = pathToFileURL(join(out, 'index.html')).href;
    const response = await page.goto(url, { waitUntil: 'load' });
    t.truthy(response?.ok());
    t.deepEqual(errors, []);
    t.deepEqual(requests, [url], 'the page loads nothing but itself');
    t.is(await page.title(), 'Shallow vs deep: refusal');

    const figures = await page.evaluate(() =>
      [...document.querySelectorAll('figure')].map((f) => {
        const svg = f.querySelector('svg');
        const box = svg?.getBoundingClientRect();
        return {
          id: f.id,
          width: box?.width ?? 0,
          height: box?.height ?? 0,
          marks: svg?.querySelectorAll('.role-mark').length ?? 0,
          caption: f.querySelector('figcaption')?.textContent ?? '',
          csv: f.querySelector('figcaption a[href$=".csv"]')?.getAttribute('href') ?? '',
        };
      }),
    );
    t.deepEqual(
      figures.map((f) => f.id),
      EXPECTED_PLOTS.map((p) => `plot-${p}`),
    );
    for (const f of figures) {
      t.true(f.width > 100 && f.height > 100, `${f.id}: ${f.width}×${f.height}`);
      t.true(f.marks > 0, `${f.id} has marks`);
      t.true(f.caption.length > 10, `${f.id} has a caption`);
      t.is(f.csv, `data/${f.id.slice('plot-'.length)}.csv`);
      t.true(existsSync(join(out, f.csv)), f.csv);
    }

    const text = await page.evaluate(() => document.body.innerText);
    const listed = await page.evaluate(() => [...document.querySelectorAll('ol.commands code')].map((c) => c.textContent));
    for (const c of COMMANDS) t.true(listed.some((l) => l?.startsWith(commandLine(c.args))), `lists ${commandLine(c.args)}`);
    t.true(listed.some((l) => l?.startsWith(`harm-horizon report ${results} --out ${out}`)), 'lists the report command itself');
    t.true(text.includes('train.steps'), 'lists the parameters');
    t.true(text.includes('Prefilling attack success ASR_k'), 'has the prefill table');
    const prefillRows = await page.evaluate(() =>
      [...document.querySelectorAll('table')]
        .find((tb) => tb.querySelector('caption')?.textContent === 'Prefilling attack success ASR_k')
        ?.querySelectorAll('tbody tr').length ?? 0,
    );
    t.true(prefillRows >= 3, 'base, standard and the Gibbs optimum');
    t.true(text.includes('notes.txt'), 'names the skipped file');
    t.false(text.includes('gibbs/'), 'a folder holding a policy is not reported as skipped');
    t.true(text.includes('PPO ran fewer steps than usual.'), 'shows the notes of summary.json');
  } finally {
    await browser.close();
  }
});

test('a sweep file (YAML) and its results become heat maps over the first two varying parameters, and render', async (t) => {
  const dir = join(scratch, 'sweep');
  mkdirSync(dir);
  const sweepFile = join(dir, 'grid.yaml');
  writeFileSync(sweepFile, 'command: analyze\nscenario: refusal\nseed: 1\ngrid:\n  lambda: [0.5, 1, 5]\n  length: [8, 16]\n  seed: [0, 1]\n');
  const run = join(dir, 'run');
  mustRun(['sweep', sweepFile, '--out', run]);
  // A torn last line, as a killed sweep leaves it.
  appendFileSync(join(run, 'results.jsonl'), '{"id": "abc", "params": {"lam');
  const sweepOut = join(scratch, 'sweep-report');
  const r = runCli(['report', sweepFile, '--results', run, '--out', sweepOut, '--json']);
  t.is(r.status, 0, r.stderr);
  const json = JSON.parse(r.stdout);
  t.true(json.plots.length >= 2, json.plots.join(', '));
  // Scalar results over λ × length; per-position results (arrays) over λ × position.
  t.true(
    json.plots.every((p: string) => p.startsWith('heatmap-') && (p.endsWith('-by-lambda-length') || p.endsWith('-by-lambda-position'))),
    json.plots.join(', '),
  );
  t.true(json.plots.includes('heatmap-klonpolicy-by-lambda-position'));
  t.true(json.plots.includes('heatmap-expectedharm-aligned-by-lambda-length'));
  const csv = readFileSync(join(sweepOut, 'data', 'heatmap-expectedharm-aligned-by-lambda-length.csv'), 'utf8').trim().split('\r\n');
  t.is(csv[0], 'lambda,length,expectedHarm.aligned,n');
  t.is(csv.length, 1 + 6, 'one row per (λ, length) cell');
  t.true(
    csv.slice(1).every((line) => line.endsWith(',2')),
    'each cell averages its two seeds',
  );
  const html = readFileSync(join(sweepOut, 'index.html'), 'utf8');
  t.true(html.includes('12 of them are finished'), 'completeness against the sweep file');
  t.true(html.includes('1 line(s) were not cell results'), 'the torn last line is reported');
  t.true(html.includes('mean over seed'), 'seeds are averaged, not an axis');
  t.true(html.includes('grid:'), 'the sweep file is shown');

  // The sweep's --out folder works as a results folder too, and so does the results file itself.
  t.is(runCli(['report', run, '--out', join(scratch, 'sweep-folder-report')]).status, 0);
  t.is(runCli(['report', join(run, 'results.jsonl'), '--out', join(scratch, 'sweep-file-report')]).status, 0);

  if (!browserTestsRun) return t.log(SKIP_MESSAGE);
  const browser = await launchBrowser(t);
  if (!browser) return;
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pathToFileURL(join(sweepOut, 'index.html')).href);
    t.deepEqual(errors, []);
    const figures = await page.evaluate(() => [...document.querySelectorAll('figure')].map((f) => ({ id: f.id, width: f.querySelector('svg')?.getBoundingClientRect().width ?? 0 })));
    t.deepEqual(
      figures.map((f) => f.id),
      json.plots.map((p: string) => `plot-${p}`),
    );
    t.true(figures.every((f) => f.width > 100));
  } finally {
    await browser.close();
  }
});

test('the page opens with findings computed from the results, above the command lines', (t) => {
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  const findings = html.indexOf('<section id="findings"');
  t.true(findings > 0 && findings < html.indexOf('<h2 id="provenance">') && findings < html.indexOf('<section id="analysis'), 'findings come first');
  const analysis = JSON.parse(readFileSync(join(results, 'analyze.json'), 'utf8'));
  const share = analysis.positions[0].harmInformation / analysis.harmVariance;
  t.true(html.includes(`I_1 carries ${(100 * share).toFixed(1)}% of Var(H)`), 'where the I_t mass sits');
  t.true(html.includes(`99% of Var(H) is resolved by position ${analysis.effectiveHorizon.k}`), 'the effective horizon');
  const standard = JSON.parse(readFileSync(join(results, 'attack-standard.json'), 'utf8'));
  const asr4 = standard.prefill[4] as number;
  t.true(html.includes(`to ASR_4 = ${asr4.toFixed(4)}`), 'shallow prefilling success of the standard run');
  t.regex(html, /KL law: at λ = 5, D_t \/ \(\(λ²\/2\)·I_t\) lies in/);
});

test('the rank-assisted plot is drawn only where its curves differ between policies, and the page says why otherwise', (t) => {
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  t.regex(html, /gives the same ASR_k curve against every policy .*not plotted/);
  const ranked = join(scratch, 'ranked');
  mkdirSync(ranked);
  // The Gibbs optimum at λ = 5 refuses at the first token where the base complies: at r = 2 the curves differ.
  const gibbs = join(ranked, 'gibbs.json');
  writeFileSync(gibbs, JSON.stringify({ format: 'harm-horizon-policy', version: 1, kind: 'gibbs', scenario: { name: 'refusal', vocab: 5, length: 16 }, lambda: 5 }));
  for (const [name, args] of [['base', []], ['gibbs', ['--policy', gibbs]]] as const) {
    const r = runCli(['attack', 'refusal', ...args, '--rank', '2', '--json']);
    t.is(r.status, 0, r.stderr);
    writeFileSync(join(ranked, `attack-${name}.json`), r.stdout);
  }
  const r = runCli(['report', ranked, '--out', join(scratch, 'ranked-report'), '--json']);
  t.is(r.status, 0, r.stderr);
  t.true(JSON.parse(r.stdout).plots.includes('rank-assisted-asr'));
});

test('writeReport is callable as a library function (for the demo)', async (t) => {
  const dir = join(scratch, 'library-report');
  const result = await writeReport(results, dir);
  t.is(result.html, join(dir, 'index.html'));
  t.deepEqual(result.plots, EXPECTED_PLOTS);
  t.true(readFileSync(result.html, 'utf8').startsWith('<!doctype html>'));
});

test('a report written into its own results folder (as the demo does) can be written again, identically', async (t) => {
  const dir = join(scratch, 'in-place');
  cpSync(results, dir, { recursive: true });
  const first = await writeReport(dir, dir, { command: 'harm-horizon report in-place --out in-place' });
  const html = readFileSync(first.html, 'utf8');
  const second = await writeReport(dir, dir, { command: 'harm-horizon report in-place --out in-place' });
  t.deepEqual(second.plots, first.plots);
  t.is(readFileSync(second.html, 'utf8').replaceAll(dir, ''), html.replaceAll(dir, ''), 'the earlier report is not read as input');
});

test('bad input exits 2 with a message naming it, and no stack trace', (t) => {
  const missing = join(scratch, 'does-not-exist');
  let r = runCli(['report', missing, '--out', join(scratch, 'x1')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes(missing), r.stderr);
  noStack(t, r.stderr);
  t.false(existsSync(join(scratch, 'x1')), 'nothing written on bad input');

  const empty = join(scratch, 'empty');
  mkdirSync(empty);
  r = runCli(['report', empty, '--out', join(scratch, 'x2')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes(`nothing to report in ${empty}`), r.stderr);
  noStack(t, r.stderr);

  const unknown = join(scratch, 'unknown');
  mkdirSync(unknown);
  writeFileSync(join(unknown, 'readme.md'), '# hi');
  r = runCli(['report', unknown, '--out', join(scratch, 'x3')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes('readme.md'), r.stderr);

  const broken = join(scratch, 'broken');
  mkdirSync(broken);
  writeFileSync(join(broken, 'analyze.json'), JSON.stringify({ scenario: 'refusal', lambda: 5, horizon: 3, harmVariance: 0.1, positions: 'no' }));
  r = runCli(['report', broken, '--out', join(scratch, 'x4')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes('"positions"'), r.stderr);
  noStack(t, r.stderr);

  writeFileSync(join(broken, 'analyze.json'), '{"scenario": ');
  r = runCli(['report', broken, '--out', join(scratch, 'x4')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes('analyze.json is not valid JSON'), r.stderr);

  const sweepless = join(scratch, 'lonely.yaml');
  writeFileSync(sweepless, 'command: analyze\nscenario: refusal\ngrid:\n  lambda: [1, 2]\n');
  r = runCli(['report', sweepless, '--out', join(scratch, 'x5')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes('no results for the sweep') && r.stderr.includes('--results'), r.stderr);

  const badSweep = join(scratch, 'bad.yaml');
  writeFileSync(badSweep, 'command: analyze\nscenario: refusal\ngrid:\n  lambdaa: [1, 2]\n');
  r = runCli(['report', badSweep, '--out', join(scratch, 'x6')]);
  t.is(r.status, 2);
  t.true(r.stderr.includes('lambdaa'), `names the bad field: ${r.stderr}`);
  noStack(t, r.stderr);

  r = runCli(['report', results]);
  t.is(r.status, 2, 'missing --out');
  t.true(r.stderr.includes('--out'), r.stderr);
});

test('an unwritable --out fails with a clear message', (t) => {
  const file = join(scratch, 'a-file');
  writeFileSync(file, '');
  const r = runCli(['report', results, '--out', join(file, 'report')]);
  t.true(r.status === 1 || r.status === 2, `exit ${r.status}`);
  t.true(r.stderr.includes('cannot write to the output folder'), r.stderr);
  noStack(t, r.stderr);
});

test('report --help shows examples', (t) => {
  const r = runCli(['report', '--help']);
  t.is(r.status, 0);
  t.true(r.stdout.includes('Examples:') && r.stdout.includes('harm-horizon report results --out report'), r.stdout);
});
