/**
 * Benchmarks of the Monte Carlo engine (see BENCHMARKS.md, "Monte Carlo"). Run from benches/index.ts
 * (`npm run bench`, `npm run bench -- --only-montecarlo`); `runMonteCarloBench()` returns what
 * index.ts writes under the `montecarlo` key of its `--json` output.
 *
 * (a) Tabular policy, exact h, innovation gradient. A tabular policy (seeded N(0, 1) logits per
 *     (position, state, token)) on random(seed=1,V=32,n=1,T=64,D=100) (2 054 exact states);
 *     N = 65 536 responses of T = 64 tokens.
 *     Rust: `mc.estimate(policy, { samples: N, seed, harm: 'exact', gradient: 'innovation' })`, which
 *     computes inside the call the sample, E[H], P̂(τ = t), I_t, the on-policy KL (`estimate` always
 *     computes it) and the innovation gradient Ĝ_t; a tabular policy with exact h is sampled and
 *     estimated position by position (crate/core/src/by_position.rs: h_t read from the table by the
 *     sampled states, no h paths), the reference builds the h paths. The policy's row tables and
 *     exact conditional-harm table h_t(s) are kept by the MonteCarlo from its first call with these
 *     logits (the agreement run); timed calls compare the logits with the kept ones (bit for bit)
 *     and reuse the tables. The first call's time (tables built) is printed beside.
 *     Limits measured in the same run (see McRow.limits): Philox draws/s and random lookups/s.
 *     TS reference: the same stages, all inside its timed function: `conditionalHarm` +
 *     `sampleTabular` + `harmPathsExact` + `expectedHarm` + τ histogram + `harmInformation` +
 *     `klAlong` + `estimateGradientTabular('innovation')`.
 *     Outside the timed functions on both sides: the compiled scenario, the state space (Rust
 *     `ExactEngine`, reference `buildStateSpace`), the logits.
 * (b) mlp policy, exact h, innovation gradient, Rust only: `initMlp(sc, { order: 2, hidden: [64],
 *     activation: 'tanh' }, seed)` on random(seed=1,V=32,n=2,T=64,D=4) (2 098 states: an order-2 mlp
 *     needs a scenario of context order ≥ 2 for the exact engine), same N and options as (a). Inside
 *     the call: the mlp's tabulation over the exact states and its h table, the sample (one forward
 *     pass per token), the on-policy KL (another forward per token), and the innovation gradient
 *     (covariance kernel: one backward per distinct (position, input, token)).
 * (c) Nested-rollout I_t, M = 16: `mc.estimate(policy, { samples: N, seed, harm: 'rollouts',
 *     rollouts: 16 })` with the tabular policy and scenario of (a), no gradient; the reference runs
 *     `sampleTabular` + `harmPathsRollouts(M = 16)` + `expectedHarm` + τ histogram +
 *     `harmInformation` + `klAlong` on a smaller N, and rates are compared per token. Rust is also
 *     timed on the reference's N (N = 64 is a single chunk of the core's 64-response chunks, so that
 *     run uses one thread).
 *
 * Tokens. The scenarios have no end token, so every walk runs to T: a batch emits exactly N·T
 * sampled tokens (checked: Σ emitted of a sample = N·T). With rollouts, from each prefix of length
 * k = 0..T of each response two sets of M continuations run to T, 2·M·(T − k) more tokens, so a call
 * walks N·(T + M·T·(T + 1)) tokens (exact, since nothing ends early).
 *
 * Besides wall time (tinybench), each timed task records the process CPU time per call
 * (`process.cpuUsage`, all threads), since the machine is shared: CPU ns per token is the steadier
 * figure, and CPU ÷ wall shows how many cores a call actually got.
 */
import { loadavg } from 'node:os';

import { Bench, type Task } from 'tinybench';

import { ExactEngine, MonteCarlo, builtinScenario, compileScenario, initMlp, type Estimates } from '../ts/index.ts';
import type { CompiledScenario } from '../ts/scenario/compiled.ts';
import { native } from '../ts/core/native.ts';
import type { Policy } from '../ts/core/policy.ts';
import { SplitMix64 } from '../ts/scenario/random.ts';
import { buildStateSpace as refBuildStateSpace, conditionalHarm as refConditionalHarm, type RefStateSpace } from '../ts/reference/exact.ts';
import {
  decisionTimeHistogram,
  decisionTimes,
  estimateGradientTabular,
  expectedHarm as refExpectedHarm,
  harmInformation as refHarmInformation,
  harmPathsExact,
  harmPathsRollouts,
  klAlong,
  sampleTabular,
  type RefEstimate,
  type RefGradientEstimate,
  type RefHarmPaths,
  type RefSamples,
} from '../ts/reference/montecarlo.ts';

// ---------------------------------------------------------------------------------------------
// Parameters

