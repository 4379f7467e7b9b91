import test from 'ava';

import { transformerLogits } from '../ts/reference/transformer.js';
import { END_OF_RESPONSE, Transformer, type TransformerShape } from '../ts/core/transformer.js';

const tiny: TransformerShape = { vocab: 4, length: 5, layers: 2, width: 6, heads: 3, mlpWidth: 7 };

/** Seeded parameters moved off their symmetric initial values (LN gains 1, biases 0). */
function parameters(model: Transformer, seed: number): Float64Array {
  const p = model.initParams(seed);
  return p.map((v, i) => v + 0.3 * Math.sin(1.7 * i + seed));
}

function maxDiff(a: Float64Array, b: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

const responses = Uint32Array.from([
  [0, 3, 1, 2, 2],
  [1, 1, END_OF_RESPONSE, END_OF_RESPONSE, END_OF_RESPONSE],
  [3, 0, 0, 2, 1],
].flat());

test('the addon forward equals the pure-TS reference forward', (t) => {
  const model = new Transformer(tiny);
  for (const seed of [1, 2]) {
    const params = parameters(model, seed);
    const native = model.logits(params, responses);
    const reference = transformerLogits(tiny, params, responses);
    t.is(native.length, 3 * 5 * 4);
    t.true(maxDiff(native, reference) <= 1e-12, `max |native − reference| = ${maxDiff(native, reference)}`);
  }
});

test('the KV-cache path equals the reference at every prefix', (t) => {
  const model = new Transformer(tiny);
  const params = parameters(model, 3);
  const reference = transformerLogits(tiny, params, responses);
  for (let k = 0; k < 5; k++) {
    const prefixes = Uint32Array.from([0, 2].flatMap((n) => Array.from(responses.subarray(n * 5, n * 5 + k))));
    const next = model.nextLogits(params, prefixes, k);
    for (const [b, n] of [0, 2].entries()) {
      const expected = reference.subarray((n * 5 + k) * 4, (n * 5 + k + 1) * 4);
      t.true(maxDiff(next.subarray(b * 4, (b + 1) * 4), expected) <= 1e-12, `response ${n}, prefix ${k}`);
    }
  }
});

test('bad shapes and inputs are coded errors naming the field', (t) => {
  const error = t.throws(() => new Transformer({ ...tiny, heads: 4 }));
  t.is((error as { code?: string }).code, 'HH_INVALID_ARGUMENT');
  t.regex(error!.message, /transformer\.heads/);
  const model = new Transformer(tiny);
  const params = model.initParams(0);
  t.throws(() => model.logits(params, Uint32Array.from([0, 1, 9, 0, 0])), { message: /not below V = 4/ });
  t.throws(() => model.scoreGradient(params, responses, new Float64Array(3)), { message: /coefficients/ });
});

test('the score gradient equals finite differences of the reference Σ c·log π', (t) => {
  const model = new Transformer(tiny);
  const params = parameters(model, 4);
  const coefficients = Float64Array.from({ length: responses.length }, (_, i) => Math.cos(0.9 * i) - 0.2);
  const objective = (p: Float64Array) => {
    const logits = transformerLogits(tiny, p, responses);
    let total = 0;
    for (let r = 0; r < responses.length; r++) {
      if (responses[r] === END_OF_RESPONSE) continue;
      const row = Array.from(logits.subarray(r * 4, r * 4 + 4));
      const max = Math.max(...row);
      const logZ = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      total += coefficients[r]! * (row[responses[r]!]! - logZ);
    }
    return total / 3;
  };
  const gradient = model.scoreGradient(params, responses, coefficients);
  const h = 1e-6;
  for (let i = 0; i < params.length; i += 7) {
    const plus = params.slice();
    plus[i]! += h;
    const minus = params.slice();
    minus[i]! -= h;
    const fd = (objective(plus) - objective(minus)) / (2 * h);
    t.true(Math.abs(gradient[i]! - fd) <= 1e-6 * Math.max(1, Math.abs(fd)), `parameter ${i}: ${gradient[i]} against ${fd}`);
  }
  // The per-position gradients sum to the whole.
  const blocks = model.scoreGradientPerPosition(params, responses, coefficients);
  t.is(blocks.length, 5 * model.numParams);
  for (let i = 0; i < model.numParams; i++) {
    let sum = 0;
    for (let k = 0; k < 5; k++) sum += blocks[k * model.numParams + i]!;
    t.true(Math.abs(sum - gradient[i]!) <= 1e-12, `Σ_t G_t[${i}]`);
  }
});

test('batched sampling: log-probabilities of the reference forward, keyed draws, and PPO at ratio 1 is the score gradient', (t) => {
  const model = new Transformer(tiny);
  const params = parameters(model, 4);
  const { tokens, logProbs } = model.sample(params, 40, 9);
  t.true(tokens.every((a) => a < tiny.vocab));
  const logits = transformerLogits(tiny, params, tokens);
  const V = tiny.vocab;
  let worst = 0;
  for (let r = 0; r < tokens.length; r++) {
    const row = logits.subarray(r * V, (r + 1) * V);
    const max = Math.max(...row);
    const logZ = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    worst = Math.max(worst, Math.abs(logProbs[r]! - (row[tokens[r]!]! - logZ)));
  }
  t.true(worst <= 1e-12, `max |log π − reference| = ${worst}`);
  // Response n draws with the keys of index firstIndex + n: a later slice is the same responses.
  const later = model.sample(params, 10, 9, 25);
  t.deepEqual(Array.from(later.tokens), Array.from(tokens.subarray(25 * tiny.length, 35 * tiny.length)));
  // At the sampling parameters every ratio is 1: the clipped surrogate's gradient is Σ A·∇log π / N.
  const advantages = Float64Array.from(tokens, (_, i) => Math.cos(i));
  const ppo = model.ppoGradient(params, tokens, logProbs, advantages, 0.2);
  const score = model.scoreGradient(params, tokens, advantages);
  t.true(maxDiff(ppo, score) <= 1e-12, `max |ppo − score| = ${maxDiff(ppo, score)}`);
  t.throws(() => model.ppoGradient(params, tokens, logProbs, advantages, 0), { message: /clip/ });
});
