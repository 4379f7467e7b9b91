/** `scenario list`, `scenario show` and `scenario validate`. */
import { ExactEngine } from '../core/exact.js';
import { builtinNames, builtinScenario, compileScenario, ScenarioError, scenarioToJson } from '../scenario/index.js';
import { resolveScenario } from '../scenario/resolve.js';
import { declareCommand, string } from './declare.js';
import { isBadInput } from './exit-codes.js';
import { budgetOf, memoryBudget, seed } from './options.js';

export interface ScenarioListRow {
  name: string;
  tokens: number;
  length: number;
  description: string;
}

export const scenarioList = declareCommand({
  name: 'scenario list',
  description: 'list the built-in scenarios',
  params: {},
  async run(): Promise<ScenarioListRow[]> {
    return builtinNames().map((name) => {
      const s = builtinScenario(name);
      return { name, tokens: s.tokens.length, length: s.length, description: s.description ?? '' };
    });
  },
  render: (rows) => rows.map((r) => `${r.name.padEnd(10)} V=${r.tokens}, T=${r.length}  ${r.description}`).join('\n'),
});

export const scenarioShow = declareCommand({
  name: 'scenario show',
  description: 'print a scenario in the scenario file format',
  params: {
    scenario: string('scenario', 'a built-in scenario or a scenario JSON file', { positional: true, required: true }),
    seed: seed('seed of the random scenario'),
  },
  helpAfter: '\nExamples:\n  $ harm-horizon scenario show horizon --json > horizon.json\n  $ harm-horizon scenario show random --seed 3 --json',
  async run(p): Promise<Record<string, unknown>> {
    return scenarioToJson(resolveScenario(p.scenario, { seed: p.seed }));
  },
  // The scenario file format is JSON: the table view is the file too.
  render: (file) => JSON.stringify(file, null, 2),
});

export type ValidateResult = { valid: true; name: string; tokens: number; length: number; states: number } | { valid: false; errors: { path: string; message: string }[] };

/** The error behind an invalid verdict, for the exit code and the message on stderr. */
const verdictErrors = new WeakMap<object, Error>();

export const scenarioValidate = declareCommand({
  name: 'scenario validate',
  description: 'check a scenario file; exit 0 if valid, 2 with the bad field named if not',
  params: {
    file: string('file', 'a scenario JSON file', { positional: true, required: true }),
    memoryBudget: memoryBudget(),
  },
  async run(p): Promise<ValidateResult> {
    const budget = budgetOf(p.memoryBudget);
    try {
      const s = resolveScenario(p.file, budget);
      const states = new ExactEngine(compileScenario(s, budget), budget).numStates;
      return { valid: true, name: s.name, tokens: s.tokens.length, length: s.length, states };
    } catch (error) {
      if (!isBadInput(error)) throw error;
      const verdict: ValidateResult = { valid: false, errors: [{ path: error.field ?? '', message: error instanceof ScenarioError ? error.reason : error.message }] };
      verdictErrors.set(verdict, error);
      return verdict;
    }
  },
  // An invalid file's message is the CLI's error line on stderr.
  render: (r) => (r.valid ? `valid (${r.name}: V = ${r.tokens}, T = ${r.length}, ${r.states} exact states)` : ''),
  failure: (r) => verdictErrors.get(r),
});
