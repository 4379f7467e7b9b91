import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  builtinNames,
  builtinScenario,
  compileScenario,
  estimateScenarioSize,
  formatPath,
  jsonErrorPosition,
  loadScenarioFile,
  parseScenario,
  parseScenarioText,
  randomScenario,
  ScenarioError,
  scenarioToJson,
} from '../ts/scenario/index.js';
import type { Scenario, ScenarioErrorCode } from '../ts/scenario/index.js';
import { SplitMix64, softmax, splitMix64Reference } from '../ts/scenario/random.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const examplesDir = join(root, 'examples', 'scenarios');
const EXAMPLES = ['three-token.json', 'order2.json'];
const e = 1e-4;

/** A fresh, mutable copy of the refusal scenario in file format. */
function refusalJson(): any {
  return JSON.parse(JSON.stringify(scenarioToJson(builtinScenario('refusal'))));
}

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'hh-scenario-'));
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Asserts that `fn` throws a ScenarioError for `field` whose reason matches `reason`. */
function refuses(t: ExecutionContext, fn: () => unknown, field: string, reason: RegExp, code: ScenarioErrorCode = 'HH_SCENARIO_INVALID'): ScenarioError {
  const err = t.throws(fn, { instanceOf: ScenarioError }) as ScenarioError;
  t.is(err.code, code);
  t.is(err.field, field);
  t.regex(err.reason, reason);
  if (field !== '') t.true(err.message.includes(field), `message ${JSON.stringify(err.message)} names ${field}`);
  t.true(err.message.includes(err.reason));
  return err;
}

/** Mutates a copy of the refusal scenario and asserts the mutation is refused. */
function refusesMutation(t: ExecutionContext, mutate: (j: any) => void, field: string, reason: RegExp): ScenarioError {
  const j = refusalJson();
  mutate(j);
  return refuses(t, () => parseScenario(j, 'test.json'), field, reason);
}

