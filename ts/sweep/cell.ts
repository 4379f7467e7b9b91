/**
 * Running one cell: its command's declared run() (ts/commands/) on the cell's parameters, with the
 * engines and policies cached across the cells a worker runs. A cell's result is what
 * `harm-horizon <command> … --json` prints for the same parameters.
 */
import { cellCommands } from '../commands/cells.js';
import { createContext, type CommandContext } from '../commands/context.js';
import { completeParams, type AnyCommand } from '../commands/declare.js';
import { HarmHorizonError } from '../core/errors.js';
import type { Scenario } from '../scenario/index.js';
import { SWEEP_PARAMETERS, type SweepCommand } from './params.js';
import type { ResultLine } from './results.js';

/** A cell as the main thread posts it to a worker. */
export interface WireCell {
  id: string;
  seed: number;
  params: Record<string, unknown>;
  scenarioKey: string;
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

/** Runs cells: each is its command's declared run(), on engines cached across cells. */
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
