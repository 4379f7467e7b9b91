/**
 * The sweep file's shape, declared once in TypeBox: the TS type, the structural check that
 * parseSweep runs first, and schema/sweep-spec.schema.json. Parameter values are checked after it
 * against the command's parameter table (params.ts), and the rest by hand: generators that give no
 * values, cells a command refuses, scenarios that do not load.
 */
import { Type, type Static } from '@sinclair/typebox';
import { describe, didYouMean } from '../scenario/check.js';
import { builtinNames } from '../scenario/index.js';
import { withReasons } from '../io/schema-check.js';
import { commandParameters, SWEEP_COMMANDS, SWEEP_PARAMETERS, type SweepCommand } from './params.js';

const FIELDS = ['name', 'description', 'command', 'scenario', 'seed', 'grid', 'list', 'fixed'];
const GENERATORS = '{"log": [from, to, n]}, {"linear": [from, to, n]}, {"range": [start, stop]} or {"range": [start, stop, step]}';

/** Parameter → value; values are checked against the command's parameters, not here. */
const ParameterValues = (what: string) =>
  withReasons(Type.Record(Type.String(), Type.Unknown(), { description: what }), {
    type: (v) => `must be an object of parameter values, got ${describe(v)}`,
  });

const ScenarioName = Type.String({ minLength: 1 });

const Generator = withReasons(
  Type.Object(
    {
      log: Type.Optional(Type.Array(Type.Number(), { minItems: 3, maxItems: 3, description: '[from, to, n]: n values evenly spaced in log (from, to > 0)' })),
      linear: Type.Optional(Type.Array(Type.Number(), { minItems: 3, maxItems: 3, description: '[from, to, n]: n evenly spaced values' })),
      range: Type.Optional(Type.Array(Type.Integer(), { minItems: 2, maxItems: 3, description: '[start, stop] or [start, stop, step]: whole numbers, stop excluded' })),
    },
    { additionalProperties: false, minProperties: 1, maxProperties: 1, description: 'Generated values of a grid axis.' },
  ),
  { minProperties: () => `a generator is one of ${GENERATORS}`, maxProperties: () => `a generator is one of ${GENERATORS}` },
);

const Axis = withReasons(
  Type.Union([
    withReasons(Type.Array(Type.Unknown(), { minItems: 1, description: 'The values of the axis.' }), {
      minItems: () => 'empty list of values: a grid axis needs at least one',
    }),
    Generator,
  ]),
  { type: (v) => `must be a list of values or {"log" | "linear" | "range": [...]}, got ${describe(v)} (a single value belongs in "fixed")` },
);

export const SweepFileSchema = withReasons(
  Type.Object(
    {
      $schema: Type.Optional(Type.String({ description: 'Optional reference to this schema (ignored).' })),
      name: Type.Optional(Type.String({ description: 'Free text, ignored.' })),
      description: Type.Optional(Type.String({ description: 'Free text, ignored.' })),
      command: withReasons(Type.Union(SWEEP_COMMANDS.map((c) => Type.Literal(c)), { description: 'The command every cell runs.' }), {
        type: (v) => `must be one of ${SWEEP_COMMANDS.join(', ')}, got ${describe(v)}`,
      }),
      scenario: Type.Optional(
        withReasons(
          Type.Union(
            [
              ScenarioName,
              withReasons(Type.Array(ScenarioName, { minItems: 1 }), { minItems: () => 'empty list: name at least one scenario' }),
            ],
            { description: 'A built-in name (refusal, horizon, random, random(seed=3,V=16,n=2,T=64,D=50)) or a scenario file path relative to the sweep file; a list makes the scenario an axis of the grid.' },
          ),
          { type: (v) => `a scenario is a built-in name (${builtinNames().join(', ')}) or a scenario file path, or a list of them, got ${describe(v)}` },
        ),
      ),
      seed: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0, description: 'The sweep seed: per-cell seeds derive from it.' })),
      fixed: Type.Optional(ParameterValues('Parameter values shared by every cell.')),
      grid: Type.Optional(
        withReasons(Type.Record(Type.String(), Axis, { minProperties: 1, description: 'Parameter → values: the cells are the product over all axes (and the scenarios).' }), {
          type: (v) => `must be an object of parameter → values, got ${describe(v)}`,
          minProperties: () => 'empty grid: give at least one parameter and its values (or leave the grid out and give a list)',
        }),
      ),
      list: Type.Optional(
        withReasons(
          Type.Array(ParameterValues('One cell: parameter values, optionally with its own scenario; overrides fixed.'), {
            minItems: 1,
            description: 'Extra cells, one object each.',
          }),
          {
            type: (v) => `must be a list of objects of parameter values, got ${describe(v)}`,
            minItems: () => 'empty list: give at least one cell (or leave the list out and give a grid)',
          },
        ),
      ),
    },
    {
      additionalProperties: false,
      $id: 'urn:harm-horizon:sweep-spec.schema.json',
      title: 'harm-horizon sweep file',
      description:
        'A sweep: one command run over the cells of a grid and/or a list (see docs/sweeps.md). Beyond this shape, the sweep reader checks every parameter value against the command (names, types, ranges), that generators give values, that every cell has a scenario that loads, and the combinations the command refuses.',
    },
  ),
  {
    type: (v) => `a sweep file is an object with command, scenario, grid and/or list; got ${describe(v)}`,
    unknownKey: (key, root) => {
      const command = (root as { command?: unknown }).command;
      const isCommand = typeof command === 'string' && Object.hasOwn(SWEEP_PARAMETERS, command);
      if (isCommand && Object.hasOwn(commandParameters(command as SweepCommand), key as string)) {
        return `${key} is a parameter: put it in "fixed" (one value) or "grid" (values to sweep)`;
      }
      return `unknown field${didYouMean(key as string, FIELDS)} (fields: ${FIELDS.join(', ')})`;
    },
  },
);

export type SweepFile = Static<typeof SweepFileSchema>;
