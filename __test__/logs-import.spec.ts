/**
 * Importers, on hand-written samples in each provider's documented format (examples/logs/): vLLM
 * offline outputs (logprobs dicts holding the top-k plus the chosen token, prompt_logprobs whose
 * first position is None), OpenAI chat completions (logprobs.content[] with bytes and top_logprobs,
 * −9999 as "very unlikely") with legacy echo completions as the reference's scores, and the JSON
 * lines of examples/hf_rollouts.py. Mismatched token ids name the line, record and field.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HarmHorizonError } from '../ts/core/errors.js';
import type { LogHeader, LogSample } from '../ts/logs/format.js';
import { convert } from '../ts/logs/import.js';
import { runCli } from './helpers/cli.js';

const fixture = (name: string) => readFileSync(join('examples/logs', name), 'utf8');
const lines = (name: string) => fixture(name).trim().split('\n').map((l) => JSON.parse(l));
const text = (values: unknown[]) => values.map((v) => JSON.stringify(v)).join('\n');
const samples = (records: ReturnType<typeof convert>) => records.filter((r): r is LogSample => r.type === 'sample');

test('vllm: chosen-token log-probs from the dicts (also outside the top-k), the reference from prompt_logprobs after the prompt', (t) => {
  const records = convert('vllm', fixture('vllm-outputs.jsonl'), 'vllm-outputs.jsonl');
  t.deepEqual(records.map((r) => r.type), ['header', 'prompt', 'sample', 'sample']);
  const [v1, v2] = samples(records);
  t.deepEqual(v1.tokens, [306, 2609, 2]);
  t.deepEqual(v1.logprobs.policy, [-0.05, -2.9, -0.01], 'position 2: the chosen token has rank 5, outside the top-2');
  t.deepEqual(v1.logprobs.reference, [-1.3, -6.1, -2.2], 'read at prompt length + t in prompt_logprobs');
  t.deepEqual(v1.top!.policy[1], [[1033, -0.4], [508, -1.6], [2609, -2.9]], 'ordered by rank');
  t.deepEqual(v2.logprobs.reference, [-0.9, -0.1]);
  const prompt = records[1] as { tokens: number[] };
  t.deepEqual(prompt.tokens, lines('vllm-outputs.jsonl')[1].output.prompt_token_ids);
});

test('vllm: a scored sequence whose prompt part differs under the same template, or a dict without the chosen token, names the record', (t) => {
  const bad = lines('vllm-outputs.jsonl');
  bad[1].scores.reference.prompt_token_ids[3] = 7;
  const e = t.throws(() => convert('vllm', text(bad), 'in.jsonl'), { instanceOf: HarmHorizonError });
  t.is(e!.code, 'HH_IMPORT_INVALID');
  t.regex(e!.message, /in\.jsonl line 2 \(sample "v1"\): scores\.reference\.prompt_token_ids: its prompt part differs/);

  const missing = lines('vllm-outputs.jsonl');
  delete missing[2].output.outputs[0].logprobs[1]['29892'];
  t.throws(() => convert('vllm', text(missing), 'in.jsonl'), { message: /line 3 \(sample "v2"\): output\.outputs\[0\]\.logprobs\[1\]: has no entry for the chosen token 29892/ });

  const vocab = lines('vllm-outputs.jsonl');
  vocab[1].output.outputs[0].token_ids[0] = 40000;
  vocab[1].output.outputs[0].logprobs[0]['40000'] = { logprob: -1, rank: 3 };
  vocab[1].scores.reference.prompt_token_ids[10] = 40000;
  vocab[1].scores.reference.prompt_logprobs[10]['40000'] = { logprob: -1, rank: 3 };
  const v = t.throws(() => convert('vllm', text(vocab), 'in.jsonl'));
  t.is((v as HarmHorizonError).code, 'HH_LOG_INVALID');
  t.regex(v!.message, /in\.jsonl line 2 \(sample "v1"\): tokens\[0\]: token id 40000 is not below the vocabulary size 32000/);
});

test('openai: tokens numbered by their bytes across chat and echo completions, −9999 dropped as "very unlikely"', (t) => {
  const records = convert('openai', fixture('openai-chat.jsonl'), 'openai-chat.jsonl');
  const header = records[0] as LogHeader;
  const [o1, o2] = samples(records);
  const name = (id: number) => header.vocabulary![id];
  t.deepEqual(o1.tokens.map(name), ['Sure', ',', ' here']);
  t.deepEqual(o2.tokens.map(name), ['I', "'m"]);
  t.deepEqual(o1.logprobs.policy, [-0.31, -0.05, -0.72]);
  t.deepEqual(o1.logprobs.reference, [-1.1, -0.2, -1.6], 'the echo\'s last three token_logprobs');
  t.deepEqual(o1.top!.policy[0].map(([id, x]) => [name(id), x]), [['Sure', -0.31], ['I', -1.4]], 'Sorry at −9999 is not a top-k entry');
  t.deepEqual(o1.top!.reference[1].map(([id]) => name(id)), [','], '"!" at −9999 dropped');
  t.is(o1.harm, 0.75, 'soft judge scores pass through');
});

test('openai: more than 20 top_logprobs, or an echo that does not end with the response, is refused', (t) => {
  const many = lines('openai-chat.jsonl');
  const entry = many[1].completion.choices[0].logprobs.content[0];
  entry.top_logprobs = Array.from({ length: 21 }, (_, i) => ({ token: `t${i}`, logprob: -i, bytes: [65 + i] }));
  t.throws(() => convert('openai', text(many), 'o.jsonl'), { message: /o\.jsonl line 2 \(sample "o1"\): completion\.choices\[0\]\.logprobs\.content\[0\]\.top_logprobs: has 21 entries/ });
  const shifted = lines('openai-chat.jsonl');
  shifted[2].scores.reference.choices[0].logprobs.tokens[8] = "'s";
  t.throws(() => convert('openai', text(shifted), 'o.jsonl'), { message: /line 3 \(sample "o2"\): scores\.reference\.choices\[0\]\.logprobs\.tokens: does not end with the response's tokens/ });
});

test('hf: lines of the documented snippet become samples; a prompt seen with other token ids names the line', (t) => {
  const records = convert('hf', fixture('hf-rollouts.jsonl'), 'hf.jsonl');
  const [h1, h2] = samples(records);
  t.deepEqual(h1.logprobs, { policy: [-0.4, -0.9, -1.3], reference: [-2.1, -1.0, -1.2] });
  t.is(h2.model, 'reference');
  const bad = lines('hf-rollouts.jsonl');
  bad[2].prompt_token_ids = bad[2].prompt_token_ids.slice(1);
  t.throws(() => convert('hf', text(bad), 'hf.jsonl'), { message: /hf\.jsonl line 3 \(sample "h2"\): prompt token ids: differ from those of the earlier record of prompt "p1"/ });
  const short = lines('hf-rollouts.jsonl');
  short[1].logprobs.reference.pop();
  t.throws(() => convert('hf', text(short), 'hf.jsonl'), { message: /hf\.jsonl line 2 \(sample "h1"\): logprobs\.reference: must have one entry per token \(3\), got 2/ });
});

test('import on the command line: writes a log profile reads; bad input exits 2 with the record named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hh-import-'));
  const out = join(dir, 'log.jsonl');
  const ok = runCli(['import', 'vllm', 'examples/logs/vllm-outputs.jsonl', '--out', out]);
  t.is(ok.status, 0, ok.stderr);
  const profile = runCli(['profile', out, '--json']);
  t.is(profile.status, 0, profile.stderr);
  const p = JSON.parse(profile.stdout);
  t.is(p.positions.length, 3);
  t.is(p.klTeacherForcedKind, 'unavailable', 'no reference samples in this log');
  const bad = runCli(['import', 'hf', 'examples/logs/vllm-outputs.jsonl', '--out', out]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /line 2 \(sample "v1"\): token_ids: missing/);
});
