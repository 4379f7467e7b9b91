/**
 * A scenario of about 10^12 reachable (position, context, automaton state) triples end to end
 * (issue 10 §1): estimate, 20 PPO steps of a tabular policy, attack. The exact engine refuses it;
 * the tabular policy is keyed lazily, so memory follows the keys visited, not the state space.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileScenario, estimateScenarioSize, ExactEngine, resolveScenario } from '../ts/index.js';
import { runCli } from './helpers/cli.js';

const HUGE = 'random(seed=3,V=32,n=3,T=1024,D=32768,eos=true)';

/** Automaton states reachable from the start (any token sequence reaches them within T here). */
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

test('the scenario has about 10^12 (position, context, automaton state) triples and the exact engine refuses it', (t) => {
  const source = resolveScenario(HUGE, { samplingOnly: true });
  const scenario = compileScenario(source, { samplingOnly: true });
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

test('estimate, 20 PPO steps of the lazily keyed tabular policy and an attack run on it, reproducibly for 1 and 2 threads', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hh-huge-'));
  try {
    const estimate = runCli(['estimate', HUGE, '--samples', '200', '--rollouts', '2', '--json']);
    t.is(estimate.status, 0, estimate.stderr);
    const e = JSON.parse(estimate.stdout);
    t.is(e.harmSource, 'rollouts');
    t.is(e.exactExpectedHarm, null);
    t.true(e.expectedHarm > 0 && e.expectedHarm < 1 && e.expectedHarmSE > 0);
    t.is(e.positions.length, 1024);

    const train = (threads: string, out: string) =>
      runCli(['train', HUGE, '--algorithm', 'ppo', '--policy', 'tabular', '--steps', '20', '--samples', '64', '--out', join(dir, out), '--json'], { RAYON_NUM_THREADS: threads });
    const one = train('1', 'one');
    t.is(one.status, 0, one.stderr);
    const two = train('2', 'two');
    t.is(two.status, 0, two.stderr);
    const policyFile = readFileSync(join(dir, 'two', 'policy.json'), 'utf8');
    t.true(readFileSync(join(dir, 'one', 'policy.json'), 'utf8') === policyFile, 'the same policy bit for bit with 1 and 2 threads');

    const log = readFileSync(join(dir, 'two', 'log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    t.is(log.length, 21);
    for (const record of log.slice(0, 20)) {
      // The batch's objective is λ·(mean harm) + (mean KL), λ = 1.
      t.true(Math.abs(record.objective - (record.batch.meanHarm + record.batch.meanKl)) < 1e-12);
    }
    t.true(Math.abs(log[0].batch.meanKl) < 1e-12, 'step 0 samples the base: no KL');
    const policy = JSON.parse(policyFile);
    t.is(policy.kind, 'lazy-tabular');
    // Stored rows: at most one per sampled token of the 20 batches, and keys within range.
    t.true(policy.entries.length > 64 && policy.entries.length <= 20 * 64 * 1024);
    t.true(policy.entries.every((r: { t: number; context: number; state: number; logits: unknown[] }) => r.t >= 1 && r.t <= 1024 && r.context < 33 ** 3 && r.state < 32768 && r.logits.length === 32));
    t.log(`${policy.entries.length} rows stored (of ≤ 1.2·10^12); last batch: mean harm ${log[19].batch.meanHarm}, KL ${log[19].batch.meanKl}`);

    const attack = runCli(['attack', HUGE, '--policy', join(dir, 'two', 'policy.json'), '--samples', '64', '--json']);
    t.is(attack.status, 0, attack.stderr);
    const a = JSON.parse(attack.stdout);
    t.is(a.method, 'sampled');
    t.is(a.prefill.length, 1025);
    t.true(a.prefill.every((x: number) => x >= 0 && x <= 1));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
