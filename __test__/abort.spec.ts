/**
 * Long native calls have async forms that take an AbortSignal: they return the sync numbers bit for
 * bit, a signal aborted before the call rejects at once with HH_ABORTED, one aborted mid-run
 * rejects with HH_ABORTED at the next chunk boundary, and the engine works afterwards.
 */
import test from 'ava';
import {
  ExactEngine,
  LazyTabular,
  HarmHorizonError,
  MonteCarlo,
  compileScenario,
  fineTuneAttack,
  fineTuneAttackAsync,
  prefillAttack,
  prefillAttackAsync,
  randomScenario,
  rankAssistedAttack,
  rankAssistedAttackAsync,
  sampledPrefillAttack,
  sampledPrefillAttackAsync,
  train,
  TRAIN_DEFAULTS,
  clusterBootstrap,
  clusterBootstrapAsync,
  type BootstrapInput,
  type Policy,
} from '../ts/index.js';
import { Optimizer } from '../ts/core/optimizer.js';
import { fitMlpToBase, fitMlpToBaseAsync, fitTransformerToBase, fitTransformerToBaseAsync, initMlp, initTransformer } from '../ts/core/policy.js';
import { baseLogits, fineTuneLoss, fineTuneLossAsync, fixedPoint, fixedPointAsync, objectiveValue, objectiveValueAsync, rlStep, rlStepAsync } from '../ts/core/training.js';
import { gradedScenario } from './helpers/graded.js';

// Order 2, graded harm (0, 0.2, 0.5, 1), an end token; decisions before absorbing states and undecided mass at T.
const graded = compileScenario(gradedScenario());
const R = 2; // the recovery token 'r'
const deep = { kind: 'deep' as const, lambda: 3, mu: 1, gamma: 0.9, recovery: [R] };

/** Bit-for-bit equality of two float arrays (NaN included). */
function sameBits(t: import('ava').ExecutionContext, a: Float64Array | undefined, b: Float64Array | undefined, what: string) {
  t.truthy(a && b, what);
  t.true(sameBitsQuiet(a!, b!), what);
}

function sameBitsQuiet(a: Float64Array, b: Float64Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** A policy away from the base: the base's logits with token a pushed at every state. */
function tilted(engine: ExactEngine): Policy & { kind: 'tabular' } {
  const logits = baseLogits(engine);
  const v = graded.tokens.length;
  for (let i = 0; i < logits.length; i += v) logits[i] += 0.7;
  return { kind: 'tabular', logits };
}

/**
 * Starts `run(signal)`, aborts it after `afterMs` and checks that it rejects with HH_ABORTED. The
 * tests that use it are serial, so no other test's synchronous work delays the abort's timer; a
 * run that finished first fails the check with a short message (not its whole result).
 */
async function abortsMidRun(t: import('ava').ExecutionContext, run: (signal: AbortSignal) => Promise<unknown>, afterMs: number) {
  const controller = new AbortController();
  const running = run(controller.signal).then(() => 'finished before the abort');
  setTimeout(() => controller.abort(), afterMs);
  const error = await t.throwsAsync(running, { instanceOf: HarmHorizonError });
  t.is(error?.code, 'HH_ABORTED');
}

test('the async forms return the sync numbers bit for bit', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  const policy = tilted(engine);
  const signal = new AbortController().signal;

  const analysis = engine.analyze(1.5);
  const analysisAsync = await engine.analyzeAsync(1.5, undefined, { signal });
  sameBits(t, analysisAsync.base.harmInformation, analysis.base.harmInformation, 'analysis I_t');
  sameBits(t, analysisAsync.klOnPolicy, analysis.klOnPolicy, 'analysis D_t');
  sameBits(t, analysisAsync.asrAligned, analysis.asrAligned, 'analysis ASR_k');
  t.true(analysis.base.undecided > 0, 'the scenario leaves harm undecided at T');

  const profile = engine.harmProfile(policy, { gradient: true });
  const profileAsync = await engine.harmProfileAsync(policy, { gradient: true, signal });
  sameBits(t, profileAsync.gradient, profile.gradient, 'profile gradient');
  t.is(profileAsync.expectedHarm, profile.expectedHarm);

  const step = objectiveValue(engine, policy, deep, true);
  const stepAsync = await objectiveValueAsync(engine, policy, deep, true, undefined, { signal });
  t.is(stepAsync.total, step.total);
  sameBits(t, stepAsync.gradient, step.gradient, 'objective gradient');
  sameBits(t, stepAsync.recovery, step.recovery, 'objective recovery');

  sameBits(t, await prefillAttackAsync(engine, policy, { signal }), prefillAttack(engine, policy), 'prefill ASR_k');

  const mc = new MonteCarlo(graded, { exact: engine });
  const options = { samples: 3000, seed: 7, harm: 'rollouts' as const, rollouts: 8, gradient: 'leave-one-out' as const };
  const estimate = mc.estimate(policy, options);
  const estimateAsync = await mc.estimateAsync(policy, options, { signal });
  t.is(estimateAsync.expectedHarm, estimate.expectedHarm);
  sameBits(t, estimateAsync.harmInformation?.mean, estimate.harmInformation?.mean, 'estimated I_t');
  sameBits(t, estimateAsync.harmInformation?.se, estimate.harmInformation?.se, 'SE of I_t');
  sameBits(t, estimateAsync.gradient?.blocks, estimate.gradient?.blocks, 'estimated gradient');
});

