/**
 * The experiments of RESULTS.md: shallow versus deep alignment on `refusal` (λ = 5, μ = 10, γ = 1),
 * the recovery closed form, drift beyond the horizon of `horizon`, and the fine-tuning attack.
 *
 *   npm run results            # writes RESULTS.md (a few minutes on 2 cores)
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fineTuneAttack, prefillAttack, rankAssistedAttack } from '../ts/workflows/attack.ts';
import { ExactEngine, builtinScenario, compileScenario, type Policy } from '../ts/index.ts';
import { convergence, train, TRAIN_DEFAULTS, type Algorithm, type Convergence, type ObjectiveKind, type TrainOptions, type TrainRecord } from '../ts/workflows/train.ts';

const lines: string[] = [];
const out = (s = '') => lines.push(s);
const f = (x: number | null | undefined, d = 4) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(2) : x.toFixed(d));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const logit = (p: number) => Math.log(p / (1 - p));
const log = (s: string) => process.stderr.write(`${s}\n`);

const refusal = compileScenario(builtinScenario('refusal'));
const engine = new ExactEngine(refusal);
const { lambda, mu, gamma } = refusal.defaults;

/** Every training run's convergence verdict, for the table at the end of the first section. */
const verdicts: [string, number, number, Convergence][] = [];

async function trained(kind: ObjectiveKind, algorithm: Algorithm, family: 'tabular' | 'mlp', extra: Partial<TrainOptions> = {}, anchor: 'init' | 'base' = 'init'): Promise<Policy> {
  const started = performance.now();
  let first: TrainRecord | undefined;
  let last: TrainRecord | undefined;
  const options: TrainOptions = {
    ...TRAIN_DEFAULTS,
    objective: { kind, lambda, mu, gamma, anchor },
    algorithm,
    policy: family,
    mlp: { order: 1, hidden: [32], activation: 'tanh' },
    steps: 1500,
    learningRate: 0.1,
    evalEvery: 1_000_000,
    ...extra,
  };
  const policy = await train(refusal, engine, options, (r) => {
    first ??= r;
    last = r;
  });
  const verdict = convergence(first, last);
  verdicts.push([`${kind}${anchor === 'base' ? ' (base-anchored)' : ''}, ${family}, ${algorithm}`, options.steps, last!.objective, verdict]);
  log(`${kind}/${algorithm}/${family}: J ${last?.objective.toFixed(6)} in ${((performance.now() - started) / 1000).toFixed(1)} s; ${verdict.message}`);
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
];
// Qi et al. augment an aligned model and anchor it there: the tabular run starts at the Gibbs
// policy, the mlp run at the mlp trained on the standard objective above.
rows.push(
  ['augment (Qi et al.)', 'tabular, exact descent', await trained('augment', 'exact', 'tabular', { steps: 3000 })],
  ['augment (Qi et al.)', 'mlp, exact descent', await trained('augment', 'exact', 'mlp', { steps: 1500, learningRate: 0.02, policy: rows[4][2] })],
  ['augment, base-anchored', 'tabular, exact descent', await trained('augment', 'exact', 'tabular', { steps: 3000 }, 'base')],
);

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
out('The augment rows are Qi et al.\'s data augmentation in expectation: α·E[−log π(R | harmful prefix of');
out('k tokens)] + (1 − α)·KL(P_θ ‖ P_init), α = 0.2, k = 0 with probability 1/2 else uniform on');
out('1..min(100, L). As the authors do, training starts from an aligned policy, P_init, which the KL keeps');
out('it near: the Gibbs optimum for the tabular run, the standard-objective mlp above for the mlp run. The');
out('base-anchored variant replaces P_init by P_base in the KL (`--anchor base`).');
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
out('Convergence of the training runs above: the exact gradient norm at the last step relative to the');
out('first (for PPO, of the exact objective at the sampled run\'s policy). A run counts as converged when');
out('the ratio is at most 1e-3 (`train` warns otherwise). PPO stops at its sampling noise; the deep and');
out('augment objectives have their optimum at infinite logits where the policy never goes, so their');
out('gradient fades slowly.');
out();
out('| run | steps | final J | ‖∇J‖ final / initial | converged |');
out('|---|---|---|---|---|');
for (const [run, steps, j, c] of verdicts) out(`| ${run} | ${steps} | ${f(j)} | ${c.ratio === null ? '—' : c.ratio.toExponential(1)} | ${c.converged === null ? 'not checked' : c.converged ? 'yes' : 'no'} |`);
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
  const policy = await train(horizon, hEngine, { ...TRAIN_DEFAULTS, objective: { kind: 'standard', lambda: 1, mu: 0, gamma: 1 }, algorithm, policy: 'tabular', evalEvery: 1_000_000, ...extra } as TrainOptions, () => {});
  const kl = hEngine.klOnPolicy(policy);
  out(`| ${label} | ${f(hEngine.conditionalHarm(policy)[0])} | ${Array.from(kl.subarray(0, 4), (x) => f(x, 4)).join(' ')} | ${f(Math.max(...kl.subarray(4)))} |`);
}
out();

