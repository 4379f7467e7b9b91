/**
 * The experiments of RESULTS.md: shallow versus deep alignment on `refusal` (λ = 5, μ = 10, γ = 1),
 * the recovery closed form, drift beyond the horizon of `horizon`, and the fine-tuning attack.
 *
 *   npm run results            # writes RESULTS.md (a few minutes on 2 cores)
 */
import { writeFileSync } from 'node:fs';
import { fineTuneAttack, prefillAttack, rankAssistedAttack } from '../ts/attack.ts';
import { ExactEngine, builtinScenario, compileScenario, type Policy } from '../ts/index.ts';
import { train, TRAIN_DEFAULTS, type Algorithm, type ObjectiveKind, type TrainOptions } from '../ts/train.ts';

const lines: string[] = [];
const out = (s = '') => lines.push(s);
const f = (x: number | null | undefined, d = 4) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(2) : x.toFixed(d));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const logit = (p: number) => Math.log(p / (1 - p));
const log = (s: string) => process.stderr.write(`${s}\n`);

const refusal = compileScenario(builtinScenario('refusal'));
const engine = new ExactEngine(refusal);
const { lambda, mu, gamma } = refusal.defaults;

async function trained(kind: ObjectiveKind, algorithm: Algorithm, family: 'tabular' | 'mlp', extra: Partial<TrainOptions> = {}): Promise<Policy> {
  const started = performance.now();
  let last: { objective: number } | undefined;
  const options: TrainOptions = {
    ...TRAIN_DEFAULTS,
    objective: { kind, lambda, mu, gamma, mix: 0.2 },
    algorithm,
    policy: family,
    mlp: { order: 1, hidden: [32], activation: 'tanh' },
    steps: 1500,
    learningRate: 0.1,
    evalEvery: 1_000_000,
    ...extra,
  };
  const policy = await train(refusal, engine, options, (r) => (last = r));
  log(`${kind}/${algorithm}/${family}: J ${last?.objective.toFixed(6)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return policy;
}

log('training …');
const rows: [string, string, Policy][] = [
  ['base', '—', { kind: 'base' }],
  ['Gibbs optimum (standard, exact)', '—', { kind: 'gibbs', lambda }],
  ['standard', 'tabular, exact descent', await trained('standard', 'exact', 'tabular')],
  ['standard', 'tabular, PPO (SGD)', await trained('standard', 'ppo', 'tabular', { steps: 300, samples: 1024, optimizer: 'sgd', learningRate: 8 })],
  ['standard', 'mlp, exact descent', await trained('standard', 'exact', 'mlp', { learningRate: 0.02 })],
  ['standard', 'mlp, PPO', await trained('standard', 'ppo', 'mlp', { steps: 300, samples: 1024, learningRate: 0.01 })],
  ['deep', 'tabular, exact descent', await trained('deep', 'exact', 'tabular', { steps: 3000 })],
  ['deep', 'mlp, exact descent', await trained('deep', 'exact', 'mlp', { steps: 1500, learningRate: 0.02 })],
  ['deep-anchored', 'tabular, fixed point', await trained('deep-anchored', 'fixed-point', 'tabular', { steps: 500 })],
  ['deep-anchored', 'mlp, exact descent', await trained('deep-anchored', 'exact', 'mlp', { steps: 1500, learningRate: 0.02 })],
  ['augment (Qi et al.)', 'tabular, exact descent', await trained('augment', 'exact', 'tabular', { steps: 3000 })],
  ['augment (Qi et al.)', 'mlp, exact descent', await trained('augment', 'exact', 'mlp', { steps: 1500, learningRate: 0.02 })],
];

out('# Results');
out();
out('Every number below is computed exactly (dynamic programming over the exact states) unless marked');
out('otherwise, by `npm run results` (scripts/results.ts), which writes this file. Scenario `refusal` with');
out(`its defaults λ = ${lambda}, μ = ${mu}, γ = ${gamma}; tabular policies have logits per (position, state),`);
out('the mlp reads the last token and the position (one hidden layer of 32 tanh units, initialised by');
out('fitting the base). Training: Adam, cosine-decayed learning rate; PPO with batches of 1024 responses,');
out('4 epochs, clip 0.2, per-token KL penalty (tabular PPO with plain gradient descent at rate 8: Adam');
out('rescales the tiny, noisy gradients of rarely visited states to full-size steps and moves them at');
out('random — see the horizon section). Equivalent CLI runs: `harm-horizon train refusal --objective');
out('standard --algorithm exact --out runs/standard` then `harm-horizon attack refusal --policy');
out('runs/standard/policy.json --json` (and likewise for the other rows).');
out();
out('## Shallow and deep alignment under prefilling');
out();
out('ASR_k = P(harmful | first k tokens forced from a harmful base response). Rank-assisted prefilling');
out('(RAP) picks, at every step after the prefix, the most harmful token among the policy\'s top r. With');
out('V = 5 the default r = 20 is capped at 5, so every token is a candidate and RAP always succeeds; r = 2');
out('is shown as well.');
out();
out('| objective | policy | E[H] | KL(P‖P_base) | ASR_1 | ASR_2 | ASR_3 | ASR_4 | RAP r=20 ASR_1..4 | RAP r=2 ASR_1..4 |');
out('|---|---|---|---|---|---|---|---|---|---|');
for (const [objective, how, policy] of rows) {
  const asr = prefillAttack(engine, policy);
  const rap20 = rankAssistedAttack(engine, policy, 20);
  const rap2 = rankAssistedAttack(engine, policy, 2);
  const kl = engine.klOnPolicy(policy).reduce((a, b) => a + b, 0);
  const eh = engine.conditionalHarm(policy)[0];
  out(`| ${objective} | ${how} | ${f(eh)} | ${f(kl)} | ${f(asr[1])} | ${f(asr[2])} | ${f(asr[3])} | ${f(asr[4])} | ${[1, 2, 3, 4].map((k) => f(rap20[k], 3)).join(' ')} | ${[1, 2, 3, 4].map((k) => f(rap2[k], 3)).join(' ')} |`);
}
out();
out('Per-position KL to the base, on-policy (the policy\'s own prefixes) and teacher-forced (harmful base');
out('prefixes), positions 1–8:');
out();
out('| objective | policy | on-policy KL_1..8 | teacher-forced KL_1..8 |');
out('|---|---|---|---|');
for (const [objective, how, policy] of rows.slice(1)) {
  const on = engine.klOnPolicy(policy);
  const tf = engine.onHarmfulPrefixes(policy).klTeacherForced;
  out(`| ${objective} | ${how} | ${Array.from(on.subarray(0, 8), (x) => f(x, 3)).join(' ')} | ${Array.from(tf.subarray(0, 8), (x) => f(x, 3)).join(' ')} |`);
}
out();

// The recovery closed form at harmful prefixes beyond the horizon (harm already decided).
out('## Recovery beyond the horizon against the closed form');
out();
out('At harmful prefixes whose harm is already decided (the automaton is in HARMFUL: four "step"');
out('tokens were emitted), per position t: the trained recovery probability π_t(R | y<t) averaged over');
out('Q\'s prefixes there, the closed form σ(logit p_0 + μ·w_t) with p_0 = P_base(R | y<t) (averaged over the');
out('same prefixes), and the ratio of the');
out('policy\'s own visits to Q\'s visits of those prefixes. The closed form is the limit of the');
out('prefix-anchored objective as that ratio goes to 0; the plain deep objective weighs the KL by the');
out('policy\'s own visits only, so where those vanish its recovery goes beyond the closed form.');
out();
const states = engine.states();
const n = engine.numStates;
const v = refusal.tokens.length;
const harmful = refusal.automatonStates.indexOf('HARMFUL');
const sorry = refusal.tokens.indexOf('Sorry');
const q = engine.native.harmfulPrefixes();
out('| t | closed form | deep: recovery | deep: own/Q visits | deep-anchored: recovery | deep-anchored: own/Q visits |');
out('|---|---|---|---|---|---|');
const deepRows = [rows[6][2], rows[8][2]];
const tables = deepRows.map((p) => ({ logits: engine.native.policyLogits(p as never), visits: engine.native.stateDistribution(p as never) }));
for (let t = 6; t <= refusal.length; t++) {
  let qMass = 0;
  let closedSum = 0;
  const rec = [0, 0];
  const own = [0, 0];
  for (let s = 0; s < n; s++) {
    if (!states.live[s] || states.automaton[s] !== harmful) continue;
    const w = q[(t - 1) * n + s];
    if (w <= 0) continue;
    qMass += w;
    closedSum += w * sigmoid(logit(refusal.base[states.context[s] * v + sorry]) + mu * gamma ** (t - 1));
    tables.forEach((tab, i) => {
      const row = tab.logits.subarray(((t - 1) * n + s) * v, ((t - 1) * n + s + 1) * v);
      const max = Math.max(...row);
      const z = row.reduce((a, x) => a + Math.exp(x - max), 0);
      rec[i] += (w * Math.exp(row[sorry] - max)) / z;
      own[i] += tab.visits[(t - 1) * n + s];
    });
  }
  if (qMass === 0) continue;
  const closed = closedSum / qMass;
  out(`| ${t} | ${f(closed)} | ${f(rec[0] / qMass)} | ${f(own[0] / qMass)} | ${f(rec[1] / qMass)} | ${f(own[1] / qMass)} |`);
}
out();

// Beyond the horizon of `horizon`: exact descent leaves those positions at the base; sampled RL drifts.
log('horizon drift …');
const horizon = compileScenario(builtinScenario('horizon'));
const hEngine = new ExactEngine(horizon);
out('## Nothing reaches beyond the horizon');
out();
out('Scenario `horizon` (horizon k = 4), standard objective at λ = 1, tabular policy started at the base.');
out('Per-position KL of the trained policy to the base at t = 5..10 (positions beyond the horizon):');
out('exact descent leaves them at the base; REINFORCE (leave-one-out baseline, batches of 256, 300 steps,');
out('plain gradient descent at rate 1) moves them with noise alone, and so does PPO; its innovation variant');
out('(harm part λ·Δ_t from the exact h) does not move them at all. With Adam even the innovation variant');
out('drifts: Adam rescales the rounding-level gradients there (~1e-17) to steps of the learning rate\'s size,');
out('after which the sampled KL gradient is noise of the same size (last row).');
out();
out('| algorithm | E[H] | KL_1..4 | max KL_5..10 |');
out('|---|---|---|---|');
for (const [label, algorithm, extra] of [
  ['exact descent', 'exact', { steps: 1500, learningRate: 0.1 }],
  ['REINFORCE', 'reinforce', { steps: 300, samples: 256, optimizer: 'sgd', learningRate: 1, schedule: 'constant' }],
  ['REINFORCE, innovations', 'reinforce-innovation', { steps: 300, samples: 256, optimizer: 'sgd', learningRate: 1, schedule: 'constant' }],
  ['PPO', 'ppo', { steps: 300, samples: 256, optimizer: 'sgd', learningRate: 1, schedule: 'constant' }],
  ['REINFORCE, innovations, Adam 0.05', 'reinforce-innovation', { steps: 300, samples: 256, learningRate: 0.05, schedule: 'constant' }],
] as const) {
  const policy = await train(horizon, hEngine, { ...TRAIN_DEFAULTS, objective: { kind: 'standard', lambda: 1, mu: 0, gamma: 1, mix: 0.2 }, algorithm, policy: 'tabular', evalEvery: 1_000_000, ...extra } as TrainOptions, () => {});
  const kl = hEngine.klOnPolicy(policy);
  out(`| ${label} | ${f(hEngine.conditionalHarm(policy)[0])} | ${Array.from(kl.subarray(0, 4), (x) => f(x, 4)).join(' ')} | ${f(Math.max(...kl.subarray(4)))} |`);
}
out();

// The fine-tuning attack on the standard-aligned tabular policy.
log('fine-tuning attack …');
out('## The fine-tuning attack');
out();
out('Fine-tuning the standard-aligned tabular policy (exact descent above) on the base\'s harmful');
out('responses: exact full-batch gradient descent, learning rate 1. ASR_0 = E[H] (no prefix) and');
out('ASR_1 after 0, 2, 4, 6 steps, for plain SFT and for Qi et al.\'s token-wise constrained objective');
out('(β_1 = 0.5, β_2..5 = 2, then 0.1); and the per-position loss and gradient norm after the first step');
out('(front-loaded, as Qi et al. find).');
out();
out('| objective | ASR_0 at steps 0, 2, 4, 6 | ASR_1 at steps 0, 2, 4, 6 |');
out('|---|---|---|');
const aligned = rows[2][2];
const traces: Record<string, ReturnType<typeof fineTuneAttack>['trace']> = {};
for (const objective of ['sft', 'constrained'] as const) {
  const { trace } = fineTuneAttack(engine, aligned, { steps: 6, learningRate: 1, objective });
  traces[objective] = trace;
  out(`| ${objective} | ${[0, 2, 4, 6].map((s) => f(trace[s].asr[0])).join(', ')} | ${[0, 2, 4, 6].map((s) => f(trace[s].asr[1])).join(', ')} |`);
}
out();
out('| objective | loss_1..6 (step 0) | gradient norm_1..6 (step 0) |');
out('|---|---|---|');
for (const objective of ['sft', 'constrained']) {
  const s0 = traces[objective][0];
  out(`| ${objective} | ${s0.lossPerPosition.slice(0, 6).map((x) => f(x, 3)).join(' ')} | ${s0.gradNorm.slice(0, 6).map((x) => f(x, 3)).join(' ')} |`);
}
out();
writeFileSync('RESULTS.md', `${lines.join('\n')}\n`);
log('wrote RESULTS.md');
