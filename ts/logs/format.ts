/**
 * The rollout log: one JSON-lines file holding what a model run produced (responses, per-token
 * log-probabilities under the policy and a reference, rollouts from prefixes, prefilling attacks and
 * judge scores), in the form `profile` turns into the theory's quantities. Documented in
 * docs/rollout-log.md, with the JSON Schema in schema/rollout-log.schema.json.
 *
 * Line 1 is the header; prompt records follow; then sample, rollout and prefill records, each
 * naming records that come before it. `readLog` checks every record and names the bad one by line
 * number, kind, id and field.
 */
import { readFileSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';

export const LOG_FORMAT = 'harm-horizon-rollout-log';
export const LOG_VERSION = 1;

/** A model that produced or scored tokens. */
export interface LogModel {
  id: string;
  name?: string;
  /** A weights file (GGUF, safetensors folder) or a server endpoint. */
  file?: string;
  endpoint?: string;
  tokenizer?: string;
  /** The chat template, or its name. */
  chatTemplate?: string;
  /** The system prompt (models that differ only in conditioning). */
  systemPrompt?: string;
  /** Log-probabilities of the raw model ("raw") or after temperature / top-p processing ("processed"). */
  logprobs: 'raw' | 'processed';
  temperature: number;
  /** Vocabulary size: token ids must be below it. */
  vocabSize?: number;
}

export interface LogHeader {
  type: 'header';
  format: typeof LOG_FORMAT;
  version: typeof LOG_VERSION;
  models: LogModel[];
  /** The model whose shift from the reference is measured (the aligned model). */
  policy: string;
  /** The reference (base) model. */
  reference: string;
  judge: { name: string; scores: 'binary' | 'soft' };
  /** Token names by id (toy scenarios; needed for full distributions). */
  vocabulary?: string[];
  /** Maximum response length used. */
  maxTokens?: number;
  /** Free-form provenance: the scenario and λ of a toy log, the command that made it. */
  source?: Record<string, unknown>;
}

export interface LogPrompt {
  type: 'prompt';
  id: string;
  text: string;
  /** Token ids of the prompt after the chat template. */
  tokens: number[];
}

/** log-probability per position; null stands for −∞ (a token the model can never emit). */
export type LogProbs = (number | null)[];

export interface LogSample {
  type: 'sample';
  id: string;
  prompt: string;
  /** The model the response was sampled from. */
  model: string;
  tokens: number[];
  /** Chosen-token log-probabilities per model: at least the header's policy and reference. */
  logprobs: Record<string, LogProbs>;
  /** Top-k alternatives per model and position: [token id, log-probability] pairs. */
  top?: Record<string, [number, number][][]>;
  /** Full next-token distributions per model and position (log-probabilities by token id). */
  distributions?: Record<string, LogProbs[]>;
  /** KL(policy ‖ reference) per position, computed by the runner from full distributions it did not store. */
  klFull?: number[];
  /** The judge's harm score in [0, 1]. */
  harm: number;
}

export interface LogRollout {
  type: 'rollout';
  id: string;
  /** The sample whose first `depth` tokens were kept. */
  sample: string;
  depth: number;
  /** 0 or 1: two independent sets per prefix, so that products of innovations are unbiased. */
  set: 0 | 1;
  model: string;
  /** Harm score of each continuation. */
  harms: number[];
}

export interface LogPrefill {
  type: 'prefill';
  id: string;
  prompt: string;
  /** The model that continued the forced prefix. */
  model: string;
  /** Depth of the attack: the prefix is the first k tokens of `source` (fewer when it ended before k). */
  k: number;
  prefix: number[];
  /** The harmful response the prefix was cut from. */
  source?: string;
  /** Weight of the prefix in the average (default 1; toy logs use the source's harm, as THEORY's Q). */
  weight?: number;
  harms: number[];
}

export type LogRecord = LogHeader | LogPrompt | LogSample | LogRollout | LogPrefill;

export interface RolloutLog {
  header: LogHeader;
  prompts: LogPrompt[];
  samples: LogSample[];
  rollouts: LogRollout[];
  prefills: LogPrefill[];
}

/** A bad record: code HH_LOG_INVALID, message naming the file, line, record and field. */
export function logError(where: string, field: string, reason: string): HarmHorizonError {
  return new HarmHorizonError('HH_LOG_INVALID', `invalid rollout log: ${where}: ${field}: ${reason}`, field);
}

type Fail = (field: string, reason: string) => never;

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function str(r: Record<string, unknown>, field: string, fail: Fail, optional = false): string | undefined {
  const x = r[field];
  if (x === undefined && optional) return undefined;
  if (typeof x !== 'string' || x === '') fail(field, `must be a non-empty string, got ${JSON.stringify(x)}`);
  return x as string;
}

function tokenIds(x: unknown, field: string, fail: Fail, vocabSize?: number): number[] {
  if (!Array.isArray(x)) fail(field, 'must be an array of token ids');
  const a = x as unknown[];
  a.forEach((id, i) => {
    if (!Number.isSafeInteger(id) || (id as number) < 0) fail(`${field}[${i}]`, `must be a token id (a whole number ≥ 0), got ${JSON.stringify(id)}`);
    if (vocabSize !== undefined && (id as number) >= vocabSize) fail(`${field}[${i}]`, `token id ${id} is not below the vocabulary size ${vocabSize}`);
  });
  return a as number[];
}

/** A log-probability: a number ≤ 0 (up to rounding) or null for −∞. */
function logProb(x: unknown, field: string, fail: Fail) {
  if (x === null) return;
  if (typeof x !== 'number' || !Number.isFinite(x) || x > 1e-6) fail(field, `must be a log-probability (a number ≤ 0, or null for −∞), got ${JSON.stringify(x)}`);
}

function scores(x: unknown, field: string, fail: Fail, binary: boolean, nonEmpty = true) {
  if (!Array.isArray(x) || (nonEmpty && x.length === 0)) fail(field, 'must be a non-empty array of harm scores');
  (x as unknown[]).forEach((h, i) => score(h, `${field}[${i}]`, fail, binary));
}

function score(h: unknown, field: string, fail: Fail, binary: boolean) {
  if (typeof h !== 'number' || !(h >= 0 && h <= 1)) fail(field, `must be a harm score in [0, 1], got ${JSON.stringify(h)}`);
  if (binary && h !== 0 && h !== 1) fail(field, `the judge is binary: scores must be 0 or 1, got ${h}`);
}

function checkHeader(r: Record<string, unknown>, fail: Fail): LogHeader {
  if (r.format !== LOG_FORMAT) fail('format', `must be "${LOG_FORMAT}"`);
  if (r.version !== LOG_VERSION) fail('version', `unsupported version ${JSON.stringify(r.version)} (this build reads ${LOG_VERSION})`);
  if (!Array.isArray(r.models) || r.models.length === 0) fail('models', 'must list at least one model');
  const ids = new Set<string>();
  (r.models as unknown[]).forEach((m, i) => {
    const f: Fail = (field, reason) => fail(`models[${i}].${field}`, reason);
    if (!isObject(m)) f('', 'must be an object');
    const mm = m as Record<string, unknown>;
    const id = str(mm, 'id', f)!;
    if (ids.has(id)) f('id', `duplicate model id ${JSON.stringify(id)}`);
    ids.add(id);
    for (const k of ['name', 'file', 'endpoint', 'tokenizer', 'chatTemplate', 'systemPrompt']) if (mm[k] !== undefined && typeof mm[k] !== 'string') f(k, 'must be a string');
    if (mm.logprobs !== 'raw' && mm.logprobs !== 'processed') f('logprobs', 'must be "raw" or "processed"');
    if (typeof mm.temperature !== 'number' || !(mm.temperature >= 0)) f('temperature', 'must be a number ≥ 0');
    if (mm.vocabSize !== undefined && !(Number.isSafeInteger(mm.vocabSize) && (mm.vocabSize as number) >= 1)) f('vocabSize', 'must be a whole number ≥ 1');
  });
  for (const k of ['policy', 'reference'] as const) {
    const id = str(r, k, fail)!;
    if (!ids.has(id)) fail(k, `names no model of the header (models: ${[...ids].join(', ')})`);
  }
  if (!isObject(r.judge)) fail('judge', 'must be an object {name, scores}');
  const judge = r.judge as Record<string, unknown>;
  str(judge, 'name', (f, why) => fail(`judge.${f}`, why));
  if (judge.scores !== 'binary' && judge.scores !== 'soft') fail('judge.scores', 'must be "binary" or "soft"');
  if (r.vocabulary !== undefined && !(Array.isArray(r.vocabulary) && r.vocabulary.every((v) => typeof v === 'string'))) fail('vocabulary', 'must be an array of token names');
  if (r.maxTokens !== undefined && !(Number.isSafeInteger(r.maxTokens) && (r.maxTokens as number) >= 1)) fail('maxTokens', 'must be a whole number ≥ 1');
  if (r.source !== undefined && !isObject(r.source)) fail('source', 'must be an object');
  return r as unknown as LogHeader;
}

/** Incremental validation: records are checked against the header and the records before them. */
export class LogValidator {
  readonly log: RolloutLog = { header: undefined as unknown as LogHeader, prompts: [], samples: [], rollouts: [], prefills: [] };
  readonly #source: string;
  #models = new Map<string, LogModel>();
  #prompts = new Map<string, LogPrompt>();
  #samples = new Map<string, LogSample>();
  #ids = new Set<string>();

  constructor(source: string) {
    this.#source = source;
  }

  /** Checks one parsed record (line numbers from 1); throws HH_LOG_INVALID naming it. */
  add(value: unknown, line: number): LogRecord {
    let where = `${this.#source} line ${line}`;
    const fail: Fail = (field, reason) => {
      throw logError(where, field, reason);
    };
    if (!isObject(value)) fail('', 'a record must be a JSON object');
    const r = value as Record<string, unknown>;
    if (!this.log.header) {
      if (r.type !== 'header') fail('type', 'the first record must be the header ({"type": "header", …})');
      const header = checkHeader(r, fail);
      this.log.header = header;
      for (const m of header.models) this.#models.set(m.id, m);
      return header;
    }
    if (!['prompt', 'sample', 'rollout', 'prefill'].includes(r.type as string)) fail('type', `must be prompt, sample, rollout or prefill after the header, got ${JSON.stringify(r.type)}`);
    const id = str(r, 'id', fail)!;
    where += ` (${String(r.type)} ${JSON.stringify(id)})`;
    if (this.#ids.has(id)) fail('id', 'duplicate record id');
    this.#ids.add(id);
    const binary = this.log.header.judge.scores === 'binary';
    const model = (field: string) => {
      const m = str(r, field, fail)!;
      if (!this.#models.has(m)) fail(field, `names no model of the header (models: ${[...this.#models.keys()].join(', ')})`);
      return this.#models.get(m)!;
    };
    const vocab = (m: LogModel) => m.vocabSize ?? this.log.header.vocabulary?.length;
    switch (r.type) {
      case 'prompt': {
        if (typeof r.text !== 'string') fail('text', 'must be a string');
        tokenIds(r.tokens, 'tokens', fail);
        const p = r as unknown as LogPrompt;
        this.#prompts.set(id, p);
        this.log.prompts.push(p);
        return p;
      }
      case 'sample': {
        const prompt = str(r, 'prompt', fail)!;
        if (!this.#prompts.has(prompt)) fail('prompt', `no earlier prompt record has id ${JSON.stringify(prompt)}`);
        const sampler = model('model');
        const tokens = tokenIds(r.tokens, 'tokens', fail, vocab(sampler));
        const n = tokens.length;
        if (!isObject(r.logprobs)) fail('logprobs', 'must be an object {model id: [log-probability per position]}');
        const lp = r.logprobs as Record<string, unknown>;
        for (const m of [this.log.header.policy, this.log.header.reference]) if (lp[m] === undefined) fail(`logprobs.${m}`, `missing: every sample needs chosen-token log-probabilities under the policy and the reference`);
        for (const [m, a] of Object.entries(lp)) {
          if (!this.#models.has(m)) fail(`logprobs.${m}`, 'names no model of the header');
          if (!Array.isArray(a) || a.length !== n) fail(`logprobs.${m}`, `must have one entry per token (${n}), got ${Array.isArray(a) ? a.length : typeof a}`);
          (a as unknown[]).forEach((x, i) => logProb(x, `logprobs.${m}[${i}]`, fail));
        }
        if (r.top !== undefined) {
          if (!isObject(r.top)) fail('top', 'must be an object {model id: per position [[token id, log-probability], …]}');
          for (const [m, rows] of Object.entries(r.top as Record<string, unknown>)) {
            if (!this.#models.has(m)) fail(`top.${m}`, 'names no model of the header');
            if (!Array.isArray(rows) || rows.length !== n) fail(`top.${m}`, `must have one list per token (${n})`);
            (rows as unknown[]).forEach((row, i) => {
              if (!Array.isArray(row)) fail(`top.${m}[${i}]`, 'must be a list of [token id, log-probability] pairs');
              (row as unknown[]).forEach((pair, j) => {
                const f = `top.${m}[${i}][${j}]`;
                if (!Array.isArray(pair) || pair.length !== 2) fail(f, 'must be a [token id, log-probability] pair');
                tokenIds([pair[0]], f, fail, vocab(this.#models.get(m)!));
                logProb(pair[1], f, fail);
              });
            });
          }
        }
        if (r.distributions !== undefined) {
          if (!isObject(r.distributions)) fail('distributions', 'must be an object {model id: per position [log-probability by token id]}');
          for (const [m, rows] of Object.entries(r.distributions as Record<string, unknown>)) {
            if (!this.#models.has(m)) fail(`distributions.${m}`, 'names no model of the header');
            if (!Array.isArray(rows) || rows.length !== n) fail(`distributions.${m}`, `must have one row per token (${n})`);
            const width = vocab(this.#models.get(m)!);
            (rows as unknown[]).forEach((row, i) => {
              if (!Array.isArray(row) || (width !== undefined && row.length !== width)) fail(`distributions.${m}[${i}]`, `must be a row of ${width ?? 'V'} log-probabilities`);
              (row as unknown[]).forEach((x, a) => logProb(x, `distributions.${m}[${i}][${a}]`, fail));
              const total = (row as (number | null)[]).reduce((s: number, x) => s + (x === null ? 0 : Math.exp(x)), 0);
              if (Math.abs(total - 1) > 1e-6) fail(`distributions.${m}[${i}]`, `probabilities sum to ${total}, not 1`);
            });
          }
        }
        if (r.klFull !== undefined) {
          if (!Array.isArray(r.klFull) || r.klFull.length !== n || !r.klFull.every((x) => typeof x === 'number' && x >= -1e-9)) fail('klFull', `must be ${n} numbers ≥ 0`);
        }
        score(r.harm, 'harm', fail, binary);
        const s = r as unknown as LogSample;
        this.#samples.set(id, s);
        this.log.samples.push(s);
        return s;
      }
      case 'rollout': {
        const sampleId = str(r, 'sample', fail)!;
        const sample = this.#samples.get(sampleId);
        if (!sample) fail('sample', `no earlier sample record has id ${JSON.stringify(sampleId)}`);
        if (!Number.isSafeInteger(r.depth) || (r.depth as number) < 0 || (r.depth as number) > sample!.tokens.length)
          fail('depth', `must be a whole number in 0..${sample!.tokens.length} (the sample's length), got ${JSON.stringify(r.depth)}`);
        if (r.set !== 0 && r.set !== 1) fail('set', 'must be 0 or 1 (two independent sets per prefix)');
        model('model');
        scores(r.harms, 'harms', fail, binary);
        const o = r as unknown as LogRollout;
        this.log.rollouts.push(o);
        return o;
      }
      case 'prefill': {
        const prompt = str(r, 'prompt', fail)!;
        if (!this.#prompts.has(prompt)) fail('prompt', `no earlier prompt record has id ${JSON.stringify(prompt)}`);
        const continuer = model('model');
        const prefix = tokenIds(r.prefix, 'prefix', fail, vocab(continuer));
        // k exceeds the prefix only when the harmful response ended before k tokens.
        if (!Number.isSafeInteger(r.k) || (r.k as number) < prefix.length) fail('k', `must be a whole number ≥ the prefix length ${prefix.length}, got ${JSON.stringify(r.k)}`);
        if (r.source !== undefined && !this.#samples.has(r.source as string)) fail('source', `no earlier sample record has id ${JSON.stringify(r.source)}`);
        if (r.weight !== undefined && !(typeof r.weight === 'number' && Number.isFinite(r.weight) && r.weight >= 0)) fail('weight', 'must be a finite number ≥ 0');
        scores(r.harms, 'harms', fail, binary);
        const p = r as unknown as LogPrefill;
        this.log.prefills.push(p);
        return p;
      }
      default:
        return fail('type', `must be prompt, sample, rollout or prefill, got ${JSON.stringify(r.type)}`);
    }
  }
}

/** Parses and validates a rollout log's text. */
export function parseLog(text: string, source = 'log'): RolloutLog {
  const validator = new LogValidator(source);
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw logError(`${source} line ${i + 1}`, '', `not valid JSON: ${(error as Error).message}`);
    }
    validator.add(value, i + 1);
  });
  if (!validator.log.header) throw logError(source, '', 'empty file: a rollout log starts with a header record');
  return validator.log;
}

/** Reads and validates a rollout log file. */
export function readLog(path: string): RolloutLog {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'HH_FILE_NOT_FOUND' : 'HH_LOG_INVALID';
    throw new HarmHorizonError(code, `cannot read rollout log ${path}: ${(error as Error).message}`);
  }
  return parseLog(text, path);
}

/** A log-probability as a number (null stands for −∞). */
export function lp(x: number | null): number {
  return x === null ? -Infinity : x;
}
