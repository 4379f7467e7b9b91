/**
 * Rounding noise is not data, and input that defines no distribution is refused: non-negative
 * quantities never print below 0, messages print computed numbers to a sensible precision, policies
 * with a row of −∞ are refused (CLI exit 2 and the API alike), `scenario validate --json` reports
 * an invalid file on stdout, and wrongly typed API arguments are bad input rather than internal errors.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExactEngine, HarmHorizonError, compileScenario, loadScenarioFile, type Policy } from '../ts/index.js';
import { approx, clampRounding, numNonNegative, ROUNDING_NOISE } from '../ts/report/format.js';
import { effectiveHorizon } from '../ts/report/analysis.js';
import { runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-bad-input-'));
const order2 = new URL('../examples/scenarios/order2.json', import.meta.url).pathname;

test('rounding noise below 0 prints as 0; a real negative value still shows', (t) => {
  t.is(clampRounding(-1e-17), 0);
  t.is(clampRounding(-1.1e-16), 0);
  t.is(clampRounding(-ROUNDING_NOISE), 0);
  t.is(clampRounding(-1e-6), -1e-6);
  t.is(clampRounding(null), null);
  t.true(Number.isNaN(clampRounding(Number.NaN)));
  t.is(numNonNegative(-1e-17), '0');
  t.is(numNonNegative(-0.25), '-0.2500');
  t.is(approx(0.9995999999999999), '0.9996');
  t.is(approx(1 + 2e-9), '1.000000002');
});

test('analyze --json and its table show no non-negative quantity below 0', (t) => {
  // On `horizon` the exact P(τ = t) comes out as −1.1e-16 at some t, and P(τ > T) as −2e-16 on refusal.
  for (const scenario of ['horizon', 'refusal', order2]) {
    const r = runCli(['analyze', scenario, '--json']);
    t.is(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    const values: number[] = [report.decidedAtStart, report.undecided, report.harmVariance, report.expectedHarm.base, report.expectedHarm.aligned];
    for (const p of report.positions) values.push(p.harmInformation, p.klOnPolicy, p.klPredicted, p.decisionTime, ...(p.klTeacherForced === null ? [] : [p.klTeacherForced]));
    for (const p of report.prefill) values.push(...[p.asrBase, p.asrAligned].filter((x) => x !== null));
    t.true(values.every((x) => x >= 0), `${scenario}: ${values.filter((x) => x < 0).join(', ')}`);
    t.notRegex(runCli(['analyze', scenario]).stdout, /\s-\d\.\d+e-1\d/);
  }
});

test('a row that does not sum to 1 is reported to a sensible precision', (t) => {
  const s = JSON.parse(readFileSync(order2, 'utf8'));
  const key = Object.keys(s.base)[0];
  const row = s.base[key];
  const values: number[] = Array.isArray(row) ? row : Object.values(row);
  values[0] -= 0.0004;
  if (Array.isArray(row)) s.base[key] = values;
  else s.base[key] = Object.fromEntries(Object.keys(row).map((k, i) => [k, values[i]]));
  const file = join(scratch, 'off-by-4e-4.json');
  writeFileSync(file, JSON.stringify(s));
  const r = runCli(['scenario', 'validate', file]);
  t.is(r.status, 2);
  t.regex(r.stderr, /sums to 0\.9996\b/);
  t.notRegex(r.stderr, /9999999/);
});

test('scenario validate --json prints the verdict of an invalid file on stdout and exits 2', (t) => {
  const s = JSON.parse(readFileSync(order2, 'utf8'));
  s.harm.values[Object.keys(s.harm.values)[0]] = 1.5;
  const file = join(scratch, 'harm-1.5.json');
  writeFileSync(file, JSON.stringify(s));
  const r = runCli(['scenario', 'validate', file, '--json']);
  t.is(r.status, 2);
  const verdict = JSON.parse(r.stdout);
  t.is(verdict.valid, false);
  t.is(verdict.errors.length, 1);
  t.regex(verdict.errors[0].path, /^harm\.values/);
  t.regex(verdict.errors[0].message, /harm value must be in \[0, 1\], got 1\.5/);
  const missing = runCli(['scenario', 'validate', join(scratch, 'nothing-here.json'), '--json']);
  t.is(missing.status, 2);
  t.is(JSON.parse(missing.stdout).valid, false);
  const valid = runCli(['scenario', 'validate', order2, '--json']);
  t.is(valid.status, 0);
  t.is(JSON.parse(valid.stdout).valid, true);
});

/** A tabular policy over the exact states of `order2` whose logits are log p_base, with one live row set to −∞. */
function policyWithDeadRow(): { engine: ExactEngine; logits: Float64Array; t: number; s: number } {
  const compiled = compileScenario(loadScenarioFile(order2));
  const engine = new ExactEngine(compiled);
  const states = engine.states();
  const V = compiled.tokens.length;
  const S = engine.numStates;
  const logits = new Float64Array(compiled.length * S * V);
  for (let t = 1; t <= compiled.length; t++) for (let s = 0; s < S; s++) for (let a = 0; a < V; a++) logits[((t - 1) * S + s) * V + a] = Math.sin(t + 3 * s + 7 * a);
  // A live state at position 2 (an order-2 context has been filled by then).
  const s = states.live.findIndex((live, i) => Boolean(live) && i > 0);
  const t = 2;
  logits.fill(-Infinity, ((t - 1) * S + s) * V, ((t - 1) * S + s + 1) * V);
  return { engine, logits, t, s };
}