test('a sampled training step (PPO) async updates params and Adam exactly as the sync step', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  const mc = new MonteCarlo(graded, { exact: engine });
  const [sync, async] = [tilted(engine), tilted(engine)];
  const [adamSync, adamAsync] = [new Optimizer('adam', sync.logits.length, 0.05), new Optimizer('adam', async.logits.length, 0.05)];
  const signal = new AbortController().signal;
  for (let step = 0; step < 3; step++) {
    const options = { algorithm: 'ppo' as const, samples: 400, seed: 9, firstIndex: step * 400, lambda: 2, clip: 0.2, epochs: 3 };
    const a = rlStep(mc, sync, sync.logits, adamSync, options);
    const b = await rlStepAsync(mc, async, async.logits, adamAsync, options, { signal });
    t.is(b.objective, a.objective);
    sameBits(t, b.gradNorm, a.gradNorm, `step ${step} gradient norms`);
    sameBits(t, async.logits, sync.logits, `step ${step} parameters`);
  }
  t.false(sameBitsQuiet(sync.logits, tilted(engine).logits), 'the steps moved the parameters');
});

test.serial('an aborted sampled step leaves the parameters and the optimizer unchanged', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  const mc = new MonteCarlo(graded, { exact: engine });
  const policy = tilted(engine);
  const before = policy.logits.slice();
  const adam = new Optimizer('adam', before.length, 0.05);
  // A long batch: 10^6 responses, 8 PPO epochs.
  await abortsMidRun(t, (signal) => rlStepAsync(mc, policy, policy.logits, adam, { algorithm: 'ppo', samples: 1_000_000, seed: 1, lambda: 2, epochs: 8 }, { signal }), 10);
  sameBits(t, policy.logits, before, 'parameters untouched');
  // The optimizer's Adam state is untouched too: its next step equals a fresh optimizer's.
  const twin = { kind: 'tabular' as const, logits: before.slice() };
  const options = { algorithm: 'reinforce' as const, samples: 200, seed: 4, lambda: 2 };
  rlStep(mc, policy, policy.logits, adam, options);
  rlStep(mc, twin, twin.logits, new Optimizer('adam', before.length, 0.05), options);
  sameBits(t, policy.logits, twin.logits, 'the next step starts from the same state');
});

