import test from 'ava';

import type { CompiledScenario } from '../ts/scenario/compiled.js';
import { ExactEngine } from '../ts/core/exact.js';
import { MonteCarlo, type Estimate, type Estimates, type SampleBatch } from '../ts/core/montecarlo.js';
import type { Policy } from '../ts/core/policy.js';
import { buildStateSpace, conditionalHarm, forwardProbabilities, harmfulPrefixWeights, harmProfile, klToBase, logitGradient, type RefStateSpace } from '../ts/reference/exact.js';
import {
  decisionTimeHistogram,
  decisionTimes,
  effectiveSampleSize,
  estimateGradientTabular,
  exactTiltLogits,
  expectedHarm,
  harmInformation,
  harmPathsExact,
  harmPathsRollouts,
  importanceWeights,
  klAlong,
  NO_TOKEN,
  sampleBase,
  sampleTabular,
  sampleTokenTilt,
  teacherForcedSeed,
  type RefEstimate,
  type RefSamples,
  type RefScalar,
} from '../ts/reference/montecarlo.js';
import { drawIndex, philox4x32, toUnit, uniforms } from '../ts/reference/philox.js';
import { SplitMix64 } from '../ts/scenario/random.js';
import { builtinScenario, compileScenario, randomScenario } from '../ts/scenario/index.js';
import { close } from './helpers/compare.js';

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

function compiled(name: string): CompiledScenario {
  return compileScenario(builtinScenario(name));
}

/** Random tabular logits (T × S × V), N(0, σ²) from a seeded SplitMix64. */
function randomLogits(sc: CompiledScenario, space: RefStateSpace, seed: number, sigma = 1): Float64Array {
  const rng = new SplitMix64(seed);
  const out = new Float64Array(sc.length * space.numStates * sc.tokens.length);
  for (let i = 0; i < out.length; i++) out[i] = sigma * rng.nextNormal();
  return out;
}

/** |estimate − truth| ≤ z·SE + slack. */
function within(t: import('ava').ExecutionContext, estimate: number, se: number, truth: number, what: string, z = 4, slack = 1e-12) {
  if (Math.abs(estimate - truth) <= z * se + slack) t.pass();
  else t.fail(`${what}: estimate ${estimate} ± ${se} vs exact ${truth} (${(Math.abs(estimate - truth) / se).toFixed(2)} SE)`);
}

// ------------------------------------------------------------------------------------------------
// Philox
// ------------------------------------------------------------------------------------------------

