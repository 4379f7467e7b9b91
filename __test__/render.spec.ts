/**
 * Rendering plots measures text with our DejaVu Sans widths without changing vega for anyone else:
 * importing the report modules leaves vega's text measure as it was, and a render puts it back.
 */
import test from 'ava';
import * as vega from 'vega';
import { prefillPlot } from '../ts/report/plots.js';
import { renderPlot } from '../ts/report/render.js';

const metrics = (vega as unknown as { textMetrics: { width: unknown; estimateWidth: unknown } }).textMetrics;
const plot = prefillPlot([{ label: 'a rather long series label for the legend', asr: [0.1, 0.2, 0.4] }]);
const svgWidth = (svg: string) => Number(/<svg[^>]*\swidth="([\d.]+)"/.exec(svg)![1]);

test.serial('importing the report modules does not replace vega\'s text measure', (t) => {
  t.is(metrics.width, metrics.estimateWidth);
});

test.serial('a render uses the text measure it is given and restores vega\'s afterwards', async (t) => {
  const narrow = await renderPlot(plot, { textWidth: (_item, text) => String(text ?? '').length * 2 });
  t.is(metrics.width, metrics.estimateWidth);
  const wide = await renderPlot(plot, { textWidth: (_item, text) => String(text ?? '').length * 12 });
  t.is(metrics.width, metrics.estimateWidth);
  // The legend label is laid out with the measure: a wider measure gives a wider SVG.
  t.true(svgWidth(wide.svg) > svgWidth(narrow.svg) + 100, `${svgWidth(narrow.svg)} vs ${svgWidth(wide.svg)}`);
});

test.serial('concurrent renders each keep their own measure', async (t) => {
  const [a, b, c] = await Promise.all([
    renderPlot(plot, { textWidth: (_item, text) => String(text ?? '').length * 2 }),
    renderPlot(plot, { textWidth: (_item, text) => String(text ?? '').length * 12 }),
    renderPlot(plot, { textWidth: (_item, text) => String(text ?? '').length * 2 }),
  ]);
  t.is(a.svg, c.svg);
  t.true(svgWidth(b.svg) > svgWidth(a.svg) + 100);
  t.is(metrics.width, metrics.estimateWidth);
});