test('a signal aborted before the call rejects at once with HH_ABORTED', async (t) => {
  const engine = new ExactEngine(graded);
  const mc = new MonteCarlo(graded, { exact: engine });
  const controller = new AbortController();
  controller.abort();
  const signal = controller.signal;
  const logits = baseLogits(engine);
  const calls: [string, () => Promise<unknown>][] = [
    ['analyzeAsync', () => engine.analyzeAsync(1, undefined, { signal })],
    ['harmProfileAsync', () => engine.harmProfileAsync(undefined, { signal })],
    ['objectiveValueAsync', () => objectiveValueAsync(engine, { kind: 'base' }, deep, true, undefined, { signal })],
    ['prefillAttackAsync', () => prefillAttackAsync(engine, { kind: 'base' }, { signal })],
    ['estimateAsync', () => mc.estimateAsync({ kind: 'base' }, { samples: 100, seed: 1 }, { signal })],
    ['sampleAsync', () => mc.sampleAsync({ kind: 'base' }, { count: 10, seed: 1 }, { signal })],
    ['sampledPrefillAttackAsync', () => sampledPrefillAttackAsync(graded, { kind: 'base' }, { samples: 10, seed: 1, signal })],
    ['rlStepAsync', () => rlStepAsync(mc, { kind: 'tabular', logits }, logits, new Optimizer('sgd', logits.length, 0.1), { algorithm: 'reinforce', samples: 10, seed: 1, lambda: 1 }, { signal })],
    ['fixedPointAsync', () => fixedPointAsync(engine, { kind: 'standard', lambda: 1, mu: 0, gamma: 1, recovery: [R] }, 10, 1e-12, { signal })],
    ['rankAssistedAttackAsync', () => rankAssistedAttackAsync(engine, { kind: 'base' }, 2, { signal })],
    ['klBetweenAsync', () => engine.klBetweenAsync({ kind: 'base' }, { kind: 'base' }, { signal })],
    ['fineTuneLossAsync', () => fineTuneLossAsync(engine, { kind: 'base' }, 'sft', undefined, { signal })],
    ['fineTuneAttackAsync', () => fineTuneAttackAsync(engine, { kind: 'base' }, { steps: 2, learningRate: 0.1, objective: 'sft', signal })],
    ['clusterBootstrapAsync', () => clusterBootstrapAsync(bootstrapUnits(20, 5, 10), { signal })],
    ['fitMlpToBaseAsync', () => fitMlpToBaseAsync(graded, initMlp(graded, { hidden: [8], order: 2, activation: 'tanh' }, 1), { steps: 5, signal })],
    ['fitTransformerToBaseAsync', () => fitTransformerToBaseAsync(graded, initTransformer(graded, undefined, 1), { steps: 2, batch: 8, signal })],
  ];
  for (const [name, call] of calls) {
    const error = await t.throwsAsync(call(), { instanceOf: HarmHorizonError }, name);
    t.is(error?.code, 'HH_ABORTED', name);
  }
});

test.serial('an estimate aborted mid-run rejects with HH_ABORTED and the engine works afterwards', async (t) => {
  // A long estimate: 40 000 responses of T = 40, each prefix's h_t from 64 rollouts (about 10^9 token draws).
  const scenario = compileScenario(randomScenario({ seed: 3, vocab: 6, order: 2, length: 40, states: 6, endToken: true }));
  const engine = new ExactEngine(scenario);
  const mc = new MonteCarlo(scenario, { exact: engine });
  await abortsMidRun(t, (signal) => mc.estimateAsync({ kind: 'base' }, { samples: 40_000, seed: 1, harm: 'rollouts', rollouts: 64 }, { signal }), 50);
  // Afterwards: the same engine estimates, and async still equals sync.
  const small = { samples: 500, seed: 2, harm: 'exact' as const };
  const after = await mc.estimateAsync({ kind: 'base' }, small);
  t.is(after.expectedHarm, mc.estimate({ kind: 'base' }, small).expectedHarm);
});

test.serial('a training step aborted mid-run rejects with HH_ABORTED and the engine works afterwards', async (t) => {
  // One exact step of the deep objective with its gradient on ~1.3·10^4 states, T = 24, V = 16.
  const scenario = compileScenario(randomScenario({ seed: 5, vocab: 16, order: 3, length: 24, states: 8, endToken: true }));
  const engine = new ExactEngine(scenario, { policyTables: true });
  const objective = { kind: 'deep' as const, lambda: 2, mu: 1, gamma: 0.9, recovery: [1] };
  await abortsMidRun(t, (signal) => objectiveValueAsync(engine, { kind: 'base' }, objective, true, undefined, { signal }), 10);
  const after = await objectiveValueAsync(engine, { kind: 'base' }, objective, false);
  t.is(after.total, objectiveValue(engine, { kind: 'base' }, objective, false).total);
});

test('the training loop takes the signal: an aborted run rejects with HH_ABORTED', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  const records: number[] = [];
  const controller = new AbortController();
  const options = { ...TRAIN_DEFAULTS, objective: { kind: 'standard' as const, lambda: 2, mu: 0, gamma: 1 }, algorithm: 'exact' as const, policy: 'tabular' as const, steps: 1000, evalEvery: 1000 };
  const run = train(graded, engine, options, (r) => {
    records.push(r.step);
    if (r.step === 3) controller.abort();
  }, undefined, controller.signal);
  const error = await t.throwsAsync(run, { instanceOf: HarmHorizonError });
  t.is(error?.code, 'HH_ABORTED');
  t.deepEqual(records, [0, 1, 2, 3]);
});

