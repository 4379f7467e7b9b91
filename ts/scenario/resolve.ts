/** Turning a command-line scenario argument (a built-in name or a file path) into a scenario. */
import { existsSync, statSync } from 'node:fs';
import { builtinNames, builtinScenario, loadScenarioFile, ScenarioError, type Scenario, type ScenarioOptions } from './index.js';

export interface ResolveOptions extends ScenarioOptions {
  /** Seed of the `random` scenario (ignored by the others). */
  seed?: number;
}

/**
 * A built-in name (`refusal`, `horizon`, `random`, or a generated random name such as
 * `random(seed=3,V=16,n=2,T=64,D=50)`), else a path to a scenario JSON file.
 */
export function resolveScenario(arg: string, options: ResolveOptions = {}): Scenario {
  const isBuiltin = builtinNames().includes(arg) || arg.startsWith('random(');
  const isFile = existsSync(arg) && statSync(arg).isFile();
  if (isBuiltin && !isFile) {
    // --seed picks the bare `random` scenario; a full name such as random(seed=2,…) fixes its own.
    const { seed, ...rest } = options;
    return builtinScenario(arg, arg === 'random' && seed !== undefined ? { ...rest, seed } : rest);
  }
  if (!isFile) {
    throw new ScenarioError('', `no built-in scenario and no file named ${JSON.stringify(arg)} (built-ins: ${builtinNames().join(', ')})`, {
      code: 'HH_FILE_NOT_FOUND',
      source: arg,
    });
  }
  return loadScenarioFile(arg, options);
}
