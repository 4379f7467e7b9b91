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
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { HarmHorizonError } from '../core/errors.js';
import { firstSchemaError, withReasons } from '../io/schema-check.js';

export const LOG_FORMAT = 'harm-horizon-rollout-log';
export const LOG_VERSION = 1;

// The record formats, declared once: the TS types, the structural check (LogValidator runs the
// record's schema first) and schema/rollout-log.schema.json all come from these TypeBox schemas.

const Id = Type.String({ minLength: 1 });
const TokenIds = Type.Array(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), { description: 'Token ids.' });
/** A log-probability: a number ≤ 0 (up to rounding) or null for −∞. */
const LOG_PROB = 'must be a log-probability (a number ≤ 0, or null for −∞)';
const LogProb = withReasons(
  Type.Union([withReasons(Type.Number({ maximum: 1e-6 }), { range: (v) => `${LOG_PROB}, got ${v}`, finite: (v) => `${LOG_PROB}, got ${v}` }), Type.Null()], {
    description: 'A log-probability (≤ 0); null stands for −∞.',
  }),
  { type: (v) => `${LOG_PROB}, got ${JSON.stringify(v)}` },
);
const Harm = withReasons(Type.Number({ minimum: 0, maximum: 1, description: "A judge's harm score." }), {
  type: (v) => `must be a harm score in [0, 1], got ${JSON.stringify(v)}`,
  range: (v) => `must be a harm score in [0, 1], got ${v}`,
});
const Harms = withReasons(Type.Array(Harm, { minItems: 1 }), { minItems: () => 'must be a non-empty array of harm scores' });
/** [token id, log-probability]: a pair, typed as one (a TypeBox Tuple would publish draft-07 `items`). */
export const TopPair = Type.Unsafe<[number, number]>(Type.Array(Type.Number(), { minItems: 2, maxItems: 2, description: '[token id, log-probability]' }));
/** Per model id: one array (of log-probabilities, pairs or rows) per position. */
const perModel = <T extends TSchema>(item: T, description: string) => Type.Record(Type.String(), Type.Array(item), { description });

const LogModelSchema = Type.Object(
  {
    id: Id,
    name: Type.Optional(Type.String()),
    file: Type.Optional(Type.String({ description: 'Weights file (GGUF, a safetensors folder).' })),
    endpoint: Type.Optional(Type.String({ description: 'Server URL.' })),
    tokenizer: Type.Optional(Type.String()),
    chatTemplate: Type.Optional(Type.String({ description: 'The chat template, or its name.' })),
    systemPrompt: Type.Optional(Type.String({ description: 'The system prompt, for models that differ only in conditioning.' })),
    logprobs: Type.Union([Type.Literal('raw'), Type.Literal('processed')], {
      description: 'Log-probabilities of the raw model, or after temperature / top-k / top-p processing.',
    }),
    temperature: Type.Number({ minimum: 0 }),
    vocabSize: Type.Optional(Type.Integer({ minimum: 1, description: 'Token ids must be below it.' })),
  },
  { additionalProperties: false, description: 'A model that produced or scored tokens.' },
);

const LogHeaderSchema = Type.Object(
  {
    type: Type.Literal('header'),
    format: Type.Literal(LOG_FORMAT),
    version: withReasons(Type.Literal(LOG_VERSION), { type: (v) => `unsupported version ${JSON.stringify(v)} (this build reads ${LOG_VERSION})` }),
    models: withReasons(Type.Array(LogModelSchema, { minItems: 1 }), { minItems: () => 'must list at least one model' }),
    policy: Type.String({ minLength: 1, description: "Id of the model whose shift from the reference is measured (the aligned model)." }),
    reference: Type.String({ minLength: 1, description: 'Id of the reference (base) model.' }),
    judge: Type.Object({ name: Id, scores: Type.Union([Type.Literal('binary'), Type.Literal('soft')]) }, { additionalProperties: false }),
    vocabulary: Type.Optional(Type.Array(Type.String(), { description: 'Token names by id (toy scenarios; OpenAI imports).' })),
    maxTokens: Type.Optional(Type.Integer({ minimum: 1, description: 'Maximum response length used.' })),
    source: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form provenance: the scenario and λ of a toy log, the command that made it.' })),
  },
  { additionalProperties: false, description: 'Line 1 of a log.' },
);

