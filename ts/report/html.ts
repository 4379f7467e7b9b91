/**
 * `harm-horizon report`: a results folder or a sweep file becomes one self-contained HTML page with
 * inline SVG plots, tables, the parameters and the exact command lines that produced the results.
 *
 * A results folder may hold any of:
 * - `analyze*.json`: an {@link AnalyzeReport} (`harm-horizon analyze … --json`);
 * - training run folders (`summary.json`, `log.jsonl`, `policy.json`, as `harm-horizon train --out` writes them),
 *   directly inside the folder or one level deeper; the folder itself may be a run;
 * - `attack*.json`: `harm-horizon attack … --json` output ({scenario, policy, prefill and rap: ASR_k curves indexed by k (older files: [{k, asr}]), finetune?});
 * - `lambda-scaling.json`: rows {lambda, t, ratio} (an array, or {rows: [...]});
 * - `manifest.json`: {title?, commands: string[], parameters?: object};
 * - `*.jsonl` sweep results: one JSON object per line with `params` (object) and `result` (object of numbers);
 * - `*.jsonl` rollout logs (`harm-horizon rollouts`, `import`; recognised by their header line), profiled
 *   as `harm-horizon profile` does, and `profile*.json` (`harm-horizon profile … --json`): plots of the KL
 *   profile, the KL law, prefill success by depth, I by block and ĥ by depth (see report-profile.ts).
 *
 * A summary.json that is not a training run's (the demo's) contributes its notes.
 *
 * A sweep file (JSON or YAML, as `harm-horizon sweep` reads it) is reported through its results: the
 * `--results` file or folder (the sweep's `--out`), else `<sweep>.results.jsonl` or `<sweep>/results.jsonl`
 * beside it, else `runs/<sweep>/results.jsonl`; shard files are read together when there is no merged file.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { outputFolder } from '../io/files.js';
import { HarmHorizonError } from '../core/errors.js';
import { clampRounding, num } from './format.js';
import {
  gradientPlot,
  harmInformationPlot,
  heatmapPlot,
  klPlot,
  lambdaScalingPlot,
  plotCsv,
  prefillPlot,
  renderPlot,
  sweepLinePlot,
  trainingPlot,
  type Plot,
} from './plots.js';
import { DEFAULT_EFFECTIVE_FRACTION, effectiveHorizon, type AnalyzeReport } from './analysis.js';
import { reportFindings } from './findings.js';
import { isProfileJson, isRolloutLog, parseProfileJson, profileInput, profileSection, profilesFindings, type ProfileInput } from './profile.js';
import type { Cell, Section, Table } from './types.js';
import { loadSweep } from '../sweep/index.js';
import type { TrainRecord } from '../workflows/train.js';

// ─── The results model ─────────────────────────────────────────────────────────────────────────────

export interface Manifest {
  title?: string;
  commands: string[];
  parameters?: Record<string, unknown>;
}

export interface AnalysisInput {
  label: string;
  file: string;
  report: AnalyzeReport & { aligned?: string };
}

export interface TrainRunInput {
  label: string;
  dir: string;
  summary: Record<string, any>;
  records: TrainRecord[];
}

export interface AttackInput {
  label: string;
  file: string;
  scenario?: string;
  policy: string;
  rank?: number;
  prefill: (number | null)[];
  rap: (number | null)[] | null;
  finetune?: { objective?: string; learningRate?: number; steps: { step: number; asr: number[]; loss: number }[] };
}

export interface SweepCell {
  id?: string;
  params: Record<string, unknown>;
  result: Record<string, unknown>;
}

export interface SweepInput {
  label: string;
  /** The (first) results file. */
  file: string;
  /** All results files read (shards). */
  files: string[];
  cells: SweepCell[];
  /** Lines that were not a JSON object with `params` and `result` (e.g. a torn last line). */
  unreadable: number;
  /** The sweep file this came from, when the input was a sweep file. */
  sweepFile?: { path: string; text: string; command: string; cells: number; done: number; grid: string[] };
}

/** Everything the report found in its input. */
export interface Results {
  input: string;
  kind: 'folder' | 'file';
  manifest?: Manifest;
  analyses: AnalysisInput[];
  runs: TrainRunInput[];
  attacks: AttackInput[];
  lambdaScaling?: { file: string; rows: { lambda: number; t: number; ratio: number }[] };
  sweeps: SweepInput[];
  /** Rollout logs, profiled, and saved `profile --json` outputs. */
  profiles: ProfileInput[];
  /** Files read, relative to the input folder. */
  read: string[];
  /** Files present but not recognised. */
  skipped: string[];
  /** Notes recorded with the results (the demo's summary.json). */
  notes: string[];
}

const bad = (message: string, field?: string) => new HarmHorizonError('HH_INVALID_ARGUMENT', message, field);

function isObject(x: unknown): x is Record<string, any> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw bad(`cannot read ${path}: ${(error as Error).message}`, path);
  }
}

function readJson(path: string): unknown {
  const text = readText(path);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw bad(`${path} is not valid JSON: ${(error as Error).message}`, path);
  }
}

/** JSON lines; a line that does not parse (a torn last line, say) is counted, not fatal. */
function readJsonLines(path: string): { values: unknown[]; unreadable: number } {
  const values: unknown[] = [];
  let unreadable = 0;
  for (const line of readText(path).split('\n')) {
    if (line.trim() === '') continue;
    try {
      values.push(JSON.parse(line));
    } catch {
      unreadable += 1;
    }
  }
  return { values, unreadable };
}

const nullableNumber = (x: unknown): x is number | null => x === null || typeof x === 'number';

