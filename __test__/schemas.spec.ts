// The published schemas are the ones the code checks with, accept what the code writes, and every
// format refuses a wrongly typed field naming its path.
import test, { type ExecutionContext } from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { publishedSchemas } from '../scripts/schemas.ts';
import { ExactEngine } from '../ts/index.js';
import { HarmHorizonError } from '../ts/core/errors.js';
import { builtinScenario, compileScenario, parseScenario, scenarioToJson } from '../ts/scenario/index.js';
import { ScenarioFileSchema } from '../ts/scenario/types.js';
import { PolicyFileSchema, policyFromJson, policyToJson } from '../ts/io/policy-file.js';
import { firstSchemaError, pointerToField } from '../ts/io/schema-check.js';
import { LOG_FORMAT, LogRecordSchema, parseLog, type LogRecord } from '../ts/logs/format.js';
import { convert } from '../ts/logs/import.js';
import { toyRolloutLog } from '../ts/logs/toy-runner.js';
import { parseSweep, parseSweepText } from '../ts/sweep/spec.js';
import { SweepFileSchema } from '../ts/sweep/spec-schema.js';
import type { Policy } from '../ts/core/policy.js';

for (const [name, text] of Object.entries(publishedSchemas())) {
  test(`schema/${name} is the generated schema (run \`npm run schemas\` after changing the format)`, (t) => {
    t.is(readFileSync(new URL(`../schema/${name}`, import.meta.url), 'utf8'), text);
  });
}

test('every kind of policy file written by policyToJson conforms to the schema and reads back', (t) => {
  const horizon = compileScenario(builtinScenario('horizon'));
  const V = horizon.tokens.length;
  const policies: Policy[] = [
    { kind: 'base' },
    { kind: 'gibbs', lambda: 2.5 },
    { kind: 'tabular', logits: Float64Array.from({ length: horizon.length * 2 * V }, (_, i) => (i === 3 ? -Infinity : Math.cos(i))) },
    { kind: 'mlp', mlp: { order: 1, hidden: [3, 2], activation: 'relu' }, params: Float64Array.from([0.5, -1, 2]) },
    { kind: 'transformer', transformer: { layers: 1, width: 4, heads: 2, mlpWidth: 8 }, params: Float64Array.from([1, 2]) },
  ];
  for (const p of policies) {
    const file = JSON.parse(JSON.stringify(policyToJson(p, horizon, 2)));
    t.true(Value.Check(PolicyFileSchema, file), p.kind);
    t.deepEqual(policyFromJson(file, horizon, 2), p);
  }
  t.false(Value.Check(PolicyFileSchema, { ...policyToJson({ kind: 'gibbs', lambda: 1 }, horizon), lambda: -1 }));
});

test('JSON Pointers map to the field paths used in error messages', (t) => {
  t.is(pointerToField(''), '');
  t.is(pointerToField('/mlp/hidden/0'), 'mlp.hidden[0]');
  t.is(pointerToField('/logits/2'), 'logits[2]');
  t.is(pointerToField('/base/a~1b c'), 'base["a/b c"]');
});

// ---------------------------------------------------------------------------------------------
// Every format: a wrong type is refused with the field's path, and what the code writes conforms.

/** The error `fn` throws: its field (the path into the file) and message. */
function refusal(t: ExecutionContext, fn: () => unknown): { field: string; message: string } {
  const error = t.throws(fn, { instanceOf: HarmHorizonError }) as HarmHorizonError & { field: string };
  return { field: error.field, message: error.message };
}

test('scenario: a wrong type anywhere is refused with its path', (t) => {
  const cases: [(j: any) => void, string, RegExp][] = [
    [(j) => (j.harm.transitions.count0.step = 3), 'harm.transitions.count0.step', /expected a string, got the number 3/],
    [(j) => (j.defaults.mu = 'x'), 'defaults.mu', /expected a number, got the string "x"/],
    [(j) => (j.recoveryTokens = 'Sorry'), 'recoveryTokens', /expected an array, got the string "Sorry"/],
    [(j) => (j.base['<bos>'] = { Sure: '1' }), 'base["<bos>"]["Sure"]', /expected a probability \(number\), got the string "1"/],
  ];
  for (const [mutate, field, reason] of cases) {
    const j = scenarioToJson(builtinScenario('refusal')) as any;
    mutate(j);
    const r = refusal(t, () => parseScenario(j, 'x.json'));
    t.is(r.field, field);
    t.regex(r.message, reason, field);
  }
});

