/**
 * `harm-horizon report`: a results folder or a sweep file becomes one self-contained HTML page with
 * inline SVG plots, tables, the parameters and the exact command lines that produced the results.
 * What is read is load.ts; the sections are sections.ts and sweep-sections.ts; this file is the page.
 */
import { mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { writeAtomic } from '../io/atomic.js';
import { outputFolder } from '../io/files.js';
import { HarmHorizonError } from '../core/errors.js';
import { num } from './format.js';
import { plotCsv, type Plot } from './plots.js';
import { renderPlot } from './render.js';
import { reportFindings } from './findings.js';
import { profileSection, profilesFindings } from './profile.js';
import type { Cell, Section, Table } from './types.js';
import { esc } from './escape.js';
import { loadResults } from './load.js';
import { sweepSections } from './sweep-sections.js';
import { analysisSections, attackSection, flatten, lambdaSection, slug, trainingSection } from './sections.js';

function cellText(x: Cell): string {
  if (x === null || x === undefined) return '—';
  if (typeof x === 'number') return Number.isInteger(x) && Math.abs(x) < 1e9 ? String(x) : num(x);
  return x;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1d1d1f; background: #f6f6f4; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
.findings { background: #fff; border: 1px solid #d8d8d4; border-left: 4px solid #c0392b; border-radius: 6px; padding: 4px 20px 8px; margin: 16px 0 24px; }
.findings li { margin: 4px 0; }
.findings h2 { border-top: none; padding-top: 0; margin-top: 12px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.lede { color: #555; margin: 0 0 12px; }
nav ul { display: flex; flex-wrap: wrap; gap: 6px 16px; padding: 0; list-style: none; margin: 8px 0 0; }
nav a, figcaption a { color: #1f5fa8; }
.figures { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; padding: 10px 12px 8px; background: #fff; border: 1px solid #ddd; border-radius: 6px; max-width: 100%; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; margin-top: 6px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; margin: 6px 0 14px; }
caption { text-align: left; font-weight: bold; padding: 4px 0; white-space: nowrap; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0ee; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
ol.commands { padding-left: 22px; }
ol.commands code, pre { font: 12.5px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; }
ol.commands code { background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 2px 6px; display: inline-block; white-space: pre-wrap; overflow-wrap: anywhere; }
pre { background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 10px; overflow-x: auto; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; font-weight: bold; }
.muted { color: #666; font-size: 13px; }
`;

function tableHtml(t: Table): string {
  const head = `<tr>${t.header.map((h) => `<th scope="col">${esc(h)}</th>`).join('')}</tr>`;
  const body = t.rows.map((r) => `<tr>${r.map((c) => `<td>${esc(cellText(c))}</td>`).join('')}</tr>`).join('\n');
  const table = `<div class="scroll"><table>${t.collapsed ? '' : `<caption>${esc(t.caption)}</caption>`}<thead>${head}</thead><tbody>\n${body}\n</tbody></table></div>`;
  return t.collapsed ? `<details><summary>${esc(t.caption)} (${t.rows.length} rows)</summary>${table}</details>` : table;
}

/** Gives an inline SVG's ids (clip paths, gradients) a per-plot prefix so that several SVGs on one page do not collide. */
function namespaceSvg(svg: string, prefix: string): string {
  return svg
    .replace(/^<\?xml[^>]*>\s*/, '')
    .replace(/\sid="([^"]+)"/g, ` id="${prefix}-$1"`)
    .replace(/url\(#([^)]+)\)/g, `url(#${prefix}-$1)`)
    .replace(/(xlink:)?href="#([^"]+)"/g, (_m, x: string | undefined, id: string) => `${x ?? ''}href="#${prefix}-${id}"`);
}

function figureHtml(plot: Plot, svg: string): string {
  // The caption wraps at the plot's width rather than widening the figure.
  const width = /<svg[^>]*\swidth="(\d+(?:\.\d+)?)"/.exec(svg)?.[1];
  return `<figure id="plot-${esc(plot.name)}">
${namespaceSvg(svg, `svg-${plot.name}`)}
<figcaption${width ? ` style="max-width: ${width}px"` : ''}><strong>${esc(plot.title)}</strong> · <a href="data/${esc(plot.name)}.csv">data (CSV, ${plot.data.length} rows)</a> · <a href="plots/${esc(plot.name)}.svg">SVG</a></figcaption>
</figure>`;
}

function flatParameters(params: Record<string, unknown> | undefined): Cell[][] {
  if (!params) return [];
  return Object.entries(flatten(params)).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
}

export interface ReportOptions {
  /** The command line that made the report (listed with the others). */
  command?: string;
  /** Page title (default: the manifest's, else from the input's name). */
  title?: string;
  /** For a sweep file: its results file, or the folder `harm-horizon sweep --out` wrote. */
  results?: string;
}

export interface ReportResult {
  /** Path of the page, <out>/index.html. */
  html: string;
  /** Plot names: <out>/plots/<name>.svg, <out>/data/<name>.csv, <figure id="plot-<name>">. */
  plots: string[];
  /** Paths of the CSV files. */
  csv: string[];
}

/**
 * Turns a results folder or a sweep file into `<out>/index.html`, one self-contained page (inline SVG
 * and CSS, no scripts, no external resources), with each plot's SVG under `<out>/plots/` and its data
 * under `<out>/data/`. Writes nothing outside `out`.
 */
export async function writeReport(input: string, out: string, options: ReportOptions = {}): Promise<ReportResult> {
  const results = loadResults(input, { results: options.results });
  const profiles = results.profiles.map((p, i) => profileSection(p, results.profiles.length > 1 ? `-${slug(p.label || String(i + 1))}` : ''));
  const sections = [...analysisSections(results), attackSection(results), trainingSection(results), lambdaSection(results), ...sweepSections(results), ...profiles].filter(
    (s): s is Section => s !== null,
  );
  // Plot names are file names and element ids: make them unique.
  const names = new Set<string>();
  for (const s of sections) {
    s.plots = s.plots.map((p) => {
      let name = p.name;
      for (let i = 2; names.has(name); i++) name = `${p.name}-${i}`;
      names.add(name);
      return { ...p, name };
    });
  }
  const allPlots = sections.flatMap((s) => s.plots);
  const rendered = new Map<string, string>();
  for (const plot of allPlots) {
    try {
      rendered.set(plot.name, (await renderPlot(plot)).svg);
    } catch (error) {
      throw new HarmHorizonError('HH_PLOT_FAILED', `could not render the plot ${plot.name}: ${(error as Error).message}`);
    }
  }

  outputFolder(out);
  const plotsDir = join(out, 'plots');
  const dataDir = join(out, 'data');
  try {
    mkdirSync(plotsDir, { recursive: true });
    mkdirSync(dataDir, { recursive: true });
  } catch (error) {
    throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot write to the output folder ${out}: ${(error as Error).message}`, '--out');
  }
  const csv: string[] = [];
  for (const plot of allPlots) {
    writeAtomic(join(plotsDir, `${plot.name}.svg`), rendered.get(plot.name)!);
    const path = join(dataDir, `${plot.name}.csv`);
    writeAtomic(path, plotCsv(plot));
    csv.push(path);
  }

  const scenarios = [...new Set([...results.analyses.map((a) => a.report.scenario), ...results.runs.map((r) => r.summary.scenario), ...results.attacks.map((a) => a.scenario)].filter((s) => typeof s === 'string'))];
  const title = options.title ?? results.manifest?.title ?? `harm-horizon report: ${basename(resolve(input))}`;
  const commands: { line: string; source: string }[] = [];
  const addCommand = (line: string, source: string) => {
    if (!commands.some((c) => c.line === line)) commands.push({ line, source });
  };
  for (const c of results.manifest?.commands ?? []) addCommand(c, 'manifest.json');
  for (const run of results.runs) if (typeof run.summary.command === 'string') addCommand(run.summary.command, `${run.label}/summary.json`);
  for (const p of results.profiles) addCommand(p.command, p.label);
  if (options.command) addCommand(options.command, 'this report');

  const found = [...reportFindings(results), ...profilesFindings(results.profiles)];
  const findings =
    found.length > 0
      ? [`<section id="findings" class="findings">`, '<h2>Findings</h2>', `<ul>\n${found.map((f) => `<li>${esc(f)}</li>`).join('\n')}\n</ul>`, '</section>'].join('\n')
      : '';
  const parameterRows = flatParameters(results.manifest?.parameters);
  const provenance = [
    `<h2 id="provenance">Parameters and command lines</h2>`,
    parameterRows.length > 0
      ? tableHtml({ caption: 'Parameters (manifest.json)', header: ['parameter', 'value'], rows: parameterRows })
      : '<p class="muted">No parameters were recorded in a manifest.json; the tables below give each result\'s own.</p>',
    '<h3>Command lines</h3>',
    commands.length > 0
      ? `<ol class="commands">\n${commands.map((c) => `<li><code>${esc(c.line)}</code> <span class="muted">(${esc(c.source)})</span></li>`).join('\n')}\n</ol>`
      : '<p class="muted">No command lines were recorded (a manifest.json with "commands" lists them).</p>',
    ...(results.notes.length > 0 ? ['<h3>Notes</h3>', `<ul>${results.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`] : []),
    '<h3>Inputs</h3>',
    `<p class="muted">Read: ${results.read.map((f) => `<code>${esc(f)}</code>`).join(', ') || '—'}${results.skipped.length ? `. Skipped (not recognised): ${results.skipped.map((f) => `<code>${esc(f)}</code>`).join(', ')}` : ''}.</p>`,
  ].join('\n');

  const body = sections
    .map((s) =>
      [
        `<section id="${esc(s.id)}">`,
        `<h2>${esc(s.title)}</h2>`,
        s.intro ? `<p class="lede">${s.intro}</p>` : '',
        s.plots.length > 0 ? `<div class="figures">\n${s.plots.map((p) => figureHtml(p, rendered.get(p.name)!)).join('\n')}\n</div>` : '',
        ...s.tables.map(tableHtml),
        ...(s.pre ?? []).map((p) => `<h3>${esc(p.caption)}</h3><pre>${esc(p.text)}</pre>`),
        '</section>',
      ]
        .filter(Boolean)
        .join('\n'),
    )
    .join('\n\n');

  const nav = [...(findings ? [{ id: 'findings', title: 'Findings' }] : []), { id: 'provenance', title: 'Parameters and command lines' }, ...sections].map((s) => `<li><a href="#${esc(s.id)}">${esc(s.title)}</a></li>`).join('');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<meta name="generator" content="harm-horizon report">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>${esc(title)}</h1>
<p class="lede">${scenarios.length ? `Scenario${scenarios.length > 1 ? 's' : ''}: ${scenarios.map(esc).join(', ')}. ` : ''}${allPlots.length} plot${allPlots.length === 1 ? '' : 's'}; each links to its data as CSV.</p>
<nav><ul>${nav}</ul></nav>
</header>
${findings}
${provenance}

${body}
</main>
</body>
</html>
`;
  const htmlPath = join(out, 'index.html');
  writeAtomic(htmlPath, html);
  return { html: htmlPath, plots: allPlots.map((p) => p.name), csv };
}