function parseAnalysis(value: unknown, file: string): AnalyzeReport & { aligned?: string } {
  if (!isObject(value)) throw bad(`${file}: expected an analyze report object (harm-horizon analyze … --json)`, file);
  const need = (field: string, ok: boolean, what: string) => {
    if (!ok) throw bad(`${file}: field "${field}" ${what}`, `${file}#${field}`);
  };
  need('scenario', typeof value.scenario === 'string', 'must be a string');
  need('lambda', typeof value.lambda === 'number', 'must be a number');
  need('horizon', typeof value.horizon === 'number', 'must be a number');
  need('harmVariance', typeof value.harmVariance === 'number', 'must be a number');
  need('positions', Array.isArray(value.positions) && value.positions.length > 0, 'must be a non-empty array of per-position rows');
  value.positions.forEach((p: unknown, i: number) => {
    const ok =
      isObject(p) &&
      typeof p.t === 'number' &&
      ['harmInformation', 'gradNorm', 'gradBound', 'klOnPolicy', 'klPredicted'].every((k) => nullableNumber(p[k])) &&
      (p.klTeacherForced === undefined || nullableNumber(p.klTeacherForced));
    need(`positions[${i}]`, ok, 'must hold numbers t, harmInformation, gradNorm, gradBound, klOnPolicy, klTeacherForced, klPredicted');
  });
  need('prefill', value.prefill === undefined || Array.isArray(value.prefill), 'must be an array of {k, asrBase, asrAligned}');
  return {
    horizonTolerance: 0,
    expectedHarm: { base: NaN, aligned: NaN },
    prefill: [],
    ...value,
  } as unknown as AnalyzeReport & { aligned?: string };
}

function asrCurve(rows: unknown, file: string, field: string): (number | null)[] {
  if (!Array.isArray(rows)) throw bad(`${file}: field "${field}" must be an array of {k, asr}`, `${file}#${field}`);
  // `attack --json` since the command declarations: the curve itself, indexed by k.
  if (rows.every((x) => nullableNumber(x))) return rows as (number | null)[];
  const curve: (number | null)[] = [];
  rows.forEach((row, i) => {
    if (!isObject(row) || !Number.isInteger(row.k) || row.k < 0 || !nullableNumber(row.asr)) {
      throw bad(`${file}: ${field}[${i}] must be {k: whole number, asr: number or null}`, `${file}#${field}[${i}]`);
    }
    curve[row.k] = row.asr;
  });
  return Array.from(curve, (x) => (x === undefined ? null : x));
}

function parseAttack(value: unknown, file: string): Omit<AttackInput, 'label'> {
  if (!isObject(value)) throw bad(`${file}: expected an attack result object (harm-horizon attack … --json)`, file);
  const finetune = value.finetune;
  if (finetune !== undefined && finetune !== null && !(isObject(finetune) && Array.isArray(finetune.steps))) {
    throw bad(`${file}: field "finetune" must be {objective, learningRate, steps: [...]}`, `${file}#finetune`);
  }
  return {
    file,
    scenario: typeof value.scenario === 'string' ? value.scenario : undefined,
    policy: typeof value.policy === 'string' ? value.policy : 'base',
    rank: typeof value.rank === 'number' ? value.rank : undefined,
    prefill: asrCurve(value.prefill, file, 'prefill'),
    rap: value.rap === null || value.rap === undefined ? null : asrCurve(value.rap, file, 'rap'),
    finetune: finetune ?? undefined,
  };
}

function parseLambdaScaling(value: unknown, file: string) {
  const rows = Array.isArray(value) ? value : isObject(value) ? value.rows : undefined;
  if (!Array.isArray(rows)) throw bad(`${file}: expected an array of {lambda, t, ratio} (or {rows: [...]})`, `${file}#rows`);
  return rows.map((row, i) => {
    if (!isObject(row) || typeof row.lambda !== 'number' || typeof row.t !== 'number' || !nullableNumber(row.ratio)) {
      throw bad(`${file}: rows[${i}] must be {lambda: number, t: number, ratio: number or null}`, `${file}#rows[${i}]`);
    }
    return { lambda: row.lambda, t: row.t, ratio: row.ratio === null ? NaN : row.ratio };
  });
}

function parseManifest(value: unknown, file: string): Manifest {
  if (!isObject(value)) throw bad(`${file}: expected {title?, commands: [...], parameters?: {...}}`, file);
  const commands = value.commands ?? [];
  if (!Array.isArray(commands) || !commands.every((c) => typeof c === 'string')) throw bad(`${file}: field "commands" must be an array of command lines (strings)`, `${file}#commands`);
  if (value.title !== undefined && typeof value.title !== 'string') throw bad(`${file}: field "title" must be a string`, `${file}#title`);
  if (value.parameters !== undefined && !isObject(value.parameters)) throw bad(`${file}: field "parameters" must be an object`, `${file}#parameters`);
  return { title: value.title, commands, parameters: value.parameters };
}

function parseSweepLines(path: string): { cells: SweepCell[]; unreadable: number } {
  const { values, unreadable } = readJsonLines(path);
  const cells: SweepCell[] = [];
  let other = 0;
  for (const v of values) {
    if (isObject(v) && isObject(v.params) && isObject(v.result)) cells.push({ id: typeof v.id === 'string' ? v.id : undefined, params: v.params, result: v.result });
    else other += 1;
  }
  return { cells, unreadable: unreadable + other };
}

/** A `harm-horizon train --out` summary (the demo's own summary.json is something else). */
function isTrainSummary(value: unknown): value is Record<string, any> {
  return isObject(value) && isObject(value.options) && isObject(value.options.objective);
}

function readRun(dir: string, label: string, summary: Record<string, any>): TrainRunInput {
  let records: TrainRecord[] = [];
  const log = join(dir, 'log.jsonl');
  if (existsSync(log)) {
    records = readJsonLines(log).values.filter((r): r is TrainRecord => isObject(r) && typeof r.step === 'number') as TrainRecord[];
  }
  if (records.length === 0 && isObject(summary.final)) records = [summary.final as TrainRecord];
  return { label, dir, summary, records };
}