test('sampling and the sampled prefill attack, async, equal their sync forms bit for bit', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  const mc = new MonteCarlo(graded, { exact: engine });
  const policy = tilted(engine);
  const signal = new AbortController().signal;
  // Forced first tokens (two of them, one row per response), and the rank-assisted attacker.
  const count = 500;
  const prefix = new Uint32Array(count * 2).map((_, i) => (i * 7) % graded.tokens.length);
  for (const options of [{ count, seed: 3 }, { count, seed: 3, prefix, prefixLength: 2, firstIndex: 11 }, { count, seed: 3, rankAssisted: 2 }]) {
    const a = mc.sample(policy, options);
    const b = await mc.sampleAsync(policy, options, { signal });
    t.deepEqual(Array.from(b.tokens), Array.from(a.tokens));
    sameBits(t, b.logProbs, a.logProbs, 'log-probabilities');
    sameBits(t, b.harm, a.harm, 'harm');
  }
  for (const rank of [undefined, 2]) {
    const options = { samples: 300, seed: 5, rank, engine };
    const a = sampledPrefillAttack(graded, policy, options);
    const b = await sampledPrefillAttackAsync(graded, policy, { ...options, signal });
    t.deepEqual(b, a);
    t.is(a.asr.length, graded.length + 1);
  }
});

test.serial('a sampling call aborted mid-run rejects with HH_ABORTED and the engine samples afterwards', async (t) => {
  // 10^6 responses of T = 40 (about 4·10^7 tokens, seconds of work).
  const scenario = compileScenario(randomScenario({ seed: 3, vocab: 6, order: 2, length: 40, states: 6, endToken: true }));
  const mc = new MonteCarlo(scenario);
  await abortsMidRun(t, (signal) => mc.sampleAsync({ kind: 'base' }, { count: 1_000_000, seed: 1 }, { signal }), 20);
  const options = { count: 300, seed: 2 };
  t.deepEqual(Array.from((await mc.sampleAsync({ kind: 'base' }, options)).tokens), Array.from(mc.sample({ kind: 'base' }, options).tokens));
});

test('the fine-tuning attack, the fixed point, the rank-assisted attack and the KL between policies, async, equal their sync forms bit for bit', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  const policy = tilted(engine);
  const signal = new AbortController().signal;
  // Full batches (sft), and seeded minibatches of sampled harmful responses (constrained, AdamW).
  const settings = [
    { steps: 3, learningRate: 0.3, objective: 'sft' as const },
    { steps: 3, learningRate: 0.1, objective: 'constrained' as const, optimizer: 'adamw' as const, batch: 16, seed: 5 },
  ];
  for (const options of settings) {
    const a = fineTuneAttack(engine, policy, options);
    const b = await fineTuneAttackAsync(engine, policy, { ...options, signal });
    t.deepEqual(b.trace, a.trace, options.objective);
    sameBits(t, (b.policy as Policy & { kind: 'tabular' }).logits, (a.policy as Policy & { kind: 'tabular' }).logits, `fine-tuned logits (${options.objective})`);
    t.true(a.trace[3].asr[1] !== a.trace[0].asr[1], 'the attack moved ASR_1');
  }
  const loss = fineTuneLoss(engine, policy, 'constrained', { kind: 'base' });
  const lossAsync = await fineTuneLossAsync(engine, policy, 'constrained', { kind: 'base' }, { signal });
  t.is(lossAsync.loss, loss.loss);
  sameBits(t, lossAsync.gradient, loss.gradient, 'constrained loss gradient');

  const objective = { kind: 'deep-anchored' as const, lambda: 2, mu: 1, gamma: 0.9, recovery: [R] };
  const solved = fixedPoint(engine, objective, 50, 1e-12);
  const solvedAsync = await fixedPointAsync(engine, objective, 50, 1e-12, { signal });
  t.is(solvedAsync.iterations, solved.iterations);
  t.is(solvedAsync.change, solved.change);
  sameBits(t, solvedAsync.logits, solved.logits, 'fixed-point logits');

  for (const rank of [1, 2]) sameBits(t, await rankAssistedAttackAsync(engine, policy, rank, { signal }), rankAssistedAttack(engine, policy, rank), `rank-assisted ASR_k, r = ${rank}`);
  sameBits(t, await engine.klBetweenAsync(policy, { kind: 'base' }, { signal }), engine.klBetween(policy, { kind: 'base' }), 'KL between policies');
});

