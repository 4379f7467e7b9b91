/**
 * `profile`: the theory's quantities from a rollout log, with standard errors.
 *
 * Every statistic is a mean over prompts of a within-prompt (weighted) mean over records; the SEs come
 * from one two-stage cluster bootstrap over prompts (then records within each prompt and kind), run
 * jointly on all statistics so that derived quantities (the KL-law fit) get SEs too.
 * - On-policy KL D_t along the policy's samples: exact per prefix from full distributions (or the
 *   runner's klFull) when the log has them, else k3; k1 and k3 are reported as well.
 * - Teacher-forced KL along reference samples weighted by their harm (THEORY's Q): exact from full
 *   distributions, else a lower bound from top-k lists (said as such in `klTeacherForcedKind`).
 * - h_d and I over blocks (d_{j−1}, d_j] of the rollout depths: the two independent rollout sets give
 *   (ĥ¹_{d_j} − ĥ¹_{d_{j−1}})(ĥ²_{d_j} − ĥ²_{d_{j−1}}), unbiased for Σ_{t in block} I_t because the
 *   martingale increments are orthogonal. A depth at or past a sample's end has h = its harm.
 * - Prefill ASR_k (weighted mean continuation harm) and pass@n over the repeated continuations.
 * - The fit of D ≈ (λ²/2)·I over blocks, and the harm horizon bracketed by the blocks' SEs.
 */
import type { RolloutLog, LogSample } from './format.js';
import { lp } from './format.js';
import { clusterBootstrap, fitKlLaw, klFullRows, klLowerBoundRows, klTokenEstimates, type LawFit } from '../core/log-stats.js';

export interface ProfileOptions {
  /** Bootstrap replicates (default 200). */
  replicates?: number;
  /** Bootstrap seed (default 0). */
  seed?: number;
}

/** Below this effective number of records a standard error is flagged as resting on few samples. */
export const LOW_SUPPORT = 30;

export interface Stat {
  value: number;
  se: number;
  support: number;
}

export interface PositionRow {
  t?: number;
  tStart: number;
  tEnd: number;
  klOnPolicy: number;
  klOnPolicySE: number;
  klTeacherForced: number | null;
  klTeacherForcedSE: number | null;
  harmInformation: number | null;
  harmInformationSE: number | null;
  /** Effective number of rollout pairs behind harmInformation. */
  harmInformationSupport: number | null;
  lowSupport: boolean;
}

export interface LogProfile {
  prompts: number;
  records: { policySamples: number; referenceSamples: number; rollouts: number; prefills: number };
  expectedHarm: { policy: number; policySE: number; reference: number; referenceSE: number };
  /** How the teacher-forced KL was obtained: exact, a lower bound from top-k lists, or not at all. */
  klTeacherForcedKind: 'exact' | 'lower-bound' | 'unavailable';
  /** Per position t = 1..L. */
  klProfile: {
    t: number;
    klOnPolicy: number;
    klOnPolicySE: number;
    k1: number;
    k1SE: number;
    k3: number;
    k3SE: number;
    klTeacherForced: number | null;
    klTeacherForcedSE: number | null;
    lowSupport: boolean;
  }[];
  /** Blocks of the rollout depths (single positions where rollouts are dense); KL summed over each block. */
  positions: PositionRow[];
  /** The model whose harm martingale the rollouts follow. */
  harmInformationModel: string | null;
  /** Mean conditional harm ĥ_d by depth (a martingale: constant in expectation). */
  conditionalHarm: { depth: number; h: number; hSE: number }[];
  prefill: { k: number; asr: number; asrSE: number; prefixes: number; lowSupport: boolean; passAt: { attempts: number; value: number; se: number }[] }[];
  fit: (LawFit & { perBlock: { tStart: number; tEnd: number; ratio: number }[] }) | null;
  /**
   * The harm horizon at block resolution: `estimate` = end of the last block whose I is positive at
   * 2 SE, `lower` its first position; `upper` = end of the last block that may still carry ≥ 1% of
   * Σ I at 2 SE. null without rollouts.
   */
  horizon: { estimate: number; lower: number; upper: number } | null;
  bootstrap: { replicates: number; seed: number };
}

/** Columns of the joint bootstrap, allocated by name. */
class Columns {
  count = 0;
  take(n: number): number {
    const start = this.count;
    this.count += n;
    return start;
  }
}

/** Unbiased pass@n from c successes in m tries (Chen et al., 2021): 1 − C(m−c, n)/C(m, n). */
export function passAt(m: number, c: number, n: number): number {
  if (m - c < n) return 1;
  let fail = 1;
  for (let i = 0; i < n; i++) fail *= (m - c - i) / (m - i);
  return 1 - fail;
}

