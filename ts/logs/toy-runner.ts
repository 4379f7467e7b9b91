/**
 * Rollout logs from toy scenarios, so that the log pipeline can be checked against the exact engine.
 *
 * The sampling model ("policy") is the Gibbs optimum at λ or a policy file, the reference is the
 * base, the judge is the scenario's harm. The log holds:
 * - N policy samples and N reference samples, each with chosen-token log-probabilities and full
 *   next-token distributions under both models;
 * - for each reference sample and depth d below its length, two independent sets of M base
 *   continuations of its first d tokens (h_d and I_t under the base, as the KL law takes them);
 * - prefill records: every harmful reference sample cut at each depth k and continued M times by
 *   the policy, weighted by its harm. Reference samples weighted by H are draws of THEORY's Q, so
 *   the weighted mean of these continuations estimates analyze's asrAligned.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import type { ExactEngine } from '../core/exact.js';
import { MonteCarlo, NO_TOKEN, type SampleBatch } from '../core/montecarlo.js';
import { BASE, type Policy } from '../core/policy.js';
import { LOG_FORMAT, LOG_VERSION, type LogHeader, type LogRecord, type LogSample } from './format.js';

export interface ToyRolloutOptions {
  /** The sampling model (default: the Gibbs optimum at `lambda`). */
  policy?: Policy;
  /** Name of the policy in the header (a file name, or "gibbs(λ=…)"). */
  policyName?: string;
  lambda: number;
  /** Responses per model. */
  samples: number;
  /** Continuations per prefix and set (and per prefill prefix). */
  rollouts: number;
  /** Prefix depths of the rollout trees and the prefills. */
  depths: number[];
  seed: number;
}

/** Rows of a batch as token lists (up to each response's end). */
function rows(batch: SampleBatch): number[][] {
  const out: number[][] = [];
  for (let n = 0; n < batch.count; n++) out.push(Array.from(batch.tokens.subarray(n * batch.length, n * batch.length + batch.emitted[n])));
  return out;
}

function logProbRow(lp: Float64Array, n: number, length: number, emitted: number): (number | null)[] {
  return Array.from(lp.subarray(n * length, n * length + emitted), (x) => (Number.isFinite(x) ? x : null));
}

/**
 * Full next-token distributions of a policy along responses: per response and position, the
 * log-probability of every token, by replaying each distinct prefix followed by each token.
 */
function distributions(mc: MonteCarlo, policy: Policy, responses: number[][], vocab: number, length: number): (number | null)[][][] {
  const index = new Map<string, number>();
  const prefixes: number[][] = [];
  for (const y of responses) {
    for (let t = 0; t < y.length; t++) {
      const key = y.slice(0, t).join(',');
      if (!index.has(key)) {
        index.set(key, prefixes.length);
        prefixes.push(y.slice(0, t));
      }
    }
  }
  const count = prefixes.length * vocab;
  const tokens = new Uint32Array(Math.max(count, 1) * length).fill(NO_TOKEN);
  prefixes.forEach((p, i) => {
    for (let a = 0; a < vocab; a++) {
      const row = (i * vocab + a) * length;
      tokens.set(p, row);
      tokens[row + p.length] = a;
    }
  });
  const lp = count > 0 ? mc.replayLogProbs(policy, tokens, count) : new Float64Array(0);
  const rowOf = (i: number) =>
    Array.from({ length: vocab }, (_, a) => {
      const x = lp[(i * vocab + a) * length + prefixes[i].length];
      return Number.isFinite(x) ? x : null;
    });
  return responses.map((y) => y.map((_, t) => rowOf(index.get(y.slice(0, t).join(','))!)));
}

/** Harm of `count` continuations of each prefix by a policy, in one batch (prefixes NO_TOKEN-padded). */
function continuations(mc: MonteCarlo, policy: Policy, prefixes: number[][], count: number, seed: number): Float64Array[] {
  if (prefixes.length === 0) return [];
  const k = Math.max(1, ...prefixes.map((p) => p.length));
  const forced = new Uint32Array(prefixes.length * count * k).fill(NO_TOKEN);
  prefixes.forEach((p, i) => {
    for (let m = 0; m < count; m++) forced.set(p, (i * count + m) * k);
  });
  const batch = mc.sample(policy, { count: prefixes.length * count, seed, prefix: forced, prefixLength: k });
  return prefixes.map((_, i) => batch.harm.slice(i * count, (i + 1) * count));
}

