/**
 * The policy file format: a trained or initialised policy saved as JSON, re-usable by every command.
 *
 *     {
 *       "format": "harm-horizon-policy",
 *       "version": 1,
 *       "kind": "base" | "gibbs" | "tabular" | "mlp" | "transformer" | "lazy-tabular",
 *       "scenario": { "name": "refusal", "vocab": 5, "length": 16, "states": 26 },
 *       "lambda": 5,                                   // gibbs
 *       "mlp": { "order": 1, "hidden": [32], "activation": "tanh" },   // mlp
 *       "transformer": { "layers": 1, "width": 16, "heads": 2, "mlpWidth": 32 },   // transformer
 *       "params": [ … ],                                // mlp, transformer: the flat parameter vector
 *       "logits": [ … ],                                // tabular: T × S × V logits
 *       "entries": [ { "t": 1, "context": 42, "state": 0, "logits": [ … ] }, … ]   // lazy-tabular
 *     }
 *
 * A lazy-tabular file is sparse: one entry per stored row, keyed by position t, scenario context and
 * automaton state, with V logits; every other row is the base. It needs no exact state index, so
 * it is the tabular policy of scenarios too large to enumerate.
 *
 * `scenario` records what the policy was built for; loading checks V and T against the scenario
 * (and S for tabular policies, whose logits are indexed by exact state). Numbers are written as
 * JSON numbers, which round-trip doubles exactly; -Infinity logits (tokens a tabular policy never
 * emits) are written as null.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { readFileSync } from 'node:fs';
import type { CompiledScenario } from '../scenario/compiled.js';
import { HarmHorizonError } from '../core/errors.js';
import { writeAtomic } from './files.js';
import type { Policy } from '../core/policy.js';
import { firstSchemaError } from './schema-check.js';

export const POLICY_FORMAT = 'harm-horizon-policy';

// The format, declared once: the TS type, the runtime check and schema/policy.schema.json all come
// from these TypeBox schemas (which are JSON Schemas).

const WholeNumber = Type.Integer({ minimum: 1 });
/** A flat vector of numbers; `null` stands for −∞ where allowed. */
const Numbers = Type.Array(Type.Number());
const NumbersOrNull = Type.Array(Type.Union([Type.Number(), Type.Null()]));
const KINDS = ['base', 'gibbs', 'tabular', 'mlp', 'transformer', 'lazy-tabular'] as const;

const header = {
  format: Type.Literal(POLICY_FORMAT),
  version: Type.Literal(1),
  scenario: Type.Object(
    {
      name: Type.String(),
      vocab: WholeNumber,
      length: WholeNumber,
      states: Type.Optional(WholeNumber),
    },
    { description: 'What the policy was built for; loading checks V and T (and S for tabular policies) against the scenario.' },
  ),
};

/** The fields every policy file has, `kind` being any of the kinds: checked first, so that a wrong
 *  kind is reported as such rather than as a mismatch with every branch. */
const PolicyHeaderSchema = Type.Object({ ...header, kind: Type.Union(KINDS.map((k) => Type.Literal(k))) });

const BY_KIND = {
  base: Type.Object({ ...header, kind: Type.Literal('base') }),
  gibbs: Type.Object({ ...header, kind: Type.Literal('gibbs'), lambda: Type.Number({ minimum: 0 }) }),
  tabular: Type.Object({ ...header, kind: Type.Literal('tabular'), logits: NumbersOrNull }, { description: 'logits: T × S × V, null for −∞' }),
  mlp: Type.Object({
    ...header,
    kind: Type.Literal('mlp'),
    mlp: Type.Object({
      order: WholeNumber,
      hidden: Type.Array(WholeNumber, { minItems: 1, maxItems: 2 }),
      activation: Type.Union([Type.Literal('tanh'), Type.Literal('relu')]),
    }),
    params: Numbers,
  }),
  transformer: Type.Object({
    ...header,
    kind: Type.Literal('transformer'),
    transformer: Type.Object({ layers: WholeNumber, width: WholeNumber, heads: WholeNumber, mlpWidth: WholeNumber }),
    params: Numbers,
  }),
  'lazy-tabular': Type.Object(
    {
      ...header,
      kind: Type.Literal('lazy-tabular'),
      entries: Type.Array(
        Type.Object({
          t: Type.Integer({ minimum: 1, maximum: 2 ** 32 - 1 }),
          context: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
          state: Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 }),
          logits: NumbersOrNull,
        }),
      ),
    },
    { description: 'entries: the stored rows, keyed by position t, scenario context and automaton state (V logits each, null for −∞); every other row is the base' },
  ),
} satisfies Record<(typeof KINDS)[number], TSchema>;

export const PolicyFileSchema = Type.Union(Object.values(BY_KIND), {
  $id: 'urn:harm-horizon:policy.schema.json',
  title: 'harm-horizon policy file',
  description:
    'A trained or initialised policy saved as JSON (see ts/io/policy-file.ts). Beyond this shape, loading checks that vocab and length match the scenario and that tabular logits have T × S × V entries.',
});

