/**
 * Sweeps: one command (analyze, estimate, train or attack) over a grid and/or a list of parameter
 * settings, run in parallel on worker threads, appended cell by cell to a JSONL results file that
 * survives kills (resume skips finished cells), and split into deterministic shards for Slurm job
 * arrays and Kubernetes Indexed Jobs. The format and the guarantees are documented in
 * docs/sweeps.md.
 *
 * A cell is a set of parameters; its id is the first 16 hex digits of the SHA-256 of the canonical
 * JSON (sorted keys) of `{command, params}`, and its seed is its `seed` parameter or, without one,
 * a whole number below 2^53 derived from the sweep seed and the id. A results line is
 * `{"id", "command", "params", "seed", "result"}` (plus `"seconds"` with `timing`): a pure function
 * of the cell, so an interrupted and resumed sweep ends with the same lines as an uninterrupted one.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { parseDocument } from 'yaml';
import { cellCommands } from '../commands/cells.js';
import { createContext, type CommandContext } from '../commands/context.js';
import { completeParams, type AnyCommand } from '../commands/declare.js';
import { DEFAULT_RANK } from '../workflows/attack.js';
import { HarmHorizonError } from '../core/errors.js';
import { writeAtomic } from '../io/files.js';
import { DEFAULT_HORIZON_TOLERANCE } from '../core/exact.js';
import { DEFAULT_TRANSFORMER } from '../core/policy.js';
import { Progress } from '../io/progress.js';
import { resolveScenario } from '../scenario/resolve.js';
import { BOS, builtinNames, builtinScenario, compileScenario, parseScenario, scenarioToJson, suggest, type Scenario, type ScenarioOptions } from '../scenario/index.js';
import { DEFAULT_MIX, TRAIN_DEFAULTS } from '../workflows/train.js';

// ---------------------------------------------------------------------------------------------
// Parameters

export const SWEEP_COMMANDS = ['analyze', 'estimate', 'train', 'attack'] as const;
export type SweepCommand = (typeof SWEEP_COMMANDS)[number];

type Kind =
  | { type: 'number'; min?: number; max?: number; above?: number; text: string }
  | { type: 'integer'; min: number }
  | { type: 'enum'; choices: readonly string[] }
  | { type: 'file' }
  | { type: 'boolean' }
  | { type: 'widths' };

export interface ParamSpec {
  kind: Kind;
  doc: string;
  /** Only for the `random` scenario. */
  random?: boolean;
}

const nonNegative = (doc: string): ParamSpec => ({ kind: { type: 'number', min: 0, text: 'a finite number ≥ 0' }, doc });
const wholeAtLeast = (min: number, doc: string): ParamSpec => ({ kind: { type: 'integer', min }, doc });
const oneOf = (choices: readonly string[], doc: string): ParamSpec => ({ kind: { type: 'enum', choices }, doc });

/** Parameters every command takes: scenario-level ones and the seed. */
const COMMON: Record<string, ParamSpec> = {
  seed: wholeAtLeast(0, 'the cell\'s seed (samples, mlp initialisation); default: derived from the sweep seed and the cell id. For analyze, a replicate index'),
  replicate: wholeAtLeast(0, 'a replicate index: tells otherwise identical cells apart (and so gives them different derived seeds)'),
  length: wholeAtLeast(1, 'response length T of the scenario (default: the scenario\'s)'),
  scenarioSeed: { ...wholeAtLeast(0, 'seed of the random scenario (default 1)'), random: true },
  vocab: { ...wholeAtLeast(1, 'vocabulary size V of the random scenario (default 8)'), random: true },
  order: { ...wholeAtLeast(1, 'context order n of the random scenario (default 1)'), random: true },
  states: { ...wholeAtLeast(2, 'automaton states D of the random scenario (default 8)'), random: true },
  sigma: { ...nonNegative('standard deviation of the random scenario\'s logits (default 1.5)'), random: true },
  endToken: { kind: { type: 'boolean' }, doc: 'whether the random scenario\'s last token is <eos> (default false)', random: true },
};

const LAMBDA = nonNegative('alignment strength λ (default: the scenario\'s)');

