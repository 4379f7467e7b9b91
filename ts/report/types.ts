/** The building blocks of a report page: table cells, tables and sections (each with its plots). */
import type { Plot } from './plots.js';

export type Cell = number | string | null;

export interface Table {
  caption: string;
  header: string[];
  rows: Cell[][];
  /** Collapsed by default (long per-position tables). */
  collapsed?: boolean;
}

export interface Section {
  id: string;
  title: string;
  intro?: string;
  tables: Table[];
  plots: Plot[];
  pre?: { caption: string; text: string }[];
}
