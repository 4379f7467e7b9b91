/**
 * How many samples plain, tilted and information sampling need for a 10% relative SE on I_t
 * (refusal, t = 10..16).
 *
 * Exact: the per-sample (asymptotic) variance of each estimator from the exact tables, so that the
 * count does not rest on a pilot that may have missed the rare events:
 *  - plain:  σ² = E_P[Δ_t⁴] − I_t²;
 *  - tilted q ∝ P·e^{κH}, self-normalised with w = P/q = Z·e^{−κH} (Z = E_P[e^{κH}]):
 *            σ² = E_q[w²(Δ_t² − I_t)²] = Z·E_P[e^{−κH}(Δ_t² − I_t)²];
 * then N = σ² / (0.1·I_t)². For the information proposal (a mixture of K − 1 components q_t ∝ P·Δ_t²
 * and P, w = K/(1 + Σ_t Δ_t²/I_t)) σ² = E_P[w·(Δ_t² − I_t)²] is not a per-position sum; it is bounded
 * exactly instead: w·Δ_t² ≤ K·I_t and E_P[w] = E_q[w²] ≤ K give σ² ≤ 2K·I_t², so N ≤ 200·K at every
 * t in S. Measured: one run of `estimate` per proposal at N = PILOT, reporting N·SE² / (0.1·I_t)², the
 * support, and how many SE the estimate is from the exact value.
 *
 *   node --import @oxc-node/core/register benches/rare-events.ts
 */
import { BASE, DEFAULT_TILT, ExactEngine, MonteCarlo, asTabular, builtinScenario, compileScenario, type Policy } from '../ts/index.ts';
import type { CompiledScenario } from '../ts/scenario/compiled.ts';
import { buildStateSpace, conditionalHarm, forwardProbabilities, type RefStateSpace } from '../ts/reference/exact.ts';

const PILOT = 1_000_000;
const POSITIONS = [10, 11, 12, 13, 14, 15, 16];
const TILTS = [-2, 1, DEFAULT_TILT, 5];

/** The scenario with harm values replaced by e^{κ·harm}: its "conditional harm" is E[e^{κH} | state]. */
function exponentiated(sc: CompiledScenario, kappa: number): CompiledScenario {
  return { ...sc, harm: Float64Array.from(sc.harm, (h) => Math.exp(kappa * h)) } as CompiledScenario;
}

interface Exact {
  info: number[];
  plain: number[];
  tilted: Map<number, number[]>;
}

/** I_t and the per-sample variances of the plain and tilted estimators, t in POSITIONS. */
function exactVariances(sc: CompiledScenario, space: RefStateSpace, logits: Float64Array): Exact {
  const policy = { kind: 'tabular' as const, logits };
  const S = space.numStates;
  const V = sc.tokens.length;
  const h = conditionalHarm(sc, space, policy);
  const p = forwardProbabilities(sc, space, policy);
  const row = new Float64Array(V);
  /** Σ over (s at t−1, a) of p·π·f(Δ, next state). */
  const expect = (t: number, f: (delta: number, next: number) => number) => {
    let total = 0;
    for (let s = 0; s < S; s++) {
      const mass = p[(t - 1) * S + s];
      if (!space.live[s] || mass === 0) continue;
      const at = ((t - 1) * S + s) * V;
      let max = -Infinity;
      for (let a = 0; a < V; a++) max = Math.max(max, logits[at + a]);
      let sum = 0;
      for (let a = 0; a < V; a++) sum += (row[a] = Math.exp(logits[at + a] - max));
      for (let a = 0; a < V; a++) {
        if (row[a] === 0) continue;
        const next = space.next[s * V + a];
        total += mass * (row[a] / sum) * f(h[t * S + next] - h[(t - 1) * S + s], next);
      }
    }
    return total;
  };
  const info = POSITIONS.map((t) => expect(t, (d) => d * d));
  const plain = POSITIONS.map((t, i) => expect(t, (d) => d ** 4) - info[i] ** 2);
  const tilted = new Map<number, number[]>();
  for (const kappa of TILTS) {
    const z = conditionalHarm(exponentiated(sc, kappa), space, policy)[0];
    const y = conditionalHarm(exponentiated(sc, -kappa), space, policy);
    tilted.set(
      kappa,
      POSITIONS.map((t, i) => z * expect(t, (d, next) => (d * d - info[i]) ** 2 * y[t * S + next])),
    );
  }
  return { info, plain, tilted };
}

