/**
 * The Rust exact engine, through the TypeScript API, against the pure-TS reference and brute force,
 * on the built-in scenarios and on seeded random ones.
 */
import test from 'ava';
import { ExactEngine, HarmHorizonError, builtinScenario, compileScenario, randomScenario, type Policy } from '../ts/index.js';
import type { CompiledScenario } from '../ts/scenario/compiled.js';
import * as ref from '../ts/reference/exact.js';
import { bruteForceGibbs, bruteForceProfile } from '../ts/reference/enumerate.js';
import { assertArrayClose, assertClose } from './helpers/compare.js';

const builtins = ['refusal', 'horizon'].map((name) => compileScenario(builtinScenario(name)));

/** Seeded random scenarios of varied shape: orders 1–3, with and without an end token. */
function randoms(count: number, size: 'tiny' | 'small'): CompiledScenario[] {
  return Array.from({ length: count }, (_, i) => {
    const tiny = size === 'tiny';
    return compileScenario(
      randomScenario({
        seed: 1000 + i,
        vocab: tiny ? 2 + (i % 2) : 2 + (i % 5),
        order: 1 + (i % (tiny ? 2 : 3)),
        length: tiny ? 2 + (i % 4) : 3 + (i % 8),
        states: 2 + (i % 6),
        endToken: i % 2 === 0,
      }),
    );
  });
}

function randomLogits(sc: CompiledScenario, states: number, seed: number): Float64Array {
  const out = new Float64Array(sc.length * states * sc.tokens.length);
  let x = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    out[i] = (x / 2 ** 32 - 0.5) * 4;
  }
  return out;
}

/** Policies both the engine and the reference take (the reference has no mlp). */
function policies(sc: CompiledScenario, states: number): { name: string; policy: Policy & ref.RefPolicy }[] {
  return [
    { name: 'base', policy: { kind: 'base' } },
    { name: 'tabular', policy: { kind: 'tabular', logits: randomLogits(sc, states, 17) } },
    { name: 'gibbs', policy: { kind: 'gibbs', lambda: 2.5 } },
  ];
}

test('the state space is numbered exactly as the reference numbers it', (t) => {
  for (const sc of [...builtins, ...randoms(12, 'small')]) {
    const engine = new ExactEngine(sc);
    const expected = ref.buildStateSpace(sc);
    const got = engine.states();
    t.is(engine.numStates, expected.numStates, sc.name);
    t.deepEqual(Array.from(got.context), Array.from(expected.context), `${sc.name} contexts`);
    t.deepEqual(Array.from(got.automaton), Array.from(expected.automaton), `${sc.name} automaton`);
    t.deepEqual(Array.from(got.live), Array.from(expected.live), `${sc.name} live`);
  }
});

test('Rust = pure-TS reference: harm profiles, gradients and conditional harm of every policy', (t) => {
  for (const sc of [...builtins, ...randoms(20, 'small')]) {
    const engine = new ExactEngine(sc);
    const space = ref.buildStateSpace(sc);
    for (const { name, policy } of policies(sc, engine.numStates)) {
      const what = `${sc.name}/${name}`;
      const got = engine.harmProfile(policy, { gradient: true, conditionalHarm: true });
      const want = ref.harmProfile(sc, space, policy);
      assertClose(t, got.expectedHarm, want.expectedHarm, `${what} E[H]`);
      assertClose(t, got.harmVariance, want.harmVariance, `${what} Var H`);
      t.is(got.horizon, want.horizon, `${what} horizon`);
      assertArrayClose(t, got.harmInformation, want.harmInformation, `${what} I_t`);
      assertArrayClose(t, got.gradNorm, want.gradNorm, `${what} ||G_t||`);
      assertArrayClose(t, got.gradBound, want.gradBound, `${what} bound`);
      assertArrayClose(t, got.decisionTime, want.decisionTime, `${what} decision time`);
      assertArrayClose(t, got.gradient!, ref.logitGradient(sc, space, policy), `${what} gradient table`);
      assertArrayClose(t, got.conditionalHarm!, ref.conditionalHarm(sc, space, policy), `${what} h table`);
      assertArrayClose(t, engine.klOnPolicy(policy), ref.klToBase(sc, space, policy, ref.forwardProbabilities(sc, space, policy)), `${what} KL`);
      const prefixes = engine.onHarmfulPrefixes(policy);
      assertArrayClose(t, prefixes.asr, ref.prefillAsr(sc, space, policy), `${what} ASR`);
    }
  }
});

