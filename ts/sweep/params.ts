/**
 * The commands a sweep runs and the parameters each accepts. A sweep parameter is a declared
 * parameter of the cell's command (ts/commands/), with its check and help text, so a newly declared
 * parameter is sweepable as it is; besides them, the parameters that build a cell's scenario, and
 * the seed and replicate of every cell.
 */
import { cellCommands } from '../commands/cells.js';
import type { Param, Params } from '../commands/declare.js';

export const SWEEP_COMMANDS = Object.keys(cellCommands) as (keyof typeof cellCommands)[];
export type SweepCommand = keyof typeof cellCommands;

type Kind =
  | { type: 'number'; min?: number; max?: number; above?: number; text: string }
  | { type: 'integer'; min: number }
  | { type: 'enum'; choices: readonly string[] }
  | { type: 'file' }
  | { type: 'boolean' }
  /** A list (a JSON array, or one number): `read` checks and normalises it. */
  | { type: 'list'; must: string; read: (value: unknown) => unknown };

export interface ParamSpec {
  kind: Kind;
  doc: string;
  /** Only for the `random` scenario. */
  random?: boolean;
}

const nonNegative = (doc: string): ParamSpec => ({ kind: { type: 'number', min: 0, text: 'a finite number ≥ 0' }, doc });
const wholeAtLeast = (min: number, doc: string): ParamSpec => ({ kind: { type: 'integer', min }, doc });

/** Parameters every command takes: scenario-level ones and the seed. */
export const COMMON: Record<string, ParamSpec> = {
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

/**
 * Declared parameters a sweep does not take: the scenario (the sweep's own field), the seed (above),
 * the memory budget (the sweep command's flag), train's run folder (cells write no run folders) and
 * its evaluation period (a cell evaluates once, at its last step).
 */
const NOT_SWEPT = new Set(['scenario', 'seed', 'memoryBudget', 'out', 'evalEvery']);

/** The sweep's check of a declared parameter: its type in a JSON or YAML file, bounds and choices. */
function kindOf(param: Param<unknown>): Kind {
  switch (param.kind) {
    case 'number':
      return param.maxAbs !== undefined
        ? { type: 'number', min: -param.maxAbs, max: param.maxAbs, text: param.must }
        : { type: 'number', min: param.min, above: param.above, max: param.max, text: param.must };
    case 'integer':
      return { type: 'integer', min: param.min ?? 0 };
    case 'enum':
      return { type: 'enum', choices: param.choices ?? [] };
    case 'flag':
      return { type: 'boolean' };
    case 'string':
      return { type: 'file' };
    case 'list':
      return { type: 'list', must: param.must, read: (value) => param.read(value) };
  }
}

/** The help text of a declared parameter, with its default. */
const docOf = (param: Param<unknown>) => (param.default === undefined ? param.help : `${param.help} (default ${JSON.stringify(param.default)})`);

/** The sweep parameters of a command's declared parameters. */
export function sweepParameters(declared: Params): Record<string, ParamSpec> {
  const params: Record<string, ParamSpec> = {};
  for (const [key, param] of Object.entries(declared)) {
    if (!NOT_SWEPT.has(key)) params[key] = { kind: kindOf(param), doc: docOf(param) };
  }
  return params;
}

/** The parameters of each command (besides the common ones): its declared ones. */
export const SWEEP_PARAMETERS = Object.fromEntries(SWEEP_COMMANDS.map((command) => [command, sweepParameters(cellCommands[command].params)])) as Record<SweepCommand, Record<string, ParamSpec>>;

/** Every parameter a command accepts, with its spec. */
export function commandParameters(command: SweepCommand): Record<string, ParamSpec> {
  return { ...SWEEP_PARAMETERS[command], ...COMMON };
}