/** The parameters of each command (besides the common ones). */
export const SWEEP_PARAMETERS: Record<SweepCommand, Record<string, ParamSpec>> = {
  analyze: {
    lambda: LAMBDA,
    tolerance: nonNegative(`relative tolerance of the harm horizon (default ${DEFAULT_HORIZON_TOLERANCE})`),
  },
  estimate: {
    samples: wholeAtLeast(1, 'number of sampled responses (required)'),
    rollouts: wholeAtLeast(1, 'nested rollouts per prefix (default: exact h_t when the exact engine applies)'),
    estimator: oneOf(['reinforce', 'leave-one-out', 'innovation'], 'gradient estimator (default innovation)'),
    policy: { kind: { type: 'file' }, doc: 'a policy file (default: the base), relative to the sweep file' },
  },
  train: {
    objective: oneOf(['standard', 'deep', 'deep-anchored', 'augment'], 'objective (default standard)'),
    algorithm: oneOf(['exact', 'fixed-point', 'reinforce', 'reinforce-innovation', 'ppo'], 'algorithm (default exact)'),
    policy: oneOf(['tabular', 'mlp', 'transformer'], 'policy family (default tabular)'),
    lambda: LAMBDA,
    mu: nonNegative('μ of the recovery penalty (default: the scenario\'s)'),
    gamma: { kind: { type: 'number', above: 0, max: 1, text: 'a number in (0, 1]' }, doc: 'γ of the weights w_t = γ^(t−1) (default: the scenario\'s)' },
    mix: nonNegative(`α, the weight of the augment objective's recovery term (default ${DEFAULT_MIX})`),
    steps: wholeAtLeast(1, 'optimisation steps (default 1000)'),
    lr: nonNegative(`learning rate (default ${TRAIN_DEFAULTS.learningRate})`),
    optimizer: oneOf(['adam', 'sgd'], 'optimiser (default adam)'),
    schedule: oneOf(['cosine', 'constant'], 'learning-rate schedule (default cosine)'),
    samples: wholeAtLeast(1, `responses per batch, sampled algorithms (default ${TRAIN_DEFAULTS.samples})`),
    clip: nonNegative(`PPO clip ε (default ${TRAIN_DEFAULTS.clip})`),
    epochs: wholeAtLeast(1, `PPO epochs per batch (default ${TRAIN_DEFAULTS.epochs})`),
    mlpHidden: { kind: { type: 'widths' }, doc: 'mlp hidden widths: 32 or [32, 16] (default [32])' },
    mlpActivation: oneOf(['tanh', 'relu'], 'mlp activation (default tanh)'),
    mlpOrder: wholeAtLeast(1, 'tokens the mlp reads (default: the scenario\'s context order)'),
    layers: wholeAtLeast(1, `transformer layers (default ${DEFAULT_TRANSFORMER.layers})`),
    width: wholeAtLeast(1, `transformer width (default ${DEFAULT_TRANSFORMER.width})`),
    heads: wholeAtLeast(1, `transformer attention heads, dividing the width (default ${DEFAULT_TRANSFORMER.heads})`),
    mlpWidth: wholeAtLeast(1, `width of the transformer's MLP blocks (default ${DEFAULT_TRANSFORMER.mlpWidth})`),
  },
  attack: {
    rank: wholeAtLeast(1, `rank-assisted prefilling: the policy's top R tokens (default ${DEFAULT_RANK}, capped at V)`),
    policy: { kind: { type: 'file' }, doc: 'the policy file to attack (default: the base), relative to the sweep file' },
    lambda: nonNegative('attack the Gibbs optimum at this λ instead of the base (not with policy)'),
    samples: wholeAtLeast(1, 'responses per k when prefilling has to be sampled (default 2000)'),
    finetuneSteps: wholeAtLeast(0, 'also run the fine-tuning attack for this many steps (default 0)'),
    finetuneLr: nonNegative('fine-tuning learning rate (default 1)'),
    finetuneObjective: oneOf(['sft', 'constrained'], 'fine-tuning objective (default sft)'),
  },
};

/** Every parameter a command accepts, with its spec. */
export function commandParameters(command: SweepCommand): Record<string, ParamSpec> {
  return { ...SWEEP_PARAMETERS[command], ...COMMON };
}

const TOP_KEYS = ['$schema', 'name', 'description', 'command', 'scenario', 'seed', 'grid', 'list', 'fixed'];
const GENERATORS = ['log', 'linear', 'range'];
/** At most this many cells in one sweep. */
export const MAX_CELLS = 10_000_000;

// ---------------------------------------------------------------------------------------------
// Types

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

export interface Shard {
  index: number;
  count: number;
  /** Where the shard came from: "--shard", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX". */
  source: string;
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON, ids and seeds

/** JSON with object keys sorted (recursively): the canonical form ids are hashed from. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  return out;
}

/** A cell's id: 16 hex digits of SHA-256 over the canonical JSON of {command, params}. */
export function cellId(command: string, params: Record<string, unknown>): string {
  return idOfCanonical(command, canonicalJson(params));
}

/** `cellId` from the canonical JSON of the params ("command" sorts before "params"). */
function idOfCanonical(command: string, canonicalParams: string): string {
  return createHash('sha256').update(`{"command":${JSON.stringify(command)},"params":${canonicalParams}}`).digest('hex').slice(0, 16);
}

/** The seed of a cell without a `seed` parameter: 53 bits of SHA-256("<sweep seed>/<id>"). */
export function derivedSeed(sweepSeed: number, id: string): number {
  const hex = createHash('sha256').update(`${sweepSeed}/${id}`).digest('hex').slice(0, 14);
  return Number(BigInt(`0x${hex}`) >> 3n);
}

// ---------------------------------------------------------------------------------------------
// Reading and validating a sweep file

function invalid(source: string, field: string, reason: string, code = 'HH_INVALID_ARGUMENT'): HarmHorizonError {
  return new HarmHorizonError(code, `invalid sweep (${source}): ${field === '' ? '' : `${field}: `}${reason}`, field);
}

const show = (v: unknown) => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

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

/** Checks one parameter value; returns it normalised (widths become an array). */
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
    case 'widths': {
      const w = typeof value === 'number' ? [value] : value;
      if (!Array.isArray(w) || w.length < 1 || w.length > 2 || !w.every((x) => Number.isSafeInteger(x) && (x as number) >= 1)) {
        throw invalid(source, path, `${name} takes one or two widths like 32 or [32, 16], ${got}`);
      }
      return w;
    }
  }
}