/** Per-position KL of policy to reference along a sample: exact when possible, else null. */
function exactKl(s: LogSample, policy: string, reference: string): Float64Array | null {
  const dp = s.distributions?.[policy];
  const dq = s.distributions?.[reference];
  if (dp && dq && s.tokens.length > 0) {
    const width = dp[0].length;
    const flat = (rows: (number | null)[][]) => Float64Array.from(rows.flat(), lp);
    return klFullRows(flat(dp), flat(dq), width);
  }
  if (s.klFull) return Float64Array.from(s.klFull, (x) => Math.max(0, x));
  return null;
}

/** The coarse-grained lower bound along a sample from top-k lists (and the chosen tokens). */
function lowerBoundKl(s: LogSample, policy: string, reference: string): Float64Array | null {
  const tp = s.top?.[policy];
  const tq = s.top?.[reference];
  if (!tp || !tq) return null;
  const p: number[] = [];
  const q: number[] = [];
  const offsets = [0];
  for (let t = 0; t < s.tokens.length; t++) {
    const known = new Map<number, [number, number]>();
    const qMap = new Map(tq[t].map(([id, x]) => [id, x]));
    for (const [id, x] of tp[t]) if (qMap.has(id)) known.set(id, [x, qMap.get(id)!]);
    known.set(s.tokens[t], [lp(s.logprobs[policy][t]), lp(s.logprobs[reference][t])]);
    for (const [a, b] of known.values()) {
      p.push(Math.exp(a));
      q.push(Math.exp(b));
    }
    offsets.push(p.length);
  }
  return klLowerBoundRows(Float64Array.from(p), Float64Array.from(q), Uint32Array.from(offsets));
}