export const MC_SCENARIO = 'random(seed=1,V=32,n=1,T=64,D=100)';
export const MLP_SCENARIO = 'random(seed=1,V=32,n=2,T=64,D=4)';
const SEED = 7;
const LOGIT_SEED = 11;
const MLP_SEED = 3;
const SAMPLES = 65_536;
/** N of the stage breakdowns (single runs, per-token figures). */
const STAGE_SAMPLES = 16_384;
const ROLLOUTS = 16;
/** (c): N of the Rust run and of the reference (and of the same-work Rust run). */
const ROLLOUT_SAMPLES_RUST = 256;
const ROLLOUT_SAMPLES_TS = 64;
/** Timed iterations per task (no extra warmup: the agreement runs come first). */
const ITERATIONS = { a: 3, b: 2, c: 3 };
/** (a): timed sampling calls at the full N (median), and runs of each limit measurement (best). */
const SAMPLE_RUNS = 5;
const LIMIT_RUNS = 3;
const PHILOX_BLOCKS = 1 << 25;
const LOOKUPS = 1 << 24;
/** Agreement tolerance: max_t |rust − ts| / max_t |ts| (per position for the gradient norms). */
const AGREEMENT_TOLERANCE = 1e-12;
/**
 * Gradient norms are compared position by position only where ||G_t|| ≥ NORM_FLOOR · max_t ||G_t||.
 * Below that, Ĝ_t is made of innovations at the rounding level of the h tables (Rust's and the
 * reference's exact h_t differ by a few 1e-16, and Δ_t there is ~1e-16 too), so its relative error is
 * meaningless; those positions are still covered by the profile-scale comparison `gradientNorm`.
 */
const NORM_FLOOR = 1e-4;

// ---------------------------------------------------------------------------------------------
// Results

export interface McStats {
  /** Calls per second, 1000 / meanMs (wall). */
  hz: number;
  meanMs: number;
  /** Relative margin of error of the mean (%). */
  rme: number;
  samples: number;
  /** Process CPU time per call (all threads), ms. */
  cpuMsPerOp: number;
}

export interface McSide {
  /** Responses N per call. */
  samples: number;
  /** Tokens per call (see `tokenCount` of the row). */
  tokens: number;
  stats: McStats;
  /** tokens / wall time. */
  tokensPerSecond: number;
  /** CPU time per token, ns. */
  cpuNsPerToken: number;
  /** CPU time ÷ wall time: cores the call actually used. */
  coresUsed: number;
}

export interface McStage {
  wallMs: number;
  cpuMs: number;
}

export interface McRow {
  /** "a", "b" or "c". */
  label: string;
  name: string;
  scenario: string;
  states: number;
  policy: string;
  tokenCount: string;
  includes: { rust: string; ts: string | null };
  rust: McSide;
  ts: McSide | null;
  /** (c): Rust on the reference's N, the same work as the reference. */
  rustSameN: McSide | null;
  /** rust.tokensPerSecond / ts.tokensPerSecond (wall). */
  speedup: number | null;
  /** ts.cpuNsPerToken / rust.cpuNsPerToken: the speedup in CPU time, whatever the cores used. */
  cpuSpeedup: number | null;
  /** max_t |rust − ts| / max_t |ts| per output, E[H] compared for identity. */
  agreement: Record<string, number | boolean> | null;
  /**
   * (a): this machine's limits, measured in the same run right after the row's timing (all threads):
   * Philox4x32-10 blocks/s drawn as the sampler draws them (one per token), and random 8-byte reads/s
   * from a table the size of the sampler's row table (T·S·V (running sum, log π) pairs); the full
   * estimate and the sampling call alone (N responses, median of SAMPLE_RUNS) as fractions of the
   * draw rate (tokens/s ÷ blocks/s). Sampling alone is timed twice: `sampleInto` the arrays of an
   * earlier batch (the sampling itself), and `sample` returning new arrays (plus allocating, faulting
   * in and later collecting N × (3T + 1) × 4-8 bytes of outputs).
   */
  limits?: {
    philoxPerSecond: number;
    lookupTableBytes: number;
    lookupsPerSecond: number;
    samplingTokensPerSecond: number;
    samplingNewArraysTokensPerSecond: number;
    estimateFractionOfPhilox: number;
    samplingFractionOfPhilox: number;
    samplingNewArraysFractionOfPhilox: number;
    /** Sampling into reused arrays, each call's rate over the draw rate measured just before it. */
    samplingPairedFractions: number[];
  };
  /** Single runs of the pipeline's stages (where the time goes), with the N they used. */
  stages?: { rust?: { samples: number; ms: Record<string, McStage> }; ts?: { samples: number; ms: Record<string, McStage>; note: string } };
}

export interface MonteCarloResults {
  timing: string;
  /** os.loadavg() (1, 5, 15 min) before and after the suite: how busy the shared machine was. */
  loadAverage: { before: number[]; after: number[] };
  rows: McRow[];
}

// ---------------------------------------------------------------------------------------------
// Helpers

function measure(f: () => unknown): McStage {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  f();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000 };
}

/** A task function that also adds up the process CPU time of its calls. */
function cpuTracked(f: () => void): { fn: () => void; cpu: { ms: number; calls: number } } {
  const cpu = { ms: 0, calls: 0 };
  return {
    cpu,
    fn: () => {
      const c0 = process.cpuUsage();
      f();
      const c = process.cpuUsage(c0);
      cpu.ms += (c.user + c.system) / 1000;
      cpu.calls++;
    },
  };
}