/** Rounds generated grid values to 12 significant digits (readable, still deterministic). */
const round12 = (x: number) => (x === 0 ? 0 : Number(x.toPrecision(12)));

/** The values of one grid axis: a list, or a {log|linear|range: [...]} generator. */
function axisValues(source: string, command: SweepCommand, name: string, spec: unknown, path: string): unknown[] {
  paramSpec(source, command, name, path);
  if (Array.isArray(spec)) {
    if (spec.length === 0) throw invalid(source, path, 'empty list of values: a grid axis needs at least one');
    return spec.map((v, i) => checkValue(source, command, name, v, fieldPath(path, i)));
  }
  if (!isObject(spec)) throw invalid(source, path, `must be a list of values or {"log" | "linear" | "range": [...]}, got ${show(spec)} (a single value belongs in "fixed")`);
  const keys = Object.keys(spec);
  if (keys.length !== 1 || !GENERATORS.includes(keys[0]!)) {
    const bad = keys.find((key) => !GENERATORS.includes(key));
    const hint = bad === undefined ? undefined : suggest(bad, GENERATORS);
    throw invalid(source, bad === undefined ? path : fieldPath(path, bad), `a generator is one of {"log": [from, to, n]}, {"linear": [from, to, n]}, {"range": [start, stop]} or {"range": [start, stop, step]}${hint ? `; did you mean ${JSON.stringify(hint)}?` : ''}`);
  }
  const gen = keys[0]!;
  const args = spec[gen];
  const gpath = fieldPath(path, gen);
  const nums = (count: number[]) => {
    if (!Array.isArray(args) || !count.includes(args.length) || !args.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw invalid(source, gpath, `takes ${count.join(' or ')} finite numbers, got ${show(args)}`);
    }
    return args as number[];
  };
  let values: number[];
  if (gen === 'range') {
    const [start, stop, step = 1] = nums([2, 3]);
    if (![start, stop, step].every((x) => Number.isSafeInteger(x)) || step === 0) throw invalid(source, gpath, `start, stop and step must be whole numbers, step ≠ 0, got ${show(args)}`);
    const count = Math.max(0, Math.ceil((stop! - start!) / step));
    if (count === 0) throw invalid(source, gpath, `the range [${start}, ${stop}) is empty (stop is excluded)`);
    if (count > MAX_CELLS) throw invalid(source, gpath, `${count} values: more than the ${MAX_CELLS} cells a sweep may hold`);
    values = Array.from({ length: count }, (_, i) => start! + i * step);
  } else {
    const [from, to, n] = nums([3]);
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

/** Validates a parsed sweep file and expands its cells. `baseDir` resolves relative paths. */
/** `options`: the memory budget the cells' scenarios are checked against (default 4 GiB). */
export function parseSweep(json: unknown, source: string, baseDir: string, options: ScenarioOptions = {}): Sweep {
  if (!isObject(json)) throw invalid(source, '', `a sweep file is an object with command, scenario, grid and/or list; got ${show(json)}`);
  for (const key of Object.keys(json)) {
    if (!TOP_KEYS.includes(key)) {
      if (typeof json.command === 'string' && Object.hasOwn(SWEEP_PARAMETERS, json.command) && Object.hasOwn(commandParameters(json.command as SweepCommand), key)) {
        throw invalid(source, fieldPath('', key), `${key} is a parameter: put it in "fixed" (one value) or "grid" (values to sweep)`);
      }
      const hint = suggest(key, TOP_KEYS);
      throw invalid(source, fieldPath('', key), `unknown field${hint ? `; did you mean ${JSON.stringify(hint)}?` : ''} (fields: ${TOP_KEYS.filter((k) => k !== '$schema').join(', ')})`);
    }
  }
  const command = json.command;
  if (command === undefined) throw invalid(source, 'command', `missing: one of ${SWEEP_COMMANDS.join(', ')}`);
  if (typeof command !== 'string' || !(SWEEP_COMMANDS as readonly string[]).includes(command)) {
    throw invalid(source, 'command', `must be one of ${SWEEP_COMMANDS.join(', ')}, got ${show(command)}`);
  }
  const cmd = command as SweepCommand;
  const seed = json.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) throw invalid(source, 'seed', `the sweep seed must be a whole number ≥ 0, got ${show(seed)}`);

  // Scenarios (top level): a name or path, or a list of them.
  const scenarios: { value: string; path: string }[] = [];
  if (json.scenario !== undefined) {
    const list = Array.isArray(json.scenario) ? json.scenario : [json.scenario];
    if (list.length === 0) throw invalid(source, 'scenario', 'empty list: name at least one scenario');
    list.forEach((s, i) => {
      const path = Array.isArray(json.scenario) ? `scenario[${i}]` : 'scenario';
      if (typeof s !== 'string' || s === '') throw invalid(source, path, `a scenario is a built-in name (${builtinNames().join(', ')}) or a scenario file path, got ${show(s)}`);
      scenarios.push({ value: s, path });
    });
  }

  // fixed
  const fixed: Record<string, unknown> = {};
  const fixedSources: Record<string, string> = {};
  if (json.fixed !== undefined) {
    if (!isObject(json.fixed)) throw invalid(source, 'fixed', `must be an object of parameter values, got ${show(json.fixed)}`);
    for (const [k, v] of Object.entries(json.fixed)) {
      const path = fieldPath('fixed', k);
      if (k === 'scenario') throw invalid(source, path, 'set the scenario with the top-level "scenario" field');
      fixed[k] = checkValue(source, cmd, k, v, path);
      fixedSources[k] = path;
    }
  }

  // grid
  const axes: { name: string; values: unknown[]; path: string }[] = [];
  if (json.grid !== undefined) {
    if (!isObject(json.grid)) throw invalid(source, 'grid', `must be an object of parameter → values, got ${show(json.grid)}`);
    if (Object.keys(json.grid).length === 0) throw invalid(source, 'grid', 'empty grid: give at least one parameter and its values (or leave the grid out and give a list)');
    let total = Math.max(scenarios.length, 1);
    for (const [k, spec] of Object.entries(json.grid)) {
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
  if (json.list !== undefined) {
    if (!Array.isArray(json.list)) throw invalid(source, 'list', `must be a list of objects of parameter values, got ${show(json.list)}`);
    if (json.list.length === 0) throw invalid(source, 'list', 'empty list: give at least one cell (or leave the list out and give a grid)');
    json.list.forEach((item, i) => {
      const ipath = `list[${i}]`;
      if (!isObject(item)) throw invalid(source, ipath, `must be an object of parameter values, got ${show(item)}`);
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
  }
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

// ---------------------------------------------------------------------------------------------
// Sharding

/** Parses "i/n" (0 ≤ i < n). */
export function parseShard(text: string, source = '--shard'): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${source} must be i/n with 0 ≤ i < n (0-based), got ${JSON.stringify(text)}`, source);
  }
  return { index, count, source };
}

/**
 * The shard from the environment: a Slurm job array (SLURM_ARRAY_TASK_ID, with
 * SLURM_ARRAY_TASK_MIN (default 0), SLURM_ARRAY_TASK_STEP (default 1) and SLURM_ARRAY_TASK_COUNT, or
 * SLURM_ARRAY_TASK_MAX when COUNT is absent), or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with
 * the count from `shards`, else HH_SHARD_COUNT, else JOB_COMPLETIONS). Null when neither is set.
 */
export function shardFromEnv(env: NodeJS.ProcessEnv, shards?: number): Shard | null {
  const whole = (name: string, v: string | undefined, min: number): number => {
    const x = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isSafeInteger(x) || x < min) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${name} must be a whole number ≥ ${min}, got ${JSON.stringify(v)}`, name);
    return x;
  };
  const check = (shard: Shard, hint: string): Shard => {
    if (shard.index < 0 || shard.index >= shard.count || !Number.isSafeInteger(shard.index)) {
      throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${shard.source} gives shard ${shard.index} of ${shard.count}, outside 0..${shard.count - 1}: ${hint}`, shard.source);
    }
    return shard;
  };
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const id = whole('SLURM_ARRAY_TASK_ID', env.SLURM_ARRAY_TASK_ID, 0);
    const min = env.SLURM_ARRAY_TASK_MIN === undefined ? 0 : whole('SLURM_ARRAY_TASK_MIN', env.SLURM_ARRAY_TASK_MIN, 0);
    const step = env.SLURM_ARRAY_TASK_STEP === undefined ? 1 : whole('SLURM_ARRAY_TASK_STEP', env.SLURM_ARRAY_TASK_STEP, 1);
    let count: number;
    if (shards !== undefined) count = shards;
    else if (env.SLURM_ARRAY_TASK_COUNT !== undefined) count = whole('SLURM_ARRAY_TASK_COUNT', env.SLURM_ARRAY_TASK_COUNT, 1);
    else if (env.SLURM_ARRAY_TASK_MAX !== undefined) count = Math.floor((whole('SLURM_ARRAY_TASK_MAX', env.SLURM_ARRAY_TASK_MAX, 0) - min) / step) + 1;
    else throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is: pass --shards N or --shard i/n', 'SLURM_ARRAY_TASK_ID');
    return check({ index: (id - min) / step, count, source: 'SLURM_ARRAY_TASK_ID' }, 'use a contiguous array such as --array=0-N (or pass --shard i/n)');
  }
  if (env.JOB_COMPLETION_INDEX !== undefined) {
    const index = whole('JOB_COMPLETION_INDEX', env.JOB_COMPLETION_INDEX, 0);
    let count = shards;
    if (count === undefined && env.HH_SHARD_COUNT !== undefined) count = whole('HH_SHARD_COUNT', env.HH_SHARD_COUNT, 1);
    if (count === undefined && env.JOB_COMPLETIONS !== undefined) count = whole('JOB_COMPLETIONS', env.JOB_COMPLETIONS, 1);
    if (count === undefined) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'JOB_COMPLETION_INDEX is set but the number of shards is not: pass --shards N or set HH_SHARD_COUNT to the Job\'s completions', 'JOB_COMPLETION_INDEX');
    return check({ index, count, source: 'JOB_COMPLETION_INDEX' }, 'set HH_SHARD_COUNT (or --shards) to the Job\'s completions');
  }
  return null;
}

/** The cells of a shard, in expansion order: the cells whose position in id order is ≡ i (mod n). */
export function shardCells(cells: readonly Cell[], shard: Shard | null): Cell[] {
  if (!shard || shard.count === 1) return [...cells];
  const byId = [...cells].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const keep = new Set<number>();
  byId.forEach((c, position) => {
    if (position % shard.count === shard.index) keep.add(c.index);
  });
  return cells.filter((c) => keep.has(c.index));
}

/** Name of the results file of a shard (results.jsonl without sharding). */
export function resultsFileName(shard: Shard | null): string {
  return !shard || shard.count === 1 ? 'results.jsonl' : `results.shard-${shard.index}-of-${shard.count}.jsonl`;
}

// ---------------------------------------------------------------------------------------------
// Results files

export interface ResultLine {
  id: string;
  command: string;
  params: Record<string, unknown>;
  seed: number;
  result?: Record<string, unknown>;
  seconds?: number;
}

export interface ResultsScan {
  /** Bytes of the valid prefix (the file is cut back to this on resume). */
  validLength: number;
  fileLength: number;
  /** Text of the torn last line, when there is one. */
  torn: string | null;
}

function checkLine(text: string): ResultLine {
  let line: unknown;
  try {
    line = JSON.parse(text);
  } catch {
    throw new Error('not valid JSON');
  }
  const l = line as ResultLine;
  if (!isObject(line) || typeof l.id !== 'string' || typeof l.command !== 'string' || !isObject(l.params) || typeof l.seed !== 'number' || !isObject(l.result)) {
    throw new Error('not a result line ({"id", "command", "params", "seed", "result"})');
  }
  if (cellId(l.command, l.params) !== l.id) throw new Error(`its id ${l.id} does not match its params`);
  return l;
}

/**
 * Reads a results file in chunks, calling `onLine` for each valid line in file order. Only
 * newline-terminated lines count; the last line is "torn" when it has no newline or is not a valid
 * result line (a write cut short by a kill). A bad line before the last is corruption: refused with
 * the line number, the file untouched. Blank lines are skipped.
 */
export function scanResults(path: string, onLine: (line: ResultLine, text: string, number: number) => void): ResultsScan {
  if (!existsSync(path)) return { validLength: 0, fileLength: 0, torn: null };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot read the results file ${path}: ${(error as Error).message}`, path);
  }
  try {
    const fileLength = fstatSync(fd).size;
    const chunk = Buffer.allocUnsafe(4 << 20);
    let carry = Buffer.alloc(0);
    let offset = 0; // file offset of carry[0]
    let read = 0;
    let number = 0;
    let validLength = 0;
    while (read < fileLength) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, fileLength - read), read);
      if (n === 0) break;
      read += n;
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let pos = 0;
      for (let nl = buf.indexOf(10, pos); nl >= 0; nl = buf.indexOf(10, pos)) {
        number++;
        const text = buf.toString('utf8', pos, nl);
        const end = offset + nl + 1;
        if (text.trim() !== '') {
          let line: ResultLine;
          try {
            line = checkLine(text);
          } catch (error) {
            if (end === fileLength) return { validLength, fileLength, torn: text };
            throw new HarmHorizonError(
              'HH_INVALID_ARGUMENT',
              `results file ${path}, line ${number}: ${(error as Error).message}; the file is left untouched (move it away, or fix the line, to continue)`,
              path,
            );
          }
          onLine(line, text, number);
        }
        validLength = end;
        pos = nl + 1;
      }
      carry = Buffer.from(buf.subarray(pos));
      offset += pos;
    }
    return { validLength, fileLength, torn: carry.length > 0 ? carry.toString('utf8') : null };
  } catch (error) {
    if (error instanceof HarmHorizonError) throw error;
    throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot read the results file ${path}: ${(error as Error).message}`, path);
  } finally {
    closeSync(fd);
  }
}

/** Appends text to a results file with write + fsync; on failure cuts the file back to its last complete line. */
class ResultsWriter {
  readonly path: string;
  #fd: number;
  #size: number;

  constructor(path: string, validLength: number, fileLength: number) {
    this.path = path;
    try {
      this.#fd = openSync(path, 'a');
    } catch (error) {
      throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot open the results file ${path} for appending: ${(error as Error).message}`, '--out');
    }
    this.#size = validLength;
    if (fileLength > validLength) {
      try {
        ftruncateSync(this.#fd, validLength);
        fsyncSync(this.#fd);
      } catch (error) {
        closeSync(this.#fd);
        throw new HarmHorizonError('HH_WRITE_FAILED', `cannot remove the torn last line of ${path}: ${(error as Error).message}`, '--out');
      }
    }
  }

  append(text: string): void {
    const buf = Buffer.from(text, 'utf8');
    let off = 0;
    try {
      while (off < buf.length) off += writeSync(this.#fd, buf, off, buf.length - off);
      fsyncSync(this.#fd);
      this.#size += buf.length;
    } catch (error) {
      // Never leave a partial line behind: cut back to the last complete one.
      try {
        ftruncateSync(this.#fd, this.#size);
        fsyncSync(this.#fd);
      } catch {
        // The next run detects and removes a torn last line anyway.
      }
      const e = error as NodeJS.ErrnoException;
      const what = e.code === 'ENOSPC' ? 'the disk is full' : e.code === 'EDQUOT' ? 'the disk quota is exceeded' : e.message;
      throw new HarmHorizonError('HH_WRITE_FAILED', `cannot append to ${this.path}: ${what} (${e.code ?? 'error'}); every finished cell before this is kept — free space and run the sweep again to resume`, '--out');
    }
  }

  close(): void {
    try {
      closeSync(this.#fd);
    } catch {
      // already closed
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Running cells (in the workers)

interface WireCell {
  id: string;
  seed: number;
  params: Record<string, unknown>;
  scenarioKey: string;
}

interface WireResult {
  id: string;
  line?: string;
  error?: string;
  seconds: number;
}

/** The command parameters of a cell: its own, without the scenario-building ones, with its seed. */
function commandParams(command: SweepCommand, cell: WireCell, memoryBudgetBytes: number | undefined): Record<string, unknown> {
  const params: Record<string, unknown> = { scenario: cell.scenarioKey, seed: cell.seed };
  for (const [key, value] of Object.entries(cell.params)) if (key in SWEEP_PARAMETERS[command]) params[key] = value;
  if (memoryBudgetBytes !== undefined) params.memoryBudget = memoryBudgetBytes / 1024 ** 3;
  // A training cell evaluates the ASR curve once, at its last step.
  if (command === 'train') params.evalEvery = params.steps ?? cellCommands.train.params.steps.default;
  return params;
}

/** Runs cells: each is its command's declared run() (ts/commands/), on engines cached across cells. */
export class CellRunner {
  readonly command: SweepCommand;
  readonly baseDir: string;
  readonly #context: CommandContext;
  readonly #timing: boolean;
  readonly #memoryBudgetBytes?: number;

  constructor(command: SweepCommand, scenarios: Map<string, Scenario>, baseDir: string, timing = false, memoryBudgetBytes?: number) {
    this.command = command;
    this.baseDir = baseDir;
    this.#timing = timing;
    this.#memoryBudgetBytes = memoryBudgetBytes;
    this.#context = createContext({
      baseDir,
      resolveScenario: (key) => {
        const scenario = scenarios.get(key);
        if (!scenario) throw new HarmHorizonError('HH_INTERNAL', `unknown scenario configuration ${key}`);
        return scenario;
      },
    });
  }

  /** The result line of a cell (without the newline). */
  async line(cell: WireCell): Promise<{ line: string; seconds: number }> {
    const started = performance.now();
    const result = await this.run(cell);
    const seconds = (performance.now() - started) / 1000;
    const out: ResultLine = { id: cell.id, command: this.command, params: cell.params, seed: cell.seed, result };
    if (this.#timing) out.seconds = seconds;
    return { line: JSON.stringify(out), seconds };
  }

  /** The result of a cell: what `harm-horizon <command> … --json` prints for the same parameters. */
  async run(cell: WireCell): Promise<Record<string, unknown>> {
    const declaration: AnyCommand = cellCommands[this.command];
    const result = await declaration.run(completeParams(declaration.params, commandParams(this.command, cell, this.#memoryBudgetBytes)), this.#context);
    return result as Record<string, unknown>;
  }
}

const WORKER_KIND = 'harm-horizon-sweep-worker';

interface WorkerInit {
  kind: typeof WORKER_KIND;
  command: SweepCommand;
  baseDir: string;
  scenarios: [string, Scenario][];
  timing: boolean;
  memoryBudgetBytes?: number;
}

function startWorker(init: WorkerInit): void {
  const runner = new CellRunner(init.command, new Map(init.scenarios), init.baseDir, init.timing, init.memoryBudgetBytes);
  parentPort!.on('message', async (message: { cells: WireCell[] }) => {
    const done: WireResult[] = [];
    for (const cell of message.cells) {
      const started = performance.now();
      try {
        const { line, seconds } = await runner.line(cell);
        done.push({ id: cell.id, line, seconds });
      } catch (error) {
        const e = error as { code?: unknown; message?: unknown };
        const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
        done.push({ id: cell.id, error: `${code}${String(e?.message ?? error)}`, seconds: (performance.now() - started) / 1000 });
      }
    }
    parentPort!.postMessage({ done });
  });
}

if (!isMainThread && (workerData as WorkerInit | undefined)?.kind === WORKER_KIND) startWorker(workerData as WorkerInit);

// ---------------------------------------------------------------------------------------------
// Running a sweep (main thread)

export interface RunOptions {
  /** Output folder (must exist and be writable). */
  out: string;
  shard?: Shard | null;
  /** Worker threads (default: available parallelism). */
  workers?: number;
  /** Add each cell's compute time to its line. */
  timing?: boolean;
  /** Show the progress bar (default: when stderr is a terminal). */
  progress?: boolean;
  /** Polled between batches: when it returns a reason, dispatching stops and in-flight cells finish. */
  shouldStop?: () => string | null;
  /** Warnings (foreign lines, removed torn line) go here. */
  warn?: (message: string) => void;
  /** Memory budget of each cell's exact state space, in bytes (default 4 GiB; over it, sampled cells sample). */
  memoryBudgetBytes?: number;
}

export interface RunSummary {
  sweep: string;
  command: SweepCommand;
  /** Cells in the whole sweep. */
  sweepCells: number;
  shard: Shard | null;
  /** Cells of this shard. */
  cells: number;
  doneBefore: number;
  ran: number;
  failed: number;
  /** Cells not run because the sweep was stopped. */
  notRun: number;
  seconds: number;
  cellsPerSecond: number;
  workers: number;
  results: string;
  tornLineRemoved: boolean;
  /** Lines of the results file that are not cells of this sweep (kept as they are). */
  foreignLines: number;
  interrupted: string | null;
  failures: { id: string; params: Record<string, unknown>; error: string }[];
}

/** Runs (or resumes) a sweep's shard into `<out>/<results file>`. */
export async function runSweep(sweep: Sweep, options: RunOptions): Promise<RunSummary> {
  const shard = options.shard ?? null;
  const cells = shardCells(sweep.cells, shard);
  const path = join(options.out, resultsFileName(shard));
  const byId = new Map(sweep.cells.map((c) => [c.id, c]));
  const done = new Set<string>();
  let foreign = 0;
  const existing = scanResults(path, (line, _text, number) => {
    const cell = line.command === sweep.command ? byId.get(line.id) : undefined;
    if (!cell) {
      foreign++;
      return;
    }
    if (line.seed !== cell.seed) {
      throw new HarmHorizonError(
        'HH_INVALID_ARGUMENT',
        `results file ${path}, line ${number}: cell ${line.id} ran with seed ${line.seed} but this sweep gives it seed ${cell.seed} (was the sweep seed changed?); use another --out`,
        'seed',
      );
    }
    done.add(line.id);
  });
  const todo = cells.filter((c) => !done.has(c.id));
  const doneBefore = cells.length - todo.length;
  const writer = new ResultsWriter(path, existing.validLength, existing.fileLength);
  if (existing.fileLength > existing.validLength) options.warn?.(`removed a torn last line from ${path} (${existing.fileLength - existing.validLength} bytes); its cell runs again`);
  if (foreign > 0) options.warn?.(`${foreign} line${foreign === 1 ? '' : 's'} of ${path} ${foreign === 1 ? 'is not a cell' : 'are not cells'} of this sweep (kept as they are)`);

  const requested = options.workers ?? availableParallelism();
  const workerCount = Math.max(1, Math.min(requested, todo.length));
  const started = performance.now();
  const progress = new Progress('sweep', todo.length, options.progress ?? process.stderr.isTTY === true);
  const failures: RunSummary['failures'] = [];
  let failed = 0;
  let ran = 0;
  let interrupted: string | null = null;
  let fatal: unknown = null;

  try {
    if (todo.length > 0) {
      await new Promise<void>((resolveAll) => {
        const init: WorkerInit = {
          kind: WORKER_KIND,
          command: sweep.command,
          baseDir: sweep.baseDir,
          scenarios: [...sweep.scenarios],
          timing: options.timing === true,
          ...(options.memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes: options.memoryBudgetBytes }),
        };
        const pool: { worker: Worker; inflight: Cell[] | null; dead: boolean }[] = [];
        let next = 0;
        let cellSeconds = 0;
        let cellsTimed = 0;
        let deaths = 0;
        let finished = false;

        const finishIfIdle = () => {
          if (finished) return;
          if (pool.every((w) => w.inflight === null || w.dead)) {
            finished = true;
            for (const w of pool) void w.worker.terminate();
            resolveAll();
          }
        };
        const stopping = () => {
          if (fatal !== null) return true;
          if (interrupted === null) interrupted = options.shouldStop?.() ?? null;
          return interrupted !== null;
        };
        const batchSize = () => {
          const remaining = todo.length - next;
          const target = cellsTimed === 0 ? 1 : Math.floor(0.05 / Math.max(cellSeconds / cellsTimed, 1e-7));
          const fair = Math.ceil(remaining / (2 * workerCount));
          return Math.max(1, Math.min(target, 512, fair));
        };
        const dispatch = (slot: (typeof pool)[number]) => {
          if (slot.dead || stopping() || next >= todo.length) {
            slot.inflight = null;
            finishIfIdle();
            return;
          }
          const batch = todo.slice(next, next + batchSize());
          next += batch.length;
          slot.inflight = batch;
          slot.worker.postMessage({ cells: batch.map((c) => ({ id: c.id, seed: c.seed, params: c.params, scenarioKey: c.scenarioKey })) });
        };
        const spawn = (): (typeof pool)[number] => {
          const worker = new Worker(new URL(import.meta.url), { workerData: init, stdout: false, stderr: false });
          const slot = { worker, inflight: null as Cell[] | null, dead: false };
          worker.on('message', (message: { done: WireResult[] }) => {
            const lines: string[] = [];
            for (const r of message.done) {
              cellSeconds += r.seconds;
              cellsTimed++;
              if (r.line !== undefined) lines.push(r.line);
              else {
                failed++;
                const cell = byId.get(r.id)!;
                if (failures.length < 20) failures.push({ id: r.id, params: cell.params, error: r.error ?? 'failed' });
              }
            }
            if (lines.length > 0 && fatal === null) {
              try {
                writer.append(`${lines.join('\n')}\n`);
                ran += lines.length;
              } catch (error) {
                fatal = error;
              }
            }
            progress.tick(message.done.length, failed > 0 ? `${failed} failed` : '');
            dispatch(slot);
          });
          const onDeath = (reason: string) => {
            if (slot.dead) return;
            slot.dead = true;
            if (finished) return;
            for (const cell of slot.inflight ?? []) {
              failed++;
              if (failures.length < 20) failures.push({ id: cell.id, params: cell.params, error: `the worker stopped: ${reason}` });
            }
            slot.inflight = null;
            deaths++;
            if (deaths <= 2 * workerCount && !stopping() && next < todo.length) {
              const fresh = spawn();
              pool.push(fresh);
              dispatch(fresh);
            }
            finishIfIdle();
          };
          worker.on('error', (error) => onDeath(error.message));
          worker.on('exit', (code) => onDeath(`exit code ${code}`));
          return slot;
        };
        for (let w = 0; w < workerCount; w++) pool.push(spawn());
        for (const slot of [...pool]) dispatch(slot);
      });
    }
  } finally {
    progress.finish();
    writer.close();
  }
  if (fatal !== null) throw fatal;
  const seconds = (performance.now() - started) / 1000;
  return {
    sweep: sweep.source,
    command: sweep.command,
    sweepCells: sweep.cells.length,
    shard,
    cells: cells.length,
    doneBefore,
    ran,
    failed,
    notRun: todo.length - ran - failed,
    seconds,
    cellsPerSecond: seconds > 0 ? ran / seconds : 0,
    workers: workerCount,
    results: path,
    tornLineRemoved: existing.fileLength > existing.validLength,
    foreignLines: foreign,
    interrupted,
    failures,
  };
}

// ---------------------------------------------------------------------------------------------
// Merging shard files

export interface MergeReport {
  sweep: string;
  files: string[];
  cells: number;
  present: number;
  /** Identical copies of a line found more than once (dropped). */
  identicalDuplicates: number;
  missing: { id: string; params: Record<string, unknown> }[];
  /** Cells with two different lines. */
  conflicting: { id: string; params: Record<string, unknown>; files: string[] }[];
  /** Lines whose cell is not in the sweep. */
  unexpected: { id: string; params: Record<string, unknown>; file: string }[];
  /** Files whose last line was torn (ignored). */
  tornFiles: string[];
  out: string;
  complete: boolean;
}

const comparable = (line: ResultLine) => {
  const { seconds: _seconds, ...rest } = line;
  return canonicalJson(rest);
};

/** Joins results files against a sweep; writes the merged lines (sweep order) to `out`. */
export function mergeResults(sweep: Sweep, files: string[], out: string): MergeReport {
  const byId = new Map(sweep.cells.map((c) => [c.id, c]));
  const found = new Map<string, { text: string; key: string; file: string }>();
  const conflicts = new Map<string, Set<string>>();
  const unexpected: MergeReport['unexpected'] = [];
  const tornFiles: string[] = [];
  let identical = 0;
  for (const file of files) {
    if (!existsSync(file)) throw new HarmHorizonError('HH_FILE_NOT_FOUND', `no results file ${file}`, file);
    const r = scanResults(file, (line, text) => {
      const cell = line.command === sweep.command ? byId.get(line.id) : undefined;
      if (!cell) {
        unexpected.push({ id: line.id, params: line.params, file });
        return;
      }
      const key = comparable(line);
      const prior = found.get(line.id);
      if (!prior) found.set(line.id, { text, key, file });
      else if (prior.key === key) identical++;
      else {
        const set = conflicts.get(line.id) ?? new Set([prior.file]);
        set.add(file);
        conflicts.set(line.id, set);
      }
    });
    if (r.torn !== null) tornFiles.push(file);
  }
  const missing = sweep.cells.filter((c) => !found.has(c.id)).map((c) => ({ id: c.id, params: c.params }));
  const conflicting = [...conflicts].map(([id, set]) => ({ id, params: byId.get(id)!.params, files: [...set] }));
  const text = sweep.cells
    .filter((c) => found.has(c.id) && !conflicts.has(c.id))
    .map((c) => `${found.get(c.id)!.text}\n`)
    .join('');
  // Whole or not at all (temporary file, fsync, rename): `out` may be one of the inputs.
  writeAtomic(out, text);
  return {
    sweep: sweep.source,
    files,
    cells: sweep.cells.length,
    present: found.size - conflicting.length,
    identicalDuplicates: identical,
    missing,
    conflicting,
    unexpected,
    tornFiles,
    out,
    complete: missing.length === 0 && conflicting.length === 0 && unexpected.length === 0,
  };
}