test('the API refuses a tabular policy with a row of −∞ (HH_POLICY_INVALID), naming the row', async (t) => {
  const { engine, logits, t: pos, s } = policyWithDeadRow();
  const policy: Policy = { kind: 'tabular', logits };
  const row = new RegExp(`position t = ${pos}, state s = ${s}\\b`);
  for (const call of [() => engine.harmProfile(policy), () => engine.conditionalHarm(policy), () => engine.klOnPolicy(policy)]) {
    const error = t.throws(call, { instanceOf: HarmHorizonError });
    t.is(error?.code, 'HH_POLICY_INVALID');
    t.regex(error?.message ?? '', row);
  }
  const asyncError = await t.throwsAsync(engine.harmProfileAsync(policy), { instanceOf: HarmHorizonError });
  t.is(asyncError?.code, 'HH_POLICY_INVALID');
});

test('analyze and estimate refuse a policy file with a row of −∞: exit 2 naming the row', (t) => {
  const { engine, logits, t: pos, s } = policyWithDeadRow();
  const compiled = compileScenario(loadScenarioFile(order2));
  const file = join(scratch, 'dead-row-policy.json');
  writeFileSync(
    file,
    JSON.stringify({
      format: 'harm-horizon-policy',
      version: 1,
      kind: 'tabular',
      scenario: { name: compiled.name, vocab: compiled.tokens.length, length: compiled.length, states: engine.numStates },
      logits: Array.from(logits, (x) => (Number.isFinite(x) ? x : null)),
    }),
  );
  for (const args of [['analyze', order2, '--policy', file], ['estimate', order2, '--policy', file, '--samples', '100']]) {
    const r = runCli(args);
    t.is(r.status, 2, `${args[0]}: ${r.stdout} ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`invalid policy: .*position t = ${pos}, state s = ${s}\\b`));
    t.notRegex(r.stdout, /E\[H\]/);
  }
});

test('wrongly typed API arguments are bad input (HH_INVALID_ARGUMENT), not internal errors', (t) => {
  const engine = new ExactEngine(compileScenario(loadScenarioFile(order2)));
  for (const call of [
    () => engine.analyze('5' as unknown as number),
    () => engine.harmProfile({ kind: 'tabular', logits: [1, 2] as unknown as Float64Array }),
    () => new ExactEngine(compileScenario(loadScenarioFile(order2)), { memoryBudgetBytes: 'big' as unknown as number }),
  ]) {
    t.is(t.throws(call, { instanceOf: HarmHorizonError })?.code, 'HH_INVALID_ARGUMENT');
  }
});

test('the effective horizon is the first k resolving the fraction of Var H', (t) => {
  const info = [0.5, 0.3, 0.15, 0.04, 0.0099, 0.0001];
  const total = info.reduce((a, b) => a + b, 0);
  for (const fraction of [0.5, 0.8, 0.95, 0.99, 0.9999, 1]) {
    const k = effectiveHorizon(info, fraction);
    const resolved = (n: number) => info.slice(0, n).reduce((a, b) => a + b, 0);
    t.true(resolved(k) >= fraction * total * (1 - 1e-12), `k = ${k} resolves ${fraction}`);
    t.true(k === 1 || resolved(k - 1) < fraction * total, `k = ${k} is the smallest for ${fraction}`);
  }
  t.is(effectiveHorizon([0, 0, 0]), 0);
  // Rounding-size I_t count as 0, as for the horizon.
  t.is(effectiveHorizon([1e-31, 1e-31]), 0);
});
