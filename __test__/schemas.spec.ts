// The published schemas are the ones the code checks with, and accept what the code writes.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import { publishedSchemas } from '../scripts/schemas.ts';
import { builtinScenario, compileScenario } from '../ts/scenario/index.js';
import { PolicyFileSchema, policyFromJson, policyToJson } from '../ts/io/policy-file.js';
import { pointerToField } from '../ts/io/schema-check.js';
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
