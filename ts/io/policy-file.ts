/**
 * The policy file format: a trained or initialised policy saved as JSON, re-usable by every command.
 *
 *     {
 *       "format": "harm-horizon-policy",
 *       "version": 1,
 *       "kind": "base" | "gibbs" | "tabular" | "mlp" | "transformer",
 *       "scenario": { "name": "refusal", "vocab": 5, "length": 16, "states": 26 },
 *       "lambda": 5,                                   // gibbs
 *       "mlp": { "order": 1, "hidden": [32], "activation": "tanh" },   // mlp
 *       "transformer": { "layers": 1, "width": 16, "heads": 2, "mlpWidth": 32 },   // transformer
 *       "params": [ … ],                                // mlp, transformer: the flat parameter vector
 *       "logits": [ … ]                                 // tabular: T × S × V logits
 *     }
 *
 * `scenario` records what the policy was built for; loading checks V and T against the scenario
 * (and S for tabular policies, whose logits are indexed by exact state). Numbers are written as
 * JSON numbers, which round-trip doubles exactly; -Infinity logits (tokens a tabular policy never
 * emits) are written as null.
 */
import { readFileSync } from 'node:fs';
import type { CompiledScenario } from '../scenario/compiled.js';
import { HarmHorizonError } from '../core/errors.js';
import { writeAtomic } from './files.js';
import type { Policy } from '../core/policy.js';

export const POLICY_FORMAT = 'harm-horizon-policy';

export interface PolicyFile {
  format: typeof POLICY_FORMAT;
  version: 1;
  kind: Policy['kind'];
  scenario: { name: string; vocab: number; length: number; states?: number };
  lambda?: number;
  mlp?: { order: number; hidden: number[]; activation: string };
  transformer?: { layers: number; width: number; heads: number; mlpWidth: number };
  params?: (number | null)[];
  logits?: (number | null)[];
}

function invalid(field: string, reason: string, source?: string): HarmHorizonError {
  const where = source ? ` (${source})` : '';
  return new HarmHorizonError('HH_POLICY_INVALID', `invalid policy file${where}: ${field}: ${reason}`, field);
}

/** The file object of a policy for a scenario (`states`: S of the exact model, for tabular policies). */
export function policyToJson(policy: Policy, scenario: CompiledScenario, states?: number): PolicyFile {
  const file: PolicyFile = {
    format: POLICY_FORMAT,
    version: 1,
    kind: policy.kind,
    scenario: { name: scenario.name, vocab: scenario.tokens.length, length: scenario.length },
  };
  if (states !== undefined) file.scenario.states = states;
  const numbers = (a: Float64Array) => Array.from(a, (x) => (Number.isFinite(x) ? x : null));
  if (policy.kind === 'gibbs') file.lambda = policy.lambda;
  if (policy.kind === 'tabular') file.logits = numbers(policy.logits);
  if (policy.kind === 'mlp') {
    file.mlp = { ...policy.mlp, hidden: [...policy.mlp.hidden] };
    file.params = numbers(policy.params);
  }
  if (policy.kind === 'transformer') {
    file.transformer = { ...policy.transformer };
    file.params = numbers(policy.params);
  }
  return file;
}

/** Writes a policy file atomically (a failed write leaves no partial file). */
export function savePolicy(path: string, policy: Policy, scenario: CompiledScenario, states?: number): void {
  writeAtomic(path, JSON.stringify(policyToJson(policy, scenario, states)));
}

/**
 * Reads a policy file object, checking it against the scenario it will be used with. Tabular logits
 * must have T × S × V entries, S being the scenario's exact state count (`states`).
 */