test('sweep file: a wrong type anywhere is refused with its path', (t) => {
  const base = { command: 'analyze', scenario: 'refusal' };
  const cases: [unknown, string, RegExp][] = [
    [{ ...base, grid: { lambda: { log: [1, '10', 3] } } }, 'grid.lambda.log[1]', /expected a number, got the string "10"/],
    [{ ...base, seed: 'one', grid: { lambda: [1] } }, 'seed', /expected an integer ≥ 0, got the string "one"/],
    [{ ...base, list: [3] }, 'list[0]', /must be an object of parameter values, got the number 3/],
    [{ ...base, scenario: ['refusal', 7], grid: { lambda: [1] } }, 'scenario[1]', /expected a string, got the number 7/],
    [{ ...base, grid: { lambda: { log: [1, 10, 3], linear: [1, 2, 3] } } }, 'grid.lambda', /a generator is one of/],
  ];
  for (const [body, field, reason] of cases) {
    const r = refusal(t, () => parseSweep(body, 'inline', '.'));
    t.is(r.field, field);
    t.regex(r.message, reason, field);
  }
});

test('rollout log: a wrong type in any record is refused with its line, record and path', (t) => {
  const header = {
    type: 'header',
    format: LOG_FORMAT,
    version: 1,
    models: [
      { id: 'aligned', logprobs: 'raw', temperature: 1 },
      { id: 'base', logprobs: 'raw', temperature: 1 },
    ],
    policy: 'aligned',
    reference: 'base',
    judge: { name: 'test', scores: 'soft' },
  };
  const prompt = { type: 'prompt', id: 'p', text: 'hi', tokens: [0] };
  const sample = { type: 'sample', id: 's', prompt: 'p', model: 'base', tokens: [1, 2], logprobs: { aligned: [-1, -0.5], base: [-0.2, null] }, harm: 0.5 };
  const rollout = { type: 'rollout', id: 'r', sample: 's', depth: 1, set: 0, model: 'base', harms: [0.25] };
  const log = (...records: unknown[]) => records.map((r) => JSON.stringify(r)).join('\n');
  t.is(parseLog(log(header, prompt, sample, rollout)).rollouts.length, 1);
  const cases: [string, string, RegExp][] = [
    [log({ ...header, models: [{ ...header.models[0], temperature: '1' }, header.models[1]] }), 'models[0].temperature', /line 1: models\[0\]\.temperature: expected a number, got the string "1"/],
    [log({ ...header, judge: { name: 'j', scores: 'binary', extra: 1 } }), 'judge.extra', /unknown key "extra"/],
    [log(header, prompt, { ...sample, harm: 'yes' }), 'harm', /line 3 \(sample "s"\): harm: must be a harm score in \[0, 1\], got "yes"/],
    [log(header, prompt, { ...sample, logprobs: { aligned: [-1, '-0.5'], base: [-0.2, null] } }), 'logprobs.aligned[1]', /must be a log-probability .*got "-0\.5"/],
    [log(header, prompt, sample, { ...rollout, depth: 1.5 }), 'depth', /line 4 \(rollout "r"\): depth: must be an integer ≥ 0, got 1\.5/],
    [log(header, { ...prompt, tokens: [0, -1] }), 'tokens[1]', /line 2 \(prompt "p"\): tokens\[1\]: must be an integer ≥ 0, got -1/],
  ];
  for (const [text, field, reason] of cases) {
    const r = refusal(t, () => parseLog(text, 'x.jsonl'));
    t.is(r.field, field);
    t.regex(r.message, reason, field);
  }
});

test('policy file: a wrong type is refused with its path', (t) => {
  const horizon = compileScenario(builtinScenario('horizon'));
  const file = policyToJson({ kind: 'mlp', mlp: { order: 1, hidden: [3], activation: 'tanh' }, params: Float64Array.from([1]) }, horizon) as any;
  file.mlp.hidden[0] = 'wide';
  const r = refusal(t, () => policyFromJson(file, horizon));
  t.is(r.field, 'mlp.hidden[0]');
  t.regex(r.message, /expected an integer ≥ 1, got the string "wide"/);
});