export type PolicyFile = Static<typeof PolicyFileSchema>;

function invalid(field: string, reason: string, source?: string): HarmHorizonError {
  const where = source ? ` (${source})` : '';
  return new HarmHorizonError('HH_POLICY_INVALID', `invalid policy file${where}: ${field}: ${reason}`, field);
}

/** The file object of a policy for a scenario (`states`: S of the exact model, for tabular policies). */
export function policyToJson(policy: Policy, scenario: CompiledScenario, states?: number): PolicyFile {
  const head = {
    format: POLICY_FORMAT as typeof POLICY_FORMAT,
    version: 1 as const,
    scenario: { name: scenario.name, vocab: scenario.tokens.length, length: scenario.length, ...(states !== undefined ? { states } : {}) },
  };
  const numbers = (a: Float64Array) => Array.from(a, (x) => (Number.isFinite(x) ? x : null));
  switch (policy.kind) {
    case 'base':
      return { ...head, kind: 'base' };
    case 'gibbs':
      return { ...head, kind: 'gibbs', lambda: policy.lambda };
    case 'tabular':
      return { ...head, kind: 'tabular', logits: numbers(policy.logits) };
    case 'mlp':
      return { ...head, kind: 'mlp', mlp: { ...policy.mlp, hidden: [...policy.mlp.hidden] }, params: Array.from(policy.params) };
    case 'transformer':
      return { ...head, kind: 'transformer', transformer: { ...policy.transformer }, params: Array.from(policy.params) };
    case 'lazy-tabular': {
      const { positions, contexts, automata, logits } = policy.rows;
      const v = scenario.tokens.length;
      const entries = Array.from(positions, (t, i) => ({ t, context: contexts[i]!, state: automata[i]!, logits: numbers(logits.subarray(i * v, (i + 1) * v)) }));
      return { ...head, kind: 'lazy-tabular', entries };
    }
  }
}

/** Writes a policy file atomically (a failed write leaves no partial file). */
export function savePolicy(path: string, policy: Policy, scenario: CompiledScenario, states?: number): void {
  writeAtomic(path, JSON.stringify(policyToJson(policy, scenario, states)));
}

/**
 * Reads a policy file object, checking it against the scenario it will be used with. The shape is
 * checked by the schema; by hand only what depends on the scenario: V, T, and for tabular logits
 * T × S × V entries, S being the scenario's exact state count (`states`).
 */
export function policyFromJson(json: unknown, scenario: CompiledScenario, states?: number, source?: string): Policy {
  const fail = (field: string, reason: string) => invalid(field, reason, source);
  const shapeError = firstSchemaError(PolicyHeaderSchema, json) ?? firstSchemaError(BY_KIND[(json as { kind: (typeof KINDS)[number] }).kind], json);
  if (shapeError) throw fail(shapeError.field, shapeError.reason);
  const f = json as PolicyFile;
  if (f.scenario.vocab !== scenario.tokens.length) throw fail('scenario.vocab', `policy built for V = ${f.scenario.vocab}, the scenario has V = ${scenario.tokens.length}`);
  if (f.scenario.length !== scenario.length) throw fail('scenario.length', `policy built for T = ${f.scenario.length}, the scenario has T = ${scenario.length}`);
  switch (f.kind) {
    case 'base':
      return { kind: 'base' };
    case 'gibbs':
      return { kind: 'gibbs', lambda: f.lambda };
    case 'tabular': {
      const logits = Float64Array.from(f.logits, (x) => (x === null ? -Infinity : x));
      if (states !== undefined) {
        const expected = scenario.length * states * scenario.tokens.length;
        if (logits.length !== expected) throw fail('logits', `${logits.length} entries, expected T × S × V = ${expected} for this scenario`);
      }
      return { kind: 'tabular', logits };
    }
    case 'mlp':
      return { kind: 'mlp', mlp: { ...f.mlp, hidden: [...f.mlp.hidden] }, params: Float64Array.from(f.params) };
    case 'transformer':
      return { kind: 'transformer', transformer: { ...f.transformer }, params: Float64Array.from(f.params) };
    case 'lazy-tabular': {
      const v = scenario.tokens.length;
      const logits = new Float64Array(f.entries.length * v);
      f.entries.forEach((e, i) => {
        if (e.logits.length !== v) throw fail(`entries[${i}].logits`, `${e.logits.length} logits, expected V = ${v}`);
        logits.set(e.logits.map((x) => (x === null ? -Infinity : x)), i * v);
      });
      const rows = {
        positions: Uint32Array.from(f.entries, (e) => e.t),
        contexts: Float64Array.from(f.entries, (e) => e.context),
        automata: Uint32Array.from(f.entries, (e) => e.state),
        logits,
      };
      return { kind: 'lazy-tabular', rows };
    }
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