// 491 states, T = 20, V = 12: a fine-tuning step takes ~0.1 s, 10^6 fixed-point iterations far longer.
const large = () => compileScenario(randomScenario({ seed: 5, vocab: 12, order: 2, length: 20, states: 8, endToken: true }));

test.serial('a fixed point aborted mid-run rejects with HH_ABORTED and the engine works afterwards', async (t) => {
  const scenario = large();
  const engine = new ExactEngine(scenario, { policyTables: true });
  const objective = { kind: 'deep-anchored' as const, lambda: 2, mu: 1, gamma: 0.9, recovery: [1] };
  const before = await fixedPointAsync(engine, objective, 2, 0);
  // Tolerance 0 and 10^6 iterations: far longer than the abort's 20 ms.
  await abortsMidRun(t, (signal) => fixedPointAsync(engine, objective, 1_000_000, 0, { signal }), 20);
  const after = await fixedPointAsync(engine, objective, 2, 0);
  sameBits(t, after.logits, before.logits, 'fixed point after the abort');
});

test.serial('a fine-tuning attack aborted mid-run rejects with HH_ABORTED and the engine works afterwards', async (t) => {
  const scenario = large();
  const engine = new ExactEngine(scenario, { policyTables: true });
  const options = { steps: 1, learningRate: 0.1, objective: 'constrained' as const };
  const before = await fineTuneAttackAsync(engine, { kind: 'base' }, options);
  await abortsMidRun(t, (signal) => fineTuneAttackAsync(engine, { kind: 'base' }, { ...options, steps: 100_000, signal }), 30);
  t.deepEqual((await fineTuneAttackAsync(engine, { kind: 'base' }, options)).trace, before.trace, 'the same step after the abort');
});

/** A log's units: `prompts` prompts of `perPrompt` units in two strata, 3 columns, some weights 0. */
function bootstrapUnits(prompts: number, perPrompt: number, replicates: number): BootstrapInput {
  const units = prompts * perPrompt;
  const columns = 3;
  const value = (i: number) => Math.sin(i * 12.9898) * 0.5 + 0.5;
  return {
    prompt: Uint32Array.from({ length: units }, (_, u) => Math.floor(u / perPrompt)),
    stratum: Uint32Array.from({ length: units }, (_, u) => u % 2),
    values: Float64Array.from({ length: units * columns }, (_, i) => value(i)),
    weights: Float64Array.from({ length: units * columns }, (_, i) => (i % 7 === 0 ? 0 : 1 + (i % 3))),
    columns,
    replicates,
    seed: 11,
  };
}

test.serial('the cluster bootstrap, async, equals its sync form bit for bit, and aborts mid-run', async (t) => {
  const input = bootstrapUnits(40, 6, 200);
  const a = clusterBootstrap(input);
  const b = await clusterBootstrapAsync(input, { signal: new AbortController().signal });
  sameBits(t, b.estimate, a.estimate, 'bootstrap estimate');
  sameBits(t, b.se, a.se, 'bootstrap SE');
  sameBits(t, b.replicates, a.replicates, 'bootstrap replicates');
  t.true(a.se.every((x) => x > 0), 'every column varies across replicates');
  // 10^6 replicates over 2·10^4 units: minutes of work, aborted after 20 ms.
  await abortsMidRun(t, (signal) => clusterBootstrapAsync(bootstrapUnits(2000, 10, 1_000_000), { signal }), 20);
});

