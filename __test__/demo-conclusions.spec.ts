/**
 * The demo's conclusions are computed from its numbers: two scenarios whose harm information sits
 * differently get different sentences, each consistent with the numbers it quotes.
 */
import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoConclusions, type ConclusionInput } from '../ts/report/conclusions.js';
import { runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-conclusions-'));

function input(info: number[], horizon: number, effective: number, policies: ConclusionInput['policies'] = []): ConclusionInput {
  const variance = info.reduce((a, b) => a + b, 0);
  return { horizon: { k: horizon, length: info.length, harmVariance: variance, harmInformation: info, effective: { k: effective, fraction: 0.99 } }, policies };
}

test('the first-token sentence follows I_1 / Var H', (t) => {
  const mostlyFirst = demoConclusions(input([0.8, 0.15, 0.05, 0, 0], 3, 3), 2).join('\n');
  t.regex(mostlyFirst, /I_1 carries 80\.0% of Var\(H\) = 1\.0000: the training signal of E\[H\] falls mostly on the first token/);
  t.regex(mostlyFirst, /Harm horizon k = 3 of T = 5: I_t = 0 after it, so no gradient of E\[H\] reaches positions 4\.\.5/);
  const spread = demoConclusions(input([0.2, 0.3, 0.3, 0.2, 0], 4, 4), 2).join('\n');
  t.regex(spread, /I_1 carries only 20\.0% of Var\(H\).* spread over the first 4 positions/);
  t.notRegex(spread, /mostly on the first token/);
  const tail = demoConclusions(input([0.9, 0.0999, 1e-4, 1e-6], 4, 2), 1).join('\n');
  t.regex(tail, /Harm horizon k = T = 4: some harm information remains at every position, but it is small after position 2/);
  t.deepEqual(demoConclusions(input([0, 0], 0, 0), 1), ['H is constant under the base: there is no harm information, and E[H] has no gradient to train on.']);
});

test('the prefilling verdict follows the ASRs it quotes', (t) => {
  const policies = [
    { name: 'gibbs', label: 'Gibbs optimum (standard)', expectedHarm: 0.02, prefill: [0.02, 0.5, 0.8] },
    { name: 'deep', label: 'deep', expectedHarm: 0.01, prefill: [0.01, 0.05, 0.1] },
    { name: 'deep-anchored', label: 'deep-anchored', expectedHarm: 0.01, prefill: [0.01, 0.3, 0.6] },
    { name: 'deep-weak', label: 'weak', expectedHarm: 0.01, prefill: [0.01, 0.9, 0.9] },
  ];
  const lines = demoConclusions(input([1], 1, 1, policies), 2);
  t.true(lines.includes('Prefilling k = 2 harmful tokens moves the harm of the Gibbs optimum (standard) policy from E[H] = 0.0200 to ASR_2 = 0.8000.'));
  t.true(lines.includes('The deep policy resists it: ASR_2 = 0.1000 (E[H] = 0.0100).'));
  t.true(lines.includes('The deep-anchored policy resists it only partly: ASR_2 = 0.6000 (E[H] = 0.0100).'));
  t.true(lines.includes('The weak policy does not resist it: ASR_2 = 0.9000 (E[H] = 0.0100).'));
});

test('demo on refusal and on horizon: different conclusions, each matching its summary.json', (t) => {
  const texts: string[] = [];
  for (const scenario of ['refusal', 'horizon']) {
    const out = join(scratch, scenario);
    const r = runCli(['demo', scenario, '--out', out, '--ppo-steps', '2', '--ppo-samples', '32', '--no-html', '--quiet']);
    t.is(r.status, 0, r.stderr);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    const share = summary.horizon.harmInformation[0] / summary.horizon.harmVariance;
    t.true(r.stdout.includes(`I_1 carries ${share >= 0.5 ? '' : 'only '}${(100 * share).toFixed(1)}% of Var(H)`), r.stdout);
    t.true(r.stdout.includes(share >= 0.5 ? 'falls mostly on the first token' : `spread over the first ${summary.horizon.effective.k} positions`));
    texts.push(r.stdout);
  }
  // refusal: I_1 is 90% of Var H and the horizon is T; horizon: I_1 is 18% and the horizon is 4 < T.
  t.regex(texts[0], /mostly on the first token.*\nHarm horizon k = T = 16/);
  t.regex(texts[1], /spread over the first 4 positions.*\nHarm horizon k = 4 of T = 10/);
});
