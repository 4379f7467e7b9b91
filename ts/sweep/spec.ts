/**
 * The sweep file: read (JSON, or YAML for any other extension), validated parameter by parameter,
 * and expanded into cells (scenarios × grid, then the list). The format is docs/sweeps.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { HarmHorizonError } from '../core/errors.js';
import { DEFAULT_TRANSFORMER } from '../core/policy.js';
import { firstSchemaError } from '../io/schema-check.js';
import { BOS, builtinNames, builtinScenario, compileScenario, parseScenario, scenarioToJson, suggest, type Scenario, type ScenarioOptions } from '../scenario/index.js';
import { resolveScenario } from '../scenario/resolve.js';
import { derivedSeed, idOfCanonical, sortKeys } from './ids.js';
import { COMMON, commandParameters, type ParamSpec, type SweepCommand } from './params.js';
import { SweepFileSchema, type SweepFile } from './spec-schema.js';

type SweepAxis = NonNullable<SweepFile['grid']>[string];

/** At most this many cells in one sweep. */
export const MAX_CELLS = 10_000_000;

export interface Cell {
  /** Position in the sweep's expansion order. */
  index: number;
  id: string;
  seed: number;
  /** Parameters, keys sorted (including `scenario`). */
  params: Record<string, unknown>;
  /** Key of the cell's scenario configuration in `Sweep.scenarios`. */
  scenarioKey: string;
}

export interface Sweep {
  /** The sweep file (or a description of where the sweep came from). */
  source: string;
  /** Folder that relative scenario and policy paths are resolved against. */
  baseDir: string;
  command: SweepCommand;
  seed: number;
  /** The cells in expansion order: scenarios × grid (last axis fastest), then the list. */
  cells: Cell[];
  /** Validated scenarios by configuration key. */
  scenarios: Map<string, Scenario>;
}

function invalid(source: string, field: string, reason: string, code = 'HH_INVALID_ARGUMENT'): HarmHorizonError {
  return new HarmHorizonError(code, `invalid sweep (${source}): ${field === '' ? '' : `${field}: `}${reason}`, field);
}

const show = (v: unknown) => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

function fieldPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  const k = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? key : JSON.stringify(key);
  if (base === '') return k.startsWith('"') ? `[${k}]` : k;
  return k.startsWith('"') ? `${base}[${k}]` : `${base}.${k}`;
}

/** Reads a sweep file (JSON, or YAML for any other extension) and validates it. */
export function loadSweep(path: string, options: ScenarioOptions = {}): Sweep {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new HarmHorizonError('HH_FILE_NOT_FOUND', `sweep file not found: ${path}`, '');
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `cannot read the sweep file ${path}: ${e.message}`, '');
  }
  return parseSweep(parseSweepText(text, path), path, dirname(resolve(path)), options);
}