const LogPromptSchema = Type.Object(
  {
    type: Type.Literal('prompt'),
    id: Id,
    text: Type.String(),
    tokens: Type.Array(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), { description: 'Token ids of the prompt after the (reference\'s) chat template.' }),
  },
  { additionalProperties: false },
);

const LogSampleSchema = Type.Object(
  {
    type: Type.Literal('sample'),
    id: Id,
    prompt: Id,
    model: Type.String({ minLength: 1, description: 'The model the response was sampled from.' }),
    tokens: TokenIds,
    logprobs: perModel(LogProb, 'Chosen-token log-probabilities per model id (at least the policy and the reference).'),
    top: Type.Optional(
      perModel(
        Type.Array(TopPair),
        'Top-k alternatives per model id and position: [token id, log-probability] pairs.',
      ),
    ),
    distributions: Type.Optional(perModel(Type.Array(LogProb), 'Full next-token distributions per model id and position (log-probabilities by token id).')),
    klFull: Type.Optional(Type.Array(Type.Number({ minimum: -1e-9 }), { description: 'KL(policy ‖ reference) per position, from full distributions the runner did not store.' })),
    harm: Harm,
  },
  { additionalProperties: false },
);

const LogRolloutSchema = Type.Object(
  {
    type: Type.Literal('rollout'),
    id: Id,
    sample: Type.String({ minLength: 1, description: 'The sample whose first `depth` tokens were kept.' }),
    depth: Type.Integer({ minimum: 0, description: 'Tokens of the sample kept as the prefix.' }),
    set: withReasons(Type.Union([Type.Literal(0), Type.Literal(1)], { description: 'One of two independent sets of continuations per prefix (so that products of innovations are unbiased).' }), {
      type: () => 'must be 0 or 1 (two independent sets per prefix)',
    }),
    model: Id,
    harms: Harms,
  },
  { additionalProperties: false },
);

const LogPrefillSchema = Type.Object(
  {
    type: Type.Literal('prefill'),
    id: Id,
    prompt: Id,
    model: Type.String({ minLength: 1, description: 'The model that continued the forced prefix.' }),
    k: Type.Integer({ minimum: 0, description: 'Attack depth: the prefix is the first k tokens of `source` (fewer when it ended before k).' }),
    prefix: TokenIds,
    source: Type.Optional(Type.String({ minLength: 1, description: 'The harmful sample the prefix was cut from.' })),
    weight: Type.Optional(Type.Number({ minimum: 0, description: "Weight in the ASR average (default 1; toy logs use the source's harm, as THEORY's Q)." })),
    harms: Harms,
  },
  { additionalProperties: false },
);

const RECORDS = { header: LogHeaderSchema, prompt: LogPromptSchema, sample: LogSampleSchema, rollout: LogRolloutSchema, prefill: LogPrefillSchema };

export const LogRecordSchema = Type.Union(Object.values(RECORDS), {
  $id: 'urn:harm-horizon:rollout-log.schema.json',
  title: 'harm-horizon rollout log record',
  description:
    "One line of a rollout log (JSON lines; see docs/rollout-log.md). Line 1 is the header, then prompt records, then sample, rollout and prefill records. This schema checks one record's shape; the reader (readLog) also checks what a schema cannot: that the header comes first, ids are unique, every prompt, sample and model named exists earlier, per-position arrays have one entry per token, token ids are below the vocabulary size, full distributions sum to 1, a rollout's depth is at most its sample's length, and binary judges give 0 or 1.",
});