const sci = (x: number) => (Number.isFinite(x) ? x.toExponential(1) : '—');

function report(name: string, policy: Policy): void {
  const sc = compileScenario(builtinScenario('refusal'));
  const space = buildStateSpace(sc);
  const engine = new ExactEngine(sc);
  const logits = asTabular(engine, policy).logits;
  const exact = exactVariances(sc, space, logits);
  const mc = new MonteCarlo(sc, { exact: engine });
  const need = (variance: number, i: number) => variance / (0.1 * exact.info[i]) ** 2;
  console.log(`\n### refusal, ${name}: samples for a 10% relative SE on I_t\n`);
  console.log(`exact (from the per-sample variance of each estimator):\n`);
  console.log(`| t | I_t | plain | ${TILTS.map((k) => `tilted κ = ${k}`).join(' | ')} |`);
  console.log(`|---|---|---|${TILTS.map(() => '---').join('|')}|`);
  POSITIONS.forEach((t, i) => {
    console.log(`| ${t} | ${sci(exact.info[i])} | ${sci(need(exact.plain[i], i))} | ${TILTS.map((k) => sci(need(exact.tilted.get(k)![i], i))).join(' | ')} |`);
  });
  console.log(`\nmeasured at N = ${PILOT} (one run, seed 1): N·SE²/(0.1·I_t)², [support], (estimate − exact)/SE\n`);
  const runs: Array<[string, ReturnType<MonteCarlo['estimate']>]> = [['plain', mc.estimate(policy, { samples: PILOT, seed: 1, harm: 'exact' })]];
  runs.push([`tilted κ = ${DEFAULT_TILT}`, mc.estimate(policy, { samples: PILOT, seed: 1, harm: 'exact', proposal: 'tilted' })]);
  const information = mc.estimate(policy, { samples: PILOT, seed: 1, harm: 'exact', proposal: 'information' });
  runs.push(['information', information]);
  console.log(`| t | ${runs.map(([label]) => label).join(' | ')} |`);
  console.log(`|---|${runs.map(() => '---').join('|')}|`);
  POSITIONS.forEach((t, i) => {
    const cells = runs.map(([, e]) => {
      const info = e.harmInformation!;
      const z = (info.mean[t - 1] - exact.info[i]) / info.se[t - 1];
      return `${sci(need(PILOT * info.se[t - 1] ** 2, i))} [${info.support[t - 1]}] (${Number.isFinite(z) ? z.toFixed(1) : '—'})`;
    });
    console.log(`| ${t} | ${cells.join(' | ')} |`);
  });
  const ess = runs[1][1].importance!.effectiveSampleSize;
  console.log(`\nKish effective sample size of the tilted run: ${ess.toFixed(0)} of ${PILOT}.`);
  const k = information.information!.weightBound;
  console.log(
    `Information proposal: K = ${k} (${k - 1} positions with I_t > 0, and the policy), so N ≤ 200·K = ${200 * k} at every position (exact bound);` +
      ` mean weight ${information.information!.meanWeight.mean.toFixed(4)} ± ${information.information!.meanWeight.se.toFixed(4)}, max ${information.information!.maxWeight.toFixed(2)};` +
      ` Kish effective sample size ${information.information!.effectiveSampleSize.toFixed(0)} of ${PILOT}.`,
  );
}

report('the base policy', BASE);
report('the aligned policy (Gibbs, λ = 5; E[H] ≈ 0.019)', { kind: 'gibbs', lambda: 5 });
