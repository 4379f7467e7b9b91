/**
 * Loading what a report shows: a results folder or a sweep file, read into one {@link Results}.
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
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { HarmHorizonError } from '../core/errors.js';
import type { AnalyzeReport } from './analysis.js';
import { isProfileJson, isRolloutLog, parseProfileJson, profileInput, type ProfileInput } from './profile.js';
import { loadSweep } from '../sweep/spec.js';
import type { TrainRecord } from '../workflows/train.js';

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
  /** The run's summary.json as read (fields are checked where they are used). */
  summary: Record<string, unknown>;
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

export function isObject(x: unknown): x is Record<string, unknown> {
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
  (value.positions as unknown[]).forEach((p, i) => {
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
    if (!isObject(row) || typeof row.k !== 'number' || !Number.isInteger(row.k) || row.k < 0 || !nullableNumber(row.asr)) {
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
    finetune: (finetune ?? undefined) as AttackInput['finetune'],
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
function isTrainSummary(value: unknown): value is Record<string, unknown> {
  return isObject(value) && isObject(value.options) && isObject(value.options.objective);
}

function readRun(dir: string, label: string, summary: Record<string, unknown>): TrainRunInput {
  let records: TrainRecord[] = [];
  const log = join(dir, 'log.jsonl');
  if (existsSync(log)) {
    records = readJsonLines(log).values.filter((r): r is TrainRecord => isObject(r) && typeof r.step === 'number') as TrainRecord[];
  }
  if (records.length === 0 && isObject(summary.final)) records = [summary.final as unknown as TrainRecord];
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