export type LogModel = Static<typeof LogModelSchema>;
export type LogHeader = Static<typeof LogHeaderSchema>;
export type LogPrompt = Static<typeof LogPromptSchema>;
/** log-probability per position; null stands for −∞ (a token the model can never emit). */
export type LogProbs = (number | null)[];
export type LogSample = Static<typeof LogSampleSchema>;
export type LogRollout = Static<typeof LogRolloutSchema>;
export type LogPrefill = Static<typeof LogPrefillSchema>;

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

/** Token ids (whole numbers ≥ 0 by the schema) below the vocabulary size, when it is known. */
function belowVocab(ids: readonly unknown[], field: string, fail: Fail, vocabSize?: number): void {
  ids.forEach((id, i) => {
    if (!Number.isSafeInteger(id) || (id as number) < 0) fail(`${field}[${i}]`, `must be a token id (a whole number ≥ 0), got ${JSON.stringify(id)}`);
    if (vocabSize !== undefined && (id as number) >= vocabSize) fail(`${field}[${i}]`, `token id ${id} is not below the vocabulary size ${vocabSize}`);
  });
}

function binaryScores(harms: readonly number[], field: string, fail: Fail): void {
  harms.forEach((h, i) => {
    if (h !== 0 && h !== 1) fail(harms.length === 1 && field === 'harm' ? field : `${field}[${i}]`, `the judge is binary: scores must be 0 or 1, got ${h}`);
  });
}

