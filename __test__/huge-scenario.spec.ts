/**
 * A scenario of about 10^12 reachable (position, context, automaton state) triples end to end
 * (issue 10 §1): estimate, 20 PPO steps of a tabular policy, attack; and 20 PPO steps of an mlp.
 * The exact engine refuses it; the tabular policy is keyed lazily, so memory follows the keys
 * visited, and the mlp is fitted to the base on sampled responses, not on its 3·10^7 (position,
 * context) cells. The scenario is built once here (seconds); one CLI run checks the command and
 * that 1 thread gives the policy the 2 threads of this process give.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileScenario, estimateScenarioSize, ExactEngine, MonteCarlo, policyToJson, resolveScenario, sampledPrefillAttack, train, TRAIN_DEFAULTS, type TrainOptions, type TrainRecord } from '../ts/index.js';
import { runCli } from './helpers/cli.js';

const HUGE = 'random(seed=3,V=32,n=3,T=1024,D=32768,eos=true)';
const source = resolveScenario(HUGE, { samplingOnly: true });
const scenario = compileScenario(source, { samplingOnly: true });

/** The train command's defaults, as the CLI run below uses them: 20 PPO steps of 64 responses. */
const ppo = (policy: TrainOptions['policy']): TrainOptions => ({
  ...TRAIN_DEFAULTS,
  objective: { kind: 'standard', lambda: 1, mu: 10, gamma: 1 },
  algorithm: 'ppo',
  policy,
  steps: 20,
  samples: 64,
});

/** Automaton states reachable from the start. */
function reachableAutomatonStates(transitions: Uint32Array, vocab: number, start: number): number {
  const seen = new Uint8Array(transitions.length / vocab);
  const queue = [start];
  seen[start] = 1;
  for (let i = 0; i < queue.length; i++) {
    for (let a = 0; a < vocab; a++) {
      const next = transitions[queue[i]! * vocab + a]!;
      if (!seen[next]) {
        seen[next] = 1;
        queue.push(next);
      }
    }
  }
  return queue.length;
}

/** Every batch's objective is λ·(mean harm) + (mean KL), λ = 1; the last record has no batch. */
function checkLog(t: import('ava').ExecutionContext, log: TrainRecord[]) {
  t.is(log.length, 21);
  for (const r of log.slice(0, 20)) t.true(Math.abs(r.objective - (r.batch!.meanHarm + r.batch!.meanKl)) < 1e-12, `step ${r.step}`);
}

test('the scenario has about 10^12 (position, context, automaton state) triples and the exact engine refuses it', (t) => {
  const v = scenario.tokens.length;
  const size = estimateScenarioSize(source);
  const automaton = reachableAutomatonStates(scenario.transitions, v, scenario.start);
  // Upper bound: every context an exact state can have (the project's count) with every reachable
  // automaton state, at every position.
  const pairs = size.reachableContexts * automaton;
  const triples = scenario.length * pairs;
  t.log(`V = ${v}, n = ${scenario.order}: ${size.reachableContexts} reachable contexts; ${automaton} of ${size.automatonStates} automaton states reachable`);
  t.log(`exact states (context, automaton state) ≤ ${pairs.toExponential(3)}; with the position (a tabular policy's rows) ≤ T × that = ${triples.toExponential(3)}`);
  t.true(automaton > 0.9 * size.automatonStates, 'almost every automaton state is reachable');
  t.true(triples > 5e11 && triples < 2e12, `${triples}`);
  const error = t.throws(() => new ExactEngine(scenario));
  t.is((error as Error & { code?: string }).code, 'HH_STATE_SPACE_TOO_LARGE');
});

test('estimate, 20 PPO steps of the lazily keyed tabular policy, and an attack on it', async (t) => {
  const estimate = new MonteCarlo(scenario).estimate({ kind: 'base' }, { samples: 200, seed: 0, harm: 'rollouts', rollouts: 2 });
  t.true(estimate.expectedHarm > 0 && estimate.expectedHarm < 1 && estimate.expectedHarmSE > 0);
  t.is(estimate.harmInformation?.mean.length, 1024);

  const log: TrainRecord[] = [];
  const policy = await train(scenario, null, ppo('tabular'), (r) => log.push(r));
  checkLog(t, log);
  t.true(Math.abs(log[0]!.batch!.meanKl) < 1e-12, 'step 0 samples the base: no KL');
  if (policy.kind !== 'lazy-tabular') return t.fail(policy.kind);
  // Stored rows: the keys of the tokens sampled in 20 batches of 64, within range.
  const rows = policy.rows.positions.length;
  t.true(rows > 64 && rows <= 20 * 64 * 1024);
  t.true(policy.rows.positions.every((p) => p >= 1 && p <= 1024) && policy.rows.contexts.every((c) => c < 33 ** 3) && policy.rows.automata.every((d) => d < 32768));
  t.log(`${rows} rows stored (of ≤ 1.07·10^12); last batch: mean harm ${log[19]!.batch!.meanHarm}, KL ${log[19]!.batch!.meanKl}`);

  const attack = sampledPrefillAttack(scenario, policy, { samples: 64, seed: 0 });
  t.is(attack.asr.length, 1025);
  t.true(attack.asr.every((x) => x >= 0 && x <= 1));

  // The train command beyond the budget uses the same policy; with 1 thread it writes these very rows.
  const dir = mkdtempSync(join(tmpdir(), 'hh-huge-'));
  try {
    const cli = runCli(['train', HUGE, '--algorithm', 'ppo', '--policy', 'tabular', '--steps', '20', '--samples', '64', '--out', dir], { RAYON_NUM_THREADS: '1' });
    t.is(cli.status, 0, cli.stderr);
    t.true(readFileSync(join(dir, 'policy.json'), 'utf8') === JSON.stringify(policyToJson(policy, scenario)), 'the same sparse file bit for bit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('20 PPO steps of an mlp fitted to the base on sampled responses', async (t) => {
  const log: TrainRecord[] = [];
  const policy = await train(scenario, null, ppo('mlp'), (r) => log.push(r));
  checkLog(t, log);
  t.is(policy.kind, 'mlp');
  t.true(policy.kind === 'mlp' && policy.params.every(Number.isFinite));
});