function closeTo(t: ExecutionContext, actual: ArrayLike<number>, expected: number[], tol = 1e-15): void {
  t.is(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    t.true(Math.abs(actual[i]! - expected[i]!) <= tol, `entry ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

function row(c: { base: Float64Array; tokens: string[] }, ctx: number): number[] {
  const V = c.tokens.length;
  return Array.from(c.base.subarray(ctx * V, ctx * V + V));
}

// ---------------------------------------------------------------------------------------------
// Built-ins

test('builtinNames lists the three built-ins', (t) => {
  t.deepEqual(builtinNames(), ['refusal', 'horizon', 'random']);
});

test('refusal compiles to the THEORY.md parameters', (t) => {
  const c = compileScenario(builtinScenario('refusal'));
  t.deepEqual(c.tokens, ['Sure', 'Sorry', 'step', 'fine', '<eos>']);
  t.is(c.name, 'refusal');
  t.is(c.length, 16);
  t.is(c.endToken, 4);
  t.is(c.order, 1);
  t.deepEqual(c.recovery, [1]);
  t.deepEqual(c.defaults, { lambda: 5, mu: 10, gamma: 1 });
  // (V+1)^1 rows of V; context number = token id, 5 = <bos>
  t.is(c.base.length, 6 * 5);
  closeTo(t, row(c, 5), [0.7, 0.15, 0.02, 0.12, 0.01]);
  closeTo(t, row(c, 0), [e, e, 1 - 4 * e, e, e]); // Sure
  closeTo(t, row(c, 2), [e, e, 1 - 4 * e, e, e]); // step
  closeTo(t, row(c, 1), [e, e, e, (1 - 3 * e) / 2, (1 - 3 * e) / 2]); // Sorry
  closeTo(t, row(c, 3), [0.02, 0.03, 0.05, 0.6, 0.3]); // fine
  t.deepEqual(row(c, 4), [0, 0, 0, 0, 0]); // after <eos>: ended, no row
  t.is(c.base[5 * 5 + 0], 0.7);
  t.is(c.base[0 * 5 + 2], 1 - 4 * e);

  t.deepEqual(c.automatonStates, ['count0', 'count1', 'count2', 'count3', 'HARMFUL', 'REFUSED']);
  t.is(c.start, 0);
  t.deepEqual(Array.from(c.harm), [0, 0, 0, 0, 1, 0]);
  const V = 5;
  const next = (d: number, a: number): number => c.transitions[d * V + a]!;
  const [Sure, Sorry, step, fine, eos] = [0, 1, 2, 3, 4];
  const [HARMFUL, REFUSED] = [4, 5];
  for (let k = 0; k < 3; k++) t.is(next(k, step), k + 1);
  t.is(next(3, step), HARMFUL);
  for (let k = 0; k < 4; k++) {
    t.is(next(k, Sorry), REFUSED);
    t.is(next(k, Sure), k);
    t.is(next(k, fine), k);
    t.is(next(k, eos), k);
  }
  for (let a = 0; a < V; a++) {
    t.is(next(HARMFUL, a), HARMFUL);
    t.is(next(REFUSED, a), REFUSED);
  }
});

test('refusal automaton: H = 1 iff at least 4 "step" before the first "Sorry"', (t) => {
  const c = compileScenario(builtinScenario('refusal'));
  const rng = new SplitMix64(7);
  for (let trial = 0; trial < 3000; trial++) {
    const len = rng.nextInt(17);
    const y = Array.from({ length: len }, () => rng.nextInt(4)); // no <eos> needed for H
    let d = c.start;
    for (const a of y) d = c.transitions[d * 5 + a]!;
    const firstSorry = y.indexOf(1);
    const before = firstSorry < 0 ? y : y.slice(0, firstSorry);
    const expected = before.filter((a) => a === 2).length >= 4 ? 1 : 0;
    t.is(c.harm[d], expected);
  }
});

test('horizon compiles to the THEORY.md parameters', (t) => {
  const s = builtinScenario('horizon');
  t.is(s.endToken, undefined);
  t.deepEqual(s.recoveryTokens, []);
  const c = compileScenario(s);
  t.deepEqual(c.tokens, ['a', 'b', 'c']);
  t.is(c.length, 10);
  t.is(c.endToken, -1);
  t.is(c.order, 1);
  t.deepEqual(c.recovery, []);
  t.deepEqual(c.defaults, { lambda: 1, mu: 10, gamma: 1 });
  t.is(c.base.length, 4 * 3);
  closeTo(t, row(c, 3), [0.5, 0.3, 0.2]); // <bos>
  closeTo(t, row(c, 0), [0.6, 0.3, 0.1]); // a
  closeTo(t, row(c, 1), [0.3, 0.4, 0.3]); // b
  closeTo(t, row(c, 2), [0.2, 0.3, 0.5]); // c
  t.deepEqual(c.automatonStates, ['i0b0', 'i1b0', 'i1b1', 'i2b0', 'i2b1', 'i3b0', 'i3b1', 'HARM', 'SAFE']);
  t.is(c.automatonStates[c.start], 'i0b0');
  t.deepEqual(Array.from(c.harm), [0, 0, 0, 0, 0, 0, 0, 1, 0]);
  const st = (name: string): number => c.automatonStates.indexOf(name);
  const next = (from: string, a: number): string => c.automatonStates[c.transitions[st(from) * 3 + a]!]!;
  t.is(next('i0b0', 0), 'i1b0');
  t.is(next('i0b0', 1), 'i1b1');
  t.is(next('i1b1', 1), 'HARM');
  t.is(next('i2b1', 2), 'i3b1');
  t.is(next('i3b0', 1), 'SAFE');
  t.is(next('i3b1', 1), 'HARM');
  t.is(next('i3b1', 0), 'SAFE');
  for (let a = 0; a < 3; a++) {
    t.is(next('HARM', a), 'HARM');
    t.is(next('SAFE', a), 'SAFE');
  }
});

test('horizon automaton: H = 1 iff at least 2 of the first 4 tokens are "b" (all 3^10 responses)', (t) => {
  const c = compileScenario(builtinScenario('horizon'));
  let mismatches = 0;
  const y = new Array<number>(10).fill(0);
  for (let code = 0; code < 3 ** 10; code++) {
    let x = code;
    for (let i = 0; i < 10; i++) {
      y[i] = x % 3;
      x = Math.floor(x / 3);
    }
    let d = c.start;
    for (const a of y) d = c.transitions[d * 3 + a]!;
    const expected = y.slice(0, 4).filter((a) => a === 1).length >= 2 ? 1 : 0;
    if (c.harm[d] !== expected) mismatches++;
  }
  t.is(mismatches, 0);
});

test('an unknown built-in is refused with a suggestion', (t) => {
  const err = refuses(t, () => builtinScenario('refusl'), 'name', /unknown built-in scenario "refusl"/);
  t.regex(err.reason, /did you mean "refusal"/);
});

// ---------------------------------------------------------------------------------------------
// Round trips and canonical form

test('scenarioToJson round-trips through parseScenario (built-ins and examples)', (t) => {
  const all: Scenario[] = [
    builtinScenario('refusal'),
    builtinScenario('horizon'),
    builtinScenario('random'),
    builtinScenario('random', { seed: 5, vocab: 3, order: 2, length: 5, states: 4, endToken: true }),
    ...EXAMPLES.map((f) => loadScenarioFile(join(examplesDir, f))),
  ];
  for (const s of all) {
    const json = scenarioToJson(s);
    t.deepEqual(parseScenario(json), s, s.name);
    t.deepEqual(parseScenario(JSON.parse(JSON.stringify(json))), s, `${s.name} via JSON text`);
    t.deepEqual(scenarioToJson(parseScenario(json)), json);
    for (const r of Object.values(json['base'] as Record<string, unknown>)) t.true(Array.isArray(r));
  }
});

test('parseScenario fills defaults and turns object rows into arrays in canonical order', (t) => {
  const s = loadScenarioFile(join(examplesDir, 'order2.json'));
  t.is(s.contextOrder, 2);
  t.deepEqual(s.recoveryTokens, []);
  t.deepEqual(s.defaults, { lambda: 1, mu: 10, gamma: 1 });
  t.deepEqual(Object.keys(s.base), ['<bos> <bos>', '<bos> a', '<bos> b', 'a a', 'a b', 'b a', 'b b']);
  t.deepEqual(s.base['b b'], [0.25, 0.75]);

  const j = refusalJson();
  delete j.contextOrder;
  delete j.recoveryTokens;
  delete j.defaults;
  j.base = { fine: j.base.fine, '<bos>': { Sure: 0.7, Sorry: 0.15, step: 0.02, fine: 0.12, '<eos>': 0.01 }, Sure: j.base.Sure, Sorry: j.base.Sorry, step: j.base.step };
  const p = parseScenario(j);
  t.deepEqual(Object.keys(p.base), ['<bos>', 'Sure', 'Sorry', 'step', 'fine']);
  t.deepEqual(p.base['<bos>'], [0.7, 0.15, 0.02, 0.12, 0.01]);
  t.is(p.contextOrder, 1);
  t.deepEqual(p.recoveryTokens, []);
  t.deepEqual(p.defaults, { lambda: 1, mu: 10, gamma: 1 });
});

test('compileScenario normalises reached rows and zeroes unreachable ones (order 2)', (t) => {
  const s = loadScenarioFile(join(examplesDir, 'three-token.json'));
  const j = scenarioToJson(s) as any;
  j.base.yes = [0.6, 0.2, 0.2 + 6e-10]; // within tolerance, sums to 1 + 6e-10
  const c = compileScenario(parseScenario(j));
  const r = row(c, 0);
  const sum = r.reduce((a, b) => a + b, 0);
  t.true(Math.abs(sum - 1) < 1e-15);
  t.is(r[0], 0.6 / (1 + 6e-10));
  t.deepEqual(row(c, 2), [0, 0, 0]); // ended context

  const o = compileScenario(loadScenarioFile(join(examplesDir, 'order2.json')));
  t.is(o.base.length, 3 ** 2 * 2);
  // context number (base V+1 = 3, <bos> = digit 2, oldest most significant)
  closeTo(t, row(o, 2 * 3 + 2), [0.5, 0.5]); // <bos> <bos>
  closeTo(t, row(o, 2 * 3 + 0), [0.7, 0.3]); // <bos> a
  closeTo(t, row(o, 0 * 3 + 1), [0.5, 0.5]); // a b
  closeTo(t, row(o, 1 * 3 + 1), [0.25, 0.75]); // b b
  t.deepEqual(row(o, 0 * 3 + 2), [0, 0]); // "a <bos>": never reached
  t.deepEqual(row(o, 1 * 3 + 2), [0, 0]);
  t.deepEqual(Array.from(o.transitions), [1, 0, 1, 2, 2, 2]);
});

test('the example scenarios load and compile', (t) => {
  for (const f of EXAMPLES) {
    const s = loadScenarioFile(join(examplesDir, f));
    const c = compileScenario(s);
    t.true(c.harm.includes(1), f);
    t.true(estimateScenarioSize(s).engineBytes > 0);
  }
  const c = compileScenario(loadScenarioFile(join(examplesDir, 'three-token.json')));
  t.deepEqual(c.tokens, ['yes', 'no', '<eos>']);
  t.is(c.endToken, 2);
  t.deepEqual(c.recovery, [1]);
  closeTo(t, row(c, 3), [0.5, 0.3, 0.2]);
  closeTo(t, row(c, 1), [0, 0.5, 0.5]);
  t.deepEqual(c.defaults, { lambda: 2, mu: 5, gamma: 0.9 });
});

// ---------------------------------------------------------------------------------------------
// Random scenarios and the generator

test('SplitMix64 matches the reference outputs and the BigInt implementation', (t) => {
  const g = new SplitMix64(0);
  t.is(g.nextUint64(), 0xe220a8397b1dcdafn);
  t.is(g.nextUint64(), 0x6e789e6aa1b965f4n);
  t.is(g.nextUint64(), 0x06c45d188009454fn);
  for (const seed of [1n, 42n, 0xdeadbeefcafebaben, (1n << 64n) - 1n]) {
    const fast = new SplitMix64(seed);
    const ref = splitMix64Reference(seed, 500);
    t.deepEqual(Array.from({ length: 500 }, () => fast.nextUint64()), ref);
  }
  t.throws(() => new SplitMix64(-1), { instanceOf: RangeError });
  t.throws(() => new SplitMix64(0.5), { instanceOf: RangeError });
});

test('SplitMix64 floats, integers and normals', (t) => {
  const g = new SplitMix64(3);
  let sum = 0;
  let sum2 = 0;
  const N = 20000;
  for (let i = 0; i < N; i++) {
    const u = g.nextFloat();
    t.true(u >= 0 && u < 1);
    const k = g.nextInt(7);
    t.true(Number.isInteger(k) && k >= 0 && k < 7);
    const z = g.nextNormal();
    t.true(Number.isFinite(z));
    sum += z;
    sum2 += z * z;
  }
  t.true(Math.abs(sum / N) < 0.05);
  t.true(Math.abs(sum2 / N - 1) < 0.05);
  // nextFloat is the top 53 bits of one output
  const a = new SplitMix64(9);
  const b = new SplitMix64(9);
  t.is(a.nextFloat(), Number(b.nextUint64() >> 11n) / 2 ** 53);
  closeTo(t, softmax([0, Math.log(3)]), [0.25, 0.75], 1e-15);
});

test('random scenarios are deterministic, valid, and their rows sum to 1', (t) => {
  const a = builtinScenario('random');
  const b = builtinScenario('random', { seed: 1 });
  t.deepEqual(a, b);
  t.is(a.name, 'random(seed=1,V=8,n=1,T=16,D=8)');
  t.deepEqual(a.tokens, ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7']);
  t.deepEqual(a.harm.states, ['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7']);
  t.is(a.harm.start, 'd0');
  t.is(a.length, 16);
  t.is(a.contextOrder, 1);
  t.notDeepEqual(builtinScenario('random', { seed: 2 }).base, a.base);
  t.deepEqual(compileScenario(a), compileScenario(b));

  for (const opts of [
    {},
    { seed: 11, vocab: 4, order: 2, length: 6, states: 3 },
    { seed: 12, vocab: 3, order: 3, length: 2, states: 2, endToken: true, sigma: 0.5 },
    { seed: 13, vocab: 5, order: 1, length: 3, states: 2, endToken: true },
  ]) {
    const s = randomScenario(opts);
    t.deepEqual(randomScenario(opts), s);
    for (const r of Object.values(s.base)) {
      t.is(r.length, s.tokens.length);
      t.true(Math.abs(r.reduce((x, y) => x + y, 0) - 1) < 1e-12);
      t.true(r.every((p) => p > 0));
    }
    const c = compileScenario(s);
    t.true(c.harm.includes(0) && c.harm.includes(1), s.name);
    t.true(Array.from(c.harm).every((h) => h === 0 || h === 1));
    t.true(Array.from(c.transitions).every((d) => d < s.harm.states.length));
    if (opts.endToken) {
      t.is(s.tokens[s.tokens.length - 1], '<eos>');
      t.is(s.endToken, '<eos>');
      t.false(Object.keys(s.base).some((k) => k.split(' ').includes('<eos>')));
    }
    // the name reproduces the scenario
    t.deepEqual(builtinScenario(s.name), s);
  }
  const s2 = randomScenario({ seed: 11, vocab: 4, order: 2, length: 6, states: 3 });
  t.is(s2.name, 'random(seed=11,V=4,n=2,T=6,D=3)');
  t.is(Object.keys(s2.base).length, 1 + 4 + 16);
  // T = 2 with order 3: only contexts with at most 1 token need rows
  const s3 = randomScenario({ seed: 12, vocab: 3, order: 3, length: 2, states: 2, endToken: true, sigma: 0.5 });
  t.deepEqual(Object.keys(s3.base), ['<bos> <bos> <bos>', '<bos> <bos> t0', '<bos> <bos> t1']);
  t.is(s3.name, 'random(seed=12,V=3,n=3,T=2,D=2,sigma=0.5,eos=true)');
});

test('random scenario options are checked', (t) => {
  refuses(t, () => randomScenario({ states: 1 }), 'states', /integer ≥ 2/);
  refuses(t, () => randomScenario({ vocab: 0 }), 'vocab', /integer ≥ 1/);
  refuses(t, () => randomScenario({ length: 1.5 }), 'length', /integer ≥ 1/);
  refuses(t, () => builtinScenario('random(seed=1,Q=3)'), 'name', /cannot read random scenario parameter "Q=3"/);
});

// ---------------------------------------------------------------------------------------------
// The JSON Schema

/** A validator for the subset of JSON Schema 2020-12 the scenario schema uses. */
function schemaErrors(schema: any, value: unknown, rootSchema: any = schema, path = '$'): string[] {
  const errs: string[] = [];
  const known = new Set([
    '$schema', '$id', 'title', 'description', 'default', '$defs', '$ref', 'type', 'required', 'properties',
    'additionalProperties', 'propertyNames', 'minProperties', 'items', 'minItems', 'uniqueItems', 'minLength',
    'pattern', 'not', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'oneOf', 'anyOf', 'patternProperties',
  ]);
  for (const k of Object.keys(schema)) if (!known.has(k)) throw new Error(`validator does not support keyword ${k}`);
  if (schema.$ref) {
    const m = /^#\/\$defs\/(.+)$/.exec(schema.$ref);
    if (!m) throw new Error(`unsupported $ref ${schema.$ref}`);
    errs.push(...schemaErrors(rootSchema.$defs[m[1]!], value, rootSchema, path));
  }
  const isObj = typeof value === 'object' && value !== null && !Array.isArray(value);
  if (schema.type) {
    const ok =
      schema.type === 'object' ? isObj
      : schema.type === 'array' ? Array.isArray(value)
      : schema.type === 'integer' ? Number.isInteger(value)
      : schema.type === 'number' ? typeof value === 'number'
      : typeof value === schema.type;
    if (!ok) return [...errs, `${path}: not ${schema.type}`];
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) errs.push(`${path}: const`);
  if (schema.not && schemaErrors(schema.not, value, rootSchema, path).length === 0) errs.push(`${path}: not`);
  if (schema.oneOf) {
    const n = schema.oneOf.filter((s: any) => schemaErrors(s, value, rootSchema, path).length === 0).length;
    if (n !== 1) errs.push(`${path}: oneOf matched ${n}`);
  }
  if (schema.anyOf && !schema.anyOf.some((s: any) => schemaErrors(s, value, rootSchema, path).length === 0)) errs.push(`${path}: anyOf matched none`);
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errs.push(`${path}: minLength`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errs.push(`${path}: pattern`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push(`${path}: minimum`);
    if (schema.maximum !== undefined && value > schema.maximum) errs.push(`${path}: maximum`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) errs.push(`${path}: exclusiveMinimum`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errs.push(`${path}: minItems`);
    if (schema.uniqueItems && new Set(value.map((x) => JSON.stringify(x))).size !== value.length) errs.push(`${path}: uniqueItems`);
    if (schema.items) value.forEach((x, i) => errs.push(...schemaErrors(schema.items, x, rootSchema, `${path}[${i}]`)));
  }
  if (isObj) {
    const o = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in o)) errs.push(`${path}: required ${r}`);
    if (schema.minProperties !== undefined && Object.keys(o).length < schema.minProperties) errs.push(`${path}: minProperties`);
    for (const [k, v] of Object.entries(o)) {
      if (schema.propertyNames) errs.push(...schemaErrors(schema.propertyNames, k, rootSchema, `${path} key ${k}`));
      const pattern = Object.keys(schema.patternProperties ?? {}).find((p) => new RegExp(p, 'u').test(k));
      if (schema.properties && k in schema.properties) errs.push(...schemaErrors(schema.properties[k], v, rootSchema, `${path}.${k}`));
      else if (pattern !== undefined) errs.push(...schemaErrors(schema.patternProperties[pattern], v, rootSchema, `${path}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${path}: additional property ${k}`);
      else if (typeof schema.additionalProperties === 'object') errs.push(...schemaErrors(schema.additionalProperties, v, rootSchema, `${path}.${k}`));
    }
  }
  return errs;
}

test('the JSON Schema is draft 2020-12 and accepts built-ins and examples, rejects malformed files', (t) => {
  const schema = JSON.parse(readFileSync(join(root, 'schema', 'scenario.schema.json'), 'utf8'));
  t.is(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  const good = [
    ...['refusal', 'horizon', 'random'].map((n) => scenarioToJson(builtinScenario(n))),
    ...EXAMPLES.map((f) => JSON.parse(readFileSync(join(examplesDir, f), 'utf8'))),
  ];
  for (const g of good) t.deepEqual(schemaErrors(schema, g), [], String((g as any).name));
  const bad: Array<(j: any) => void> = [
    (j) => (j.lenght = 3),
    (j) => delete j.harm,
    (j) => (j.length = 0),
    (j) => (j.length = 2.5),
    (j) => (j.tokens = ['a', 'a']),
    (j) => (j.tokens = ['<bos>']),
    (j) => (j.tokens = ['a b']),
    (j) => (j.base.Sure[0] = -0.1),
    (j) => (j.base['a  b'] = [1]),
    (j) => (j.harm.values.HARMFUL = 2),
    (j) => (j.defaults.gamma = 0),
    (j) => (j.defaults.beta = 1),
    (j) => (j.harm.states = []),
  ];
  for (const m of bad) {
    const j = refusalJson();
    m(j);
    t.true(schemaErrors(schema, j).length > 0, m.toString());
    t.throws(() => parseScenario(j), { instanceOf: ScenarioError }, m.toString());
  }
});

// ---------------------------------------------------------------------------------------------
// Errors: one test per case

test('formatPath renders JSON paths', (t) => {
  t.is(formatPath(['base', 'Sure', 2]), 'base["Sure"][2]');
  t.is(formatPath(['base', '<bos>', 'Sure']), 'base["<bos>"]["Sure"]');
  t.is(formatPath(['harm', 'transitions', 'count0', 'step']), 'harm.transitions.count0.step');
  t.is(formatPath(['harm', 'transitions', 'count0', '<eos>']), 'harm.transitions.count0["<eos>"]');
  t.is(formatPath(['tokens', 3]), 'tokens[3]');
});

test('error: the document is not an object', (t) => {
  refuses(t, () => parseScenario([1, 2]), '', /must be a JSON object, got an array/);
  refuses(t, () => parseScenario(null), '', /got null/);
});

test('error: missing required field', (t) => {
  refusesMutation(t, (j) => delete j.name, 'name', /required field is missing/);
  refusesMutation(t, (j) => delete j.tokens, 'tokens', /required field is missing/);
  refusesMutation(t, (j) => delete j.length, 'length', /required field is missing/);
  refusesMutation(t, (j) => delete j.base, 'base', /required field is missing/);
  refusesMutation(t, (j) => delete j.harm, 'harm', /required field is missing/);
  refusesMutation(t, (j) => delete j.harm.start, 'harm.start', /required field is missing/);
  refusesMutation(t, (j) => delete j.harm.transitions, 'harm.transitions', /required field is missing/);
});

test('error: wrong type of a field', (t) => {
  refusesMutation(t, (j) => (j.name = 42), 'name', /expected a string, got the number 42/);
  refusesMutation(t, (j) => (j.tokens = 'Sure Sorry'), 'tokens', /expected an array/);
  refusesMutation(t, (j) => (j.tokens[1] = 7), 'tokens[1]', /expected a string/);
  refusesMutation(t, (j) => (j.harm = []), 'harm', /expected an object, got an array/);
  refusesMutation(t, (j) => (j.harm.values = 1), 'harm.values', /expected an object/);
  refusesMutation(t, (j) => (j.harm.transitions.count0 = 'count1'), 'harm.transitions.count0', /expected an object/);
  refusesMutation(t, (j) => (j.base.Sure = 'uniform'), 'base["Sure"]', /array of 5 probabilities or an object/);
  refusesMutation(t, (j) => (j.defaults.lambda = '5'), 'defaults.lambda', /expected a number/);
  refusesMutation(t, (j) => (j.description = 3), 'description', /expected a string/);
});

test('error: unknown key at the top level, with a suggestion', (t) => {
  const err = refusesMutation(t, (j) => (j.lenght = 16), 'lenght', /unknown key "lenght"/);
  t.regex(err.reason, /did you mean "length"\?/);
  t.regex(err.message, /test\.json/);
});

test('error: unknown key in harm and in defaults', (t) => {
  const a = refusesMutation(t, (j) => (j.harm.state = 'count0'), 'harm.state', /unknown key "state"/);
  t.regex(a.reason, /did you mean "states"|did you mean "start"/);
  const b = refusesMutation(t, (j) => (j.defaults.lamda = 1), 'defaults.lamda', /unknown key "lamda"/);
  t.regex(b.reason, /did you mean "lambda"\?/);
  refusesMutation(t, (j) => (j.defaults.beta = 1), 'defaults.beta', /unknown key "beta"/);
});

test('error: row length differs from V', (t) => {
  refusesMutation(t, (j) => (j.base.Sure = [0.5, 0.5]), 'base["Sure"]', /must have 5 probabilities.*got 2/);
  refusesMutation(t, (j) => j.base['<bos>'].push(0), 'base["<bos>"]', /must have 5 probabilities.*got 6/);
});

test('error: negative probability', (t) => {
  refusesMutation(t, (j) => (j.base.Sure = [0.1, 0.1, -0.1, 0.4, 0.5]), 'base["Sure"][2]', /must be ≥ 0, got -0.1/);
  refusesMutation(t, (j) => (j.base.fine = { Sure: 1.5, Sorry: -0.5 }), 'base["fine"]["Sure"]', /≤ 1/);
  refusesMutation(t, (j) => (j.base.fine = { Sorry: -0.5, fine: 1.5 }), 'base["fine"]["Sorry"]', /≥ 0/);
});

test('error: non-finite or non-numeric probability', (t) => {
  refusesMutation(t, (j) => (j.base.Sure[2] = NaN), 'base["Sure"][2]', /finite/);
  refusesMutation(t, (j) => (j.base.Sure[2] = Infinity), 'base["Sure"][2]', /finite/);
  refusesMutation(t, (j) => (j.base.Sure[0] = '0.1'), 'base["Sure"][0]', /expected a probability/);
  refusesMutation(t, (j) => (j.base.Sure[0] = null), 'base["Sure"][0]', /got null/);
});

test('error: row does not sum to 1 within 1e-9', (t) => {
  refusesMutation(t, (j) => (j.base.fine = [0.02, 0.03, 0.05, 0.6, 0.2]), 'base["fine"]', /must sum to 1.*sums to 0\.9$/);
  refusesMutation(t, (j) => (j.base['<bos>'] = { Sure: 0.5, Sorry: 0.5 + 2e-9 }), 'base["<bos>"]', /must sum to 1/);
  // within tolerance: accepted
  const j = refusalJson();
  j.base['<bos>'] = { Sure: 0.5, Sorry: 0.5 + 5e-10 };
  t.notThrows(() => parseScenario(j));
});

test('error: unknown token names', (t) => {
  const a = refusesMutation(t, (j) => (j.base['<bos>'] = { Sur: 1 }), 'base["<bos>"]["Sur"]', /unknown token "Sur"/);
  t.regex(a.reason, /did you mean "Sure"\?/);
  const b = refusesMutation(t, (j) => (j.harm.transitions.count0.stepp = 'count1'), 'harm.transitions.count0.stepp', /unknown token "stepp"/);
  t.regex(b.reason, /did you mean "step"\?/);
  refusesMutation(t, (j) => (j.recoveryTokens = ['sorry']), 'recoveryTokens[0]', /unknown token "sorry" \(did you mean "Sorry"\?\)/);
  refusesMutation(t, (j) => (j.endToken = 'eos'), 'endToken', /unknown token "eos"/);
  refusesMutation(t, (j) => (j.base.Nope = j.base.Sure), 'base["Nope"]', /unknown context "Nope": unknown token "Nope"/);
});

test('error: unknown automaton state names', (t) => {
  const a = refusesMutation(t, (j) => (j.harm.transitions.count0.step = 'count9'), 'harm.transitions.count0.step', /unknown automaton state "count9"/);
  t.regex(a.reason, /did you mean "count0"|did you mean "count1"/);
  refusesMutation(t, (j) => (j.harm.transitions.count9 = {}), 'harm.transitions.count9', /unknown automaton state "count9"/);
  refusesMutation(t, (j) => (j.harm.start = 'Count0'), 'harm.start', /unknown automaton state "Count0" \(did you mean "count0"\?\)/);
  refusesMutation(t, (j) => (j.harm.values = { HARMFULL: 1 }), 'harm.values.HARMFULL', /unknown automaton state "HARMFULL" \(did you mean "HARMFUL"\?\)/);
});

test('error: harm value outside [0, 1] or non-finite', (t) => {
  refusesMutation(t, (j) => (j.harm.values.HARMFUL = 1.5), 'harm.values.HARMFUL', /must be in \[0, 1\], got 1\.5/);
  refusesMutation(t, (j) => (j.harm.values.REFUSED = -0.5), 'harm.values.REFUSED', /must be in \[0, 1\]/);
  refusesMutation(t, (j) => (j.harm.values.HARMFUL = NaN), 'harm.values.HARMFUL', /finite/);
  refusesMutation(t, (j) => (j.harm.values.HARMFUL = true), 'harm.values.HARMFUL', /expected a number/);
});

test('error: duplicate names', (t) => {
  refusesMutation(t, (j) => (j.tokens[2] = 'Sure'), 'tokens[2]', /duplicate token "Sure" \(same as tokens\[0\]\)/);
  refusesMutation(t, (j) => (j.harm.states[3] = 'count1'), 'harm.states[3]', /duplicate state "count1"/);
  refusesMutation(t, (j) => (j.recoveryTokens = ['Sorry', 'Sorry']), 'recoveryTokens[1]', /duplicate recovery token "Sorry"/);
  // a JSON object repeating a key (JSON.parse would keep the last silently)
  const text = JSON.stringify(refusalJson(), null, 2).replace('"Sure": [', '"Sure": [0.2, 0.2, 0.2, 0.2, 0.2],\n    "Sure": [');
  refuses(t, () => parseScenarioText(text, 'dup.json'), 'base["Sure"]', /duplicate key "Sure"/);
});

test('error: invalid token names', (t) => {
  refusesMutation(t, (j) => (j.tokens[0] = '<bos>'), 'tokens[0]', /reserved/);
  refusesMutation(t, (j) => (j.tokens[0] = ''), 'tokens[0]', /must not be empty/);
  refusesMutation(t, (j) => (j.tokens[0] = 'Su re'), 'tokens[0]', /must not contain spaces/);
  refusesMutation(t, (j) => (j.tokens = []), 'tokens', /at least 1 token/);
  refusesMutation(t, (j) => (j.harm.states = []), 'harm.states', /at least 1 state/);
});

test('error: missing row for a reachable context', (t) => {
  refusesMutation(t, (j) => delete j.base.fine, 'base["fine"]', /missing row for reachable context "fine" \(1 of 5/);
  refusesMutation(t, (j) => delete j.base['<bos>'], 'base["<bos>"]', /missing row for reachable context "<bos>"/);
  const o = JSON.parse(readFileSync(join(examplesDir, 'order2.json'), 'utf8'));
  delete o.base['b a'];
  refuses(t, () => parseScenario(o), 'base["b a"]', /missing row for reachable context "b a"/);
});

test('error: rows for unknown, ended or unreachable contexts', (t) => {
  refusesMutation(t, (j) => (j.base['<eos>'] = [0.2, 0.2, 0.2, 0.2, 0.2]), 'base["<eos>"]', /ends with the end token "<eos>".*no row is needed or allowed/);
  refusesMutation(t, (j) => (j.base['Sure step'] = j.base.Sure), 'base["Sure step"]', /unknown context "Sure step".*contextOrder 1/);
  refusesMutation(t, (j) => (j.base['<BOS>'] = j.base.Sure), 'base["<BOS>"]', /did you mean "<bos>"\?/);
  refusesMutation(t, (j) => (j.length = 1), 'base["Sure"]', /unreachable.*T = 1/);

  const o = JSON.parse(readFileSync(join(examplesDir, 'order2.json'), 'utf8'));
  const bad = (mut: (j: any) => void, field: string, reason: RegExp): void => {
    const j = JSON.parse(JSON.stringify(o));
    mut(j);
    refuses(t, () => parseScenario(j), field, reason);
  };
  bad((j) => (j.base['a <bos>'] = [1, 0]), 'base["a <bos>"]', /"<bos>" can only pad the context on the left/);
  bad((j) => (j.base['a'] = [1, 0]), 'base["a"]', /got 1 part/);
  bad((j) => (j.base['a  b'] = [1, 0]), 'base["a  b"]', /got 3 parts/);
  bad((j) => (j.length = 2), 'base["a a"]', /unreachable, it needs 2 emitted tokens.*T = 2/);
  // with an end token: the end token can only be last
  bad(
    (j) => {
      j.tokens.push('<eos>');
      j.endToken = '<eos>';
      for (const k of Object.keys(j.base)) if (Array.isArray(j.base[k])) j.base[k].push(0);
      j.base['<eos> a'] = [1, 0, 0];
    },
    'base["<eos> a"]',
    /unreachable, the end token "<eos>" can only be the last token/,
  );
});

test('error: length and contextOrder must be integers ≥ 1', (t) => {
  refusesMutation(t, (j) => (j.length = 2.5), 'length', /integer ≥ 1, got 2\.5/);
  refusesMutation(t, (j) => (j.length = 0), 'length', /integer ≥ 1, got 0/);
  refusesMutation(t, (j) => (j.length = '16'), 'length', /integer ≥ 1, got the string "16"/);
  refusesMutation(t, (j) => (j.length = Infinity), 'length', /integer ≥ 1/);
  refusesMutation(t, (j) => (j.contextOrder = 0), 'contextOrder', /integer ≥ 1, got 0/);
});

test('error: defaults out of range', (t) => {
  refusesMutation(t, (j) => (j.defaults.lambda = -1), 'defaults.lambda', /≥ 0/);
  refusesMutation(t, (j) => (j.defaults.mu = -1), 'defaults.mu', /≥ 0/);
  refusesMutation(t, (j) => (j.defaults.gamma = 0), 'defaults.gamma', /\(0, 1\]/);
  refusesMutation(t, (j) => (j.defaults.gamma = 1.5), 'defaults.gamma', /\(0, 1\]/);
});

test('error: state space over the memory budget (automaton-bound estimate → harm.states)', (t) => {
  // refusal: 6 contexts × 6 automaton states = 36 ≤ Σ 5^t; 3·17·36·8 + 36·5·16 = 17568 bytes
  t.deepEqual(estimateScenarioSize(builtinScenario('refusal')), {
    reachableContexts: 6,
    automatonStates: 6,
    sequenceBound: (5 ** 17 - 1) / 4,
    stateBound: 36,
    engineBytes: 17568,
    baseBytes: 240,
  });
  const err = refuses(t, () => parseScenario(refusalJson(), 'x', { memoryBudgetBytes: 17000 }), 'harm.states', /state space too large: estimated 36 exact states/, 'HH_STATE_SPACE_TOO_LARGE');
  t.regex(err.message, /^scenario too large \(x\): harm\.states: .*\(memoryBudgetBytes\)$/);
  const named = refuses(t, () => parseScenario(refusalJson(), 'x', { memoryBudgetBytes: 17000, memoryBudgetName: '--memory-budget' }), 'harm.states', /\(--memory-budget\)$/, 'HH_STATE_SPACE_TOO_LARGE');
  t.notRegex(named.message, /memoryBudgetBytes/);
  t.regex(err.reason, /17568 bytes|17\.16 KiB/);
  t.notThrows(() => parseScenario(refusalJson(), 'x', { memoryBudgetBytes: 17568 }));
  refuses(t, () => compileScenario(builtinScenario('refusal'), { memoryBudgetBytes: 1000 }), 'harm.states', /state space too large/, 'HH_STATE_SPACE_TOO_LARGE');
  // the default budget (4 GiB) refuses big random scenarios before generating them
  refuses(t, () => builtinScenario('random', { vocab: 50, order: 4, length: 30 }), 'harm.states', /estimated 5\.102e\+7 exact states|estimated 51020408 exact states/, 'HH_STATE_SPACE_TOO_LARGE');
});

test('error: state space over the memory budget (sequence-bound estimate → length)', (t) => {
  // V = 2, T = 3, D = 10: Σ_{t≤3} 2^t = 15 < 7 contexts × 10 states
  const j = {
    name: 'tiny',
    tokens: ['a', 'b'],
    length: 3,
    base: { '<bos>': [0.5, 0.5], a: [0.5, 0.5], b: [0.5, 0.5] },
    harm: { states: Array.from({ length: 10 }, (_, i) => `s${i}`), start: 's0', values: {}, transitions: {} },
  };
  const est = estimateScenarioSize(parseScenario(j));
  t.is(est.stateBound, 15);
  refuses(t, () => parseScenario(j, 'tiny', { memoryBudgetBytes: 100 }), 'length', /estimated 15 exact states.*Σ_\{t=0\.\.3\} 2\^t = 15/, 'HH_STATE_SPACE_TOO_LARGE');
});

test('error: invalid JSON text names the position', (t) => {
  const p = tmpFile('bad.json', '{\n  "name": "x",\n  "tokens": [1, 2,]\n}\n');
  const err = refuses(t, () => loadScenarioFile(p), '', /invalid JSON at line 3, column 19 \(position 35\): /);
  t.is(err.source, p);
  t.true(err.message.includes(p));
  refuses(t, () => parseScenarioText('{"name": '), '', /invalid JSON at line 1, column 10 \(position 9\)/);
  t.is(jsonErrorPosition('{"a": [1, 2]}'), undefined);
  t.is(jsonErrorPosition('{"a": 01}'), 7);
  t.is(jsonErrorPosition('{"a": "x\\q"}'), 9);
  t.is(jsonErrorPosition('[1] x'), 4);
  t.is(jsonErrorPosition('{"a": tru}'), 6);
});

test('error: missing file has code HH_FILE_NOT_FOUND', (t) => {
  const p = join(tmpdir(), 'hh-definitely-missing', 'nope.json');
  const err = t.throws(() => loadScenarioFile(p), { instanceOf: ScenarioError }) as ScenarioError;
  t.is(err.code, 'HH_FILE_NOT_FOUND');
  t.is(err.field, '');
  t.true(err.message.includes(p));
});

test('loadScenarioFile accepts a valid file (with a BOM) and refuses an invalid one with its path', (t) => {
  const good = tmpFile('ok.json', '\ufeff' + JSON.stringify(refusalJson()));
  t.deepEqual(loadScenarioFile(good), builtinScenario('refusal'));
  const j = refusalJson();
  j.base.Sure[2] = -1;
  const bad = tmpFile('neg.json', JSON.stringify(j));
  const err = refuses(t, () => loadScenarioFile(bad), 'base["Sure"][2]', /≥ 0/);
  t.true(err.message.includes('neg.json'));
});

test('compileScenario re-validates hand-built scenarios', (t) => {
  const s = builtinScenario('horizon');
  const broken = { ...s, base: { ...s.base, b: [0.5, 0.6, 0.1] } } as Scenario;
  refuses(t, () => compileScenario(broken), 'base["b"]', /must sum to 1/);
});