/** The training run in `dir`, if its summary.json is a training summary. */
function tryRun(dir: string, label: string): TrainRunInput | null {
  const file = join(dir, 'summary.json');
  if (!existsSync(file)) return null;
  const summary = readJson(file);
  return isTrainSummary(summary) ? readRun(dir, label, summary) : null;
}

const isDir = (path: string) => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

const SHARD = /^(.*)\.shard-(\d+)-of-(\d+)\.jsonl$/;

/** Reads sweep results files as one sweep (shards of one results file, or one file). */
function readSweepFiles(files: string[], label: string): SweepInput | null {
  const cells: SweepCell[] = [];
  let unreadable = 0;
  for (const f of files) {
    const r = parseSweepLines(f);
    cells.push(...r.cells);
    unreadable += r.unreadable;
  }
  return cells.length > 0 ? { label, file: files[0], files, cells, unreadable } : null;
}

/** Report files of an earlier run in the same folder (the demo writes its report beside its results). */
const OWN_OUTPUT = new Set(['index.html', 'plots', 'data']);

function loadFolder(folder: string): Results {
  const results: Results = { input: folder, kind: 'folder', analyses: [], runs: [], attacks: [], sweeps: [], profiles: [], read: [], skipped: [], notes: [] };
  let entries: string[];
  try {
    entries = readdirSync(folder).sort();
  } catch (error) {
    throw bad(`cannot read the folder ${folder}: ${(error as Error).message}`, 'input');
  }
  const self = entries.includes('summary.json') ? readJson(join(folder, 'summary.json')) : undefined;
  const folderIsRun = isTrainSummary(self);
  if (folderIsRun) {
    results.runs.push(readRun(folder, basename(resolve(folder)), self));
    results.read.push('summary.json', ...(entries.includes('log.jsonl') ? ['log.jsonl'] : []));
  } else if (isObject(self)) {
    // A summary of several results (the demo's): its notes go on the page.
    if (Array.isArray(self.notes)) results.notes.push(...self.notes.filter((n: unknown): n is string => typeof n === 'string'));
    results.read.push('summary.json');
  }
  const attacks: Omit<AttackInput, 'label'>[] = [];
  const jsonl = entries.filter((name) => name.endsWith('.jsonl') && !(folderIsRun && name === 'log.jsonl'));
  for (const name of entries) {
    if (name.startsWith('.') || OWN_OUTPUT.has(name) || name.includes('.tmp-')) continue;
    const path = join(folder, name);
    if (isDir(path)) {
      const run = tryRun(path, name);
      if (run) {
        results.runs.push(run);
        results.read.push(`${name}/summary.json`);
        continue;
      }
      let found = false;
      for (const sub of safeList(path)) {
        const nested = isDir(join(path, sub)) ? tryRun(join(path, sub), `${name}/${sub}`) : null;
        if (nested) {
          results.runs.push(nested);
          results.read.push(`${name}/${sub}/summary.json`);
          found = true;
        }
      }
      // A folder holding just a policy (the demo's gibbs/) is read through the attack that names it.
      if (!found && !existsSync(join(path, 'policy.json'))) results.skipped.push(`${name}/`);
      continue;
    }
    if (name === 'summary.json' || (folderIsRun && (name === 'log.jsonl' || name === 'policy.json'))) continue;
    if (name === 'manifest.json') {
      results.manifest = parseManifest(readJson(path), path);
    } else if (/^analy[sz]e.*\.json$/i.test(name)) {
      const stem = name.replace(/\.json$/i, '').replace(/^analy[sz]e[-_.]?/i, '');
      results.analyses.push({ label: stem, file: path, report: parseAnalysis(readJson(path), path) });
    } else if (/^profile.*\.json$/i.test(name)) {
      results.profiles.push(parseProfileJson(readJson(path), path));
    } else if (/^attack.*\.json$/i.test(name)) {
      attacks.push(parseAttack(readJson(path), path));
    } else if (name === 'lambda-scaling.json') {
      results.lambdaScaling = { file: path, rows: parseLambdaScaling(readJson(path), path) };
    } else if (name.endsWith('.jsonl') && isRolloutLog(path)) {
      results.profiles.push(profileInput(path));
    } else if (name.endsWith('.jsonl')) {
      // Shards of a results file count once, as one sweep, unless the merged file is there.
      const shard = SHARD.exec(name);
      if (shard) {
        const merged = `${shard[1]}.jsonl`;
        const first = jsonl.find((n) => SHARD.exec(n)?.[1] === shard[1]);
        if (jsonl.includes(merged) || first !== name) continue;
        const shards = jsonl.filter((n) => SHARD.exec(n)?.[1] === shard[1]);
        const sweep = readSweepFiles(shards.map((n) => join(folder, n)), `${shard[1]} (${shards.length} shard files)`);
        if (!sweep) {
          results.skipped.push(...shards);
          continue;
        }
        results.sweeps.push(sweep);
        results.read.push(...shards);
        continue;
      }
      const sweep = readSweepFiles([path], name.replace(/\.jsonl$/, ''));
      if (!sweep) {
        results.skipped.push(name);
        continue;
      }
      results.sweeps.push(sweep);
    } else {
      results.skipped.push(name);
      continue;
    }
    results.read.push(name);
  }
  results.attacks = labelAttacks(attacks, results.runs);
  return results;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Labels attack results: "base", the run whose policy.json was attacked, or the file's name. */
function labelAttacks(attacks: Omit<AttackInput, 'label'>[], runs: TrainRunInput[]): AttackInput[] {
  const used = new Set<string>();
  return attacks.map((a) => {
    let label: string;
    if (a.policy === 'base') label = 'base';
    else {
      const run = runs.find((r) => resolve(r.dir, 'policy.json') === resolve(a.policy) || resolve(r.dir) === resolve(dirname(a.policy)));
      const stem = basename(a.file).replace(/\.json$/i, '').replace(/^attack[-_.]?/i, '');
      label = run?.label ?? (stem || basename(dirname(a.policy)) || a.policy);
    }
    let unique = label;
    for (let i = 2; used.has(unique); i++) unique = `${label} (${i})`;
    used.add(unique);
    return { ...a, label: unique };
  });
}

/**
 * Where a sweep's results may be, in order: `--results` (a results file or a `sweep --out` folder);
 * beside the sweep file, `<sweep>.results.jsonl` or `<sweep>/results.jsonl`; and `runs/<sweep>/results.jsonl`
 * under the working directory (the examples' `--out runs/<name>`).
 */
export function sweepResultsCandidates(sweepFile: string, results?: string): string[] {
  const dir = dirname(sweepFile);
  const stem = basename(sweepFile, extname(sweepFile));
  if (results !== undefined) return [results.endsWith('.jsonl') ? results : join(results, 'results.jsonl')];
  return [...new Set([join(dir, `${stem}.results.jsonl`), join(dir, stem, 'results.jsonl'), join('runs', stem, 'results.jsonl')])];
}

/** The results of a sweep: the first candidate that exists, or the shard files in its folder. */
function findSweepResults(candidates: string[]): string[] | null {
  for (const c of candidates) {
    if (existsSync(c)) return [c];
    const dir = dirname(c);
    const stem = basename(c, '.jsonl');
    const shards = safeList(dir).filter((n) => SHARD.exec(n)?.[1] === stem);
    if (shards.length > 0) return shards.map((n) => join(dir, n));
  }
  return null;
}

function loadFile(file: string, options: { results?: string }): Results {
  const results: Results = { input: file, kind: 'file', analyses: [], runs: [], attacks: [], sweeps: [], profiles: [], read: [basename(file)], skipped: [], notes: [] };
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl' && isRolloutLog(file)) {
    results.profiles.push(profileInput(file));
    return results;
  }
  if (ext === '.jsonl') {
    const sweep = readSweepFiles([file], basename(file, ext));
    if (!sweep) throw bad(`${file}: no sweep results in it (each line must be a JSON object with "params" and "result")`, file);
    results.sweeps.push(sweep);
    return results;
  }
  if (!['.json', '.yaml', '.yml'].includes(ext)) throw bad(`${file}: expected a results folder, a sweep file (.json, .yaml, .yml) or sweep results (.jsonl)`, 'input');
  const text = readText(file);
  let value: unknown;
  try {
    value = ext === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw bad(`${file} is not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(error as Error).message}`, file);
  }
  // A single result file is reported on its own.
  if (isProfileJson(value)) {
    results.profiles.push(parseProfileJson(value, file));
    return results;
  }
  if (isObject(value) && Array.isArray(value.positions)) {
    results.analyses.push({ label: '', file, report: parseAnalysis(value, file) });
    return results;
  }
  if (isObject(value) && Array.isArray(value.prefill)) {
    results.attacks = labelAttacks([parseAttack(value, file)], []);
    return results;
  }
  // A sweep file: validated by the sweep runner's own parser (its errors name the bad field).
  const sweep = loadSweep(file);
  const grid = isObject(value) && isObject(value.grid) ? Object.keys(value.grid) : [];
  const candidates = sweepResultsCandidates(file, options.results);
  const found = findSweepResults(candidates);
  if (!found) {
    throw new HarmHorizonError(
      'HH_FILE_NOT_FOUND',
      `no results for the sweep ${file}: looked for ${candidates.join(', ')}; run it (harm-horizon sweep ${file} --out DIR) and pass --results DIR`,
      '--results',
    );
  }
  const input = readSweepFiles(found, basename(file, ext));
  if (!input) throw bad(`${found[0]}: no sweep results in it (each line must be a JSON object with "params" and "result")`, '--results');
  const ids = new Set(sweep.cells.map((c) => c.id));
  const done = new Set(input.cells.filter((c) => c.id !== undefined && ids.has(c.id)).map((c) => c.id));
  results.sweeps.push({ ...input, sweepFile: { path: file, text, command: sweep.command, cells: sweep.cells.length, done: done.size, grid } });
  results.read.push(...found.map((f) => (relative(dirname(file), f).startsWith('..') ? f : relative(dirname(file), f))));
  return results;
}