test('import: a provider line of the wrong shape is refused with its path and what to do', (t) => {
  const header = JSON.stringify({ type: 'header', format: LOG_FORMAT, version: 1, models: [{ id: 'policy', logprobs: 'raw', temperature: 1 }, { id: 'reference', logprobs: 'raw', temperature: 1 }], policy: 'policy', reference: 'reference', judge: { name: 'j', scores: 'soft' } });
  const vllm = { id: 'v1', model: 'policy', harm: 0, output: { prompt_token_ids: [1], outputs: [{ token_ids: 'abc', logprobs: [] }] } };
  const a = refusal(t, () => convert('vllm', `${header}\n${JSON.stringify(vllm)}`, 'in.jsonl'));
  t.is(a.field, 'output.outputs[0].token_ids');
  t.regex(a.message, /line 2 \(sample "v1"\): output\.outputs\[0\]\.token_ids: expected an array, got the string "abc"/);
  const openai = { id: 'o1', model: 'policy', harm: 0, completion: { choices: [{ logprobs: null }] } };
  const b = refusal(t, () => convert('openai', `${header}\n${JSON.stringify(openai)}`, 'in.jsonl'));
  t.is(b.field, 'completion.choices[0].logprobs');
  t.regex(b.message, /missing \(request with logprobs: true\)/);
  const hf = { id: 'h1', model: 'policy', harm: 0, token_ids: [1], logprobs: { policy: [-1], reference: [true] }, prompt_token_ids: [1] };
  const c = refusal(t, () => convert('hf', `${header}\n${JSON.stringify(hf)}`, 'in.jsonl'));
  t.is(c.field, 'logprobs.reference[0]');
});

test('what the code writes and the examples conform to the published schemas; a broken copy does not', (t) => {
  const scenarios = [...['refusal', 'horizon', 'random'].map((n) => scenarioToJson(builtinScenario(n)))];
  for (const s of scenarios) t.true(Value.Check(ScenarioFileSchema, s), String(s.name));
  t.false(Value.Check(ScenarioFileSchema, { ...scenarios[0], length: '16' }));

  const examples = new URL('../examples/sweeps/', import.meta.url);
  const sweeps = readdirSync(examples).map((f) => [f, parseSweepText(readFileSync(new URL(f, examples), 'utf8'), f)] as const);
  t.true(sweeps.length > 0);
  for (const [name, body] of sweeps) t.true(Value.Check(SweepFileSchema, body), name);
  t.false(Value.Check(SweepFileSchema, { ...(sweeps[0]![1] as object), grid: { lambda: 1 } }));

  const scenario = compileScenario(builtinScenario('refusal'));
  const records: LogRecord[] = [];
  toyRolloutLog(scenario, new ExactEngine(scenario), { lambda: 1, samples: 4, rollouts: 2, depths: [0, 1], seed: 1 }, (r) => records.push(r));
  t.deepEqual([...new Set(records.map((r) => r.type))].sort(), ['header', 'prefill', 'prompt', 'rollout', 'sample']);
  for (const r of records) t.true(Value.Check(LogRecordSchema, JSON.parse(JSON.stringify(r))), `${r.type} ${'id' in r ? r.id : ''}`);
  t.false(Value.Check(LogRecordSchema, { ...records[0], version: 2 }));
});

test('schema-check: a union reports the branch that got furthest, a repeat at its second place, an unknown key with a suggestion', (t) => {
  const schema = Type.Object(
    {
      row: Type.Union([Type.Array(Type.Number({ minimum: 0 })), Type.Record(Type.String(), Type.Number())]),
      names: Type.Array(Type.String(), { uniqueItems: true }),
    },
    { additionalProperties: false },
  );
  t.deepEqual(firstSchemaError(schema, { row: [1, -2], names: [] }), { path: ['row', 1], field: 'row[1]', reason: 'must be ≥ 0, got -2' });
  t.deepEqual(firstSchemaError(schema, { row: { a: 'x' }, names: [] })?.field, 'row.a');
  t.deepEqual(firstSchemaError(schema, { row: 'x', names: [] })?.reason, 'does not match any accepted form, got the string "x"');
  t.deepEqual(firstSchemaError(schema, { row: [], names: ['a', 'b', 'a'] }), { path: ['names', 2], field: 'names[2]', reason: 'duplicate item "a" (same as names[0])' });
  t.regex(firstSchemaError(schema, { row: [], names: [], nmes: [] })?.reason ?? '', /^unknown key "nmes" \(did you mean "names"\?\); allowed keys: row, names$/);
  t.is(firstSchemaError(schema, { row: [0], names: ['a'] }), undefined);
});

test('scenario: an optional field set to undefined (from the API) counts as absent', (t) => {
  const j = scenarioToJson(builtinScenario('refusal')) as any;
  j.defaults = { lambda: undefined, mu: 3 };
  j.description = undefined;
  j.contextOrder = undefined;
  const s = parseScenario(j);
  t.deepEqual(s.defaults, { lambda: 1, mu: 3, gamma: 1 });
  t.is(s.contextOrder, 1);
  t.false('description' in s);
});
