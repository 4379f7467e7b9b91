/**
 * `import vllm|openai|hf FILE --out LOG`: provider outputs into a rollout log.
 *
 * The input is JSON lines. Line 1 is the rollout log's header (models, policy, reference, judge),
 * written by the user; every other line is one sampled response:
 *
 *     {"id": "s1", "model": "policy", "harm": 1, "prompt": "p1", <provider payload>}
 *
 * - vllm:   "output": a RequestOutput of the sampling model (prompt, prompt_token_ids,
 *           outputs[0].token_ids and .logprobs: per position a dict {token id: {logprob, rank,
 *           decoded_token}} holding the top-k and the chosen token), and "scores": {model id:
 *           RequestOutput of that model run on prompt + response with prompt_logprobs (the first
 *           position is None)}.
 * - openai: "completion": a chat completion with choices[0].logprobs.content[] ({token, logprob,
 *           bytes, top_logprobs ≤ 20}); "scores": {model id: a legacy completion with echo = true
 *           (choices[0].logprobs.tokens, token_logprobs, top_logprobs)}. Such logs carry no token ids:
 *           distinct tokens (by their bytes) are numbered in order of appearance and the table is
 *           stored as the header's vocabulary. −9999 ("very unlikely") becomes −∞.
 * - hf:     the line is already close to a sample (examples/hf_rollouts.py writes it): token_ids,
 *           prompt_token_ids and logprobs {model id: [...]}.
 *
 * Token ids are checked: a prompt id must always come with the same token ids, scored sequences
 * must end with the response's tokens (and, for models with the same template, start with the
 * prompt's), ids must be below the declared vocabulary size. A mismatch names the line and record.
 */
import { readFileSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';
import { writeAtomic } from '../io/files.js';
import { firstSchemaError } from '../io/schema-check.js';
import { LogValidator, type LogHeader, type LogPrompt, type LogRecord, type LogSample } from './format.js';
import { PROVIDER_LINES, type HfLine, type OpenaiLine, type Provider, type VllmLine, type VllmPosition } from './providers.js';

export type { Provider } from './providers.js';

/** OpenAI's "very unlikely" log-probability. */
export const OPENAI_SENTINEL = -9999;

type Fail = (field: string, reason: string) => never;

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const sameIds = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Converts one line's payload into a prompt (text, token ids) and a sample. */
interface Converted {
  prompt: { text: string; tokens: number[] };
  tokens: number[];
  logprobs: Record<string, (number | null)[]>;
  top: Record<string, [number, number][][]>;
}

function vllmLogprob(entry: VllmPosition | null | undefined, token: number, field: string, fail: Fail): number {
  if (!entry) fail(field, 'must be a dict {token id: {logprob, rank, decoded_token}}');
  const chosen = Object.hasOwn(entry, String(token)) ? entry[String(token)] : undefined;
  if (!chosen) return fail(field, `has no entry for the chosen token ${token} (vLLM's dicts hold the top-k plus the chosen token)`);
  return chosen.logprob;
}

/** The top-k of one position as [token id, log-probability] pairs, by rank. */
function vllmTop(entry: VllmPosition | null | undefined): [number, number][] {
  return Object.entries(entry ?? {})
    .map(([id, v]) => [Number(id), v.logprob, v.rank ?? Infinity] as const)
    .sort((a, b) => a[2] - b[2])
    .map(([id, x]): [number, number] => [id, x]);
}

function fromVllm(line: VllmLine, model: string, sameTemplate: (m: string) => boolean, fail: Fail): Converted {
  const out = line.output;
  const promptTokens = out.prompt_token_ids;
  const { token_ids: tokens, logprobs: lps } = out.outputs[0]!;
  if (lps.length !== tokens.length) fail('output.outputs[0].logprobs', `must have one dict per response token (${tokens.length})`);
  const logprobs: Converted['logprobs'] = { [model]: tokens.map((tok, t) => vllmLogprob(lps[t], tok, `output.outputs[0].logprobs[${t}]`, fail)) };
  const top: Converted['top'] = { [model]: lps.map((e) => vllmTop(e)) };
  for (const [other, scored] of Object.entries(line.scores ?? {})) {
    const f = `scores.${other}`;
    const { prompt_token_ids: ids, prompt_logprobs: plp } = scored;
    const start = ids.length - tokens.length;
    if (start < 1 || !sameIds(ids.slice(start), tokens)) fail(`${f}.prompt_token_ids`, 'does not end with the response\'s token ids');
    if (sameTemplate(other) && !sameIds(ids.slice(0, start), promptTokens)) fail(`${f}.prompt_token_ids`, 'its prompt part differs from output.prompt_token_ids though the header gives both models the same template');
    if (plp.length !== ids.length) fail(`${f}.prompt_logprobs`, `must have one entry per prompt token (${ids.length}), the first None`);
    logprobs[other] = tokens.map((tok, t) => vllmLogprob(plp[start + t], tok, `${f}.prompt_logprobs[${start + t}]`, fail));
    top[other] = tokens.map((_, t) => vllmTop(plp[start + t]));
  }
  return { prompt: { text: out.prompt ?? '', tokens: promptTokens }, tokens, logprobs, top };
}

/** Token numbering for providers that give token strings: by their bytes, in order of appearance. */
class TokenTable {
  readonly names: string[] = [];
  #ids = new Map<string, number>();

  id(token: string, bytes: unknown): number {
    // The bytes identify a token (its string may be a lossy decoding); echoed tokens come without them.
    const key = (Array.isArray(bytes) ? bytes : [...Buffer.from(token, 'utf8')]).join(',');
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.names.length;
      this.#ids.set(key, id);
      this.names.push(token);
    }
    return id;
  }
}

