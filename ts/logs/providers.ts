/**
 * The provider payloads `import` accepts, one line each, declared in TypeBox: vLLM RequestOutputs,
 * OpenAI chat completions (with legacy echo completions as scores) and Hugging Face rollouts
 * (examples/hf_rollouts.py). Only the fields the importer reads are described; providers add
 * others, which are ignored. The importer checks a line against its provider's schema, then what
 * depends on other lines and on the header (token ids, templates, vocabulary).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { withReasons } from '../io/schema-check.js';
import { TopPair } from './format.js';

export type Provider = 'vllm' | 'openai' | 'hf';

/** A field the importer needs, with what to do to get it when it is missing (or null). */
const needed = <T extends TSchema>(schema: T, what: string): T =>
  withReasons(schema, { missing: () => `missing (${what})`, type: (v) => (v === null ? `missing (${what})` : undefined) });

const TokenIds = Type.Array(Type.Integer({ minimum: 0 }));
const OrNull = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** The fields every line has besides the provider's payload. */
const lineFields = {
  id: Type.Optional(Type.String({ minLength: 1 })),
  model: needed(Type.String({ minLength: 1 }), 'the id of the model that sampled the response'),
};
/** Last, so that a line is checked in the order the importer reads it. */
const harmField = { harm: needed(Type.Number(), "the judge's score in [0, 1]") };

// vLLM

/** Per position: {token id: {logprob, rank, decoded_token}}, the top-k plus the chosen token. */
const VllmPositionSchema = withReasons(
  Type.Record(Type.String(), Type.Object({ logprob: Type.Number(), rank: Type.Optional(OrNull(Type.Number())), decoded_token: Type.Optional(OrNull(Type.String())) })),
  { type: () => 'must be a dict {token id: {logprob, rank, decoded_token}}' },
);
export type VllmPosition = Static<typeof VllmPositionSchema>;

const VllmLineSchema = Type.Object({
  ...lineFields,
  prompt: Type.Optional(Type.String()),
  output: needed(
    Type.Object({
      prompt: Type.Optional(OrNull(Type.String())),
      prompt_token_ids: needed(TokenIds, 'the prompt after the template'),
      outputs: needed(
        Type.Array(
          Type.Object({
            token_ids: needed(TokenIds, 'the response tokens'),
            logprobs: needed(Type.Array(VllmPositionSchema), 'run with SamplingParams(logprobs=k)'),
          }),
          { minItems: 1 },
        ),
        'the completion',
      ),
    }),
    'a vLLM RequestOutput of the sampling model',
  ),
  /** Other models run on prompt + response with prompt_logprobs (the first position is None). */
  scores: Type.Optional(
    Type.Record(
      Type.String(),
      Type.Object({
        prompt_token_ids: needed(TokenIds, 'prompt + response'),
        prompt_logprobs: needed(Type.Array(OrNull(VllmPositionSchema)), 'run with SamplingParams(prompt_logprobs=k)'),
      }),
    ),
  ),
  ...harmField,
});
export type VllmLine = Static<typeof VllmLineSchema>;

// OpenAI

const Bytes = Type.Optional(OrNull(Type.Array(Type.Integer({ minimum: 0, maximum: 255 }))));

const OpenaiLineSchema = Type.Object({
  ...lineFields,
  prompt: Type.Optional(Type.Union([Type.String(), Type.Object({ id: Type.Optional(Type.String()), text: Type.Optional(Type.String()), tokens: Type.Optional(TokenIds) })])),
  completion: needed(
    Type.Object({
      choices: Type.Array(
        Type.Object({
          logprobs: needed(
            Type.Object({
              content: needed(
                Type.Array(
                  withReasons(
                    Type.Object({
                      token: Type.String(),
                      logprob: Type.Number(),
                      bytes: Bytes,
                      top_logprobs: Type.Optional(
                        withReasons(Type.Array(Type.Object({ token: Type.String(), logprob: Type.Number(), bytes: Bytes }), { maxItems: 20 }), {
                          maxItems: (v) => `has ${(v as unknown[]).length} entries; OpenAI returns at most 20`,
                        }),
                      ),
                    }),
                    { type: () => 'must be {token, logprob, bytes, top_logprobs}' },
                  ),
                ),
                'request with logprobs: true',
              ),
            }),
            'request with logprobs: true',
          ),
        }),
        { minItems: 1 },
      ),
    }),
    'an OpenAI chat completion',
  ),
  /** Other models: legacy completions with echo = true over prompt + response. */
  scores: Type.Optional(
    Type.Record(
      Type.String(),
      Type.Object({
        choices: Type.Array(
          Type.Object({
            logprobs: needed(
              Type.Object({
                tokens: needed(Type.Array(Type.String()), 'the echoed tokens'),
                token_logprobs: needed(Type.Array(OrNull(Type.Number())), 'the echoed log-probabilities'),
                top_logprobs: Type.Optional(OrNull(Type.Array(OrNull(Type.Record(Type.String(), Type.Number()))))),
              }),
              'a legacy completion with echo: true and logprobs',
            ),
          }),
          { minItems: 1 },
        ),
      }),
    ),
  ),
  ...harmField,
});
export type OpenaiLine = Static<typeof OpenaiLineSchema>;

// Hugging Face (examples/hf_rollouts.py): already close to a sample.

const HfLineSchema = Type.Object({
  ...lineFields,
  prompt_id: Type.Optional(Type.String()),
  prompt: Type.Optional(Type.String()),
  token_ids: needed(TokenIds, 'the response token ids'),
  logprobs: needed(Type.Record(Type.String(), Type.Array(OrNull(Type.Number()))), '{model id: chosen-token log-probabilities}'),
  prompt_token_ids: needed(TokenIds, 'the prompt after the template'),
  top: Type.Optional(Type.Record(Type.String(), Type.Array(Type.Array(TopPair)))),
  ...harmField,
});
export type HfLine = Static<typeof HfLineSchema>;

/** The line schema of each provider. */
export const PROVIDER_LINES = { vllm: VllmLineSchema, openai: OpenaiLineSchema, hf: HfLineSchema } satisfies Record<Provider, TSchema>;
