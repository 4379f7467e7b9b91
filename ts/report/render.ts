/**
 * Rendering plots: a plot's Vega-Lite specification is compiled with its data and drawn to SVG by
 * vega's headless renderer (no browser), with text measured as a browser would draw it.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as vega from 'vega';
import { compile } from 'vega-lite';
import { writeAtomic } from '../io/atomic.js';
import { plotCsv, type Plot } from './plots.js';
import { dejaVuTextWidth } from './text-width.js';

/** A rendered plot: the SVG text and whatever Vega-Lite or Vega warned about (empty for a clean plot). */
export interface RenderedPlot {
  svg: string;
  warnings: string[];
}

/** Vega numbers clip paths with a process-wide counter; number them from 1 within each SVG so that output is reproducible. */
function renumberIds(svg: string): string {
  const ids = new Map<string, string>();
  const counts = new Map<string, number>();
  for (const [, id, stem] of svg.matchAll(/\sid="(([A-Za-z_-]+)\d+)"/g)) {
    if (ids.has(id)) continue;
    const n = (counts.get(stem) ?? 0) + 1;
    counts.set(stem, n);
    ids.set(id, `${stem}${n}`);
  }
  if (ids.size === 0) return svg;
  return svg.replace(/(\sid="|url\(#|href="#)([A-Za-z_-]+\d+)(?=[")])/g, (m, lead: string, id: string) => (ids.has(id) ? `${lead}${ids.get(id)}` : m));
}

/** How text is measured while a plot is laid out: (mark item with its font, text) → pixels. */
export type TextWidth = (item: { fontSize?: number; fontWeight?: string | number }, text: unknown) => number;

export interface RenderOptions {
  /** Text measure for the layout (default: DejaVu Sans advance widths, see text-width.ts). */
  textWidth?: TextWidth;
}

/**
 * Vega measures text through one module-level hook (`textMetrics.width`; there is no per-view
 * option). Rather than replace it when this module is imported, each render installs its measure
 * for its own duration and puts back whatever was there; renders are queued so that two never
 * overlap with different measures.
 */
let renderQueue: Promise<unknown> = Promise.resolve();
async function withTextWidth<T>(measure: TextWidth, render: () => Promise<T>): Promise<T> {
  const metrics = (vega as unknown as { textMetrics: { width: unknown } }).textMetrics;
  const run = renderQueue.then(async () => {
    const previous = metrics.width;
    metrics.width = measure;
    try {
      return await render();
    } finally {
      metrics.width = previous;
    }
  });
  renderQueue = run.catch(() => undefined);
  return run;
}

/** Compiles a plot's Vega-Lite specification with its data and renders it to SVG, headless. */
export async function renderPlot(plot: Plot, options: RenderOptions = {}): Promise<RenderedPlot> {
  const warnings: string[] = [];
  const logger = vega.logger(vega.Warn, undefined, (_method, level, args) => {
    warnings.push(`${level} ${args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ')}`);
  });
  const spec = { ...plot.spec, data: { values: plot.data } };
  const compiled = compile(spec as never, { logger });
  return withTextWidth(options.textWidth ?? dejaVuTextWidth, async () => {
    const view = new vega.View(vega.parse(compiled.spec), { renderer: 'none', logger, logLevel: vega.Warn });
    try {
      return { svg: renumberIds(await view.toSVG()), warnings };
    } finally {
      view.finalize();
    }
  });
}

/** Renders a plot to <dir>/<name>.svg and writes <dir>/<name>.csv; returns the SVG text. */
export async function writePlot(dir: string, plot: Plot, options: RenderOptions = {}): Promise<string> {
  const { svg } = await renderPlot(plot, options);
  mkdirSync(dir, { recursive: true });
  writeAtomic(join(dir, `${plot.name}.svg`), svg);
  writeAtomic(join(dir, `${plot.name}.csv`), plotCsv(plot));
  return svg;
}