function stats(task: Task | undefined, cpu: { ms: number; calls: number }): McStats {
  const r = task?.result;
  if (!r || (r.state !== 'completed' && r.state !== 'aborted-with-statistics')) {
    const err = r && r.state === 'errored' ? r.error : undefined;
    throw new Error(`benchmark task ${task?.name ?? '?'} did not complete${err ? `: ${err.message}` : ''}`);
  }
  const meanMs = r.latency.mean;
  return { hz: 1000 / meanMs, meanMs, rme: r.latency.rme, samples: r.latency.samplesCount, cpuMsPerOp: cpu.ms / Math.max(1, cpu.calls) };
}

function side(samples: number, tokens: number, s: McStats): McSide {
  return {
    samples,
    tokens,
    stats: s,
    tokensPerSecond: (tokens * 1000) / s.meanMs,
    cpuNsPerToken: (s.cpuMsPerOp * 1e6) / tokens,
    coresUsed: s.cpuMsPerOp / s.meanMs,
  };
}

/**
 * max_t |a_t − b_t| / max_t |b_t|: the largest difference relative to the profile's scale (shared
 * with benches/index.ts).
 */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    const d = Math.abs(x - y);
    diff = Math.max(diff, Number.isNaN(d) ? Infinity : d);
    scale = Math.max(scale, Math.abs(y));
  }
  return diff === 0 ? 0 : diff / scale;
}

/** max_i |a_i − b_i| / |b_i| (absolute where b_i = 0). */
function maxElementRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    const r = b[i] === 0 ? d : d / Math.abs(b[i]!);
    worst = Math.max(worst, Number.isNaN(r) ? Infinity : r);
  }
  return worst;
}

