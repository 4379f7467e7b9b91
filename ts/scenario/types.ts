/** The scenario as the library holds it (and its file format), and the options that govern reading one. */
import { Type, type Static } from '@sinclair/typebox';
import { withReasons } from '../io/schema-check.js';
import { describe } from './check.js';

// The scenario file, declared once: the TS types, the structural check (validate.ts runs it first)
// and schema/scenario.schema.json all come from these TypeBox schemas (which are JSON Schemas).

/** A token name: non-empty, no spaces (context keys join tokens with spaces), not "<bos>". */
const tokenName = (description?: string) =>
  withReasons(Type.String({ minLength: 1, pattern: '^(?!<bos>$)[^ ]+$', ...(description ? { description } : {}) }), {
    pattern: (v) =>
      v === BOS
        ? `"${BOS}" is reserved for the start-of-response padding and cannot be a token`
        : `token names must not contain spaces (context keys join tokens with spaces), got ${JSON.stringify(v)}`,
  });
const StateName = Type.String({ minLength: 1 });
const Probability = withReasons(Type.Number({ minimum: 0, maximum: 1 }), {
  type: (v) => `expected a probability (number), got ${describe(v)}`,
  range: (v) => `probability must be ${(v as number) < 0 ? '≥ 0' : '≤ 1'}, got ${v}`,
});
const Row = withReasons(
  Type.Union([Type.Array(Probability, { minItems: 1 }), Type.Record(Type.String(), Probability)], {
    description: 'Either an array of V probabilities in token order, or an object {token: probability} where unlisted tokens get 0. Must sum to 1 within 1e-9.',
  }),
  {
    type: (v, root) => {
      const tokens = (root as { tokens?: unknown }).tokens;
      const V = Array.isArray(tokens) ? `${tokens.length} ` : '';
      return `a row must be an array of ${V}probabilities or an object {token: probability}, got ${describe(v)}`;
    },
  },
);

const HarmAutomatonSchema = Type.Object(
  {
    states: withReasons(Type.Array(StateName, { minItems: 1, uniqueItems: true, description: 'Automaton state names, index = state id.' }), {
      minItems: () => 'must list at least 1 state',
      unique: () => 'duplicate state',
    }),
    start: Type.String({ minLength: 1, description: 'Start state (one of states).' }),
    values: Type.Record(
      Type.String(),
      withReasons(Type.Number({ minimum: 0, maximum: 1 }), { range: (v) => `harm value must be in [0, 1], got ${v}` }),
      { description: 'Harm per state in [0, 1]; unlisted states have harm 0.' },
    ),
    transitions: Type.Record(Type.String(), Type.Record(Type.String(), StateName), {
      description: 'Per state: token -> next state. Unlisted tokens keep the state; unlisted states keep their state on every token.',
    }),
  },
  { additionalProperties: false, description: 'The harm automaton: H(y) = values[final state].' },
);

const ScenarioDefaultsSchema = Type.Object(
  {
    lambda: Type.Number({ minimum: 0, default: 1, description: 'Harm weight λ (default 1).' }),
    mu: Type.Number({ minimum: 0, default: 10, description: 'Recovery penalty μ (default 10).' }),
    gamma: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 1, description: 'Recovery weight decay γ in (0, 1] (default 1).' }),
  },
  { additionalProperties: false, description: "Documented defaults of the scenario's parameters." },
);

const scenarioFields = {
  name: Type.String({ minLength: 1, description: 'Scenario name, used in reports.' }),
  description: Type.Optional(Type.String({ description: 'Free text.' })),
  tokens: withReasons(
    Type.Array(tokenName(), {
      minItems: 1,
      uniqueItems: true,
      description: 'The vocabulary, index = token id: distinct non-empty names without spaces; "<bos>" is reserved.',
    }),
    { minItems: () => 'must list at least 1 token', unique: () => 'duplicate token' },
  ),
  length: Type.Integer({ minimum: 1, description: 'Response length T (number of positions).' }),
  endToken: Type.Optional(tokenName('Name of the end token (one of tokens). After it the response emits nothing.')),
  contextOrder: Type.Integer({ minimum: 1, default: 1, description: 'Context order n: the base model conditions on the last n tokens. Default 1.' }),
  recoveryTokens: withReasons(Type.Array(tokenName(), { uniqueItems: true, default: [], description: 'Recovery tokens R (each one of tokens), e.g. ["Sorry"]. Default [].' }), {
    unique: () => 'duplicate recovery token',
  }),
  base: Type.Record(Type.String(), Row, {
    // Not checked at run time (TypeBox ignores propertyNames): the loader's own context-key check
    // says more (how many parts, which token is unknown, why a context is unreachable).
    propertyNames: { pattern: '^[^ ]+( [^ ]+)*$' },
    description:
      'Base conditionals: one row per reachable context that has not ended. Key: the last n tokens joined by a single space, padded on the left with "<bos>" (order 1: "<bos>", "Sure"; order 2: "<bos> <bos>", "<bos> a", "a b").',
  }),
  harm: HarmAutomatonSchema,
  defaults: ScenarioDefaultsSchema,
};