export function policyFromJson(json: unknown, scenario: CompiledScenario, states?: number, source?: string): Policy {
  const fail = (field: string, reason: string) => invalid(field, reason, source);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw fail('', 'expected a JSON object');
  const f = json as Record<string, unknown>;
  if (f.format !== POLICY_FORMAT) throw fail('format', `must be "${POLICY_FORMAT}"`);
  if (f.version !== 1) throw fail('version', `unsupported version ${JSON.stringify(f.version)} (this build reads 1)`);
  const sc = f.scenario as Record<string, unknown> | undefined;
  if (typeof sc !== 'object' || sc === null) throw fail('scenario', 'missing');
  if (sc.vocab !== scenario.tokens.length) throw fail('scenario.vocab', `policy built for V = ${sc.vocab}, the scenario has V = ${scenario.tokens.length}`);
  if (sc.length !== scenario.length) throw fail('scenario.length', `policy built for T = ${sc.length}, the scenario has T = ${scenario.length}`);
  const vector = (field: 'params' | 'logits', allowNull: boolean): Float64Array => {
    const a = f[field];
    if (!Array.isArray(a)) throw fail(field, 'must be an array of numbers');
    const out = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) {
      const x = a[i];
      if (x === null && allowNull) out[i] = -Infinity;
      else if (typeof x !== 'number' || !Number.isFinite(x)) throw fail(`${field}[${i}]`, `must be a finite number, got ${JSON.stringify(x)}`);
      else out[i] = x;
    }
    return out;
  };
  switch (f.kind) {
    case 'base':
      return { kind: 'base' };
    case 'gibbs': {
      if (typeof f.lambda !== 'number' || !(f.lambda >= 0) || !Number.isFinite(f.lambda)) throw fail('lambda', 'must be a finite number ≥ 0');
      return { kind: 'gibbs', lambda: f.lambda };
    }
    case 'tabular': {
      const logits = vector('logits', true);
      if (states !== undefined) {
        const expected = scenario.length * states * scenario.tokens.length;
        if (logits.length !== expected) throw fail('logits', `${logits.length} entries, expected T × S × V = ${expected} for this scenario`);
      }
      return { kind: 'tabular', logits };
    }
    case 'mlp': {
      const m = f.mlp as Record<string, unknown> | undefined;
      if (typeof m !== 'object' || m === null) throw fail('mlp', 'missing');
      if (!Number.isInteger(m.order) || (m.order as number) < 1) throw fail('mlp.order', 'must be a whole number ≥ 1');
      if (!Array.isArray(m.hidden) || m.hidden.length < 1 || m.hidden.length > 2 || !m.hidden.every((h) => Number.isInteger(h) && h >= 1))
        throw fail('mlp.hidden', 'must list one or two widths ≥ 1');
      if (m.activation !== 'tanh' && m.activation !== 'relu') throw fail('mlp.activation', 'must be "tanh" or "relu"');
      return { kind: 'mlp', mlp: { order: m.order as number, hidden: m.hidden as number[], activation: m.activation }, params: vector('params', false) };
    }
    case 'transformer': {
      const m = f.transformer as Record<string, unknown> | undefined;
      if (typeof m !== 'object' || m === null) throw fail('transformer', 'missing');
      for (const field of ['layers', 'width', 'heads', 'mlpWidth']) {
        if (!Number.isInteger(m[field]) || (m[field] as number) < 1) throw fail(`transformer.${field}`, 'must be a whole number ≥ 1');
      }
      const layout = { layers: m.layers as number, width: m.width as number, heads: m.heads as number, mlpWidth: m.mlpWidth as number };
      return { kind: 'transformer', transformer: layout, params: vector('params', false) };
    }
    default:
      throw fail('kind', `must be base, gibbs, tabular, mlp or transformer, got ${JSON.stringify(f.kind)}`);
  }
}

export function loadPolicy(path: string, scenario: CompiledScenario, states?: number): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'HH_FILE_NOT_FOUND' : 'HH_POLICY_INVALID';
    throw new HarmHorizonError(code, `cannot read policy file ${path}: ${(error as Error).message}`, '');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw invalid('', `not valid JSON: ${(error as Error).message}`, path);
  }
  return policyFromJson(json, scenario, states, path);
}
