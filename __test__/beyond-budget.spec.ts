/**
 * `estimate` beyond the exact engine's budget (issue 10 §1): a scenario whose exact state space
 * (~1.4·10^7 states, 84 GiB) exceeds --memory-budget is estimated by Monte Carlo with rollout h,
 * instead of being refused; only a base table that itself exceeds the budget is refused (exit 2).
 */
import test from 'ava';
import { runCli } from './helpers/cli.js';

const BIG = 'random(seed=2,V=32,n=3,T=256,D=400)';

test('estimate runs by Monte Carlo where the exact engine does not fit, and keeps the scenario its name gives', (t) => {
  const r = runCli(['estimate', BIG, '--samples', '100', '--rollouts', '2', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.is(out.scenario, BIG, 'the full name fixes the seed; --seed (default 0) does not override it');
  t.is(out.harmSource, 'rollouts');
  t.is(out.exactExpectedHarm, null);
  t.true(out.expectedHarm >= 0 && out.expectedHarm <= 1);
  t.true(out.expectedHarmSE > 0);
  t.is(out.positions.length, 256);
  // Reproducible: the same seed gives the same numbers.
  t.is(runCli(['estimate', BIG, '--samples', '100', '--rollouts', '2', '--json']).stdout, r.stdout);
});

test('a base table over the budget is refused with exit 2 naming --memory-budget', (t) => {
  const r = runCli(['estimate', BIG, '--samples', '10', '--memory-budget', '0.0001']);
  t.is(r.status, 2);
  t.regex(r.stderr, /base table too large.*--memory-budget/);
});

test('a budget larger than the machine falls back to rollouts instead of aborting (estimate, attack)', (t) => {
  // 1000 GiB admits the exact engine by the budget, but its T × S × V table (~318 GB) exceeds the
  // machine: the build stops at a coded HH_OUT_OF_MEMORY and Monte Carlo with rollout h takes over.
  const r = runCli(['estimate', BIG, '--samples', '50', '--rollouts', '2', '--memory-budget', '1000', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.is(out.harmSource, 'rollouts');
  t.is(out.exactExpectedHarm, null);
  const a = runCli(['attack', BIG, '--samples', '10', '--memory-budget', '1000', '--json']);
  t.is(a.status, 0, a.stderr);
});