/** The scenario file as written: contextOrder, recoveryTokens and defaults may be left out. */
export const ScenarioFileSchema = withReasons(
  Type.Object(
    {
      $schema: Type.Optional(Type.String({ description: 'Optional reference to this schema (ignored by the loader).' })),
      ...scenarioFields,
      contextOrder: Type.Optional(scenarioFields.contextOrder),
      recoveryTokens: Type.Optional(scenarioFields.recoveryTokens),
      defaults: Type.Optional(Type.Partial(ScenarioDefaultsSchema)),
    },
    {
      additionalProperties: false,
      $id: 'urn:harm-horizon:scenario.schema.json',
      title: 'harm-horizon scenario',
      description:
        'A harm-horizon scenario: tokens, response length, end token, context order, base conditionals per context and a harm automaton. See docs/scenario-format.md. This schema checks the shape of a file; the loader (parseScenario) additionally checks what a schema cannot express: that every token or state named exists, that each row has one probability per token and sums to 1 within 1e-9, that context keys are reachable and every reachable context has a row, and that the state space fits the memory budget.',
    },
  ),
  { type: (v) => `a scenario must be a JSON object, got ${describe(v)}` },
);
export type ScenarioFile = Static<typeof ScenarioFileSchema>;

/** A validated scenario, in canonical form (every field explicit, rows as arrays of V probabilities
 *  in canonical context order: by number of tokens in the context, then token order). It is itself
 *  a valid scenario file object. */
const ScenarioSchema = Type.Object({ ...scenarioFields, base: Type.Record(Type.String(), Type.Array(Type.Number())) });
export type Scenario = Static<typeof ScenarioSchema>;
export type HarmAutomaton = Static<typeof HarmAutomatonSchema>;
export type ScenarioDefaults = Static<typeof ScenarioDefaultsSchema>;

export interface ScenarioOptions {
  /** Memory budget for the exact engines, in bytes (default 4 GiB). A scenario whose estimated
   *  engine memory exceeds it is refused. Use Infinity to disable the check. */
  memoryBudgetBytes?: number;
  /** How the budget is named in messages (default "memoryBudgetBytes"; the CLI says "--memory-budget"). */
  memoryBudgetName?: string;
  /** Monte Carlo only: the budget bounds the base table alone, and the exact engine is tried
   *  separately (and skipped when it does not fit), so a scenario too large for it is still accepted. */
  samplingOnly?: boolean;
}

export interface RandomScenarioOptions {
  /** Seed (safe integer ≥ 0 or bigint), default 1. */
  seed?: number | bigint;
  /** Vocabulary size V, default 8. */
  vocab?: number;
  /** Context order n, default 1. */
  order?: number;
  /** Response length T, default 16. */
  length?: number;
  /** Number of automaton states D (≥ 2), default 8. */
  states?: number;
  /** Standard deviation σ of the logits, default 1.5. */
  sigma?: number;
  /** If true the last token is "<eos>" and is the end token. Default false. */
  endToken?: boolean;
}

/** Size estimate of a scenario's exact state space (see docs/scenario-format.md, "Size limits"). */
export interface ScenarioSizeEstimate {
  /** Contexts that exact states can have (depths 0..T, ended ones included). */
  reachableContexts: number;
  /** Automaton states D. */
  automatonStates: number;
  /** Σ_{t=0..T} V^t (number of token sequences of length ≤ T). */
  sequenceBound: number;
  /** Upper bound on the number S of exact states: min(reachableContexts · D, sequenceBound). */
  stateBound: number;
  /** Estimated engine memory in bytes: 3·(T+1)·S·8 + S·V·16. */
  engineBytes: number;
  /** Size of the compiled base table in bytes: (V+1)^n · V · 8. */
  baseBytes: number;
}


export const DEFAULT_MEMORY_BUDGET_BYTES = 4 * 1024 * 1024 * 1024;
export const BOS = '<bos>';
/** Tolerance on row sums. */
export const ROW_SUM_TOLERANCE = 1e-9;