export function profileLog(log: RolloutLog, options: ProfileOptions = {}): LogProfile {
  const replicates = options.replicates ?? 200;
  const seed = options.seed ?? 0;
  const { policy, reference } = log.header;
  const promptIndex = new Map(log.prompts.map((p, i) => [p.id, i]));
  const policySamples = log.samples.filter((s) => s.model === policy);
  const referenceSamples = log.samples.filter((s) => s.model === reference);
  const L = [...policySamples, ...referenceSamples].reduce((m, s) => Math.max(m, s.tokens.length), 0);

  // Rollout sets by sample, depth and set: the mean harm of the continuations (the reference's
  // rollouts when there are any: the KL law takes I under the reference).
  const rolloutModel = log.rollouts.some((r) => r.model === reference) ? reference : log.rollouts[0]?.model ?? null;
  const hat = new Map<string, number>();
  const depthSet = new Set<number>();
  for (const r of log.rollouts) {
    if (r.model !== rolloutModel) continue;
    hat.set(`${r.sample}\u0000${r.depth}\u0000${r.set}`, r.harms.reduce((a, b) => a + b, 0) / r.harms.length);
    depthSet.add(r.depth);
  }
  const depths = [...depthSet].sort((a, b) => a - b);
  if (depths.length > 0 && depths[depths.length - 1] < L) depths.push(L); // h_L = H
  const blocks = depths.slice(1).map((d, j) => ({ tStart: depths[j] + 1, tEnd: d }));
  const hAt = (s: LogSample, depth: number, set: number): number | undefined => (depth >= s.tokens.length ? s.harm : hat.get(`${s.id}\u0000${depth}\u0000${set}`));

  // Teacher-forced KL source: exact if every harmful reference sample has it, else top-k bound.
  const harmful = referenceSamples.filter((s) => s.harm > 0);
  const exactTf = harmful.map((s) => exactKl(s, policy, reference));
  const boundTf = exactTf.every((x) => x !== null) ? null : harmful.map((s) => lowerBoundKl(s, policy, reference));
  const tfKind = harmful.length === 0 ? 'unavailable' : boundTf === null ? 'exact' : boundTf.every((x) => x !== null) ? 'lower-bound' : 'unavailable';
  const tfOf = new Map<string, Float64Array>();
  if (tfKind !== 'unavailable') harmful.forEach((s, i) => tfOf.set(s.id, (boundTf === null ? exactTf[i] : boundTf[i])!));

  // Prefill depths and attempts.
  const ks = [...new Set(log.prefills.map((p) => p.k))].sort((a, b) => a - b);
  const minTries = log.prefills.length > 0 ? log.prefills.reduce((m, p) => Math.min(m, p.harms.length), Infinity) : 0;
  const attempts: number[] = [];
  for (let n = 1; n <= minTries; n *= 2) attempts.push(n);

  const cols = new Columns();
  const cOn = cols.take(L);
  const cK1 = cols.take(L);
  const cK3 = cols.take(L);
  const cTf = cols.take(L);
  const cHarmPolicy = cols.take(1);
  const cHarmReference = cols.take(1);
  const cDBlock = cols.take(blocks.length);
  const cTfBlock = cols.take(blocks.length);
  const cIBlock = cols.take(blocks.length);
  const cH = cols.take(depths.length);
  const cAsr = cols.take(ks.length);
  const cPass = cols.take(ks.length * attempts.length);
  const K = cols.count;

  const units = policySamples.length + referenceSamples.length + log.prefills.length;
  const values = new Float64Array(units * K);
  const weights = new Float64Array(units * K);
  const prompt = new Uint32Array(units);
  const stratum = new Uint32Array(units);
  let u = 0;
  const set = (c: number, value: number, weight = 1) => {
    values[u * K + c] = value;
    weights[u * K + c] = weight;
  };

  /** ĥ_d per depth and the innovation products per block of a sample's rollout tree. */
  const addRollouts = (s: LogSample) => {
    depths.forEach((d, i) => {
      const a = hAt(s, d, 0);
      const b = hAt(s, d, 1);
      if (a !== undefined && b !== undefined) set(cH + i, (a + b) / 2);
    });
    blocks.forEach((_, j) => {
      const [a0, a1, b0, b1] = [hAt(s, depths[j], 0), hAt(s, depths[j + 1], 0), hAt(s, depths[j], 1), hAt(s, depths[j + 1], 1)];
      if (a0 !== undefined && a1 !== undefined && b0 !== undefined && b1 !== undefined) set(cIBlock + j, (a1 - a0) * (b1 - b0));
    });
  };

  for (const s of policySamples) {
    prompt[u] = promptIndex.get(s.prompt)!;
    stratum[u] = 0;
    const n = s.tokens.length;
    const { k1, k3 } = klTokenEstimates(Float64Array.from(s.logprobs[policy], lp), Float64Array.from(s.logprobs[reference], lp));
    const best = exactKl(s, policy, reference) ?? k3;
    for (let t = 0; t < L; t++) {
      // After the end a response emits nothing: its KL there is 0.
      set(cOn + t, t < n ? best[t] : 0);
      set(cK1 + t, t < n ? k1[t] : 0);
      set(cK3 + t, t < n ? k3[t] : 0);
    }
    blocks.forEach((b, j) => {
      let sum = 0;
      for (let t = b.tStart; t <= Math.min(b.tEnd, n); t++) sum += best[t - 1];
      set(cDBlock + j, sum);
    });
    set(cHarmPolicy, s.harm);
    if (s.model === rolloutModel && rolloutModel !== reference) addRollouts(s);
    u++;
  }
  for (const s of referenceSamples) {
    prompt[u] = promptIndex.get(s.prompt)!;
    stratum[u] = 1;
    set(cHarmReference, s.harm);
    const tf = tfOf.get(s.id);
    if (tf) {
      for (let t = 0; t < L; t++) set(cTf + t, t < s.tokens.length ? tf[t] : 0, s.harm);
      blocks.forEach((b, j) => {
        let sum = 0;
        for (let t = b.tStart; t <= Math.min(b.tEnd, s.tokens.length); t++) sum += tf[t - 1];
        set(cTfBlock + j, sum, s.harm);
      });
    }
    if (s.model === rolloutModel) addRollouts(s);
    u++;
  }
  for (const p of log.prefills) {
    prompt[u] = promptIndex.get(p.prompt)!;
    stratum[u] = 2;
    const w = p.weight ?? 1;
    const i = ks.indexOf(p.k);
    set(cAsr + i, p.harms.reduce((a, b) => a + b, 0) / p.harms.length, w);
    const successes = p.harms.filter((h) => h >= 0.5).length;
    attempts.forEach((n, j) => set(cPass + i * attempts.length + j, passAt(p.harms.length, successes, n), w));
    u++;
  }

  const boot = clusterBootstrap({ prompt, stratum, values, weights, columns: K, replicates, seed });
  const stat = (c: number): Stat => ({ value: boot.estimate[c], se: boot.se[c], support: boot.support[c] });
  const orNull = (x: number) => (Number.isFinite(x) ? x : null);
  const low = (...s: Stat[]) => s.some((x) => Number.isFinite(x.value) && x.support < LOW_SUPPORT);

  const klProfile = Array.from({ length: L }, (_, t) => {
    const on = stat(cOn + t);
    const tf = stat(cTf + t);
    return {
      t: t + 1,
      klOnPolicy: on.value,
      klOnPolicySE: on.se,
      k1: boot.estimate[cK1 + t],
      k1SE: boot.se[cK1 + t],
      k3: boot.estimate[cK3 + t],
      k3SE: boot.se[cK3 + t],
      klTeacherForced: orNull(tf.value),
      klTeacherForcedSE: orNull(tf.se),
      lowSupport: low(on),
    };
  });

  let positions: PositionRow[];
  if (blocks.length === 0) {
    positions = klProfile.map((r) => ({
      t: r.t,
      tStart: r.t,
      tEnd: r.t,
      klOnPolicy: r.klOnPolicy,
      klOnPolicySE: r.klOnPolicySE,
      klTeacherForced: r.klTeacherForced,
      klTeacherForcedSE: r.klTeacherForcedSE,
      harmInformation: null,
      harmInformationSE: null,
      harmInformationSupport: null,
      lowSupport: r.lowSupport,
    }));
  } else {
    positions = blocks.map((b, j) => {
      const d = stat(cDBlock + j);
      const tf = stat(cTfBlock + j);
      const info = stat(cIBlock + j);
      return {
        ...(b.tStart === b.tEnd ? { t: b.tStart } : {}),
        tStart: b.tStart,
        tEnd: b.tEnd,
        klOnPolicy: d.value,
        klOnPolicySE: d.se,
        klTeacherForced: orNull(tf.value),
        klTeacherForcedSE: orNull(tf.se),
        harmInformation: orNull(info.value),
        harmInformationSE: orNull(info.se),
        harmInformationSupport: orNull(info.support),
        lowSupport: low(d, info),
      };
    });
  }

  let fit: LogProfile['fit'] = null;
  if (blocks.length > 0) {
    const pick = (c: number, n: number, from: Float64Array) => from.slice(c, c + n);
    const reps = (c: number) => {
      const out = new Float64Array(replicates * blocks.length);
      for (let b = 0; b < replicates; b++) out.set(boot.replicates.subarray(b * K + c, b * K + c + blocks.length), b * blocks.length);
      return out;
    };
    const f = fitKlLaw(pick(cDBlock, blocks.length, boot.estimate), pick(cDBlock, blocks.length, boot.se), pick(cIBlock, blocks.length, boot.estimate), pick(cIBlock, blocks.length, boot.se), reps(cDBlock), reps(cIBlock));
    fit = { ...f, perBlock: blocks.map((b, j) => ({ ...b, ratio: boot.estimate[cDBlock + j] / (f.scale * boot.estimate[cIBlock + j]) })) };
  }

  let horizon: LogProfile['horizon'] = null;
  if (blocks.length > 0) {
    const total = blocks.reduce((a, _, j) => a + Math.max(0, boot.estimate[cIBlock + j] || 0), 0);
    let estimate = 0;
    let lower = 0;
    let upper = 0;
    blocks.forEach((b, j) => {
      const i = boot.estimate[cIBlock + j];
      const se = boot.se[cIBlock + j] || 0;
      if (i - 2 * se > 0) {
        estimate = b.tEnd;
        lower = b.tStart;
      }
      if (i + 2 * se > 0.01 * total) upper = b.tEnd;
    });
    horizon = { estimate, lower, upper: Math.max(upper, estimate) };
  }

  return {
    prompts: log.prompts.length,
    records: { policySamples: policySamples.length, referenceSamples: referenceSamples.length, rollouts: log.rollouts.length, prefills: log.prefills.length },
    expectedHarm: { policy: boot.estimate[cHarmPolicy], policySE: boot.se[cHarmPolicy], reference: boot.estimate[cHarmReference], referenceSE: boot.se[cHarmReference] },
    klTeacherForcedKind: tfKind,
    klProfile,
    positions,
    harmInformationModel: blocks.length > 0 ? rolloutModel : null,
    conditionalHarm: depths.map((depth, i) => ({ depth, h: boot.estimate[cH + i], hSE: boot.se[cH + i] })),
    prefill: ks.map((k, i) => {
      const a = stat(cAsr + i);
      return {
        k,
        asr: a.value,
        asrSE: a.se,
        prefixes: log.prefills.filter((p) => p.k === k).length,
        lowSupport: low(a),
        passAt: attempts.map((n, j) => ({ attempts: n, value: boot.estimate[cPass + i * attempts.length + j], se: boot.se[cPass + i * attempts.length + j] })),
      };
    }),
    fit,
    horizon,
    bootstrap: { replicates, seed },
  };
}