const openaiLp = (x: number) => (x <= OPENAI_SENTINEL ? null : x);

function fromOpenai(line: OpenaiLine, model: string, table: TokenTable, fail: Fail): Converted {
  const content = line.completion.choices[0]!.logprobs.content;
  const tokens: number[] = [];
  const own: (number | null)[] = [];
  const ownTop: [number, number][][] = [];
  for (const e of content) {
    tokens.push(table.id(e.token, e.bytes));
    own.push(openaiLp(e.logprob));
    const alternatives = (e.top_logprobs ?? []).map((a): [number, number] => [table.id(a.token, a.bytes), a.logprob]);
    // −∞ entries say nothing a top-k list needs: keep the finite ones.
    ownTop.push(alternatives.filter(([, x]) => x > OPENAI_SENTINEL));
  }
  const logprobs: Converted['logprobs'] = { [model]: own };
  const top: Converted['top'] = { [model]: ownTop };
  const responseNames = content.map((c) => c.token);
  for (const [other, scored] of Object.entries(line.scores ?? {})) {
    const f = `scores.${other}.choices[0].logprobs`;
    const { tokens: names, token_logprobs: values, top_logprobs: alt } = scored.choices[0]!.logprobs;
    const start = names.length - responseNames.length;
    if (start < 1 || names.slice(start).some((x, i) => x !== responseNames[i])) fail(`${f}.tokens`, 'does not end with the response\'s tokens');
    logprobs[other] = values.slice(start).map((x, i) => {
      if (x === null) fail(`${f}.token_logprobs[${start + i}]`, 'must be a number');
      return openaiLp(x);
    });
    top[other] = responseNames.map((_, i) =>
      Object.entries(alt?.[start + i] ?? {})
        .filter(([, x]) => x > OPENAI_SENTINEL)
        .map(([name, x]): [number, number] => [table.id(name, undefined), x]),
    );
  }
  const prompt = typeof line.prompt === 'object' ? line.prompt : { text: line.prompt ?? '' };
  return { prompt: { text: prompt.text ?? '', tokens: 'tokens' in prompt ? (prompt.tokens ?? []) : [] }, tokens, logprobs, top };
}

