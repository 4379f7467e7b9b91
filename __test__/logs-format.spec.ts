/**
 * The rollout log format: the validator names the bad record (line, kind, id) and field; the
 * statistics kernels (k1/k3,
 * exact KL, the top-k lower bound, pass@n) obey their identities; profile says when the
 * teacher-forced KL is only a lower bound.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { HarmHorizonError } from '../ts/core/errors.js';
import { LOG_FORMAT, parseLog } from '../ts/logs/format.js';
import { passAt, profileLog } from '../ts/logs/profile.js';
import { klFullRows, klLowerBoundRows, klTokenEstimates } from '../ts/core/log-stats.js';
import { runCli } from './helpers/cli.js';

const header = {
  type: 'header',
  format: LOG_FORMAT,
  version: 1,
  models: [
    { id: 'aligned', logprobs: 'raw', temperature: 1, vocabSize: 3 },
    { id: 'base', logprobs: 'raw', temperature: 1, vocabSize: 3 },
  ],
  policy: 'aligned',
  reference: 'base',
  judge: { name: 'test', scores: 'binary' },
};
const prompt = { type: 'prompt', id: 'p', text: 'hi', tokens: [0] };
const sample = { type: 'sample', id: 's', prompt: 'p', model: 'base', tokens: [1, 2], logprobs: { aligned: [-1, -0.5], base: [-0.2, -0.1] }, harm: 1 };
const log = (...records: unknown[]) => records.map((r) => JSON.stringify(r)).join('\n');

function invalid(t: import('ava').ExecutionContext, text: string, message: RegExp) {
  const e = t.throws(() => parseLog(text, 'x.jsonl'), { instanceOf: HarmHorizonError });
  t.is(e!.code, 'HH_LOG_INVALID');
  t.regex(e!.message, message);
}

test('the validator names the line, record and field of a bad record', (t) => {
  invalid(t, log(prompt), /x\.jsonl line 1: type: the first record must be the header/);
  invalid(t, log({ ...header, reference: 'other' }), /line 1: reference: names no model of the header/);
  invalid(t, log(header, prompt, { ...sample, logprobs: { aligned: [-1], base: [-0.2, -0.1] } }), /line 3 \(sample "s"\): logprobs\.aligned: must have one entry per token \(2\), got 1/);
  invalid(t, log(header, prompt, { ...sample, logprobs: { base: [-0.2, -0.1] } }), /line 3 \(sample "s"\): logprobs\.aligned: missing/);
  invalid(t, log(header, prompt, { ...sample, tokens: [1, 3] }), /line 3 \(sample "s"\): tokens\[1\]: token id 3 is not below the vocabulary size 3/);
  invalid(t, log(header, prompt, { ...sample, harm: 0.5 }), /line 3 \(sample "s"\): harm: the judge is binary/);
  invalid(t, log(header, prompt, { ...sample, logprobs: { aligned: [-1, 0.5], base: [-0.2, -0.1] } }), /logprobs\.aligned\[1\]: must be a log-probability/);
  invalid(t, log(header, prompt, sample, { type: 'rollout', id: 'r', sample: 'nope', depth: 0, set: 0, model: 'base', harms: [1] }), /line 4 \(rollout "r"\): sample: no earlier sample record/);
  invalid(t, log(header, prompt, sample, { type: 'rollout', id: 'r', sample: 's', depth: 3, set: 0, model: 'base', harms: [1] }), /line 4 \(rollout "r"\): depth: must be a whole number in 0\.\.2/);
  invalid(t, log(header, prompt, sample, { type: 'rollout', id: 'r', sample: 's', depth: 1, set: 2, model: 'base', harms: [1] }), /set: must be 0 or 1/);
  invalid(t, log(header, prompt, sample, { type: 'prefill', id: 'f', prompt: 'p', model: 'aligned', k: 1, prefix: [1, 2], harms: [0] }), /line 4 \(prefill "f"\): k: must be a whole number ≥ the prefix length 2/);
  invalid(t, log(header, prompt, sample, { ...sample, type: 'prompt' }), /line 4 \(prompt "s"\): id: duplicate record id/);
  invalid(t, log(header, prompt, { ...sample, distributions: { aligned: [[-1, -1, -1], [0, null, null]] } }), /distributions\.aligned\[0\]: probabilities sum to/);
  invalid(t, `${log(header)}\n{oops`, /line 2: : not valid JSON/);
});

test('profile on the command line exits 2 naming the bad record', (t) => {
  const r = runCli(['profile', 'examples/logs/vllm-outputs.jsonl']);
  t.is(r.status, 2);
  t.regex(r.stderr, /vllm-outputs\.jsonl line 2: type: must be prompt, sample, rollout or prefill after the header, got undefined/);
});

test('KL kernels: k1 and k3 average to the exact KL under p; the top-k bound never exceeds it and is exact with every token', (t) => {
  const p = [0.6, 0.3, 0.1];
  const q = [0.2, 0.5, 0.3];
  const lp = Float64Array.from(p, Math.log);
  const lq = Float64Array.from(q, Math.log);
  const exact = klFullRows(lp, lq, 3)[0];
  const { k1, k3 } = klTokenEstimates(lp, lq);
  const mean = (a: Float64Array) => a.reduce((s, x, i) => s + p[i] * x, 0);
  t.true(Math.abs(mean(k1) - exact) < 1e-15 && Math.abs(mean(k3) - exact) < 1e-15);
  t.true(k3.every((x) => x >= 0));
  const bounds = klLowerBoundRows(Float64Array.from([0.6, 0.6, 0.3, 0.6, 0.3, 0.1]), Float64Array.from([0.2, 0.2, 0.5, 0.2, 0.5, 0.3]), Uint32Array.from([0, 1, 3, 6]));
  t.true(bounds[0] <= bounds[1] && bounds[1] <= exact + 1e-15, `${bounds} ≤ ${exact}`);
  t.true(Math.abs(bounds[2] - exact) < 1e-15);
});

test('pass@n is the chance that n of the m continuations include a success', (t) => {
  t.is(passAt(4, 0, 2), 0);
  t.is(passAt(4, 4, 1), 1);
  t.true(Math.abs(passAt(4, 1, 2) - 0.5) < 1e-15); // 1 − C(3,2)/C(4,2)
  t.true(Math.abs(passAt(5, 2, 1) - 0.4) < 1e-15);
});

test('teacher-forced KL from top-k lists is reported as a lower bound, below the exact value', (t) => {
  const rows = (probs: number[][]) => probs.map((r) => r.map(Math.log));
  const pol = [[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]];
  const ref = [[0.2, 0.3, 0.5], [0.4, 0.4, 0.2]];
  const harmful = {
    ...sample,
    tokens: [0, 1],
    logprobs: { aligned: [Math.log(0.7), Math.log(0.25)], base: [Math.log(0.2), Math.log(0.4)] },
    top: { aligned: [[[0, Math.log(0.7)]], [[0, Math.log(0.5)]]], base: [[[2, Math.log(0.5)], [0, Math.log(0.2)]], [[0, Math.log(0.4)]]] },
  };
  const bound = profileLog(parseLog(log(header, prompt, harmful), 'x'), { replicates: 10 });
  t.is(bound.klTeacherForcedKind, 'lower-bound');
  const exact = profileLog(parseLog(log(header, prompt, { ...harmful, distributions: { aligned: rows(pol), base: rows(ref) } }), 'x'), { replicates: 10 });
  t.is(exact.klTeacherForcedKind, 'exact');
  const kl = (p: number[], q: number[]) => p.reduce((s, x, i) => s + x * Math.log(x / q[i]), 0);
  for (const i of [0, 1]) {
    t.true(Math.abs(exact.klProfile[i].klTeacherForced! - kl(pol[i], ref[i])) < 1e-12);
    t.true(bound.klProfile[i].klTeacherForced! <= exact.klProfile[i].klTeacherForced! + 1e-15);
    t.true(bound.klProfile[i].klTeacherForced! > 0);
  }
});

test('the committed example logs are valid', (t) => {
  for (const file of ['examples/logs/smollm2.jsonl']) {
    const parsed = parseLog(readFileSync(file, 'utf8'), file);
    t.true(parsed.samples.length > 0, file);
  }
});
