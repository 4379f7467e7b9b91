/** Parameters several commands share, declared once. */
import { builtinNames } from '../scenario/index.js';
import { integer, number, string } from './declare.js';

/** The scenario argument: a built-in name or a scenario file. */
export const scenarioArg = () => string('scenario', `a built-in scenario (${builtinNames().join(', ')}) or a scenario JSON file`, { positional: true, required: true });

/** `--memory-budget <GiB>`, default 4: every command that builds an exact state space takes it. */
export const memoryBudget = () => number('--memory-budget <GiB>', 'refuse state spaces needing more memory than this', { default: 4, above: 0 });

/** `--seed <S>` with a command's own meaning and default. */
export const seed = <const D extends number | undefined = undefined>(help: string, defaultSeed?: D) =>
  integer('--seed <S>', help, (defaultSeed === undefined ? {} : { default: defaultSeed }) as D extends number ? { default: number } : {});

/** `--policy <file>`: a policy file (default: the base model). */
export const policyFile = (help = 'a policy file (default: the base model)') => string('--policy <file>', help);

/** λ, μ, γ of the objectives; each defaults to the scenario's. */
export const objectiveWeights = () => ({
  lambda: number('--lambda <L>', 'λ (default: the scenario\'s)', { min: 0 }),
  mu: number('--mu <M>', 'μ of the recovery penalty (default: the scenario\'s)', { min: 0 }),
  gamma: number('--gamma <G>', 'γ of the weights w_t = γ^(t−1) (default: the scenario\'s)', { above: 0, max: 1 }),
});

/** The scenario options of a --memory-budget value (GiB): the bytes, and the name messages give the budget. */
export function budgetOf(gib: number): { memoryBudgetBytes: number; memoryBudgetName: string } {
  return { memoryBudgetBytes: gib * 1024 ** 3, memoryBudgetName: '--memory-budget' };
}