function fmtRate(x: number): string {
  if (x >= 1e9) return `${(x / 1e9).toFixed(2)} G`;
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(0)} k`;
  return x.toFixed(0);
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function randomLogits(sc: CompiledScenario, numStates: number, seed: number): Float64Array {
  const rng = new SplitMix64(seed);
  const out = new Float64Array(sc.length * numStates * sc.tokens.length);
  for (let i = 0; i < out.length; i++) out[i] = rng.nextNormal();
  return out;
}

function emittedTotal(emitted: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < emitted.length; i++) s += emitted[i]!;
  return s;
}

function decisionHistogram(samples: RefSamples, paths: RefHarmPaths): Float64Array {
  return decisionTimeHistogram(decisionTimes(paths, samples.count, samples.length), samples.length).histogram.mean;
}

function printSide(name: string, s: McSide): void {
  console.log(
    `  ${pad(name, 30)} ${pad(s.stats.meanMs.toFixed(0), 7, true)} ms/op ±${pad(s.stats.rme.toFixed(1), 4, true)}% (${s.stats.samples} samples)  ` +
      `${pad(fmtRate(s.tokensPerSecond), 8, true)}tokens/s  cpu ${pad(s.cpuNsPerToken.toFixed(0), 5, true)} ns/token, ${s.coresUsed.toFixed(2)} cores`,
  );
}

function printStages(who: string, n: number, stages: Record<string, McStage>, tokensPerResponse: number): void {
  console.log(`  stages, ${who} (single runs at N = ${n}; wall ms / cpu ns per token):`);
  for (const [k, v] of Object.entries(stages)) {
    console.log(`    ${pad(k, 44)} ${pad(v.wallMs.toFixed(0), 7, true)} ms  ${pad(((v.cpuMs * 1e6) / (n * tokensPerResponse)).toFixed(0), 6, true)} ns/token`);
  }
}

// ---------------------------------------------------------------------------------------------
// The reference pipelines (what the Rust `estimate` computes, stage for stage)

interface RefRun {
  samples: RefSamples;
  expectedHarm: { mean: number; se: number };
  decisionTime: Float64Array;
  harmInformation: RefEstimate;
  klOnPolicy: RefEstimate;
  gradient?: RefGradientEstimate;
}

/** Runs `f`, recording its wall and CPU time under `name` when `stages` is given. */
function stage<T>(stages: Record<string, McStage> | undefined, name: string, f: () => T): T {
  if (!stages) return f();
  let out!: T;
  stages[name] = measure(() => {
    out = f();
  });
  return out;
}

function refExactInnovation(sc: CompiledScenario, space: RefStateSpace, logits: Float64Array, count: number, stages?: Record<string, McStage>): RefRun {
  const hTable = stage(stages, 'conditionalHarm (h table)', () => refConditionalHarm(sc, space, { kind: 'tabular', logits }));
  const samples = stage(stages, 'sampleTabular', () => sampleTabular(sc, space, logits, { count, seed: SEED }));
  const paths = stage(stages, 'harmPathsExact', () => harmPathsExact(sc, space, samples, hTable));
  const [eh, decisionTime, info] = stage(stages, 'E[H], τ histogram, harmInformation', () => [
    refExpectedHarm(samples),
    decisionHistogram(samples, paths),
    refHarmInformation(samples, paths),
  ] as const);
  const kl = stage(stages, 'klAlong (on-policy KL)', () => klAlong(sc, space, logits, samples));
  const gradient = stage(stages, "estimateGradientTabular('innovation')", () => estimateGradientTabular(sc, space, logits, samples, 'innovation', paths));
  return { samples, expectedHarm: eh, decisionTime, harmInformation: info, klOnPolicy: kl, gradient };
}

function refRollouts(sc: CompiledScenario, space: RefStateSpace, logits: Float64Array, count: number, stages?: Record<string, McStage>): RefRun {
  const samples = stage(stages, 'sampleTabular', () => sampleTabular(sc, space, logits, { count, seed: SEED }));
  const paths: RefHarmPaths = stage(stages, `harmPathsRollouts (M = ${ROLLOUTS})`, () => harmPathsRollouts(sc, space, logits, samples, ROLLOUTS, SEED));
  const [eh, decisionTime, info] = stage(stages, 'E[H], τ histogram, harmInformation', () => [
    refExpectedHarm(samples),
    decisionHistogram(samples, paths),
    refHarmInformation(samples, paths),
  ] as const);
  const kl = stage(stages, 'klAlong (on-policy KL)', () => klAlong(sc, space, logits, samples));
  return { samples, expectedHarm: eh, decisionTime, harmInformation: info, klOnPolicy: kl };
}

// ---------------------------------------------------------------------------------------------
// Agreement

function agreement(rust: Estimates, ref: RefRun): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = {
    expectedHarmRust: rust.expectedHarm,
    expectedHarmTs: ref.expectedHarm.mean,
    expectedHarmIdentical: rust.expectedHarm === ref.expectedHarm.mean,
    expectedHarmSE: Math.abs(rust.expectedHarmSE - ref.expectedHarm.se) / ref.expectedHarm.se,
    decisionTime: maxRelDiff(rust.decisionTime!, ref.decisionTime),
    harmInformation: maxRelDiff(rust.harmInformation!.mean, ref.harmInformation.mean),
    harmInformationSE: maxRelDiff(rust.harmInformation!.se, ref.harmInformation.se),
    klOnPolicy: maxRelDiff(rust.klOnPolicy.mean, ref.klOnPolicy.mean),
  };
  if (ref.gradient) {
    const rn = rust.gradient!.norm;
    const tn = ref.gradient.norm;
    out.gradientNorm = maxRelDiff(rn, tn);
    let top = 0;
    for (const x of tn) top = Math.max(top, x);
    const keep = [...tn.keys()].filter((t) => tn[t]! >= NORM_FLOOR * top);
    out.gradientNormPerPosition = maxElementRelDiff(
      keep.map((t) => rn[t]!),
      keep.map((t) => tn[t]!),
    );
    out.gradientNormPositionsCompared = keep.length;
    out.gradientBlocks = maxRelDiff(rust.gradient!.blocks, ref.gradient.blocks);
    out.gradientVariance = maxRelDiff(rust.gradient!.variance, ref.gradient.variance);
  }
  return out;
}

const NOT_CHECKED = new Set(['expectedHarmRust', 'expectedHarmTs', 'expectedHarmIdentical', 'gradientNormPositionsCompared']);

function checkAgreement(label: string, a: Record<string, number | boolean>): void {
  const bad = Object.entries(a).filter(([k, v]) => (k === 'expectedHarmIdentical' ? v !== true : !NOT_CHECKED.has(k) && !((v as number) <= AGREEMENT_TOLERANCE)));
  if (bad.length > 0) throw new Error(`Rust and the reference disagree in (${label}): ${JSON.stringify(a)}`);
}

function printAgreement(a: Record<string, number | boolean>): void {
  console.log(`  agreement: E[H] rust ${a.expectedHarmRust}, ts ${a.expectedHarmTs}, identical: ${a.expectedHarmIdentical}`);
  const parts = Object.entries(a)
    .filter(([k]) => !NOT_CHECKED.has(k))
    .map(([k, v]) => `${k} ${(v as number).toExponential(2)}`);
  console.log(`  agreement: max |rust − ts| / max |ts|: ${parts.join(', ')}  (all ≤ ${AGREEMENT_TOLERANCE}: ok)`);
  if (a.gradientNormPerPosition !== undefined) {
    console.log(
      `  agreement: gradientNormPerPosition = max_t |rust − ts| / |ts| over the ${a.gradientNormPositionsCompared} positions with ` +
        `||G_t|| ≥ ${NORM_FLOOR}·max_t ||G_t||; hTable = max |h_rust − h_ts| over (t, s)`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// (a) tabular, exact h, innovation gradient

async function benchTabularExact(): Promise<McRow> {
  const sc = compileScenario(builtinScenario(MC_SCENARIO));
  const engine = new ExactEngine(sc);
  const space = refBuildStateSpace(sc);
  if (space.numStates !== engine.numStates) throw new Error(`state counts differ: rust ${engine.numStates}, ts ${space.numStates}`);
  const S = engine.numStates;
  const T = sc.length;
  if (sc.endToken !== -1) throw new Error('the benchmark scenario must have no end token');
  const logits = randomLogits(sc, S, LOGIT_SEED);
  const policy: Policy = { kind: 'tabular', logits };
  const mc = new MonteCarlo(sc, { exact: engine });
  const options = { samples: SAMPLES, seed: SEED, harm: 'exact' as const, gradient: 'innovation' as const };
  console.log(`\n[mc a] ${MC_SCENARIO}: ${S} states; tabular policy (N(0,1) logits, T×S×V = ${logits.length}); N = ${SAMPLES}; exact h, innovation gradient`);

  // Agreement (also the warmup); the reference's stage times come from this run.
  const stagesTs: Record<string, McStage> = {};
  let rust!: Estimates;
  let ref!: RefRun;
  const rustFirst = measure(() => (rust = mc.estimate(policy, options)));
  const refFirst = measure(() => (ref = refExactInnovation(sc, space, logits, SAMPLES, stagesTs)));
  const tokens = emittedTotal(ref.samples.emitted);
  if (tokens !== SAMPLES * T) throw new Error(`expected N·T = ${SAMPLES * T} tokens, got ${tokens}`);
  const agree = agreement(rust, ref);
  const hRust = engine.conditionalHarm(policy);
  const hTs = refConditionalHarm(sc, space, { kind: 'tabular', logits });
  let hDiff = hRust.length === hTs.length ? 0 : Infinity;
  for (let i = 0; i < hTs.length; i++) hDiff = Math.max(hDiff, Math.abs(hRust[i]! - hTs[i]!));
  agree.hTable = hDiff;
  checkAgreement('a', agree);
  printAgreement(agree);
  console.log(`  tokens per call: Σ emitted = ${tokens} = N·T (no end token); first runs: rust ${rustFirst.wallMs.toFixed(0)} ms, ts ${refFirst.wallMs.toFixed(0)} ms`);

  let sink = 0;
  const rustTask = cpuTracked(() => {
    sink += mc.estimate(policy, options).expectedHarm;
  });
  const tsTask = cpuTracked(() => {
    sink += refExactInnovation(sc, space, logits, SAMPLES).expectedHarm.mean;
  });
  const bench = new Bench({ name: 'mc-a', iterations: ITERATIONS.a, time: 0, warmup: false, throws: true });
  bench.add('rust estimate', rustTask.fn, { async: false }).add('ts reference pipeline', tsTask.fn, { async: false });
  await bench.run();
  const rs = side(SAMPLES, tokens, stats(bench.getTask('rust estimate'), rustTask.cpu));
  const ts = side(SAMPLES, tokens, stats(bench.getTask('ts reference pipeline'), tsTask.cpu));
  printSide('rust estimate', rs);
  printSide('ts reference pipeline', ts);

  // The machine's limits in the same run, and sampling alone at the full N.
  const sampleOptions = { count: SAMPLES, seed: SEED };
  const reused = mc.sample(policy, sampleOptions);
  const medianRate = (call: () => unknown) => {
    const ms = Array.from({ length: SAMPLE_RUNS }, () => measure(call).wallMs).sort((x, y) => x - y);
    return (tokens * 1000) / ms[Math.floor(SAMPLE_RUNS / 2)]!;
  };
  const samplingTokensPerSecond = medianRate(() => mc.sampleInto(policy, sampleOptions, reused));
  const samplingNewArraysTokensPerSecond = medianRate(() => mc.sample(policy, sampleOptions));
  let philoxPerSecond = 0;
  for (let run = 0; run < LIMIT_RUNS; run++) philoxPerSecond = Math.max(philoxPerSecond, native.philoxRate(PHILOX_BLOCKS));
  const lookupTableBytes = logits.length * 16;
  let lookupsPerSecond = 0;
  for (let run = 0; run < LIMIT_RUNS; run++) lookupsPerSecond = Math.max(lookupsPerSecond, native.lookupRate(lookupTableBytes, LOOKUPS));
  // Paired: the draw rate measured just before each sampling call, since this machine's speed
  // drifts within a run (the limit above is the best of LIMIT_RUNS; the rates are medians).
  const samplingPairedFractions = Array.from({ length: SAMPLE_RUNS }, () => {
    const philox = native.philoxRate(PHILOX_BLOCKS);
    return (tokens * 1000) / measure(() => mc.sampleInto(policy, sampleOptions, reused)).wallMs / philox;
  });
  const limits = {
    philoxPerSecond,
    lookupTableBytes,
    lookupsPerSecond,
    samplingTokensPerSecond,
    samplingNewArraysTokensPerSecond,
    estimateFractionOfPhilox: rs.tokensPerSecond / philoxPerSecond,
    samplingFractionOfPhilox: samplingTokensPerSecond / philoxPerSecond,
    samplingNewArraysFractionOfPhilox: samplingNewArraysTokensPerSecond / philoxPerSecond,
    samplingPairedFractions,
  };
  console.log(
    `  limits (same run, all threads): Philox ${fmtRate(philoxPerSecond)}blocks/s; random 8-byte reads from ${(lookupTableBytes / 1e6).toFixed(1)} MB ${fmtRate(lookupsPerSecond)}/s`,
  );
  console.log(
    `  full estimate ${fmtRate(rs.tokensPerSecond)}tokens/s = ${(limits.estimateFractionOfPhilox * 100).toFixed(1)}% of the draw rate; ` +
      `sampling alone (N = ${SAMPLES}, median of ${SAMPLE_RUNS}) into reused arrays ${fmtRate(samplingTokensPerSecond)}tokens/s = ${(limits.samplingFractionOfPhilox * 100).toFixed(1)}%; ` +
      `returning new arrays ${fmtRate(samplingNewArraysTokensPerSecond)}tokens/s = ${(limits.samplingNewArraysFractionOfPhilox * 100).toFixed(1)}%`,
  );
  const pairedMedian = [...samplingPairedFractions].sort((x, y) => x - y)[Math.floor(SAMPLE_RUNS / 2)]!;
  console.log(
    `  sampling alone into reused arrays with the draw rate measured just before each of ${SAMPLE_RUNS} calls: median ${(pairedMedian * 100).toFixed(1)}% ` +
      `(${samplingPairedFractions.map((f) => (f * 100).toFixed(1)).join(', ')} %)`,
  );

  // Where the time goes in Rust: the stages one by one (each a separate call).
  const n = STAGE_SAMPLES;
  const stagesRust: Record<string, McStage> = {
    'conditionalHarm (ExactEngine, h table)': measure(() => engine.conditionalHarm(policy)),
    'sample (returned to JS, states included)': measure(() => mc.sample(policy, { count: n, seed: SEED })),
    'estimate: sample + E[H] + on-policy KL': measure(() => mc.estimate(policy, { samples: n, seed: SEED })),
    'estimate: + exact h (kept table), τ, I_t': measure(() => mc.estimate(policy, { samples: n, seed: SEED, harm: 'exact' })),
    'estimate: + innovation gradient (= (a))': measure(() => mc.estimate(policy, { ...options, samples: n })),
  };
  printStages('rust', n, stagesRust, T);
  printStages('ts (agreement run: first, JIT-cold)', SAMPLES, stagesTs, T);
  if (!Number.isFinite(sink)) console.log('  (sink)', sink);

  return {
    label: 'a',
    name: 'tabular, exact h, innovation gradient',
    scenario: MC_SCENARIO,
    states: S,
    policy: `tabular, N(0,1) logits (SplitMix64 seed ${LOGIT_SEED})`,
    tokenCount: 'Σ emitted over the batch = N·T exactly (no end token)',
    includes: {
      rust: "mc.estimate(policy, {samples, seed, harm: 'exact', gradient: 'innovation'}): a comparison of the logits with the tables the MonteCarlo kept from its first call with them (row cache and exact h table, built in the agreement run), sample by position, E[H], τ histogram, I_t (h read from the kept table by state), on-policy KL, innovation gradient",
      ts: "conditionalHarm + sampleTabular + harmPathsExact + expectedHarm + τ histogram + harmInformation + klAlong + estimateGradientTabular('innovation')",
    },
    rust: rs,
    ts,
    rustSameN: null,
    speedup: rs.tokensPerSecond / ts.tokensPerSecond,
    cpuSpeedup: ts.cpuNsPerToken / rs.cpuNsPerToken,
    agreement: agree,
    limits,
    stages: {
      rust: { samples: n, ms: stagesRust },
      ts: { samples: SAMPLES, ms: stagesTs, note: 'the agreement run (the first run of the reference: JIT warm-up included)' },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// (b) mlp, exact h, innovation gradient (Rust only)

async function benchMlpExact(): Promise<McRow> {
  const sc = compileScenario(builtinScenario(MLP_SCENARIO));
  const engine = new ExactEngine(sc);
  const S = engine.numStates;
  const T = sc.length;
  if (sc.endToken !== -1) throw new Error('the benchmark scenario must have no end token');
  const shape = { order: 2, hidden: [64], activation: 'tanh' as const };
  const policy = initMlp(sc, shape, MLP_SEED);
  const mc = new MonteCarlo(sc, { exact: engine });
  const options = { samples: SAMPLES, seed: SEED, harm: 'exact' as const, gradient: 'innovation' as const };
  console.log(
    `\n[mc b] ${MLP_SCENARIO}: ${S} states; mlp order 2, hidden [64], tanh (${policy.params.length} parameters); N = ${SAMPLES}; exact h, innovation gradient`,
  );
  // Token count check on a small sample (no end token: every response runs to T).
  const check = mc.sample(policy, { count: 256, seed: SEED });
  if (emittedTotal(check.emitted) !== 256 * T) throw new Error('a response ended early');
  const tokens = SAMPLES * T;

  let sink = 0;
  let last: Estimates | undefined;
  const rustTask = cpuTracked(() => {
    last = mc.estimate(policy, options);
    sink += last.expectedHarm;
  });
  const bench = new Bench({ name: 'mc-b', iterations: ITERATIONS.b, time: 0, warmup: false, throws: true });
  bench.add('rust estimate (mlp)', rustTask.fn, { async: false });
  await bench.run();
  const rs = side(SAMPLES, tokens, stats(bench.getTask('rust estimate (mlp)'), rustTask.cpu));
  console.log(
    `  tokens per call: N·T = ${tokens} (no end token; Σ emitted of 256 responses = 256·T); E[H] = ${last!.expectedHarm.toFixed(4)} ± ` +
      `${last!.expectedHarmSE.toFixed(4)}, gradient block ${last!.gradient!.blockLength} parameters`,
  );
  printSide('rust estimate (mlp)', rs);

  const n = STAGE_SAMPLES;
  const stagesRust: Record<string, McStage> = {
    'sample (returned to JS, states included)': measure(() => mc.sample(policy, { count: n, seed: SEED })),
    'estimate: sample + E[H] + on-policy KL': measure(() => mc.estimate(policy, { samples: n, seed: SEED })),
    'estimate: + tabulation, h table, h paths, I_t': measure(() => mc.estimate(policy, { samples: n, seed: SEED, harm: 'exact' })),
    'estimate: + innovation gradient (= (b))': measure(() => mc.estimate(policy, { ...options, samples: n })),
  };
  printStages('rust', n, stagesRust, T);
  if (!Number.isFinite(sink)) console.log('  (sink)', sink);

  return {
    label: 'b',
    name: 'mlp (order 2, hidden [64], tanh), exact h, innovation gradient',
    scenario: MLP_SCENARIO,
    states: S,
    policy: `mlp order 2, hidden [64], tanh, initMlp seed ${MLP_SEED} (${policy.params.length} parameters)`,
    tokenCount: 'N·T exactly (no end token; checked on a sample of 256 responses)',
    includes: {
      rust: "mc.estimate(policy, {samples, seed, harm: 'exact', gradient: 'innovation'}): params copy, mlp tabulation and exact h table, sample (mlp forward per token), h paths, E[H], τ histogram, I_t, on-policy KL (forward per token), innovation gradient (covariance kernel, backward per distinct (position, input, token))",
      ts: null,
    },
    rust: rs,
    ts: null,
    rustSameN: null,
    speedup: null,
    cpuSpeedup: null,
    agreement: null,
    stages: { rust: { samples: n, ms: stagesRust } },
  };
}

// ---------------------------------------------------------------------------------------------
// (c) nested rollouts, M = 16

/** N·T sampled tokens, plus two sets of M continuations of T − k tokens from each prefix k = 0..T. */
function rolloutTokens(count: number, T: number): number {
  return count * (T + ROLLOUTS * T * (T + 1));
}

async function benchRollouts(): Promise<McRow> {
  const sc = compileScenario(builtinScenario(MC_SCENARIO));
  const engine = new ExactEngine(sc);
  const space = refBuildStateSpace(sc);
  const S = engine.numStates;
  const T = sc.length;
  const logits = randomLogits(sc, S, LOGIT_SEED);
  const policy: Policy = { kind: 'tabular', logits };
  const mc = new MonteCarlo(sc, { exact: engine });
  const nRust = ROLLOUT_SAMPLES_RUST;
  const nTs = ROLLOUT_SAMPLES_TS;
  const optionsRust = { samples: nRust, seed: SEED, harm: 'rollouts' as const, rollouts: ROLLOUTS };
  const optionsSameN = { ...optionsRust, samples: nTs };
  const tokensRust = rolloutTokens(nRust, T);
  const tokensTs = rolloutTokens(nTs, T);
  console.log(
    `\n[mc c] ${MC_SCENARIO}: tabular policy of (a); nested rollouts M = ${ROLLOUTS}; N = ${nRust} (rust), ${nTs} (ts, and rust on the same work); ` +
      `tokens per call N·(T + M·T·(T+1)) = ${tokensRust} / ${tokensTs}`,
  );

  // Agreement on the reference's N (also the warmup).
  const stagesTs: Record<string, McStage> = {};
  let rust!: Estimates;
  let ref!: RefRun;
  const rustFirst = measure(() => (rust = mc.estimate(policy, optionsSameN)));
  const refFirst = measure(() => (ref = refRollouts(sc, space, logits, nTs, stagesTs)));
  if (emittedTotal(ref.samples.emitted) !== nTs * T) throw new Error('a response ended early');
  const agree = agreement(rust, ref);
  checkAgreement('c', agree);
  printAgreement(agree);
  console.log(`  first runs at N = ${nTs}: rust ${rustFirst.wallMs.toFixed(0)} ms, ts ${refFirst.wallMs.toFixed(0)} ms`);

  let sink = 0;
  const rustTask = cpuTracked(() => {
    sink += mc.estimate(policy, optionsRust).expectedHarm;
  });
  const rustSameTask = cpuTracked(() => {
    sink += mc.estimate(policy, optionsSameN).expectedHarm;
  });
  const tsTask = cpuTracked(() => {
    sink += refRollouts(sc, space, logits, nTs).expectedHarm.mean;
  });
  const bench = new Bench({ name: 'mc-c', iterations: ITERATIONS.c, time: 0, warmup: false, throws: true });
  bench
    .add(`rust estimate N=${nRust}`, rustTask.fn, { async: false })
    .add(`rust estimate N=${nTs}`, rustSameTask.fn, { async: false })
    .add(`ts reference N=${nTs}`, tsTask.fn, { async: false });
  await bench.run();
  const rs = side(nRust, tokensRust, stats(bench.getTask(`rust estimate N=${nRust}`), rustTask.cpu));
  const rsSame = side(nTs, tokensTs, stats(bench.getTask(`rust estimate N=${nTs}`), rustSameTask.cpu));
  const ts = side(nTs, tokensTs, stats(bench.getTask(`ts reference N=${nTs}`), tsTask.cpu));
  printSide(`rust estimate N=${nRust}`, rs);
  printSide(`rust estimate N=${nTs} (1 chunk)`, rsSame);
  printSide(`ts reference N=${nTs}`, ts);
  printStages('ts (agreement run: first, JIT-cold)', nTs, stagesTs, T + ROLLOUTS * T * (T + 1));
  if (!Number.isFinite(sink)) console.log('  (sink)', sink);

  return {
    label: 'c',
    name: `nested rollouts (M = ${ROLLOUTS}) I_t, tabular`,
    scenario: MC_SCENARIO,
    states: S,
    policy: 'tabular of (a)',
    tokenCount: 'N·(T + M·T·(T+1)): N·T sampled tokens plus 2·M·(T − k) rollout tokens from each prefix k = 0..T (exact: no end token)',
    includes: {
      rust: `mc.estimate(policy, {samples, seed, harm: 'rollouts', rollouts: ${ROLLOUTS}}): logits copy, sample, rollout h paths (two sets), E[H], τ histogram, I_t, on-policy KL`,
      ts: `sampleTabular + harmPathsRollouts(M = ${ROLLOUTS}) + expectedHarm + τ histogram + harmInformation + klAlong`,
    },
    rust: rs,
    ts,
    rustSameN: rsSame,
    speedup: rs.tokensPerSecond / ts.tokensPerSecond,
    cpuSpeedup: ts.cpuNsPerToken / rs.cpuNsPerToken,
    agreement: agree,
    stages: { ts: { samples: nTs, ms: stagesTs, note: 'the agreement run (the first run of the reference: JIT warm-up included)' } },
  };
}

// ---------------------------------------------------------------------------------------------
// Entry point

export function printMonteCarloTable(rows: readonly McRow[]): void {
  const head = ['bench', 'N rust/ts', 'rust tokens/s', 'ts tokens/s', 'speedup', 'rust cpu ns/tok', 'ts cpu ns/tok', 'cpu speedup'];
  const body = rows.map((r) => [
    `(${r.label}) ${r.name}`,
    r.ts ? `${r.rust.samples}/${r.ts.samples}` : String(r.rust.samples),
    fmtRate(r.rust.tokensPerSecond),
    r.ts ? fmtRate(r.ts.tokensPerSecond) : '—',
    r.speedup === null ? '—' : `${r.speedup.toFixed(1)}×`,
    r.rust.cpuNsPerToken.toFixed(0),
    r.ts ? r.ts.cpuNsPerToken.toFixed(0) : '—',
    r.cpuSpeedup === null ? '—' : `${r.cpuSpeedup.toFixed(1)}×`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => pad(c, widths[i]!, i > 0)).join('  ');
  console.log('\nMonte Carlo (speedup = rust tokens/s ÷ ts tokens/s, wall; cpu speedup = ts ÷ rust CPU time per token):');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
  for (const r of rows) {
    if (r.rustSameN && r.ts) {
      console.log(
        `(${r.label}) rust on the reference's work (N = ${r.rustSameN.samples}): ${fmtRate(r.rustSameN.tokensPerSecond)}tokens/s, ` +
          `${(r.rustSameN.tokensPerSecond / r.ts.tokensPerSecond).toFixed(1)}× the reference (cpu ${(r.ts.cpuNsPerToken / r.rustSameN.cpuNsPerToken).toFixed(1)}×)`,
      );
    }
  }
}

export async function runMonteCarloBench(): Promise<MonteCarloResults> {
  const timing =
    'tokens per second of one Monte Carlo estimate call (wall, tinybench), and process CPU time per token; ' +
    'Rust: MonteCarlo.estimate (sync, rayon pool); TS reference: the same stages from ts/reference ' +
    '(in (a) the reference builds its h table inside the timed call; Rust reuses the row and h tables its MonteCarlo kept from the first call with the same logits, and compares the logits with them) ' +
    'scenario, state space and policy prepared outside the timed functions';
  const before = loadavg();
  console.log(`\n== Monte Carlo ==\ntiming: ${timing}\nload average before: ${before.map((x) => x.toFixed(2)).join(' ')}`);
  const rows: McRow[] = [];
  rows.push(await benchTabularExact());
  rows.push(await benchMlpExact());
  rows.push(await benchRollouts());
  printMonteCarloTable(rows);
  const after = loadavg();
  console.log(`load average after: ${after.map((x) => x.toFixed(2)).join(' ')}`);
  return { timing, loadAverage: { before, after }, rows };
}