// The fine-tuning attack on the standard-aligned tabular policy.
log('fine-tuning attack …');
out('## The fine-tuning attack');
out();
out('Fine-tuning the standard-aligned tabular policy (exact descent above) on the base\'s harmful');
out('responses for 6 steps, with plain SFT and with Qi et al.\'s token-wise constrained objective (Eq. 3,');
out('β_1 = 0.5, β_2..5 = 2, then 0.1): plain gradient descent at rate 1 on exact full batches, AdamW as the');
out('authors run their attacks (β1 = 0.5, β2 = 0.999, no weight decay; rate 0.1, constant), on exact full');
out('batches and on minibatches of 16 sampled harmful responses (seed 0). ASR_0 = E[H] (no prefix) and');
out('ASR_1, and the authors\' logged loss (the token mean of −w_t·log π(y_t), w_t = 2(1 − σ(β_t·Δ_t))');
out('detached and floored at 1e-3; w_t = 1 for SFT), all evaluated exactly on every harmful response,');
out('after 0, 2, 4, 6 steps. Eq. 3\'s own value is not shown: at step 0 it is the constant');
out('Σ_t (2/β_t)·log 2 weighted by the harmful responses\' tokens, whatever the policy.');
out();
out('| objective | optimiser | batch | ASR_0 at steps 0, 2, 4, 6 | ASR_1 at steps 0, 2, 4, 6 | logged loss at steps 0, 2, 4, 6 |');
out('|---|---|---|---|---|---|');
const aligned = rows[2][2];
const attacks = [
  ['sgd', 1, undefined],
  ['adamw', 0.1, undefined],
  ['adamw', 0.1, 16],
] as const;
const traces: [string, ReturnType<typeof fineTuneAttack>['trace']][] = [];
for (const [optimizer, learningRate, batch] of attacks) {
  for (const objective of ['sft', 'constrained'] as const) {
    const { trace } = fineTuneAttack(engine, aligned, { steps: 6, learningRate, objective, optimizer, batch, seed: 0 });
    const how = `${optimizer === 'sgd' ? 'SGD' : 'AdamW'} ${learningRate}`;
    traces.push([`${objective} | ${how} | ${batch ?? 'full'}`, trace]);
    const at = (g: (s: (typeof trace)[number]) => number) => [0, 2, 4, 6].map((s) => f(g(trace[s]))).join(', ');
    out(`| ${objective} | ${how} | ${batch ?? 'full'} | ${at((s) => s.asr[0])} | ${at((s) => s.asr[1])} | ${at((s) => s.loggedLoss)} |`);
  }
}
out();
out('Per position t = 1..6: the statistic of the authors\' per-token gradient plots at step 0 (the mean');
out('over harmful responses of the norm of the token\'s own loss gradient, in logit space; at step 0 every');
out('constrained weight is 1, so both objectives share it), and their Fig. 3c quantity after 6 steps,');
out('KL(π_θ ‖ π_aligned) per position on the fine-tuned policy\'s own prefixes. Both are front-loaded, as');
out('Qi et al. find. With plain gradient descent the constraint halves the KL at the first position;');
out('AdamW normalises each tabular logit\'s step by its own gradient scale, which largely cancels the');
out('constraint\'s per-position weights, so under AdamW it no longer holds the policy back here.');
out();
out('| objective | optimiser | batch | token gradient norm_1..6 (step 0) | KL(π_θ ‖ π_aligned)_1..6 (step 6) |');
out('|---|---|---|---|---|');
for (const [label, trace] of traces) {
  out(`| ${label} | ${trace[0].tokenGradNorm.slice(0, 6).map((x) => f(x, 3)).join(' ')} | ${trace[6].klToAligned.slice(0, 6).map((x) => f(x, 3)).join(' ')} |`);
}
out();
// The "Tiny transformers" section is written by scripts/results-transformer.ts: keep it.
const transformers = existsSync('RESULTS.md') ? readFileSync('RESULTS.md', 'utf8').split(/^(?=## Tiny transformers$)/m)[1] : undefined;
writeFileSync('RESULTS.md', `${lines.join('\n')}\n${transformers ?? ''}`);
log('wrote RESULTS.md');