test('Rust = pure-TS reference: the full analysis at several λ', (t) => {
  for (const sc of [...builtins, ...randoms(10, 'small')]) {
    const engine = new ExactEngine(sc);
    for (const lambda of [0, 0.01, 1, 5, 40]) {
      const got = engine.analyze(lambda);
      const want = ref.analyze(sc, lambda);
      const what = `${sc.name} λ=${lambda}`;
      assertClose(t, got.alignedExpectedHarm, want.expectedHarm.aligned, `${what} aligned E[H]`);
      assertArrayClose(t, got.klOnPolicy, want.klOnPolicy, `${what} D_t`);
      assertArrayClose(t, got.klTeacherForced, want.klTeacherForced, `${what} teacher-forced`);
      assertArrayClose(t, got.klPredicted, want.klPredicted, `${what} predicted`);
      assertArrayClose(t, got.asrBase, want.asrBase, `${what} ASR base`);
      assertArrayClose(t, got.asrAligned, want.asrAligned, `${what} ASR aligned`);
    }
  }
});

test('brute-force enumeration of every response agrees with the engine on tiny random scenarios', (t) => {
  for (const sc of randoms(16, 'tiny')) {
    const engine = new ExactEngine(sc);
    for (const { name, policy } of policies(sc, engine.numStates)) {
      const got = engine.harmProfile(policy);
      const want = bruteForceProfile(sc, policy);
      const what = `${sc.name}/${name}`;
      assertClose(t, got.expectedHarm, want.expectedHarm, `${what} E[H]`, 1e-10, 1e-12);
      assertArrayClose(t, got.harmInformation, want.harmInformation, `${what} I_t`, 1e-9, 1e-12);
      assertArrayClose(t, got.gradNorm, want.gradNorm, `${what} ||G_t||`, 1e-9, 1e-12);
    }
    const got = engine.analyze(1.7);
    const want = bruteForceGibbs(sc, 1.7);
    assertArrayClose(t, got.klOnPolicy, want.klOnPolicy, `${sc.name} D_t`, 1e-9, 1e-12);
    assertArrayClose(t, got.asrAligned, want.asrAligned, `${sc.name} ASR aligned`, 1e-9, 1e-12);
  }
});

test('async analysis runs off the main thread and equals the sync one', async (t) => {
  // About 10^5 states: long enough that a synchronous call could not finish within one loop turn.
  const sc = compileScenario(randomScenario({ seed: 5, vocab: 8, order: 2, length: 32, states: 1500 }));
  const engine = new ExactEngine(sc);
  t.true(engine.numStates > 40_000, `${engine.numStates} states`);
  let done = false;
  const pending = engine.analyzeAsync(2).then((result) => {
    done = true;
    return result;
  });
  await new Promise((resolve) => setImmediate(resolve));
  t.false(done, 'the event loop turned while the analysis was running');
  const asyncResult = await pending;
  const syncResult = engine.analyze(2);
  t.deepEqual(Array.from(asyncResult.klOnPolicy), Array.from(syncResult.klOnPolicy));
  t.deepEqual(Array.from(asyncResult.base.harmInformation), Array.from(syncResult.base.harmInformation));
  const profile = await engine.harmProfileAsync({ kind: 'gibbs', lambda: 2 });
  t.is(profile.expectedHarm, syncResult.alignedExpectedHarm);
});

test('bad arguments reach JavaScript as HarmHorizonErrors with stable codes, sync and async', async (t) => {
  const engine = new ExactEngine(builtins[1]);
  const expectCode = (f: () => unknown, code: string, mention: RegExp) => {
    const error = t.throws(f, { instanceOf: HarmHorizonError });
    t.is(error?.code, code);
    t.regex(error?.message ?? '', mention);
  };
  expectCode(() => engine.analyze(-1), 'HH_INVALID_ARGUMENT', /lambda/);
  expectCode(() => engine.analyze(Number.NaN), 'HH_INVALID_ARGUMENT', /lambda/);
  expectCode(() => engine.analyze(1, -3), 'HH_INVALID_ARGUMENT', /tolerance/);
  expectCode(() => engine.harmProfile({ kind: 'tabular', logits: new Float64Array(5) }), 'HH_INVALID_ARGUMENT', /logits have 5 entries/);
  expectCode(() => engine.harmProfile({ kind: 'nonsense' } as unknown as Policy), 'HH_INVALID_ARGUMENT', /PolicyInput\.kind/);
  const rejected = await t.throwsAsync(engine.analyzeAsync(-2), { instanceOf: HarmHorizonError });
  t.is(rejected?.code, 'HH_INVALID_ARGUMENT');
  const rejectedProfile = await t.throwsAsync(engine.harmProfileAsync({ kind: 'tabular', logits: new Float64Array(1) }), { instanceOf: HarmHorizonError });
  t.is(rejectedProfile?.code, 'HH_INVALID_ARGUMENT');
  // A malformed numeric spec that bypassed validation is still refused by the core.
  const broken = { ...builtins[1], transitions: new Uint32Array(3) };
  expectCode(() => new ExactEngine(broken), 'HH_INVALID_SPEC', /transitions/);
  const tooBig = compileScenario(randomScenario({ seed: 1, vocab: 8, order: 2, length: 64, states: 200 }));
  expectCode(() => new ExactEngine(tooBig, { memoryBudgetBytes: 1e6 }), 'HH_STATE_SPACE_TOO_LARGE', /memory budget/);
});