/** Reads a results folder or a sweep file; throws a HarmHorizonError naming the input when nothing in it can be reported. */
export function loadResults(input: string, options: { results?: string } = {}): Results {
  if (!existsSync(input)) throw new HarmHorizonError('HH_FILE_NOT_FOUND', `no such results folder or sweep file: ${input}`, 'input');
  const results = isDir(input) ? loadFolder(input) : loadFile(input, options);
  const usable = results.analyses.length + results.runs.length + results.attacks.length + results.sweeps.length + results.profiles.length + (results.lambdaScaling ? 1 : 0);
  if (usable === 0) {
    const found = results.skipped.length ? ` (found only ${results.skipped.slice(0, 8).join(', ')}${results.skipped.length > 8 ? ', …' : ''})` : ' (it is empty)';
    throw bad(
      `nothing to report in ${input}${found}: expected analyze.json, train run folders (summary.json), attack*.json, lambda-scaling.json, sweep results (*.jsonl), rollout logs (*.jsonl) or profile*.json`,
      'input',
    );
  }
  return results;
}

// ─── Plots and tables ──────────────────────────────────────────────────────────────────────────────

function esc(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function cellText(x: Cell): string {
  if (x === null || x === undefined) return '—';
  if (typeof x === 'number') return Number.isInteger(x) && Math.abs(x) < 1e9 ? String(x) : num(x);
  return x;
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Flattens nested objects to dotted keys (arrays are kept as JSON text). */
function flatten(value: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(value)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isObject(v) && Object.keys(v).length > 0) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

/** Arrays of rows (analyze's positions: [{t, harmInformation, …}]) as one number column per field. */
function rowColumns(result: Record<string, unknown>): Record<string, (number | null)[]> {
  const out: Record<string, (number | null)[]> = {};
  for (const [k, rows] of Object.entries(result)) {
    if (!Array.isArray(rows) || !rows.every(isObject)) continue;
    for (const field of Object.keys(rows[0] ?? {})) {
      if (rows.every((r) => nullableNumber(r[field]))) out[field] = rows.map((r) => r[field] as number | null);
    }
    delete out.t;
    delete out.k;
  }
  return out;
}

function scalar(v: unknown): Cell {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number' || typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** The k columns of the ASR tables: 0..4 and the last. */
function asrColumns(curves: { asr: (number | null)[] }[]): number[] {
  const kMax = Math.max(0, ...curves.map((c) => c.asr.length - 1));
  const ks = Array.from({ length: Math.min(kMax, 4) + 1 }, (_, k) => k);
  if (kMax > 4) ks.push(kMax);
  return ks;
}

/** A measured value, always in the same compact form (an integer-valued measurement is not a count). */
function m(x: unknown): Cell {
  return typeof x === 'number' ? num(x) : x === null || x === undefined ? null : String(x);
}

function asrTable(caption: string, curves: { label: string; asr: (number | null)[] }[]): Table {
  const ks = asrColumns(curves);
  return { caption, header: ['policy', ...ks.map((k) => (k === 0 ? 'k = 0 (E[H])' : `k = ${k}`))], rows: curves.map((c) => [c.label, ...ks.map((k) => m(c.asr[k]))]) };
}

function analysisSections(results: Results): Section[] {
  const many = results.analyses.length > 1;
  return results.analyses.map((a, i) => {
    const r = a.report;
    const suffix = many ? `-${slug(a.label || String(i + 1))}` : '';
    const label = many ? ` (${a.label || a.report.scenario})` : '';
    const rename = (p: Plot): Plot => ({ ...p, name: `${p.name}${suffix}` });
    const summary: Table = {
      caption: 'Exact analysis',
      header: ['quantity', 'value'],
      rows: [
        ['scenario', r.scenario],
        ['λ (alignment strength)', r.lambda],
        ['aligned policy', r.aligned ?? `Gibbs optimum (λ = ${r.lambda})`],
        ['E[H] under the base', m(r.expectedHarm?.base)],
        ['E[H] under the aligned policy', m(r.expectedHarm?.aligned)],
        ['Var H', m(r.harmVariance)],
        ['Σ_t I_t (= Var H)', m(r.harmInformationSum)],
        ['harm horizon k', r.horizon],
        [`effective horizon k (${100 * (r.effectiveHorizon?.fraction ?? DEFAULT_EFFECTIVE_FRACTION)}% of Var H resolved)`, r.effectiveHorizon?.k ?? effectiveHorizon(r.positions.map((p) => p.harmInformation))],
        ['horizon tolerance (relative)', r.horizonTolerance ?? null],
        ['exact states', r.states ?? null],
        ['P(τ = 0): decided before any token', m(r.decidedAtStart)],
        ['P(τ > T): never decided', m(r.undecided)],
      ],
    };
    const positions: Table = {
      caption: 'Per position',
      header: ['t', 'I_t', '‖G_t‖', 'bound √(I_t·F̄_t)', 'KL on-policy D_t', 'KL teacher-forced', '(λ²/2)·I_t', 'P(τ = t)'],
      // Every column is non-negative by definition: rounding noise below 0 (older analyze.json files) prints as 0.
      rows: r.positions.map((p) => [p.t, ...[p.harmInformation, p.gradNorm, p.gradBound, p.klOnPolicy, p.klTeacherForced, p.klPredicted, p.decisionTime].map((x) => m(clampRounding(x ?? null)))]),
      collapsed: true,
    };
    return {
      id: `analysis${suffix}`,
      title: `Exact analysis${label}`,
      intro: `Harm information, gradients and per-position KL of ${esc(r.scenario)} at λ = ${esc(r.lambda)} (${esc(shown(results, a.file))}).`,
      tables: [summary, positions],
      plots: [harmInformationPlot(r), gradientPlot(r), klPlot(r)].map(rename),
    };
  });
}

function inputDir(results: Results): string {
  return results.kind === 'folder' ? results.input : dirname(results.input);
}

/** A path relative to the input when it lies inside it, else as given. */
function shown(results: Results, path: string): string {
  const r = relative(inputDir(results), path);
  return r && !r.startsWith('..') ? r : path;
}

/** Policy labels in page order, so that each policy has one colour on every plot. */
function colorDomain(results: Results): string[] {
  const labels = ['base', ...results.attacks.map((a) => a.label), ...results.runs.map((r) => r.label)];
  return [...new Set(labels)];
}

function attackSection(results: Results): Section | null {
  const curves: { label: string; asr: (number | null)[] }[] = [];
  const has = (label: string) => curves.some((c) => c.label === label);
  for (const a of results.attacks) curves.push({ label: a.label, asr: a.prefill });
  for (const run of results.runs) {
    const last = [...run.records].reverse().find((r) => Array.isArray(r.asr));
    if (last && !has(run.label)) curves.push({ label: run.label, asr: last.asr!.map((x) => (finite(x) ? x : null)) });
  }
  const many = results.analyses.length > 1;
  for (const a of results.analyses) {
    const prefix = many ? `${a.label || a.report.scenario}: ` : '';
    const rows = a.report.prefill ?? [];
    if (rows.length === 0) continue;
    const base = `${prefix}base`;
    if (!has(base)) curves.push({ label: base, asr: rows.map((p) => p.asrBase) });
    const aligned = `${prefix}${a.report.aligned ? `aligned: ${a.report.aligned}` : `Gibbs optimum (λ = ${a.report.lambda})`}`;
    // The Gibbs optimum attacked from a policy file (the demo's attack-gibbs.json) is the same curve.
    const gibbsAttacked = (a.report.aligned ?? 'gibbs').startsWith('gibbs') && results.attacks.some((x) => /gibbs/i.test(x.label));
    if (!has(aligned) && !gibbsAttacked) curves.push({ label: aligned, asr: rows.map((p) => p.asrAligned) });
  }
  if (curves.length === 0) return null;
  curves.sort((a, b) => Number(b.label === 'base') - Number(a.label === 'base'));
  const rap = results.attacks.filter((a) => a.rap).map((a) => ({ label: a.label, asr: a.rap! }));
  const ranks = [...new Set(results.attacks.filter((a) => a.rap && a.rank !== undefined).map((a) => a.rank))];
  const plots = [prefillPlot(curves, { colorDomain: colorDomain(results) })];
  const tables = [asrTable('Prefilling attack success ASR_k', curves)];
  // A rank-assisted curve that is the same for every policy says nothing about the policies (with
  // r ≥ V every token is a candidate and the attacker ignores the ranking): a note instead of a plot.
  const rapIdentical = rap.length > 1 && rap.every((c) => c.asr.every((x, k) => Math.abs((x ?? NaN) - (rap[0].asr[k] ?? NaN)) <= 1e-12 || (x === null && rap[0].asr[k] === null)));
  let rapNote = '';
  if (rapIdentical) {
    const r = ranks.length === 1 ? `r = ${ranks[0]}` : 'its rank';
    rapNote = ` Rank-assisted prefilling (${r}) gives the same ASR_k curve against every policy (when r is at least V, every token is a candidate, so the attacker ignores the policy's ranking): it is listed in the table but not plotted.`;
    tables.push(asrTable(`Rank-assisted prefilling ASR_k (${r}, the same for every policy)`, rap.slice(0, 1).map((c) => ({ ...c, label: 'every policy' }))));
  } else if (rap.length > 0) {
    const r = ranks.length === 1 ? `r = ${ranks[0]}` : 'top r';
    plots.push(
      prefillPlot(rap, {
        colorDomain: colorDomain(results),
        name: 'rank-assisted-asr',
        title: `Rank-assisted prefilling (${r}): ASR against k`,
        subtitle: `Each next token: the highest-ranked harmful one among the policy's ${r}.`,
      }),
    );
    tables.push(asrTable(`Rank-assisted prefilling ASR_k (${r})`, rap));
  }
  for (const a of results.attacks) {
    if (!a.finetune || a.finetune.steps.length === 0) continue;
    tables.push({
      caption: `Fine-tuning attack on ${a.label} (${a.finetune.objective ?? 'sft'}, learning rate ${a.finetune.learningRate ?? '—'})`,
      header: ['step', 'E[H]', 'ASR_1', 'loss'],
      rows: a.finetune.steps.map((s) => [s.step, m(s.asr?.[0]), m(s.asr?.[1]), m(s.loss)]),
    });
  }
  return {
    id: 'attacks',
    title: 'Attacks',
    intro: `Prefilling: the first k tokens are forced from a harmful response (Q) and the policy continues; ASR_k is the probability the response is harmful.${rapNote}`,
    tables,
    plots,
  };
}

/** The objective a run minimised, from its summary.json (undefined when not recorded). */
function objectiveOf(run: TrainRunInput): string | undefined {
  const o = isObject(run.summary.options) ? run.summary.options : {};
  return isObject(o.objective) && typeof o.objective.kind === 'string' ? o.objective.kind : undefined;
}

function trainingSection(results: Results): Section | null {
  if (results.runs.length === 0) return null;
  const rows: Cell[][] = results.runs.map((run) => {
    const o = isObject(run.summary.options) ? run.summary.options : {};
    const obj = isObject(o.objective) ? o.objective : {};
    const final = (isObject(run.summary.final) ? run.summary.final : run.records[run.records.length - 1]) as TrainRecord | undefined;
    return [
      run.label,
      scalar(run.summary.scenario),
      scalar(obj.kind),
      scalar(o.algorithm),
      scalar(o.policy),
      scalar(obj.lambda),
      obj.kind && obj.kind !== 'standard' ? scalar(obj.mu) : null,
      obj.kind && obj.kind !== 'standard' ? scalar(obj.gamma) : null,
      scalar(o.steps),
      m(final?.objective),
      m(final?.expectedHarm),
      m(final?.kl),
      run.summary.interrupted ? 'yes' : 'no',
    ];
  });
  const plotted = results.runs.filter((r) => r.records.length > 0);
  return {
    id: 'training',
    title: 'Training',
    intro: 'Alignment runs (harm-horizon train): the objective, its parameters and the final values.',
    tables: [{ caption: 'Training runs', header: ['run', 'scenario', 'objective', 'algorithm', 'policy', 'λ', 'μ', 'γ', 'steps', 'final J', 'final E[H]', 'final KL', 'interrupted'], rows }],
    plots: plotted.length > 0 ? [trainingPlot(plotted.map((r) => ({ label: r.label, records: r.records, objective: objectiveOf(r) })), { colorDomain: colorDomain(results) })] : [],
  };
}

function lambdaSection(results: Results): Section | null {
  const ls = results.lambdaScaling;
  if (!ls) return null;
  const lambdas = [...new Set(ls.rows.map((r) => r.lambda))].sort((a, b) => a - b);
  const rows: Cell[][] = lambdas.map((lambda) => {
    const ratios = ls.rows.filter((r) => r.lambda === lambda && finite(r.ratio)).map((r) => r.ratio);
    return [String(lambda), ratios.length, ratios.length ? m(Math.min(...ratios)) : null, ratios.length ? m(Math.max(...ratios)) : null];
  });
  return {
    id: 'lambda-scaling',
    title: 'λ-scaling of the equilibrium KL',
    intro: 'At the Gibbs optimum D_t = (λ²/2)·I_t + O(λ³): the ratio D_t/((λ²/2)·I_t) tends to 1 as λ → 0.',
    tables: [{ caption: 'Ratio D_t/((λ²/2)·I_t) over the positions inside the horizon', header: ['λ', 'positions', 'min ratio', 'max ratio'], rows }],
    plots: [lambdaScalingPlot(ls.rows)],
  };
}

const MAX_HEATMAPS = 16;

/** Numbers before strings, numbers ascending. */
function compareCells(a: Cell, b: Cell): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}
/** Per-position results (arrays) drawn as position × parameter maps, at most this many. */
const MAX_POSITION_MAPS = 6;
/** Hidden column of a sweep row: the index of its cell (to find its per-position arrays). */
const CELL_INDEX = '#cell';
/** Axis of per-position maps: the position (array index + 1; for k = 0..T arrays, k + 1). */
const POSITION = 'position';

function sweepSections(results: Results): Section[] {
  return results.sweeps.map((sweep, i) => {
    const id = results.sweeps.length > 1 ? `sweep-${slug(sweep.label || String(i + 1))}` : 'sweep';
    const paramKeys: string[] = [];
    const resultKeys: string[] = [];
    // Per-position results (arrays of numbers, e.g. analyze's harmInformation), by cell index.
    const perPosition = new Map<string, (number | null)[][]>();
    const rows = sweep.cells.map((cell, index) => {
      const params = flatten(cell.params);
      const result = flatten(cell.result);
      for (const k of Object.keys(params)) if (!paramKeys.includes(k)) paramKeys.push(k);
      for (const [k, v] of Object.entries({ ...result, ...rowColumns(result) })) {
        if (!Array.isArray(v) || v.length < 2 || !v.every((x) => x === null || typeof x === 'number')) continue;
        if (!perPosition.has(k)) perPosition.set(k, []);
        perPosition.get(k)![index] = v.map((x) => (finite(x) ? x : null));
      }
      const row: Record<string, Cell> = { [CELL_INDEX]: index };
      for (const [k, v] of Object.entries(params)) row[k] = scalar(v);
      for (const [k, v] of Object.entries(result)) {
        // A result that repeats its parameter (analyze's lambda) is not a result.
        if (k in params && JSON.stringify(v) === JSON.stringify(params[k])) continue;
        const key = k in params ? `result.${k}` : k;
        if (!resultKeys.includes(key)) resultKeys.push(key);
        row[key] = typeof v === 'number' ? (Number.isFinite(v) ? v : null) : scalar(v);
      }
      return row;
    });
    const distinct = (key: string) => [...new Set(rows.map((r) => JSON.stringify(r[key] ?? null)))].map((s) => JSON.parse(s) as Cell);
    const varying = paramKeys.filter((k) => distinct(k).length > 1);
    const numeric = resultKeys.filter((k) => rows.every((r) => r[k] === null || r[k] === undefined || typeof r[k] === 'number') && rows.some((r) => finite(r[k])));
    const constant = numeric.filter((k) => new Set(rows.map((r) => r[k])).size === 1);
    const plotted = numeric.filter((k) => !constant.includes(k));
    // Heat-map axes: the sweep file's grid order when known; else numeric parameters with the most values.
    // Seeds are replicates: averaged over, not an axis (unless nothing else varies).
    const isSeed = (k: string) => /(^|\.)seeds?$/i.test(k);
    const present = (k: string) => rows.filter((r) => r[k] !== null && r[k] !== undefined).length;
    const values = (k: string) => distinct(k).filter((v) => v !== null).length;
    const numericParam = (k: string) => rows.every((r) => r[k] === null || r[k] === undefined || typeof r[k] === 'number');
    const grid = sweep.sweepFile?.grid ?? [];
    const rank = (k: string) => (grid.includes(k) ? grid.indexOf(k) : grid.length);
    const axes = varying
      .filter((k) => !isSeed(k))
      .sort((a, b) => rank(a) - rank(b) || Number(numericParam(b)) - Number(numericParam(a)) || values(b) - values(a) || present(b) - present(a) || paramKeys.indexOf(a) - paramKeys.indexOf(b));
    if (axes.length === 0 && varying.length > 0) axes.push(varying[0]);
    const plots: Plot[] = [];
    const notes: string[] = [`${sweep.cells.length} cell results from ${sweep.files.map((f) => shown(results, f)).join(', ')}.`];
    if (sweep.sweepFile) notes.push(`The sweep (${sweep.sweepFile.command}) has ${sweep.sweepFile.cells} cells; ${sweep.sweepFile.done} of them are finished.`);
    if (sweep.unreadable > 0) notes.push(`${sweep.unreadable} line(s) were not cell results (e.g. a torn last line) and were skipped.`);
    if (axes.length > 0) {
      const x = axes[0];
      let y = axes[1];
      let mapRows = rows;
      if (!y) {
        y = paramKeys.includes('sweep') ? '(sweep)' : 'sweep';
        mapRows = rows.map((r) => ({ ...r, [y]: sweep.label || 'all' }));
      }
      // Other varying parameters (objective, algorithm, …) would mix unlike cells: keep the largest group.
      const sliceKeys = varying.filter((k) => k !== x && k !== y && !isSeed(k));
      const withAxes = mapRows.filter((r) => r[x] !== null && r[x] !== undefined && r[y!] !== null && r[y!] !== undefined);
      const groups = new Map<string, typeof rows>();
      for (const r of withAxes) {
        const key = JSON.stringify(sliceKeys.map((k) => r[k] ?? null));
        groups.set(key, [...(groups.get(key) ?? []), r]);
      }
      const [sliceKey, slice] = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)[0] ?? ['[]', []];
      if (sliceKeys.length > 0 && slice.length < rows.length) {
        const fixedValues = JSON.parse(sliceKey) as Cell[];
        const fixed = sliceKeys.flatMap((k, j) => (fixedValues[j] === null ? [] : [`${k} = ${String(fixedValues[j])}`])).join(', ') || 'the other parameters unset';
        notes.push(`Heat maps over ${x} × ${y} show the ${slice.length} of ${rows.length} cells with ${fixed} (the largest group of the other varying parameters).`);
      } else notes.push(`Heat maps are over ${x} × ${y}.`);
      const seeds = varying.filter(isSeed).filter((k) => k !== x && k !== y);
      if (seeds.length > 0) notes.push(`Each heat-map cell is the mean over ${seeds.join(', ')}.`);
      // Fields constant over the heat map, or equal to a field already drawn (parts.kl = kl), add nothing.
      const drawn = new Map<string, string>();
      const skippedFields: string[] = [];
      for (const field of plotted) {
        const column = slice.map((r) => r[field] ?? null);
        const key = JSON.stringify(column);
        if (new Set(column.filter(finite)).size <= 1 || drawn.has(key)) {
          skippedFields.push(drawn.has(key) ? `${field} (= ${drawn.get(key)})` : field);
          continue;
        }
        if (drawn.size >= MAX_HEATMAPS) {
          skippedFields.push(field);
          continue;
        }
        drawn.set(key, field);
      }
      if (skippedFields.length > 0) notes.push(`Not drawn (constant over the heat map, a copy of another field, or past ${MAX_HEATMAPS} maps): ${skippedFields.join(', ')}.`);
      // One swept parameter: a line plot against it; two or more: a heat map over the first two.
      const oneAxis = axes.length === 1;
      for (const field of drawn.values()) {
        const p = oneAxis ? sweepLinePlot(slice, x, field, `${field} against ${x}`) : heatmapPlot(slice, x, y, field, `${field} over ${x} × ${y}`);
        plots.push(results.sweeps.length > 1 ? { ...p, name: `${slug(sweep.label)}-${p.name}` } : p);
      }
      // Per-position results across the first swept parameter: position × x, at the first value of
      // the second axis (cells of different y, e.g. different scenarios, are not averaged together).
      const firstY = oneAxis ? undefined : [...new Set(slice.map((r) => r[y!]))].sort(compareCells)[0];
      const positionRows = oneAxis ? slice : slice.filter((r) => r[y!] === firstY);
      const varies = (field: string) => new Set(positionRows.map((r) => JSON.stringify(perPosition.get(field)![r[CELL_INDEX] as number] ?? null))).size > 1;
      const positionFields = [...perPosition.keys()].filter(varies).slice(0, MAX_POSITION_MAPS);
      if (positionFields.length > 0 && !oneAxis) notes.push(`Per-position maps are over ${x} at ${y} = ${String(firstY)}.`);
      for (const field of positionFields) {
        const exploded = positionRows.flatMap((r) =>
          (perPosition.get(field)![r[CELL_INDEX] as number] ?? []).map((v, i) => ({ [x]: r[x], [POSITION]: i + 1, [field]: v }) as Record<string, Cell>),
        );
        if (!exploded.some((r) => finite(r[field]))) continue;
        const p = heatmapPlot(exploded, x, POSITION, field, `${field} per position over ${x}`);
        plots.push(results.sweeps.length > 1 ? { ...p, name: `${slug(sweep.label)}-${p.name}` } : p);
      }
      const notDrawn = [...perPosition.keys()].filter((k) => !positionFields.includes(k));
      if (notDrawn.length > 0) notes.push(`Per-position results not drawn (the same in every cell, or past ${MAX_POSITION_MAPS} maps): ${notDrawn.join(', ')}.`);
    } else notes.push('No parameter varies, so there is no heat map.');
    if (constant.length > 0) notes.push(`Constant over the sweep (not drawn): ${constant.join(', ')}.`);
    const stats: Cell[][] = numeric.map((k) => {
      const v = rows.map((r) => r[k]).filter(finite);
      return [k, v.length, m(Math.min(...v)), m(v.reduce((a, b) => a + b, 0) / v.length), m(Math.max(...v))];
    });
    const paramRows: Cell[][] = paramKeys.map((k) => {
      const taken = distinct(k);
      const shown = taken.slice(0, 12).map((v) => String(v)).join(', ') + (taken.length > 12 ? `, … (${taken.length} values)` : '');
      return [k, taken.length, shown];
    });
    return {
      id,
      title: `Sweep${results.sweeps.length > 1 ? `: ${sweep.label}` : ''}`,
      intro: notes.map(esc).join(' '),
      tables: [
        { caption: 'Parameters', header: ['parameter', 'values', 'taken'], rows: paramRows },
        { caption: 'Numeric results over all cells', header: ['field', 'cells', 'min', 'mean', 'max'], rows: stats },
      ],
      plots,
      pre: sweep.sweepFile ? [{ caption: `Sweep file ${basename(sweep.sweepFile.path)}`, text: sweep.sweepFile.text.slice(0, 8000) }] : undefined,
    };
  });
}

function slug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'x'
  );
}

// ─── HTML ──────────────────────────────────────────────────────────────────────────────────────────

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

function writeFile(path: string, text: string) {
  try {
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (error) {
    throw new HarmHorizonError('HH_WRITE_FAILED', `cannot write ${path}: ${(error as Error).message}`);
  }
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
    writeFile(join(plotsDir, `${plot.name}.svg`), rendered.get(plot.name)!);
    const path = join(dataDir, `${plot.name}.csv`);
    writeFile(path, plotCsv(plot));
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
  writeFile(htmlPath, html);
  return { html: htmlPath, plots: allPlots.map((p) => p.name), csv };
}
