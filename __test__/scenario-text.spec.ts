// Reading scenario JSON text: syntax errors, repeated keys and semantic errors name line and column.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { builtinScenario, parseScenarioText, ScenarioError, scenarioToJson } from '../ts/scenario/index.js';
import { jsonErrorPosition, parseJsonText } from '../ts/scenario/json-text.js';

function refusesText(t: ExecutionContext, text: string, field: string, reason: RegExp, line?: number, column?: number): ScenarioError {
  const err = t.throws(() => parseScenarioText(text, 'in.json'), { instanceOf: ScenarioError }) as ScenarioError;
  t.is(err.field, field);
  t.regex(err.message, reason);
  if (line !== undefined) {
    t.is(err.line, line);
    t.is(err.column, column);
    t.true(err.message.includes(`in.json, line ${line}, column ${column}`), err.message);
  }
  return err;
}

/** The refusal scenario as pretty-printed JSON, one key or array item per line (2-space indent). */
function refusalText(): string {
  return JSON.stringify(scenarioToJson(builtinScenario('refusal')), null, 2);
}

/** 1-based line and column of the first occurrence of `needle` in `text` (plus `shift` characters). */
function lineColumnOf(text: string, needle: string, shift = 0): [number, number] {
  return lineColumnAt(text, text.indexOf(needle) + shift);
}

function lineColumnAt(text: string, at: number): [number, number] {
  const before = text.slice(0, at);
  return [before.split('\n').length, at - before.lastIndexOf('\n')];
}

test('yaml-only syntax that JSON.parse refuses is refused, with its position', (t) => {
  // yaml accepts these; JSON does not, so the scenario reader must not.
  refusesText(t, '{"name": "x", "tokens": ["a",],}', '', /invalid JSON at line 1, column 30 \(position 29\)/);
  refusesText(t, "{'name': 'x'}", '', /invalid JSON at line 1, column 2 \(position 1\)/);
  refusesText(t, '{"name": "x" # comment\n}', '', /invalid JSON at line 1, column 14 \(position 13\)/);
  refusesText(t, '{"a": [1,, 2]}', '', /invalid JSON at line 1, column 10 \(position 9\)/);
  t.is(jsonErrorPosition('[1, 2]'), undefined);
  t.is(jsonErrorPosition('{"a": -}'), 6);
  t.is(jsonErrorPosition('{"a": "\\u12G4"}'), 8);
});

test('a syntax error inside a nested array is located on its line', (t) => {
  const text = refusalText().replace(/("Sure": \[\n\s*[0-9.e-]+),/, '$1,,');
  const [line, column] = lineColumnOf(text, ',,', 1);
  refusesText(t, text, '', new RegExp(`invalid JSON at line ${line}, column ${column} `));
  // a trailing comma before the closing bracket of base["Sure"] (V8 gives no position for it)
  const pretty = refusalText();
  const close = pretty.indexOf(']', pretty.indexOf('"Sure": ['));
  const lineEnd = pretty.lastIndexOf('\n', close);
  const trailing = pretty.slice(0, lineEnd) + ',' + pretty.slice(lineEnd);
  const [l2, c2] = lineColumnAt(trailing, close + 1);
  refusesText(t, trailing, '', new RegExp(`invalid JSON at line ${l2}, column ${c2} \\(position ${close + 1}\\)`));
});

test('a repeated key is refused with its path, line and column', (t) => {
  const text = '{\n  "name": "x",\n  "base": {\n    "Sure": [1],\n    "Sure": [2]\n  }\n}';
  refusesText(t, text, 'base["Sure"]', /duplicate key "Sure" in a JSON object/, 5, 5);
  refusesText(t, '{"name": "a", "name": "a"}', 'name', /duplicate key "name"/, 1, 15);
});

test('semantic errors name the line and column of the offending value', (t) => {
  const j = scenarioToJson(builtinScenario('refusal')) as { base: Record<string, number[]>; harm: { start: string } };
  j.base['Sure']![2] = -1;
  const text = JSON.stringify(j, null, 2);
  const [line, column] = lineColumnOf(text, '-1');
  refusesText(t, text, 'base["Sure"][2]', /≥ 0/, line, column);
  // a field that is missing is located at its nearest enclosing value
  const k = scenarioToJson(builtinScenario('refusal')) as { harm: Record<string, unknown> };
  delete k.harm['start'];
  const t2 = JSON.stringify(k, null, 2);
  const [l2, c2] = lineColumnOf(t2, '"harm": ', 8);
  refusesText(t, t2, 'harm.start', /required field is missing/, l2, c2);
});

test('positionOf walks objects and arrays and falls back to the nearest ancestor', (t) => {
  const p = parseJsonText('{\n "a": [1, {"b": [2, 3]}],\n "c": 1}');
  t.deepEqual(p.positionOf(['a', 1, 'b', 1]), { line: 2, column: 21, offset: 22 });
  t.deepEqual(p.positionOf(['a', 1, 'missing']), { line: 2, column: 11, offset: 12 });
  t.deepEqual(p.positionOf(['c']), { line: 3, column: 7, offset: 34 });
  t.deepEqual(p.value, { a: [1, { b: [2, 3] }], c: 1 });
});
