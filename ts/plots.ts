/**
 * Plots: Vega-Lite specifications rendered to SVG in Node (vega's headless renderer, no browser),
 * each written with its data beside it as CSV. (Placeholder: filled in by the workbench work.)
 */
import type { AnalyzeReport } from './report.js';
import type { TrainRecord } from './train.js';

/** A plot: a Vega-Lite specification without its data, and the rows it plots. */
export interface Plot {
  /** File stem: <name>.svg and <name>.csv. */
  name: string;
  title: string;
  spec: Record<string, unknown>;
  data: Record<string, number | string | null>[];
}

/** Renders a plot to <dir>/<name>.svg and writes <dir>/<name>.csv; returns the SVG text. */
export async function writePlot(dir: string, plot: Plot): Promise<string> {
  void dir;
  void plot;
  throw new Error('not implemented yet');
}

/** I_t profile with the horizon marked. */
export declare function harmInformationPlot(report: AnalyzeReport): Plot;
/** Per-position gradient norm against its bound sqrt(I_t·F̄_t). */
export declare function gradientPlot(report: AnalyzeReport): Plot;
/** Per-position KL: on-policy, teacher-forced and predicted (λ²/2)·I_t. */
export declare function klPlot(report: AnalyzeReport): Plot;
/** Prefilling ASR against k, one line per labelled policy. */
export declare function prefillPlot(curves: { label: string; asr: ArrayLike<number | null> }[]): Plot;
/** Training curves (objective, E[H], KL against step), one series per labelled run. */
export declare function trainingPlot(runs: { label: string; records: TrainRecord[] }[]): Plot;
/** The λ-scaling check: D_t/((λ²/2)·I_t) against λ on log axes, one line per position. */
export declare function lambdaScalingPlot(rows: { lambda: number; t: number; ratio: number }[]): Plot;
/** A sweep heat map of `value` over two parameters. */
export declare function heatmapPlot(rows: Record<string, number | string | null>[], x: string, y: string, value: string, title: string): Plot;