/** Writes a toy rollout log record by record through `emit`. */
export function toyRolloutLog(scenario: CompiledScenario, engine: ExactEngine, options: ToyRolloutOptions, emit: (record: LogRecord) => void): void {
  const mc = new MonteCarlo(scenario, { exact: engine });
  const policy = options.policy ?? { kind: 'gibbs', lambda: options.lambda };
  const { samples: n, rollouts: m, seed } = options;
  const vocab = scenario.tokens.length;
  const T = scenario.length;
  const binary = Array.from(scenario.harm).every((h) => h === 0 || h === 1);
  const header: LogHeader = {
    type: 'header',
    format: LOG_FORMAT,
    version: LOG_VERSION,
    models: [
      { id: 'policy', name: options.policyName ?? `gibbs(λ=${options.lambda})`, logprobs: 'raw', temperature: 1, vocabSize: vocab },
      { id: 'reference', name: 'base', logprobs: 'raw', temperature: 1, vocabSize: vocab },
    ],
    policy: 'policy',
    reference: 'reference',
    judge: { name: `${scenario.name} harm automaton`, scores: binary ? 'binary' : 'soft' },
    vocabulary: scenario.tokens,
    maxTokens: T,
    source: { scenario: scenario.name, lambda: options.lambda, samples: n, rollouts: m, depths: options.depths, seed },
  };
  emit(header);
  emit({ type: 'prompt', id: 'p0', text: scenario.name, tokens: [] });

  const sampleRecords = (model: 'policy' | 'reference', sampler: Policy, batchSeed: number): LogSample[] => {
    const batch = mc.sample(sampler, { count: n, seed: batchSeed });
    const responses = rows(batch);
    const other = model === 'policy' ? BASE : policy;
    const otherLp = mc.replayLogProbs(other, batch.tokens, n);
    const dist = { policy: distributions(mc, policy, responses, vocab, T), reference: distributions(mc, BASE, responses, vocab, T) };
    return responses.map((tokens, i) => {
      const own = logProbRow(batch.logProbs, i, T, tokens.length);
      const theirs = logProbRow(otherLp, i, T, tokens.length);
      return {
        type: 'sample',
        id: `${model}-${i}`,
        prompt: 'p0',
        model,
        tokens,
        logprobs: model === 'policy' ? { policy: own, reference: theirs } : { policy: theirs, reference: own },
        distributions: { policy: dist.policy[i], reference: dist.reference[i] },
        harm: batch.harm[i],
      };
    });
  };
  for (const s of sampleRecords('policy', policy, seed)) emit(s);
  const reference = sampleRecords('reference', BASE, seed + 1);
  for (const s of reference) emit(s);

  // Rollout trees of the reference samples: two independent sets per (sample, depth).
  const trees: { sample: LogSample; depth: number; set: 0 | 1 }[] = [];
  for (const s of reference) for (const depth of options.depths) if (depth < s.tokens.length) for (const set of [0, 1] as const) trees.push({ sample: s, depth, set });
  const rolled = continuations(mc, BASE, trees.map((r) => r.sample.tokens.slice(0, r.depth)), m, seed + 2);
  trees.forEach((r, i) => emit({ type: 'rollout', id: `${r.sample.id}-d${r.depth}-s${r.set}`, sample: r.sample.id, depth: r.depth, set: r.set, model: 'reference', harms: Array.from(rolled[i]) }));

  // Prefills: harmful reference samples (weighted by H, THEORY's Q) cut at each depth, continued by the policy.
  const attacks: { sample: LogSample; k: number }[] = [];
  for (const s of reference) if (s.harm > 0) for (const k of options.depths) attacks.push({ sample: s, k });
  const attacked = continuations(mc, policy, attacks.map((a) => a.sample.tokens.slice(0, a.k)), m, seed + 3);
  attacks.forEach((a, i) =>
    emit({
      type: 'prefill',
      id: `${a.sample.id}-k${a.k}`,
      prompt: 'p0',
      model: 'policy',
      k: a.k,
      prefix: a.sample.tokens.slice(0, a.k),
      source: a.sample.id,
      weight: a.sample.harm,
      harms: Array.from(attacked[i]),
    }),
  );
}
