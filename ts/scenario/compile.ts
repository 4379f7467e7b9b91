/** Compilation of a validated scenario to the numeric tables the engines consume. */
import type { CompiledScenario } from './compiled.js';
import { isPlainObject } from './check.js';
import type { Scenario, ScenarioOptions } from './types.js';
import { validate } from './validate.js';

/**
 * Compiles a scenario to the numeric form the engines consume. The scenario is validated again
 * (so hand-built objects are checked too). Each row is normalised to sum to 1 by dividing by its
 * sum; rows of unreachable and ended contexts are zero.
 */
export function compileScenario(s: Scenario, options?: ScenarioOptions): CompiledScenario {
  const { scenario, dims, tokenIndex, stateIndex, contextIds } = validate(
    s,
    isPlainObject(s) && typeof s.name === 'string' ? `scenario ${JSON.stringify(s.name)}` : undefined,
    options,
  );
  const { V, n, D } = dims;
  const base = new Float64Array(Math.pow(V + 1, n) * V);
  for (const [key, row] of Object.entries(scenario.base)) {
    const ids = contextIds.get(key)!;
    let c = 0;
    for (const id of ids) c = c * (V + 1) + (id < 0 ? V : id);
    let sum = 0;
    for (const x of row) sum += x;
    for (let a = 0; a < V; a++) base[c * V + a] = row[a]! / sum;
  }
  const transitions = new Uint32Array(D * V);
  for (let d = 0; d < D; d++) for (let a = 0; a < V; a++) transitions[d * V + a] = d;
  for (const [from, row] of Object.entries(scenario.harm.transitions)) {
    const d = stateIndex.get(from)!;
    for (const [tok, to] of Object.entries(row)) transitions[d * V + tokenIndex.get(tok)!] = stateIndex.get(to)!;
  }
  const harm = new Float64Array(D);
  for (const [st, v] of Object.entries(scenario.harm.values)) harm[stateIndex.get(st)!] = v;
  return {
    name: scenario.name,
    tokens: [...scenario.tokens],
    length: scenario.length,
    endToken: dims.end,
    order: n,
    base,
    automatonStates: [...scenario.harm.states],
    transitions,
    harm,
    start: stateIndex.get(scenario.harm.start)!,
    recovery: scenario.recoveryTokens.map((t) => tokenIndex.get(t)!),
    defaults: { ...scenario.defaults },
  };
}