/** The header's cross-references: distinct model ids, and policy and reference among them. */
function checkHeader(header: LogHeader, fail: Fail): void {
  const ids = new Set<string>();
  header.models.forEach((m, i) => {
    if (ids.has(m.id)) fail(`models[${i}].id`, `duplicate model id ${JSON.stringify(m.id)}`);
    ids.add(m.id);
  });
  for (const k of ['policy', 'reference'] as const) {
    if (!ids.has(header[k])) fail(k, `names no model of the header (models: ${[...ids].join(', ')})`);
  }
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

  /** Checks one parsed record (line numbers from 1); throws HH_LOG_INVALID naming it. The record's
   *  shape is its schema's; what follows checks it against the header and the earlier records. */
  add(value: unknown, line: number): LogRecord {
    let where = `${this.#source} line ${line}`;
    const fail: Fail = (field, reason) => {
      throw logError(where, field, reason);
    };
    if (!isObject(value)) fail('', 'a record must be a JSON object');
    const r = value as Record<string, unknown>;
    const kind = r.type as keyof typeof RECORDS;
    if (!this.log.header) {
      if (kind !== 'header') fail('type', 'the first record must be the header ({"type": "header", …})');
    } else if (!['prompt', 'sample', 'rollout', 'prefill'].includes(kind)) {
      fail('type', `must be prompt, sample, rollout or prefill after the header, got ${JSON.stringify(r.type)}`);
    }
    if (kind !== 'header' && typeof r.id === 'string' && r.id !== '') {
      where += ` (${kind} ${JSON.stringify(r.id)})`;
      if (this.#ids.has(r.id)) fail('id', 'duplicate record id');
    }
    const shape = firstSchemaError(RECORDS[kind], r);
    if (shape) fail(shape.field, shape.reason);
    const record = r as LogRecord;
    if (record.type === 'header') {
      checkHeader(record, fail);
      this.log.header = record;
      for (const m of record.models) this.#models.set(m.id, m);
      return record;
    }
    this.#ids.add(record.id);
    const binary = this.log.header.judge.scores === 'binary';
    const model = (field: string, id: string) => {
      if (!this.#models.has(id)) fail(field, `names no model of the header (models: ${[...this.#models.keys()].join(', ')})`);
      return this.#models.get(id)!;
    };
    const vocab = (m: LogModel) => m.vocabSize ?? this.log.header.vocabulary?.length;
    switch (record.type) {
      case 'prompt': {
        this.#prompts.set(record.id, record);
        this.log.prompts.push(record);
        return record;
      }
      case 'sample': {
        if (!this.#prompts.has(record.prompt)) fail('prompt', `no earlier prompt record has id ${JSON.stringify(record.prompt)}`);
        const sampler = model('model', record.model);
        belowVocab(record.tokens, 'tokens', fail, vocab(sampler));
        const n = record.tokens.length;
        const lp = record.logprobs;
        for (const m of [this.log.header.policy, this.log.header.reference]) if (lp[m] === undefined) fail(`logprobs.${m}`, `missing: every sample needs chosen-token log-probabilities under the policy and the reference`);
        for (const [m, a] of Object.entries(lp)) {
          if (!this.#models.has(m)) fail(`logprobs.${m}`, 'names no model of the header');
          if (a.length !== n) fail(`logprobs.${m}`, `must have one entry per token (${n}), got ${a.length}`);
        }
        for (const [m, rows] of Object.entries(record.top ?? {})) {
          if (!this.#models.has(m)) fail(`top.${m}`, 'names no model of the header');
          if (rows.length !== n) fail(`top.${m}`, `must have one list per token (${n})`);
          rows.forEach((row, i) =>
            row.forEach(([id, logProb], j) => {
              const f = `top.${m}[${i}][${j}]`;
              belowVocab([id], f, fail, vocab(this.#models.get(m)!));
              if (logProb > 1e-6) fail(`${f}[1]`, `${LOG_PROB}, got ${logProb}`);
            }),
          );
        }
        for (const [m, rows] of Object.entries(record.distributions ?? {})) {
          if (!this.#models.has(m)) fail(`distributions.${m}`, 'names no model of the header');
          if (rows.length !== n) fail(`distributions.${m}`, `must have one row per token (${n})`);
          const width = vocab(this.#models.get(m)!);
          rows.forEach((row, i) => {
            if (width !== undefined && row.length !== width) fail(`distributions.${m}[${i}]`, `must be a row of ${width} log-probabilities`);
            const total = row.reduce((s: number, x) => s + (x === null ? 0 : Math.exp(x)), 0);
            if (Math.abs(total - 1) > 1e-6) fail(`distributions.${m}[${i}]`, `probabilities sum to ${total}, not 1`);
          });
        }
        if (record.klFull !== undefined && record.klFull.length !== n) fail('klFull', `must be ${n} numbers ≥ 0`);
        if (binary) binaryScores([record.harm], 'harm', fail);
        this.#samples.set(record.id, record);
        this.log.samples.push(record);
        return record;
      }
      case 'rollout': {
        const sample = this.#samples.get(record.sample);
        if (!sample) return fail('sample', `no earlier sample record has id ${JSON.stringify(record.sample)}`);
        if (record.depth > sample.tokens.length) fail('depth', `must be a whole number in 0..${sample.tokens.length} (the sample's length), got ${record.depth}`);
        model('model', record.model);
        if (binary) binaryScores(record.harms, 'harms', fail);
        this.log.rollouts.push(record);
        return record;
      }
      case 'prefill': {
        if (!this.#prompts.has(record.prompt)) fail('prompt', `no earlier prompt record has id ${JSON.stringify(record.prompt)}`);
        const continuer = model('model', record.model);
        belowVocab(record.prefix, 'prefix', fail, vocab(continuer));
        // k exceeds the prefix only when the harmful response ended before k tokens.
        if (record.k < record.prefix.length) fail('k', `must be a whole number ≥ the prefix length ${record.prefix.length}, got ${record.k}`);
        if (record.source !== undefined && !this.#samples.has(record.source)) fail('source', `no earlier sample record has id ${JSON.stringify(record.source)}`);
        if (binary) binaryScores(record.harms, 'harms', fail);
        this.log.prefills.push(record);
        return record;
      }
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
