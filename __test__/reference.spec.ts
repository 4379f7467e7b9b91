import test from 'ava';

import type { CompiledScenario } from '../ts/scenario/compiled.js';
import { bruteForceGibbs, bruteForceProfile, enumerateResponses } from '../ts/reference/enumerate.js';
import {
  analyze,
  buildStateSpace,
  conditionalHarm,
  forwardProbabilities,
  harmfulPrefixWeights,
  harmProfile,
  klToBase,
  logitGradient,
  prefillAsr,
  type RefPolicy,
  type RefStateSpace,
} from '../ts/reference/exact.js';

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

/** THEORY.md "horizon": tokens a, b, c; T = 10; H = 1 iff at least 2 of the first 4 tokens are b. */
function horizonScenario(): CompiledScenario {
  const V = 3;
  const HARM = 8;
  const SAFE = 9;
  const names: string[] = [];
  for (let i = 0; i < 4; i++) for (let c = 0; c < 2; c++) names.push(`seen${i}_b${c}`);
  names.push('HARM', 'SAFE');
  const transitions = new Uint32Array(names.length * V);
  for (let i = 0; i < 4; i++) {
    for (let c = 0; c < 2; c++) {
      for (let x = 0; x < V; x++) {
        const c2 = c + (x === 1 ? 1 : 0);
        transitions[(i * 2 + c) * V + x] = c2 >= 2 ? HARM : i + 1 === 4 ? SAFE : (i + 1) * 2 + c2;
      }
    }
  }
  for (let x = 0; x < V; x++) {
    transitions[HARM * V + x] = HARM;
    transitions[SAFE * V + x] = SAFE;
  }
  const harm = new Float64Array(names.length);
  harm[HARM] = 1;
  return {
    name: 'horizon',
    tokens: ['a', 'b', 'c'],
    length: 10,
    endToken: -1,
    order: 1,
    // contexts: 0 = a, 1 = b, 2 = c, 3 = <bos>
    base: Float64Array.from([0.6, 0.3, 0.1, 0.3, 0.4, 0.3, 0.2, 0.3, 0.5, 0.5, 0.3, 0.2]),
    automatonStates: names,
    transitions,
    harm,
    start: 0,
    recovery: [],
    defaults: { lambda: 5, mu: 10, gamma: 1 },
  };
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  const u = 1 - rand();
  const v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

interface RandomOptions {
  seed: number;
  vocab: number;
  order: number;
  length: number;
  endToken: number;
  automaton: number;
  /** 'binary': harm values in {0, 1} (both present); 'fractional': uniform in [0, 1]. */
  harmKind: 'binary' | 'fractional';
  /** Probability that a base entry is set to exactly 0 (at least two entries per row stay positive). */
  sparsity?: number;
}

function randomScenario(o: RandomOptions): CompiledScenario {
  const rand = mulberry32(o.seed);
  const V = o.vocab;
  const numContexts = (V + 1) ** o.order;
  const base = new Float64Array(numContexts * V);
  for (let c = 0; c < numContexts; c++) {
    // reachable contexts: "<bos>" digits (value V) only as a prefix of the digits, oldest first
    const digits: number[] = [];
    for (let i = 0, x = c; i < o.order; i++, x = Math.floor(x / (V + 1))) digits.unshift(x % (V + 1));
    const firstToken = digits.findIndex((d) => d !== V);
    if (firstToken >= 0 && digits.slice(firstToken).some((d) => d === V)) continue;
    const row = Array.from({ length: V }, () => Math.exp(1.5 * gaussian(rand)));
    if (o.sparsity) {
      let positive = V;
      for (let a = 0; a < V && positive > 2; a++) {
        if (rand() < o.sparsity) {
          row[a] = 0;
          positive--;
        }
      }
    }
    const z = row.reduce((x, y) => x + y, 0);
    for (let a = 0; a < V; a++) base[c * V + a] = row[a] / z;
  }
  const D = o.automaton;
  const transitions = Uint32Array.from({ length: D * V }, () => Math.floor(rand() * D));
  const harm = Float64Array.from({ length: D }, (_, d) =>
    o.harmKind === 'binary' ? (d === 0 ? 0 : d === 1 ? 1 : rand() < 0.5 ? 1 : 0) : rand(),
  );
  return {
    name: `random-${o.seed}`,
    tokens: Array.from({ length: V }, (_, a) => `t${a}`),
    length: o.length,
    endToken: o.endToken,
    order: o.order,
    base,
    automatonStates: Array.from({ length: D }, (_, d) => `q${d}`),
    transitions,
    harm,
    start: Math.floor(rand() * D),
    recovery: [],
    defaults: { lambda: 2, mu: 1, gamma: 1 },
  };
}

const scenarios: Array<{ sc: CompiledScenario; binary: boolean }> = [
  { sc: horizonScenario(), binary: true },
  {
    sc: randomScenario({ seed: 13, vocab: 3, order: 2, length: 5, endToken: 2, automaton: 4, harmKind: 'binary' }),
    binary: true,
  },
  {
    sc: randomScenario({
      seed: 11,
      vocab: 3,
      order: 2,
      length: 5,
      endToken: 0,
      automaton: 5,
      harmKind: 'binary',
      sparsity: 0.3,
    }),
    binary: true,
  },
  {
    sc: randomScenario({
      seed: 23,
      vocab: 2,
      order: 1,
      length: 5,
      endToken: 1,
      automaton: 3,
      harmKind: 'fractional',
      sparsity: 0.2,
    }),
    binary: false,
  },
  {
    sc: randomScenario({ seed: 5, vocab: 3, order: 3, length: 4, endToken: 1, automaton: 4, harmKind: 'fractional' }),
    binary: false,
  },
];

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

function close(x: number, y: number, tol: number): boolean {
  if (x === y) return true;
  return Math.abs(x - y) <= tol * Math.max(1, Math.abs(x), Math.abs(y));
}

function assertClose(t: { true(v: boolean, m?: string): void }, x: number, y: number, tol: number, what: string) {
  t.true(close(x, y, tol), `${what}: ${x} vs ${y} (diff ${x - y})`);
}

function assertArrayClose(
  t: { true(v: boolean, m?: string): void; is(a: unknown, b: unknown, m?: string): void },
  xs: ArrayLike<number>,
  ys: ArrayLike<number>,
  tol: number,
  what: string,
) {
  t.is(xs.length, ys.length, `${what}: length`);
  let worst = -1;
  let worstDiff = 0;
  for (let i = 0; i < xs.length; i++) {
    if (!close(xs[i], ys[i], tol)) {
      const d = Math.abs(xs[i] - ys[i]);
      if (worst < 0 || d > worstDiff || Number.isNaN(d)) {
        worst = i;
        worstDiff = d;
      }
    }
  }
  t.true(worst < 0, worst < 0 ? what : `${what}[${worst}]: ${xs[worst]} vs ${ys[worst]}`);
}

function randomLogits(sc: CompiledScenario, space: RefStateSpace, seed: number): Float64Array {
  const rand = mulberry32(seed);
  return Float64Array.from({ length: sc.length * space.numStates * sc.tokens.length }, () => 2 * gaussian(rand));
}

function policiesFor(sc: CompiledScenario, space: RefStateSpace): Array<{ name: string; policy: RefPolicy }> {
  return [
    { name: 'base', policy: { kind: 'base' } },
    { name: 'tabular', policy: { kind: 'tabular', logits: randomLogits(sc, space, 99) } },
    { name: 'gibbs', policy: { kind: 'gibbs', lambda: 2.5 } },
  ];
}

function softmaxRow(logits: Float64Array, at: number, V: number): Float64Array {
  let max = -Infinity;
  for (let a = 0; a < V; a++) max = Math.max(max, logits[at + a]);
  const out = new Float64Array(V);
  let z = 0;
  for (let a = 0; a < V; a++) z += (out[a] = Math.exp(logits[at + a] - max));
  for (let a = 0; a < V; a++) out[a] /= z;
  return out;
}

// ------------------------------------------------------------------------------------------------
// State space
// ------------------------------------------------------------------------------------------------

test('state numbering is breadth-first as in ts/scenario/compiled.ts', (t) => {
  const sc = horizonScenario();
  const space = buildStateSpace(sc);
  // state 0 = (<bos>, start); then a, b, c from the start state in token order
  t.deepEqual(Array.from(space.context.slice(0, 4)), [3, 0, 1, 2]);
  t.deepEqual(Array.from(space.automaton.slice(0, 4)), [0, 2, 3, 2]);
  t.deepEqual(Array.from(space.next.slice(0, 3)), [1, 2, 3]);
  // from state 1 (context a, seen1_b0): a → (a, seen2_b0) new = 4, b → (b, seen2_b1) new = 5, c → (c, seen2_b0) new = 6
  t.deepEqual(Array.from(space.next.slice(3, 6)), [4, 5, 6]);

  // the number of states equals an independent count of (context, automaton) pairs reachable within T tokens
  for (const { sc: s } of scenarios) {
    const sp = buildStateSpace(s);
    const V = s.tokens.length;
    const N = (V + 1) ** s.order;
    const seen = new Set<string>([`${N - 1}:${s.start}`]);
    let frontier: Array<[number, number]> = [[N - 1, s.start]];
    for (let depth = 0; depth < s.length; depth++) {
      const nextFrontier: Array<[number, number]> = [];
      for (const [c, d] of frontier) {
        if (s.endToken >= 0 && c % (V + 1) === s.endToken) continue;
        for (let a = 0; a < V; a++) {
          const pair: [number, number] = [(c * (V + 1) + a) % N, s.transitions[d * V + a]];
          const key = `${pair[0]}:${pair[1]}`;
          if (!seen.has(key)) {
            seen.add(key);
            nextFrontier.push(pair);
          }
        }
      }
      frontier = nextFrontier;
    }
    t.is(sp.numStates, seen.size, s.name);
    // sinks are exactly the ended states and the states first reached at depth T
    for (let st = 0; st < sp.numStates; st++) {
      if (!sp.live[st]) {
        for (let a = 0; a < V; a++) t.is(sp.next[st * V + a], st);
      }
    }
  }
});

// ------------------------------------------------------------------------------------------------
// Reference = brute force
// ------------------------------------------------------------------------------------------------

for (const { sc } of scenarios) {
  test(`${sc.name}: harm profile, gradient and ASR equal brute force (base, tabular, gibbs)`, (t) => {
    const space = buildStateSpace(sc);
    for (const { name, policy } of policiesFor(sc, space)) {
      const what = `${sc.name}/${name}`;
      const ref = harmProfile(sc, space, policy);
      const bf = bruteForceProfile(sc, policy);
      assertClose(t, ref.expectedHarm, bf.expectedHarm, 1e-12, `${what} E[H]`);
      assertClose(t, ref.harmVariance, bf.harmVariance, 1e-12, `${what} Var H`);
      assertArrayClose(t, ref.harmInformation, bf.harmInformation, 1e-12, `${what} I_t`);
      assertArrayClose(t, ref.gradNorm, bf.gradNorm, 1e-12, `${what} ||G_t||`);
      assertArrayClose(t, ref.fisherMax, bf.fisherMax, 1e-12, `${what} F_t`);
      assertArrayClose(t, ref.gradBound, bf.gradBound, 1e-12, `${what} bound`);
      t.is(ref.horizon, bf.horizon, `${what} horizon`);
      assertArrayClose(t, ref.decisionTime, bf.decisionTime, 1e-12, `${what} decision time`);
      assertClose(t, ref.undecided, bf.undecided, 1e-12, `${what} undecided`);
      assertArrayClose(t, logitGradient(sc, space, policy), bf.logitGradient, 1e-12, `${what} gradient`);
      assertArrayClose(t, prefillAsr(sc, space, policy), bf.asr, 1e-12, `${what} ASR`);
      // the enumerated responses form a distribution
      const total = enumerateResponses(sc, policy, space).reduce((x, r) => x + r.probability, 0);
      assertClose(t, total, 1, 1e-12, `${what} Σ P(y)`);
    }
  });

  test(`${sc.name}: analyze() equals bruteForceGibbs()`, (t) => {
    for (const lambda of [0.7, 4]) {
      const what = `${sc.name}/λ=${lambda}`;
      const ref = analyze(sc, lambda);
      const bf = bruteForceGibbs(sc, lambda);
      assertClose(t, ref.expectedHarm.base, bf.expectedHarm.base, 1e-12, `${what} E_base`);
      assertClose(t, ref.expectedHarm.aligned, bf.expectedHarm.aligned, 1e-12, `${what} E_aligned`);
      t.true(ref.expectedHarm.aligned <= ref.expectedHarm.base, `${what} alignment lowers harm`);
      assertClose(t, ref.harmVariance, bf.harmVariance, 1e-12, `${what} Var`);
      t.is(ref.horizon, bf.horizon);
      for (const key of [
        'harmInformation',
        'gradNorm',
        'gradBound',
        'klOnPolicy',
        'klTeacherForced',
        'klPredicted',
        'asrBase',
        'asrAligned',
      ] as const) {
        assertArrayClose(t, ref[key], bf[key], 1e-12, `${what} ${key}`);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Identities of the theory
// ------------------------------------------------------------------------------------------------

test('Σ_t I_t = Var(H), tower property and martingale', (t) => {
  for (const { sc } of scenarios) {
    const space = buildStateSpace(sc);
    const V = sc.tokens.length;
    const T = sc.length;
    const S = space.numStates;
    for (const { name, policy } of policiesFor(sc, space)) {
      const what = `${sc.name}/${name}`;
      const prof = harmProfile(sc, space, policy);
      const sumI = prof.harmInformation.reduce((x, y) => x + y, 0);
      t.true(prof.harmVariance > 0, `${what} nondegenerate`);
      t.true(Math.abs(sumI - prof.harmVariance) <= 1e-12, `${what}: Σ I_t = ${sumI}, Var H = ${prof.harmVariance}`);

      // tower property: Σ_s p_t(s) h_t(s) = E[H] at every t, and p_t is a distribution
      const h = conditionalHarm(sc, space, policy);
      const p = forwardProbabilities(sc, space, policy);
      for (let k = 0; k <= T; k++) {
        let mass = 0;
        let eh = 0;
        for (let s = 0; s < S; s++) {
          mass += p[k * S + s];
          eh += p[k * S + s] * h[k * S + s];
        }
        assertClose(t, mass, 1, 1e-12, `${what} Σ p_${k}`);
        assertClose(t, eh, prof.expectedHarm, 1e-12, `${what} E[h_${k}]`);
      }

      // martingale: Σ_a π_t(a|s) h_t(next(s,a)) = h_{t−1}(s) at live states
      if (policy.kind === 'gibbs') continue;
      for (let k = 1; k <= T; k++) {
        for (let s = 0; s < S; s++) {
          if (!space.live[s]) continue;
          const pi =
            policy.kind === 'base'
              ? sc.base.subarray(space.context[s] * V, (space.context[s] + 1) * V)
              : softmaxRow(policy.logits, ((k - 1) * S + s) * V, V);
          let m = 0;
          for (let a = 0; a < V; a++) m += pi[a] * h[k * S + space.next[s * V + a]];
          t.true(Math.abs(m - h[(k - 1) * S + s]) <= 1e-12, `${what} martingale t=${k} s=${s}`);
        }
      }
    }
  }
});

test('horizon scenario: horizon is exactly 4', (t) => {
  const sc = horizonScenario();
  const space = buildStateSpace(sc);
  const prof = harmProfile(sc, space, { kind: 'base' });
  t.is(prof.horizon, 4);
  t.true(prof.harmInformation[3] > 1e-3, `I_4 = ${prof.harmInformation[3]}`);
  for (let k = 5; k <= sc.length; k++) {
    t.true(prof.harmInformation[k - 1] <= 1e-12, `I_${k} = ${prof.harmInformation[k - 1]}`);
    t.true(prof.gradNorm[k - 1] <= 1e-12, `||G_${k}|| = ${prof.gradNorm[k - 1]}`);
  }
  // every response is decided by position 4
  assertClose(t, prof.undecided, 0, 1e-12, 'undecided');
  const byFour = prof.decisionTime.slice(0, 5).reduce((x, y) => x + y, 0);
  assertClose(t, byFour, 1, 1e-12, 'P(τ ≤ 4)');
  // ||G_t|| ≤ sqrt(I_t F̄_t)
  for (let k = 0; k < sc.length; k++) t.true(prof.gradNorm[k] <= prof.gradBound[k] + 1e-15);

  // E[H] by hand: P(at least 2 b's among the first 4 tokens) from the 3^4 four-token prefixes
  const rows: Record<number, number[]> = { 3: [0.5, 0.3, 0.2], 0: [0.6, 0.3, 0.1], 1: [0.3, 0.4, 0.3], 2: [0.2, 0.3, 0.5] };
  let expected = 0;
  for (let y = 0; y < 81; y++) {
    const toks = [Math.floor(y / 27) % 3, Math.floor(y / 9) % 3, Math.floor(y / 3) % 3, y % 3];
    let pr = 1;
    let ctx = 3;
    for (const a of toks) {
      pr *= rows[ctx][a];
      ctx = a;
    }
    if (toks.filter((a) => a === 1).length >= 2) expected += pr;
  }
  assertClose(t, prof.expectedHarm, expected, 1e-14, 'E[H] by hand');
  assertClose(t, prof.harmVariance, expected * (1 - expected), 1e-14, 'Var H = E(1 − E)');

  // the Gibbs optimum does not move beyond the horizon, for every λ
  for (const lambda of [0.5, 5, 50]) {
    const an = analyze(sc, lambda);
    for (let k = 5; k <= sc.length; k++) {
      t.true(Math.abs(an.klOnPolicy[k - 1]) <= 1e-14, `λ=${lambda}: D_${k} = ${an.klOnPolicy[k - 1]}`);
      t.true(Math.abs(an.klTeacherForced[k - 1]) <= 1e-14, `λ=${lambda}: teacher-forced KL_${k}`);
    }
    t.true(an.klOnPolicy[3] > 0);
  }
});

test('logit gradient equals central finite differences of E[H]', (t) => {
  const cases = [scenarios[0].sc, scenarios[1].sc, scenarios[3].sc];
  for (const sc of cases) {
    const space = buildStateSpace(sc);
    const logits = randomLogits(sc, space, 4242);
    const policy: RefPolicy = { kind: 'tabular', logits };
    const grad = logitGradient(sc, space, policy);
    const eps = 1e-5;
    const work = logits.slice();
    const harmAt = (): number => conditionalHarm(sc, space, { kind: 'tabular', logits: work })[0];
    let worst = 0;
    let nonzero = 0;
    for (let i = 0; i < logits.length; i++) {
      work[i] = logits[i] + eps;
      const up = harmAt();
      work[i] = logits[i] - eps;
      const down = harmAt();
      work[i] = logits[i];
      const fd = (up - down) / (2 * eps);
      worst = Math.max(worst, Math.abs(fd - grad[i]));
      if (Math.abs(grad[i]) > 1e-6) nonzero++;
    }
    t.true(worst < 1e-8, `${sc.name}: max |FD − G| = ${worst}`);
    t.true(nonzero >= 5, `${sc.name}: ${nonzero} nonzero gradient entries`);
    // the per-(t,s) gradient sums to zero over a (softmax invariance)
    const V = sc.tokens.length;
    for (let i = 0; i < grad.length; i += V) {
      let row = 0;
      for (let a = 0; a < V; a++) row += grad[i + a];
      t.true(Math.abs(row) <= 1e-15);
    }
  }
});

test('prefilling: ASR_T = 1 and ASR_0 = E[H] for binary harm', (t) => {
  for (const { sc, binary } of scenarios) {
    const space = buildStateSpace(sc);
    const T = sc.length;
    const S = space.numStates;
    // Q's state distribution is a distribution at every depth
    const q = harmfulPrefixWeights(sc, space);
    for (let k = 0; k <= T; k++) {
      let mass = 0;
      for (let s = 0; s < S; s++) mass += q[k * S + s];
      assertClose(t, mass, 1, 1e-12, `${sc.name} Σ q_${k}`);
    }
    for (const { name, policy } of policiesFor(sc, space)) {
      const asr = prefillAsr(sc, space, policy);
      const eh = conditionalHarm(sc, space, policy)[0];
      assertClose(t, asr[0], eh, 1e-12, `${sc.name}/${name} ASR_0 = E[H]`);
      if (binary) assertClose(t, asr[T], 1, 1e-12, `${sc.name}/${name} ASR_T = 1`);
      else t.true(asr[T] < 1, `${sc.name}/${name}: fractional harm, ASR_T = E_Q[H] < 1`);
    }
    const an = analyze(sc, 3);
    t.true(an.asrAligned[0] < an.asrBase[0]);
  }
});

test('Gibbs: λ·E*[H] + KL(P*‖P_base) = −log E_base[exp(−λH)], and D_t → (λ²/2) I_t as λ → 0', (t) => {
  for (const { sc } of scenarios) {
    for (const lambda of [0.3, 3, 30]) {
      const an = analyze(sc, lambda);
      const kl = an.klOnPolicy.reduce((x, y) => x + y, 0);
      const z = enumerateResponses(sc, { kind: 'base' }).reduce((x, r) => x + r.probability * Math.exp(-lambda * r.harm), 0);
      assertClose(t, lambda * an.expectedHarm.aligned + kl, -Math.log(z), 1e-12, `${sc.name} λ=${lambda} free energy`);
      for (const d of an.klOnPolicy) t.true(d >= -1e-15);
    }
    const lambda = 1e-3;
    const an = analyze(sc, lambda);
    for (let k = 0; k < sc.length; k++) {
      if (an.harmInformation[k] > 1e-9) {
        const ratio = an.klOnPolicy[k] / an.klPredicted[k];
        t.true(Math.abs(ratio - 1) < 1e-2, `${sc.name} t=${k + 1}: D_t/((λ²/2)I_t) = ${ratio}`);
      }
    }
  }
});

test('tabular logits = log base reproduce the base policy; KL to base weights', (t) => {
  for (const { sc } of scenarios) {
    const space = buildStateSpace(sc);
    const V = sc.tokens.length;
    const S = space.numStates;
    const logits = new Float64Array(sc.length * S * V);
    for (let k = 0; k < sc.length; k++) {
      for (let s = 0; s < S; s++) {
        for (let a = 0; a < V; a++) logits[(k * S + s) * V + a] = Math.log(sc.base[space.context[s] * V + a]);
      }
    }
    const tab = harmProfile(sc, space, { kind: 'tabular', logits });
    const base = harmProfile(sc, space, { kind: 'base' });
    assertClose(t, tab.expectedHarm, base.expectedHarm, 1e-12, `${sc.name} E[H]`);
    assertArrayClose(t, tab.harmInformation, base.harmInformation, 1e-12, `${sc.name} I_t`);
    const p = forwardProbabilities(sc, space, { kind: 'base' });
    const kl = klToBase(sc, space, { kind: 'tabular', logits }, p);
    for (const d of kl) t.true(Math.abs(d) <= 1e-14, `${sc.name}: KL(base ‖ base) = ${d}`);
    // KL of a different tabular policy to base is positive where mass flows, and infinite where base forbids
    const other = klToBase(sc, space, { kind: 'tabular', logits: randomLogits(sc, space, 5) }, p);
    const hasZeros = sc.base.some((x, i) => x === 0 && sc.base.subarray(i - (i % V), i - (i % V) + V).some((y) => y > 0));
    if (hasZeros) t.is(other[0] === Infinity || other.some((d) => d === Infinity), true, `${sc.name}: infinite KL`);
    else for (const d of other) t.true(d > 0);
  }
});

test('a scenario with no harm: E[H] = 0, horizon 0, harmful-prefix weights are NaN', (t) => {
  const sc = { ...horizonScenario(), harm: new Float64Array(10) };
  const space = buildStateSpace(sc);
  const prof = harmProfile(sc, space, { kind: 'base' });
  t.is(prof.expectedHarm, 0);
  t.is(prof.harmVariance, 0);
  t.is(prof.horizon, 0);
  t.is(prof.undecided, 0);
  t.is(prof.decisionTime[0], 1);
  t.true(harmfulPrefixWeights(sc, space).every(Number.isNaN));
  const an = analyze(sc, 2);
  t.true(an.asrBase.every(Number.isNaN));
  t.true(an.klTeacherForced.every(Number.isNaN));
  t.true(an.klOnPolicy.every((d) => Math.abs(d) <= 1e-15));
});
