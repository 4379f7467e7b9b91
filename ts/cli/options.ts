/** Options shared by several commands, declared once: the memory budget of the exact state space. */
import { InvalidArgumentError, Option } from 'commander';

/** A parser of numbers > 0 for the option `name`. */
export function positive(name: string) {
  return (value: string) => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isFinite(x) || x <= 0) throw new InvalidArgumentError(`${name} must be a finite number > 0.`);
    return x;
  };
}

/** `--memory-budget <GiB>`, default 4: every command that builds an exact state space takes it. */
export const memoryBudgetOption = () =>
  new Option('--memory-budget <GiB>', 'refuse state spaces needing more memory than this').default(4).argParser(positive('--memory-budget'));

/** The scenario options of a --memory-budget value (GiB): the bytes, and the name messages give the budget. */
export function memoryBudget(gib: number): { memoryBudgetBytes: number; memoryBudgetName: string } {
  return { memoryBudgetBytes: gib * 1024 ** 3, memoryBudgetName: '--memory-budget' };
}