function fromHf(line: HfLine): Converted {
  return { prompt: { text: line.prompt ?? '', tokens: line.prompt_token_ids }, tokens: line.token_ids, logprobs: line.logprobs, top: line.top ?? {} };
}

/** Converts a provider file to rollout-log records, each checked as it is made (errors name the input line). */
export function convert(provider: Provider, text: string, source: string): LogRecord[] {
  const records: LogRecord[] = [];
  const validator = new LogValidator(source);
  const table = new TokenTable();
  const prompts = new Map<string, LogPrompt>();
  let header: LogHeader | undefined;
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    let where = `${source} line ${i + 1}`;
    const fail: Fail = (field, reason) => {
      throw new HarmHorizonError('HH_IMPORT_INVALID', `cannot import ${where}: ${field}: ${reason}`, field);
    };
    let line: unknown;
    try {
      line = JSON.parse(raw);
    } catch (error) {
      fail('', `not valid JSON: ${(error as Error).message}`);
    }
    if (!isObject(line)) fail('', 'must be a JSON object');
    const l = line;
    if (!header) {
      if (l.type !== 'header') fail('type', 'line 1 must be the rollout log header ({"type": "header", …}, docs/rollout-log.md)');
      header = validator.add(l, i + 1) as LogHeader;
      records.push(header);
      return;
    }
    const id = typeof l.id === 'string' ? l.id : `line-${i + 1}`;
    where += ` (sample ${JSON.stringify(id)})`;
    const shape = firstSchemaError(PROVIDER_LINES[provider], l);
    if (shape) fail(shape.field, shape.reason);
    const model = l.model as string;
    const h = header;
    const sameTemplate = (other: string) => {
      const [a, b] = [h.models.find((x) => x.id === model), h.models.find((x) => x.id === other)];
      return !!a && !!b && a.chatTemplate === b.chatTemplate && a.tokenizer === b.tokenizer && a.systemPrompt === b.systemPrompt;
    };
    const c = provider === 'vllm' ? fromVllm(l as VllmLine, model, sameTemplate, fail) : provider === 'openai' ? fromOpenai(l as OpenaiLine, model, table, fail) : fromHf(l as HfLine);
    // The prompt's id: "prompt_id" (hf), "prompt" (vllm) or "prompt.id" (openai).
    const promptId = typeof l.prompt_id === 'string' ? l.prompt_id : typeof l.prompt === 'string' ? l.prompt : isObject(l.prompt) && typeof l.prompt['id'] === 'string' ? l.prompt['id'] : `prompt-${prompts.size + 1}`;
    const known = prompts.get(promptId);
    if (known && !sameIds(known.tokens, c.prompt.tokens)) fail('prompt token ids', `differ from those of the earlier record of prompt ${JSON.stringify(promptId)} (another template?)`);
    if (!known) {
      const prompt: LogPrompt = { type: 'prompt', id: promptId, text: c.prompt.text, tokens: c.prompt.tokens };
      prompts.set(promptId, prompt);
      records.push(validator.add(prompt, i + 1));
    }
    const sample: LogSample = { type: 'sample', id, prompt: promptId, model, tokens: c.tokens, logprobs: c.logprobs, harm: l.harm as number };
    if (Object.keys(c.top).length > 0) sample.top = c.top;
    records.push(validator.add(sample, i + 1));
  });
  if (!header) throw new HarmHorizonError('HH_IMPORT_INVALID', `cannot import ${source}: empty file (line 1 must be the rollout log header)`);
  // Token strings numbered on the way in: the table becomes the vocabulary.
  if (provider === 'openai') records[0] = { ...header, vocabulary: table.names };
  return records;
}

/** Reads a provider file, converts it and writes the rollout log; returns the number of records. */
export function importLog(provider: Provider, file: string, out: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new HarmHorizonError('HH_FILE_NOT_FOUND', `cannot read ${file}: ${(error as Error).message}`);
  }
  const records = convert(provider, text, file);
  writeAtomic(out, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return records.length;
}