test.serial('fitting a network to the base, async, equals the sync fit bit for bit, and aborts mid-run', async (t) => {
  const mlp = initMlp(graded, { hidden: [8], order: 2, activation: 'tanh' }, 3);
  const a = fitMlpToBase(graded, mlp, { steps: 40 });
  const b = await fitMlpToBaseAsync(graded, mlp, { steps: 40, signal: new AbortController().signal });
  sameBits(t, b.policy.params, a.policy.params, 'fitted mlp parameters');
  t.is(b.sequenceKl, a.sequenceKl);
  t.true(a.sequenceKl < fitMlpToBase(graded, mlp, { steps: 0 }).sequenceKl, 'the fit lowers KL(P_base ‖ P_mlp)');
  const transformer = initTransformer(graded, undefined, 3);
  const c = fitTransformerToBase(graded, transformer, { steps: 3, batch: 16, klSamples: 64 });
  const d = await fitTransformerToBaseAsync(graded, transformer, { steps: 3, batch: 16, klSamples: 64 });
  sameBits(t, d.policy.params, c.policy.params, 'fitted transformer parameters');
  t.deepEqual(d.fit, c.fit);
  // 10^7 Adam steps: far longer than the abort's 20 ms.
  await abortsMidRun(t, (signal) => fitMlpToBaseAsync(graded, mlp, { steps: 10_000_000, signal }), 20);
});

test('train with a signal gives the records of train without one: the fixed point, the mlp fit, the exact ASR evaluations', async (t) => {
  const engine = new ExactEngine(graded, { policyTables: true });
  // The graded scenario declares no recovery token: the standard objective.
  const objective = { kind: 'standard' as const, lambda: 2, mu: 0, gamma: 1 };
  const runs = [
    { algorithm: 'fixed-point' as const, policy: 'tabular' as const, steps: 40, objective },
    { algorithm: 'exact' as const, policy: 'tabular' as const, steps: 3, evalEvery: 1, objective },
    { algorithm: 'reinforce' as const, policy: 'mlp' as const, mlp: { order: 2, hidden: [8], activation: 'tanh' as const }, steps: 2, samples: 64, objective },
  ];
  for (const run of runs) {
    const options = { ...TRAIN_DEFAULTS, ...run };
    const records = async (signal?: AbortSignal) => {
      const out: unknown[] = [];
      const policy = await train(graded, engine, options, ({ seconds: _, ...r }) => out.push(r), undefined, signal);
      return { out, policy };
    };
    const [a, b] = [await records(), await records(new AbortController().signal)];
    t.deepEqual(b.out, a.out, run.algorithm);
    t.deepEqual(b.policy, a.policy, run.algorithm);
    t.true(a.out.length >= 2, run.algorithm);
  }
});

test.serial('a lazy tabular step, async, equals the sync step bit for bit, and an aborted one changes nothing', async (t) => {
  // No exact model: the lazy policy keys its rows itself, and reinforce-innovation reads h from rollouts.
  const mc = new MonteCarlo(graded);
  const [sync, async] = [new LazyTabular(graded), new LazyTabular(graded)];
  const [adamSync, adamAsync] = [new Optimizer('adam', 0, 0.05), new Optimizer('adam', 0, 0.05)];
  const signal = new AbortController().signal;
  for (let step = 0; step < 3; step++) {
    for (const algorithm of ['ppo', 'reinforce-innovation'] as const) {
      const options = { algorithm, samples: 300, seed: 9, firstIndex: step * 300, lambda: 2, epochs: 3, rollouts: algorithm === 'ppo' ? undefined : 2 };
      const a = sync.rlStep(mc, adamSync, options);
      const b = await async.rlStepAsync(mc, adamAsync, options, { signal });
      t.is(b.objective, a.objective);
      sameBits(t, b.gradNorm, a.gradNorm, `${algorithm} gradient norms`);
    }
  }
  const [rowsA, rowsB] = [sync.policy().rows, async.policy().rows];
  t.true(rowsA.positions.length > 0, 'rows were stored');
  sameBits(t, rowsB.logits, rowsA.logits, 'stored rows after 6 steps');
  // An aborted step leaves the rows (their number included) and the Adam state as they were.
  const before = async.policy().rows;
  await abortsMidRun(t, (s) => async.rlStepAsync(mc, adamAsync, { algorithm: 'ppo', samples: 1_000_000, seed: 1, lambda: 2, epochs: 8 }, { signal: s }), 20);
  const after = async.policy().rows;
  t.is(after.positions.length, before.positions.length);
  sameBits(t, after.logits, before.logits, 'rows after the aborted step');
  const next = { algorithm: 'ppo' as const, samples: 300, seed: 4, lambda: 2 };
  sameBits(t, (await async.rlStepAsync(mc, adamAsync, next)).gradNorm, sync.rlStep(mc, adamSync, next).gradNorm, 'the next step starts from the same state');
  sameBits(t, async.policy().rows.logits, sync.policy().rows.logits, 'and ends in the same state');
});