/** Parses sweep file text: JSON for *.json, YAML otherwise (YAML includes JSON). */
export function parseSweepText(text: string, source: string): unknown {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (/\.json$/i.test(source)) {
    try {
      return JSON.parse(text);
    } catch (error) {
      const m = /position (\d+)/.exec((error as Error).message);
      let where = '';
      if (m) {
        const before = text.slice(0, Number(m[1]));
        where = ` at line ${before.split('\n').length}, column ${Number(m[1]) - before.lastIndexOf('\n')}`;
      }
      throw invalid(source, '', `not valid JSON${where}: ${(error as Error).message}`);
    }
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw invalid(source, '', `not valid YAML${where}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  try {
    return doc.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    throw invalid(source, '', `cannot read the YAML: ${(error as Error).message}`);
  }
}

/** The spec of a parameter; unknown ones are refused at `path` (the parameter's key). */
function paramSpec(source: string, command: SweepCommand, name: string, path: string): ParamSpec {
  const specs = commandParameters(command);
  const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
  if (spec) return spec;
  const hint = suggest(name, Object.keys(specs));
  throw invalid(
    source,
    path,
    `unknown parameter ${JSON.stringify(name)} for ${command}${hint ? `; did you mean ${JSON.stringify(hint)}?` : ''} (${command} takes ${Object.keys(specs).join(', ')})`,
  );
}

/** Checks one parameter value; returns it normalised (a list given as one number becomes an array). */
function checkValue(source: string, command: SweepCommand, name: string, value: unknown, path: string, generated = ''): unknown {
  const spec = paramSpec(source, command, name, path);
  const got = `got ${show(value)}${generated}`;
  const k = spec.kind;
  switch (k.type) {
    case 'number': {
      const ok =
        typeof value === 'number' &&
        Number.isFinite(value) &&
        (k.min === undefined || value >= k.min) &&
        (k.above === undefined || value > k.above) &&
        (k.max === undefined || value <= k.max);
      if (!ok) throw invalid(source, path, `${name} must be ${k.text}, ${got}`);
      return value === 0 ? 0 : value;
    }
    case 'integer':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < k.min) throw invalid(source, path, `${name} must be a whole number ≥ ${k.min}, ${got}`);
      return value;
    case 'enum':
      if (typeof value !== 'string' || !k.choices.includes(value)) throw invalid(source, path, `${name} must be one of ${k.choices.join(', ')}, ${got}`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') throw invalid(source, path, `${name} must be true or false, ${got}`);
      return value;
    case 'file':
      if (typeof value !== 'string' || value === '') throw invalid(source, path, `${name} must be a file path, ${got}`);
      return value;
    case 'list':
      try {
        if (typeof value !== 'number' && !Array.isArray(value)) throw new Error();
        return k.read(value);
      } catch {
        throw invalid(source, path, `${name} must be ${k.must}, ${got}`);
      }
  }
}

/** Rounds generated grid values to 12 significant digits (readable, still deterministic). */
const round12 = (x: number) => (x === 0 ? 0 : Number(x.toPrecision(12)));

/** The values of one grid axis: a list, or a {log|linear|range: [...]} generator. */
function axisValues(source: string, command: SweepCommand, name: string, spec: SweepAxis, path: string): unknown[] {
  paramSpec(source, command, name, path);
  if (Array.isArray(spec)) return spec.map((v, i) => checkValue(source, command, name, v, fieldPath(path, i)));
  // The schema has checked a generator: exactly one of log, linear, range, with 3 (2 or 3) numbers.
  const [gen, args] = Object.entries(spec)[0] as ['log' | 'linear' | 'range', number[]];
  const gpath = fieldPath(path, gen);
  let values: number[];
  if (gen === 'range') {
    const [start, stop, step = 1] = args;
    if (![start, stop, step].every((x) => Number.isSafeInteger(x)) || step === 0) throw invalid(source, gpath, `start, stop and step must be whole numbers, step ≠ 0, got ${show(args)}`);
    const count = Math.max(0, Math.ceil((stop! - start!) / step));
    if (count === 0) throw invalid(source, gpath, `the range [${start}, ${stop}) is empty (stop is excluded)`);
    if (count > MAX_CELLS) throw invalid(source, gpath, `${count} values: more than the ${MAX_CELLS} cells a sweep may hold`);
    values = Array.from({ length: count }, (_, i) => start! + i * step);
  } else {
    const [from, to, n] = args;
    if (!Number.isSafeInteger(n) || n! < 1) throw invalid(source, gpath, `the number of values (third) must be a whole number ≥ 1, got ${n}`);
    if (n! > MAX_CELLS) throw invalid(source, gpath, `${n} values: more than the ${MAX_CELLS} cells a sweep may hold`);
    if (gen === 'log' && !(from! > 0 && to! > 0)) throw invalid(source, gpath, `a log grid needs from > 0 and to > 0, got ${show(args)}`);
    const at = (i: number) => {
      if (i === 0) return from!;
      if (i === n! - 1) return to!;
      const f = i / (n! - 1);
      return round12(gen === 'log' ? Math.exp(Math.log(from!) + f * (Math.log(to!) - Math.log(from!))) : from! + f * (to! - from!));
    };
    values = Array.from({ length: n! }, (_, i) => at(i));
  }
  return values.map((v, i) => checkValue(source, command, name, v, gpath, ` (value ${i + 1} of ${values.length})`));
}

interface RawCell {
  params: Record<string, unknown>;
  /** The sweep field each parameter came from. */
  sources: Record<string, string>;
}

/**
 * Validates a parsed sweep file and expands its cells. `baseDir` resolves relative paths;
 * `options` holds the memory budget the cells' scenarios are checked against (default 4 GiB).
 */
export function parseSweep(json: unknown, source: string, baseDir: string, options: ScenarioOptions = {}): Sweep {
  // The shape is the schema's (spec-schema.ts); parameter values and the rest are checked here.
  const shape = firstSchemaError(SweepFileSchema, json);
  if (shape) throw invalid(source, shape.field, shape.reason);
  const file = json as SweepFile;
  const cmd = file.command as SweepCommand;
  const seed = file.seed ?? 0;

  // Scenarios (top level): a name or path, or a list of them.
  const scenarios = file.scenario === undefined ? [] : Array.isArray(file.scenario) ? file.scenario.map((value, i) => ({ value, path: `scenario[${i}]` })) : [{ value: file.scenario, path: 'scenario' }];

  // fixed
  const fixed: Record<string, unknown> = {};
  const fixedSources: Record<string, string> = {};
  for (const [k, v] of Object.entries(file.fixed ?? {})) {
    const path = fieldPath('fixed', k);
    if (k === 'scenario') throw invalid(source, path, 'set the scenario with the top-level "scenario" field');
    fixed[k] = checkValue(source, cmd, k, v, path);
    fixedSources[k] = path;
  }

  // grid
  const axes: { name: string; values: unknown[]; path: string }[] = [];
  if (file.grid !== undefined) {
    let total = Math.max(scenarios.length, 1);
    for (const [k, spec] of Object.entries(file.grid)) {
      const path = fieldPath('grid', k);
      if (k === 'scenario') throw invalid(source, path, 'sweep scenarios with the top-level "scenario" field (a list of names or paths)');
      if (Object.hasOwn(fixed, k)) throw invalid(source, path, `also set in fixed.${k}: a parameter is either fixed or swept`);
      const values = axisValues(source, cmd, k, spec, path);
      total *= values.length;
      if (total > MAX_CELLS) throw invalid(source, path, `the grid has more than the ${MAX_CELLS} cells a sweep may hold`);
      axes.push({ name: k, values, path });
    }
    if (scenarios.length === 0) throw invalid(source, 'scenario', 'missing: the grid needs a scenario (a built-in name, a file path, or a list of them)');
  }

  // list
  const listItems: RawCell[] = [];
  (file.list ?? []).forEach((item, i) => {
    const ipath = `list[${i}]`;
    const params: Record<string, unknown> = {};
    const sources: Record<string, string> = {};
    for (const [k, v] of Object.entries(item)) {
      const path = fieldPath(ipath, k);
      if (k === 'scenario') {
        if (typeof v !== 'string' || v === '') throw invalid(source, path, `a scenario is a built-in name or a scenario file path, got ${show(v)}`);
        params[k] = v;
      } else params[k] = checkValue(source, cmd, k, v, path);
      sources[k] = path;
    }
    if (params.scenario === undefined && scenarios.length === 0) throw invalid(source, ipath, 'no scenario: set list[i].scenario or the top-level "scenario"');
    listItems.push({ params, sources });
  });
  if (axes.length === 0 && listItems.length === 0) throw invalid(source, 'grid', 'the sweep has no cells: give a grid, a list, or both');

  // Expansion: scenarios × grid (last axis fastest), then each list item (× the scenarios when it names none).
  const raw: RawCell[] = [];
  if (axes.length > 0) {
    for (const s of scenarios) {
      const digits = new Array<number>(axes.length).fill(0);
      const sources: Record<string, string> = { ...fixedSources, scenario: s.path };
      for (const axis of axes) sources[axis.name] = axis.path;
      for (;;) {
        const params: Record<string, unknown> = { ...fixed, scenario: s.value };
        axes.forEach((axis, a) => {
          params[axis.name] = axis.values[digits[a]!];
        });
        raw.push({ params, sources });
        let a = axes.length - 1;
        while (a >= 0 && digits[a] === axes[a]!.values.length - 1) digits[a--] = 0;
        if (a < 0) break;
        digits[a]!++;
      }
    }
  }
  for (const item of listItems) {
    const targets = item.params.scenario !== undefined ? [null] : scenarios;
    for (const s of targets) {
      const params = { ...fixed, ...(s ? { scenario: s.value } : {}), ...item.params };
      const sources = { ...fixedSources, ...(s ? { scenario: s.path } : {}), ...item.sources };
      raw.push({ params, sources });
    }
    if (raw.length > MAX_CELLS) throw invalid(source, 'list', `more than the ${MAX_CELLS} cells a sweep may hold`);
  }

  // Scenario configurations: validated once each.
  const scenarioMap = new Map<string, Scenario>();
  const cells: Cell[] = [];
  const seen = new Map<string, string>();
  for (const r of raw) {
    const key = scenarioKey(r.params);
    if (!scenarioMap.has(key)) scenarioMap.set(key, buildScenario(source, r, baseDir, options));
    checkCell(source, cmd, r, scenarioMap.get(key)!, baseDir);
    const params = sortKeys(r.params);
    // Values are primitives or arrays of numbers, so with sorted keys JSON.stringify is canonical.
    const canonical = JSON.stringify(params);
    const id = idOfCanonical(cmd, canonical);
    const prior = seen.get(id);
    if (prior !== undefined) {
      if (prior !== canonical) throw invalid(source, '', `two different cells share the id ${id} (a hash collision): ${prior} and ${canonical}`);
      continue; // The same cell from the grid and the list: run once.
    }
    seen.set(id, canonical);
    const seedValue = typeof params.seed === 'number' ? params.seed : derivedSeed(seed, id);
    cells.push({ index: cells.length, id, seed: seedValue, params, scenarioKey: key });
  }
  return { source, baseDir, command: cmd, seed, cells, scenarios: scenarioMap };
}

const SCENARIO_PARAMS = ['scenario', 'length', 'scenarioSeed', 'vocab', 'order', 'states', 'sigma', 'endToken'];

function scenarioKey(params: Record<string, unknown>): string {
  return JSON.stringify(SCENARIO_PARAMS.map((k) => params[k] ?? null));
}

const isRandomName = (name: string) => name === 'random' || name.startsWith('random(');

/** Whether a scenario argument names a built-in (and no file of that name exists next to the sweep). */
function builtinArg(name: string, baseDir: string): boolean {
  return (builtinNames().includes(name) || name.startsWith('random(')) && !existsSync(resolve(baseDir, name));
}

/** The scenario with another length T: rows of contexts unreachable within T tokens are dropped. */
function withLength(s: Scenario, length: number): Scenario {
  if (length === s.length) return s;
  const json = scenarioToJson(s);
  const base: Record<string, unknown> = {};
  for (const [key, row] of Object.entries(s.base)) {
    const real = key.split(' ').filter((x) => x !== BOS).length;
    if (real <= length - 1) base[key] = row;
  }
  return parseScenario({ ...json, length, base }, `${s.name} with length ${length}`);
}

function buildScenario(source: string, cell: RawCell, baseDir: string, options: ScenarioOptions): Scenario {
  const p = cell.params;
  const name = p.scenario as string;
  const field = cell.sources.scenario!;
  const builtin = builtinArg(name, baseDir);
  const random = builtin && isRandomName(name);
  for (const k of SCENARIO_PARAMS) {
    if (p[k] !== undefined && COMMON[k]?.random && !random) {
      throw invalid(source, cell.sources[k]!, `${k} applies to the random scenario only (this cell's scenario is ${JSON.stringify(name)})`);
    }
  }
  let scenario: Scenario;
  try {
    if (random) {
      scenario = builtinScenario(name, {
        seed: p.scenarioSeed as number | undefined,
        vocab: p.vocab as number | undefined,
        order: p.order as number | undefined,
        length: p.length as number | undefined,
        states: p.states as number | undefined,
        sigma: p.sigma as number | undefined,
        endToken: p.endToken as boolean | undefined,
        ...options,
      });
    } else if (builtin) {
      scenario = resolveScenario(name, options);
    } else {
      const file = resolve(baseDir, name);
      if (!existsSync(file)) {
        throw invalid(source, field, `no built-in scenario and no file ${JSON.stringify(name)} (looked for ${file}; built-ins: ${builtinNames().join(', ')})`, 'HH_FILE_NOT_FOUND');
      }
      scenario = resolveScenario(file, options);
    }
  } catch (error) {
    throw wrapScenarioError(source, field, name, error);
  }
  try {
    if (p.length !== undefined && !random) scenario = withLength(scenario, p.length as number);
    compileScenario(scenario, options);
  } catch (error) {
    throw wrapScenarioError(source, p.length !== undefined ? cell.sources.length! : field, p.length !== undefined ? `${name} with length ${p.length}` : name, error);
  }
  return scenario;
}

function wrapScenarioError(source: string, field: string, name: string, error: unknown): HarmHorizonError {
  if (error instanceof HarmHorizonError && error.message.startsWith('invalid sweep')) return error;
  if (!(error instanceof HarmHorizonError)) return invalid(source, field, `scenario ${JSON.stringify(name)}: ${(error as Error)?.message ?? String(error)}`);
  const code = ['HH_FILE_NOT_FOUND', 'HH_STATE_SPACE_TOO_LARGE', 'HH_SCENARIO_INVALID'].includes(error.code) ? error.code : 'HH_INVALID_ARGUMENT';
  return invalid(source, field, `scenario ${JSON.stringify(name)}: ${error.message}`, code);
}

const SAMPLED: readonly string[] = ['reinforce', 'reinforce-innovation', 'ppo'];

/** Checks of a cell as a whole (combinations of parameters). */
function checkCell(source: string, command: SweepCommand, cell: RawCell, scenario: Scenario, baseDir: string): void {
  const p = cell.params;
  const where = (k: string) => cell.sources[k] ?? `fixed.${k}`;
  const fail = (k: string, reason: string): never => {
    throw invalid(source, where(k), `${reason} (cell ${show(sortKeys(p))})`);
  };
  if (command === 'estimate' && p.samples === undefined) {
    throw invalid(source, 'fixed.samples', 'estimate cells need samples: set it in fixed, grid or every list item');
  }
  if (command === 'estimate' || command === 'attack') {
    if (typeof p.policy === 'string' && !existsSync(resolve(baseDir, p.policy))) fail('policy', `no policy file ${JSON.stringify(p.policy)} (paths are relative to the sweep file)`);
  }
  if (command === 'attack' && p.policy !== undefined && p.lambda !== undefined) fail('lambda', 'attack either a policy file or the Gibbs optimum at λ, not both');
  if (command === 'train') {
    const objective = (p.objective as string | undefined) ?? 'standard';
    const algorithm = (p.algorithm as string | undefined) ?? 'exact';
    if (SAMPLED.includes(algorithm) && objective !== 'standard' && !(objective === 'deep' && p.policy === 'transformer')) fail(p.algorithm !== undefined ? 'algorithm' : 'objective', `the sampled algorithm ${algorithm} trains the standard objective only, not ${objective}`);
    if (algorithm === 'fixed-point') {
      if (objective !== 'standard' && objective !== 'deep-anchored') fail('objective', `the fixed point solves the standard and deep-anchored objectives, not ${objective}`);
      if (p.policy === 'mlp' || p.policy === 'transformer') fail('policy', 'the fixed point gives a tabular policy');
    }
    if (p.policy === 'transformer') {
      const [width, heads] = [(p.width as number | undefined) ?? DEFAULT_TRANSFORMER.width, (p.heads as number | undefined) ?? DEFAULT_TRANSFORMER.heads];
      if (width % heads !== 0) fail(p.heads !== undefined ? 'heads' : 'width', `the heads (${heads}) must divide the transformer width (${width})`);
    }
    if (objective !== 'standard' && scenario.recoveryTokens.length === 0) fail('objective', `the ${objective} objective needs recovery tokens, and scenario ${JSON.stringify(p.scenario)} has none`);
  }
}