test('philox4x32-10 matches the Random123 known answers', (t) => {
  t.deepEqual(philox4x32([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
  t.deepEqual(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
  t.deepEqual(
    philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  );
});

test('uniforms split the seed into key words and use 53 bits', (t) => {
  t.is(toUnit(0, 0), 0);
  t.is(toUnit(0xffffffff, 0xffffffff), 1 - 2 ** -53);
  t.is(toUnit(0x80000000, 0), 0.5);
  const seed = 0x1a308 * 2 ** 32 + 0x243f6a88; // above 2^32, below 2^53
  const hi = Math.floor(seed / 2 ** 32);
  const lo = seed % 2 ** 32;
  const w = philox4x32([1, 2, 3, 4], [lo, hi]);
  t.deepEqual(uniforms(seed, 1, 2, 3, 4), [toUnit(w[0], w[1]), toUnit(w[2], w[3])]);
  t.throws(() => uniforms(-1, 0, 0, 0, 0));
});

test('drawIndex follows the weights and never draws a zero weight', (t) => {
  const counts = [0, 0, 0];
  for (let i = 0; i < 30000; i++) {
    const [u, v] = uniforms(7, i, 0, 0, 0);
    t.true(u >= 0 && u < 1 && v >= 0 && v < 1);
    counts[drawIndex([0.2, 0, 0.8], u)]++;
  }
  t.is(counts[1], 0);
  t.true(Math.abs(counts[0] / 30000 - 0.2) < 0.01, `${counts}`);
  t.is(drawIndex([0.5, 0.5, 0], 1 - 2 ** -53), 1);
  t.is(drawIndex([0, 0.3, 0], 0), 1);
});

// ------------------------------------------------------------------------------------------------
// The reference's own sanity
// ------------------------------------------------------------------------------------------------

test('sampling: shapes, ends, states and batch invariance', (t) => {
  for (const name of ['refusal', 'horizon']) {
    const sc = compiled(name);
    const space = buildStateSpace(sc);
    const logits = randomLogits(sc, space, 11);
    const T = sc.length;
    const V = sc.tokens.length;
    const N = 300;
    const s = sampleTabular(sc, space, logits, { count: N, seed: 5 });
    t.is(s.tokens.length, N * T);
    t.is(s.states.length, N * (T + 1));
    for (let n = 0; n < N; n++) {
      let state = 0;
      const e = s.emitted[n];
      for (let k = 0; k < T; k++) {
        const a = s.tokens[n * T + k];
        t.is(s.states[n * (T + 1) + k], k <= e ? state : s.states[n * (T + 1) + e]);
        if (k >= e) {
          if (a !== NO_TOKEN || s.logProbs[n * T + k] !== 0) t.fail(`token after the end at ${n}, ${k}`);
          continue;
        }
        t.true(a < V && s.logProbs[n * T + k] <= 0);
        if (sc.endToken === a && k + 1 !== e) t.fail('emitted after the end token');
        state = space.next[state * V + a];
      }
      t.is(s.states[n * (T + 1) + T], state);
      t.is(s.harm[n], sc.harm[space.automaton[state]]);
    }
    // Batches keyed by firstIndex reproduce one large sample.
    const a = sampleTabular(sc, space, logits, { count: 100, seed: 5 });
    const b = sampleTabular(sc, space, logits, { count: 200, seed: 5, firstIndex: 100 });
    t.deepEqual([...a.tokens, ...b.tokens], [...s.tokens]);
    t.deepEqual([...a.states, ...b.states], [...s.states]);
  }
});

test('sampling: forced prefixes, shared and per response', (t) => {
  const sc = compiled('refusal');
  const space = buildStateSpace(sc);
  const T = sc.length;
  const shared = sampleBase(sc, space, { count: 50, seed: 3, prefix: { tokens: [0, 2, 2], length: 3 } });
  for (let n = 0; n < 50; n++) t.deepEqual([...shared.tokens.subarray(n * T, n * T + 3)], [0, 2, 2]);
  const per = Uint32Array.from({ length: 50 * 2 }, (_, i) => (i % 2 === 0 ? (i / 2) % 5 : NO_TOKEN));
  const free = sampleBase(sc, space, { count: 50, seed: 3 });
  const forced = sampleBase(sc, space, { count: 50, seed: 3, prefix: { tokens: per, length: 2 } });
  for (let n = 0; n < 50; n++) {
    t.is(forced.tokens[n * T], n % 5);
    // An unforced entry draws the same uniform as unforced sampling would.
    if (n % 5 === 0 && free.tokens[n * T] === 0) t.is(forced.tokens[n * T + 1], free.tokens[n * T + 1]);
  }
});

test('E[H], I_t, gradient and KL estimates agree with the exact reference within 4 SE', (t) => {
  const sc = compiled('horizon');
  const space = buildStateSpace(sc);
  const S = space.numStates;
  const T = sc.length;
  for (const policy of ['base', 'tabular'] as const) {
    const logits = randomLogits(sc, space, 2, 0.7);
    const refPolicy = policy === 'base' ? ({ kind: 'base' } as const) : ({ kind: 'tabular', logits } as const);
    const h = conditionalHarm(sc, space, refPolicy);
    const profile = harmProfile(sc, space, refPolicy);
    const N = 4000;
    const samples = policy === 'base' ? sampleBase(sc, space, { count: N, seed: 9 }) : sampleTabular(sc, space, logits, { count: N, seed: 9 });
    const eh = expectedHarm(samples);
    within(t, eh.mean, eh.se, h[0], `${policy} E[H]`);

    const exact = harmPathsExact(sc, space, samples, h);
    for (let n = 0; n < N; n++) {
      if (exact.first[n * (T + 1) + T] !== samples.harm[n]) t.fail('h_T is not H');
      if (exact.first[n * (T + 1)] !== h[0]) t.fail('h_0 is not E[H]');
    }
    const info = harmInformation(samples, exact);
    for (let k = 0; k < T; k++) within(t, info.mean[k], info.se[k], profile.harmInformation[k], `${policy} I_${k + 1} exact h`);
    for (let k = 4; k < T; k++) t.true(info.mean[k] < 1e-25, `I_${k + 1} = ${info.mean[k]} beyond the horizon`);

    const small = policy === 'base' ? sampleBase(sc, space, { count: 600, seed: 10 }) : sampleTabular(sc, space, logits, { count: 600, seed: 10 });
    const rolled = harmPathsRollouts(sc, space, policy === 'base' ? 'base' : logits, small, 4, 77);
    const infoR = harmInformation(small, rolled);
    for (let k = 0; k < T; k++) within(t, infoR.mean[k], infoR.se[k], profile.harmInformation[k], `${policy} I_${k + 1} rollouts`);

    if (policy === 'tabular') {
      const G = logitGradient(sc, space, refPolicy);
      for (const coefficient of ['reinforce', 'leave-one-out', 'innovation'] as const) {
        const g = estimateGradientTabular(sc, space, logits, samples, coefficient, exact, G);
        t.is(g.blocks.length, T * S * sc.tokens.length);
        for (let k = 0; k < T; k++) {
          let g2 = 0;
          for (let i = k * g.blockLength; i < (k + 1) * g.blockLength; i++) g2 += G[i] * G[i];
          within(t, g.projection!.mean[k], g.projection!.se[k], g2, `${coefficient} ⟨Ĝ_${k + 1}, G⟩`);
          if (coefficient === 'innovation' && k >= 4) t.true(g.norm[k] < 1e-12, `innovation gradient ${g.norm[k]} beyond the horizon`);
        }
      }
      // On-policy KL against the exact profile weighted by p_{t−1}.
      const kl = klAlong(sc, space, logits, samples);
      const exactKl = klToBase(sc, space, refPolicy, forwardProbabilities(sc, space, refPolicy));
      for (let k = 0; k < T; k++) within(t, kl.mean[k], kl.se[k], exactKl[k], `KL_${k + 1} on policy`);
      // Teacher-forced: base samples weighted by H.
      const base = sampleBase(sc, space, { count: N, seed: 12 });
      const tf = klAlong(sc, space, logits, base, base.harm);
      const exactTf = klToBase(sc, space, refPolicy, harmfulPrefixWeights(sc, space));
      for (let k = 0; k < T; k++) within(t, tf.mean[k], tf.se[k], exactTf[k], `KL_${k + 1} teacher-forced`);
    } else {
      const kl = klAlong(sc, space, 'base', samples);
      t.true(kl.mean.every((x) => x === 0));
    }
  }
});

// ------------------------------------------------------------------------------------------------
// The Rust core (ts/core/montecarlo.ts) against the reference: same samples, same estimates
// ------------------------------------------------------------------------------------------------

const REL = 1e-12;
const ABS = 1e-14;

/** One assertion per array: equal lengths and every entry within 1e-12 relative or 1e-14 absolute
 *  (exact equality when `exact`); the failure names the first mismatching index and both values. */
function sameArray(t: import('ava').ExecutionContext, rust: ArrayLike<number> | undefined, ref: ArrayLike<number> | undefined, what: string, exact = false, rel = REL, abs = ABS) {
  if (rust === undefined || ref === undefined) return t.fail(`${what}: missing (rust ${rust === undefined ? 'undefined' : 'present'}, reference ${ref === undefined ? 'undefined' : 'present'})`);
  if (rust.length !== ref.length) return t.fail(`${what}: lengths ${rust.length} (rust) vs ${ref.length} (reference)`);
  for (let i = 0; i < rust.length; i++) {
    const a = rust[i]!;
    const b = ref[i]!;
    const ok = exact ? Object.is(a, b) : a === b || close(a, b, rel, abs);
    if (!ok) return t.fail(`${what}[${i}]: rust ${a} vs reference ${b} (diff ${Math.abs(a - b)})`);
  }
  t.pass();
}

function sameEstimate(t: import('ava').ExecutionContext, rust: Estimate | undefined, ref: RefEstimate | undefined, what: string) {
  if (rust === undefined || ref === undefined) return t.fail(`${what}: missing`);
  sameArray(t, rust.mean, ref.mean, `${what}.mean`);
  sameArray(t, rust.se, ref.se, `${what}.se`);
  sameArray(t, rust.support, ref.support, `${what}.support`, true);
}

function sameScalar(t: import('ava').ExecutionContext, rust: { mean: number; se: number; support: number }, ref: RefScalar, what: string) {
  assertNear(t, rust.mean, ref.mean, `${what}: mean`);
  assertNear(t, rust.se, ref.se, `${what}: SE`);
  t.is(rust.support, ref.support, `${what}: support`);
}

/** E[H], the τ histogram and P(τ > T) of a Rust run against the reference's. */
function sameHarmAndDecisions(t: import('ava').ExecutionContext, rust: Estimates, samples: RefSamples, paths: Parameters<typeof decisionTimes>[0], what: string, weights?: Float64Array) {
  sameScalar(t, { mean: rust.expectedHarm, se: rust.expectedHarmSE, support: rust.expectedHarmSupport }, expectedHarm(samples, weights), `${what}: E[H]`);
  const { histogram, undecided } = decisionTimeHistogram(decisionTimes(paths, samples.count, samples.length), samples.length, weights);
  const decisionTime = rust.decisionTime && { mean: rust.decisionTime, se: rust.decisionTimeSE!, support: rust.decisionTimeSupport! };
  sameEstimate(t, decisionTime, histogram, `${what}: decision time`);
  sameScalar(t, rust.undecided!, undecided, `${what}: P(τ > T)`);
}

function sameSamples(t: import('ava').ExecutionContext, rust: SampleBatch, ref: RefSamples, what: string) {
  t.is(rust.count, ref.count, `${what}: count`);
  t.is(rust.length, ref.length, `${what}: length`);
  t.is(rust.firstIndex, ref.firstIndex, `${what}: firstIndex`);
  sameArray(t, rust.tokens, ref.tokens, `${what}: tokens`, true);
  // ln of softmax probabilities: libm's exp/ln and V8's may differ by an ulp.
  sameArray(t, rust.logProbs, ref.logProbs, `${what}: logProbs`, false, 1e-15, 1e-15);
  sameArray(t, rust.harm, ref.harm, `${what}: harm`, true);
  sameArray(t, rust.emitted, ref.emitted, `${what}: emitted`, true);
  sameArray(t, rust.states, ref.states, `${what}: states`, true);
}

interface Case {
  sc: CompiledScenario;
  space: RefStateSpace;
  engine: ExactEngine;
  mc: MonteCarlo;
  logits: Float64Array;
}

const CASES: Array<[string, () => CompiledScenario]> = [
  ['refusal', () => compiled('refusal')],
  ['horizon', () => compiled('horizon')],
  ['random 1 (V=4, n=1, eos)', () => compileScenario(randomScenario({ seed: 1, vocab: 4, order: 1, length: 8, states: 4, endToken: true }))],
  ['random 2 (V=3, n=2, eos)', () => compileScenario(randomScenario({ seed: 2, vocab: 3, order: 2, length: 7, states: 5, endToken: true }))],
  ['random 3 (V=5, n=2, eos)', () => compileScenario(randomScenario({ seed: 3, vocab: 5, order: 2, length: 6, states: 3, endToken: true }))],
];

function makeCase(make: () => CompiledScenario, index: number): Case {
  const sc = make();
  const space = buildStateSpace(sc);
  const engine = new ExactEngine(sc);
  const mc = new MonteCarlo(sc, { exact: engine });
  const logits = randomLogits(sc, space, 100 + index, 1.5);
  // A few forbidden tokens (−∞ logits) exercise zero-probability entries.
  if (index % 2 === 0) for (let i = 3; i < logits.length; i += 11) logits[i] = -Infinity;
  return { sc, space, engine, mc, logits };
}

/** A per-response prefix (N × k) of random tokens with some entries left free (NO_TOKEN). */
function perResponsePrefix(sc: CompiledScenario, count: number, k: number, seed: number): Uint32Array {
  const rng = new SplitMix64(seed);
  const V = sc.tokens.length;
  return Uint32Array.from({ length: count * k }, () => (rng.nextInt(4) === 0 ? NO_TOKEN : rng.nextInt(V)));
}

CASES.forEach(([name, make], index) => {
  test(`rust samples equal the reference: ${name}`, (t) => {
    const { sc, space, engine, mc, logits } = makeCase(make, index);
    t.is(engine.numStates, space.numStates);
    const st = engine.states();
    sameArray(t, st.next, space.next, 'state space next', true);

    const N = 300;
    const V = sc.tokens.length;
    const k = Math.min(3, sc.length);
    const shared = Uint32Array.from({ length: k }, (_, i) => (i * 2 + 1) % V);
    const perResponse = perResponsePrefix(sc, N, k, 7 + index);
    const policies: Array<[string, Policy, Float64Array | 'base']> = [
      ['tabular', { kind: 'tabular', logits }, logits],
      ['base', { kind: 'base' }, 'base'],
    ];
    for (const [label, policy, ref] of policies) {
      const runs: Array<[string, { prefix?: Uint32Array; firstIndex?: number }]> = [
        ['free', {}],
        ['shared prefix', { prefix: shared }],
        ['per-response prefix', { prefix: perResponse }],
        ['firstIndex 1000', { firstIndex: 1000 }],
      ];
      for (const [what, extra] of runs) {
        const seed = 1234 + index;
        const rust = mc.sample(policy, { count: N, seed, ...(extra.prefix ? { prefix: extra.prefix, prefixLength: k } : {}), ...(extra.firstIndex ? { firstIndex: extra.firstIndex } : {}) });
        const options = { count: N, seed, ...(extra.prefix ? { prefix: { tokens: extra.prefix, length: k } } : {}), ...(extra.firstIndex ? { firstIndex: extra.firstIndex } : {}) };
        const mine = ref === 'base' ? sampleBase(sc, space, options) : sampleTabular(sc, space, ref, options);
        sameSamples(t, rust, mine, `${name}, ${label}, ${what}`);
      }
    }
    // A seed above 2^32 uses both key words.
    const big = 2 ** 40 + 12345;
    sameSamples(t, mc.sample({ kind: 'tabular', logits }, { count: 70, seed: big }), sampleTabular(sc, space, logits, { count: 70, seed: big }), `${name}, seed 2^40 + 12345`);
  });

  test(`rust estimates equal the reference: ${name}`, (t) => {
    const { sc, space, engine, mc, logits } = makeCase(make, index);
    const T = sc.length;
    const S = space.numStates;
    const V = sc.tokens.length;
    const N = 400;
    const seed = 987 + index;
    const policy: Policy = { kind: 'tabular', logits };
    const directions = randomLogits(sc, space, 555 + index, 1);
    const hTable = engine.conditionalHarm(policy);
    const samples = sampleTabular(sc, space, logits, { count: N, seed });
    const exactPaths = harmPathsExact(sc, space, samples, hTable);
    const klOn = klAlong(sc, space, logits, samples);
    const harmful = sampleBase(sc, space, { count: N, seed: teacherForcedSeed(seed) });
    const klTf = klAlong(sc, space, logits, harmful, harmful.harm);

    for (const coefficient of ['reinforce', 'leave-one-out', 'innovation'] as const) {
      const what = `${name}, exact h, ${coefficient}`;
      const rust = mc.estimate(policy, { samples: N, seed, harm: 'exact', gradient: coefficient, directions, teacherForced: true });
      sameHarmAndDecisions(t, rust, samples, exactPaths, what);
      sameEstimate(t, rust.harmInformation, harmInformation(samples, exactPaths), `${what}: I_t`);
      sameEstimate(t, rust.klOnPolicy, klOn, `${what}: KL on policy`);
      sameEstimate(t, rust.klTeacherForced, klTf, `${what}: KL teacher-forced`);
      const g = estimateGradientTabular(sc, space, logits, samples, coefficient, exactPaths, directions);
      t.is(rust.gradient?.blockLength, S * V);
      sameArray(t, rust.gradient?.blocks, g.blocks, `${what}: gradient blocks`);
      sameArray(t, rust.gradient?.norm, g.norm, `${what}: gradient norm`);
      sameArray(t, rust.gradient?.variance, g.variance, `${what}: gradient variance`);
      sameEstimate(t, rust.gradient?.projection, g.projection, `${what}: gradient projection`);
    }

    // Nested rollouts (two sets of M per prefix), without directions.
    const M = 3;
    const rolled = harmPathsRollouts(sc, space, logits, samples, M, seed);
    for (const coefficient of ['innovation', 'reinforce'] as const) {
      const what = `${name}, rollouts, ${coefficient}`;
      const rust = mc.estimate(policy, { samples: N, seed, harm: 'rollouts', rollouts: M, gradient: coefficient });
      sameEstimate(t, rust.harmInformation, harmInformation(samples, rolled), `${what}: I_t`);
      sameHarmAndDecisions(t, rust, samples, rolled, what);
      const g = estimateGradientTabular(sc, space, logits, samples, coefficient, rolled);
      sameArray(t, rust.gradient?.blocks, g.blocks, `${what}: gradient blocks`);
      sameArray(t, rust.gradient?.norm, g.norm, `${what}: gradient norm`);
      sameArray(t, rust.gradient?.variance, g.variance, `${what}: gradient variance`);
      t.is(rust.gradient?.projection, undefined);
      t.is(rust.klTeacherForced, undefined);
    }

    // The base policy: rollouts of the base, KL to itself is 0.
    const baseSamples = sampleBase(sc, space, { count: N, seed });
    const rustBase = mc.estimate({ kind: 'base' }, { samples: N, seed, harm: 'rollouts', rollouts: 2 });
    const baseHarm = expectedHarm(baseSamples);
    assertNear(t, rustBase.expectedHarm, baseHarm.mean, `${name}, base: E[H]`);
    sameEstimate(t, rustBase.harmInformation, harmInformation(baseSamples, harmPathsRollouts(sc, space, 'base', baseSamples, 2, seed)), `${name}, base rollouts: I_t`);
    sameEstimate(t, rustBase.klOnPolicy, klAlong(sc, space, 'base', baseSamples), `${name}, base: KL on policy`);

    // Importance sampling from the exact tilt q ∝ P·e^{κH}, self-normalised with the likelihood ratios.
    for (const kappa of [1.5, -2]) {
      const what = `${name}, tilted κ = ${kappa}`;
      const rust = mc.estimate(policy, { samples: N, seed, harm: 'exact', proposal: 'tilted', tilt: kappa });
      const drawn = sampleTabular(sc, space, exactTiltLogits(sc, space, logits, kappa), { count: N, seed });
      const w = importanceWeights(sc, space, logits, drawn);
      const paths = harmPathsExact(sc, space, drawn, hTable);
      t.is(rust.importance?.method, 'exact');
      assertNear(t, rust.importance!.effectiveSampleSize, effectiveSampleSize(w), `${what}: Kish ESS`);
      sameHarmAndDecisions(t, rust, drawn, paths, what, w);
      sameEstimate(t, rust.harmInformation, harmInformation(drawn, paths, w), `${what}: I_t`);
      sameEstimate(t, rust.klOnPolicy, klAlong(sc, space, logits, drawn, w), `${what}: KL on policy`);
    }
  });
});

function assertNear(t: import('ava').ExecutionContext, rust: number, ref: number, what: string) {
  if (rust === ref || close(rust, ref, REL, ABS)) t.pass();
  else t.fail(`${what}: rust ${rust} vs reference ${ref} (diff ${Math.abs(rust - ref)})`);
}

test('rust and reference agree without the exact engine (base policy, rollouts)', (t) => {
  const sc = compileScenario(randomScenario({ seed: 4, vocab: 4, order: 2, length: 6, states: 4, endToken: true }));
  const mc = new MonteCarlo(sc);
  const rust = mc.sample({ kind: 'base' }, { count: 200, seed: 31 });
  const mine = sampleBase(sc, null, { count: 200, seed: 31 });
  t.is(rust.states, undefined);
  sameArray(t, rust.tokens, mine.tokens, 'tokens', true);
  sameArray(t, rust.logProbs, mine.logProbs, 'logProbs', false, 1e-15, 1e-15);
  sameArray(t, rust.harm, mine.harm, 'harm', true);
  const est = mc.estimate({ kind: 'base' }, { samples: 200, seed: 31, harm: 'rollouts', rollouts: 2, teacherForced: true });
  const rolled = harmPathsRollouts(sc, null, 'base', mine, 2, 31);
  sameEstimate(t, est.harmInformation, harmInformation(mine, rolled), 'I_t');
  sameHarmAndDecisions(t, est, mine, rolled, 'base, rollouts');

  // The per-token tilt (no exact engine), self-normalised with the likelihood ratios; rollouts continue under the base.
  const tilted = mc.estimate({ kind: 'base' }, { samples: 200, seed: 31, harm: 'rollouts', rollouts: 2, proposal: 'tilted', tilt: 2 });
  const drawn = sampleTokenTilt(sc, null, 'base', 2, { count: 200, seed: 31 });
  const w = importanceWeights(sc, null, 'base', drawn);
  const paths = harmPathsRollouts(sc, null, 'base', drawn, 2, 31);
  t.is(tilted.importance?.method, 'per-token');
  t.true(effectiveSampleSize(w) < 199, 'the tilt reweights');
  assertNear(t, tilted.importance!.effectiveSampleSize, effectiveSampleSize(w), 'per-token tilt: Kish ESS');
  sameHarmAndDecisions(t, tilted, drawn, paths, 'per-token tilt', w);
  sameEstimate(t, tilted.harmInformation, harmInformation(drawn, paths, w), 'per-token tilt: I_t');
  sameEstimate(t, tilted.klOnPolicy, klAlong(sc, null, 'base', drawn, w), 'per-token tilt: KL on policy');
  const harmful = sampleBase(sc, null, { count: 200, seed: teacherForcedSeed(31) });
  sameEstimate(t, est.klTeacherForced, klAlong(sc, null, 'base', harmful, harmful.harm), 'KL teacher-forced');
});
