/** `rollouts` and `profile`: rollout logs of real or toy models, and the theory's quantities from a log. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { HarmHorizonError } from '../core/errors.js';
import { JsonLinesWriter, outputFolder } from '../io/files.js';
import { readLog } from '../logs/format.js';
import { profileLog, type LogProfile } from '../logs/profile.js';
import { renderProfile } from '../logs/render.js';
import { toyRolloutLog } from '../logs/toy-runner.js';
import { declareCommand, integer, number, parsed, string } from './declare.js';
import { budgetOf, memoryBudget, policyFile, seed } from './options.js';

/** `--depths`: whole numbers ≥ 0, sorted, each once. */
function depthList(value: string): number[] {
  const depths = value.split(',').map((x) => Number(x.trim()));
  if (!depths.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `--depths takes whole numbers ≥ 0 like 0,1,2,4,8,16, got ${value}`, '--depths');
  }
  return [...new Set(depths)].sort((a, b) => a - b);
}

export const rollouts = declareCommand({
  name: 'rollouts',
  description: 'write a rollout log (DIR/log.jsonl): samples with log-probs under policy and reference, rollout trees, prefills',
  params: {
    target: string('target', 'a built-in scenario, a scenario JSON file, or a GGUF model file', { positional: true, required: true }),
    out: string('--out <dir>', 'output folder (log.jsonl)', { required: true }),
    prompts: string('--prompts <file>', 'GGUF: a JSON-lines file of prompts {"id", "text"} (or a text file, one prompt per line)'),
    reference: string('--reference <spec>', 'GGUF: a second GGUF file, "no-system-prompt" (default: the same weights and template without the safety system prompt) or "plain-qa" (the same weights on plain Question/Answer text)'),
    systemPrompt: string('--system-prompt <text>', 'GGUF: the safety system prompt of the policy'),
    policy: policyFile('scenario: a policy file to sample from (default: the Gibbs optimum at λ)'),
    lambda: number('--lambda <L>', 'scenario: λ of the Gibbs policy (default: the scenario\'s)', { min: 0 }),
    samples: integer('--samples <N>', 'responses per model (and per prompt for GGUF)', { min: 1 }),
    rollouts: integer('--rollouts <M>', 'continuations per prefix and set, and per prefill prefix', { min: 1, default: 8 }),
    depths: parsed('--depths <list>', 'prefix depths of the rollout trees and prefills', depthList, { default: [0, 1, 2, 4, 8, 16] }),
    maxTokens: integer('--max-tokens <T>', 'GGUF: response length', { min: 1, default: 16 }),
    threads: integer('--threads <N>', 'GGUF: threads (default: half the cores, at least 1)', { min: 1 }),
    seed: seed('seed', 0),
    memoryBudget: memoryBudget(),
  },
  writesOutFolder: true,
  helpAfter: `
Examples:
  $ harm-horizon rollouts refusal --samples 2000 --out runs/refusal-log
  $ harm-horizon rollouts horizon --depths 0,1,2,3,4,6,8,10 --out runs/horizon-log
  $ harm-horizon rollouts SmolLM2-135M-Instruct.Q4_1.gguf --prompts examples/logs/prompts.jsonl --samples 4 --max-tokens 16 --out runs/smol`,
  async run(p, context): Promise<{ log: string; records: number }> {
    const path = join(outputFolder(p.out), 'log.jsonl');
    const writer = new JsonLinesWriter(path);
    let records = 0;
    const append = (r: unknown) => {
      writer.append(r);
      records++;
    };
    try {
      if (p.target.toLowerCase().endsWith('.gguf')) {
        const { ggufRolloutLog } = await import('../logs/gguf-runner.js');
        const options = { prompts: p.prompts, reference: p.reference, systemPrompt: p.systemPrompt, samples: p.samples ?? 4, rollouts: p.rollouts, depths: p.depths, maxTokens: p.maxTokens, threads: p.threads, seed: p.seed };
        await ggufRolloutLog(p.target, options, append);
      } else {
        const budget = budgetOf(p.memoryBudget);
        const scenario = context.scenario(p.target, { seed: p.seed, ...budget });
        const engine = context.exactEngine(scenario, budget.memoryBudgetBytes);
        const policy = p.policy === undefined ? undefined : context.policy(p.policy, scenario, engine);
        const lambda = p.lambda ?? scenario.defaults.lambda;
        const options = { policy, policyName: p.policy, lambda, samples: p.samples ?? 1000, rollouts: p.rollouts, depths: p.depths.filter((d) => d <= scenario.length), seed: p.seed };
        toyRolloutLog(scenario, engine, options, append);
      }
      writer.close();
    } catch (error) {
      writer.close(false);
      // Bad input stops the run before the first record: leave no empty log. A run that fails
      // later keeps its whole records (a valid, shorter log).
      if (records === 0) rmSync(path, { force: true });
      throw error;
    }
    return { log: path, records };
  },
  render: (r) => `wrote ${r.log} (${r.records} records)`,
});

export type ProfileResult = { log: string; policy: string; reference: string; judge: string } & LogProfile;

export const profile = declareCommand({
  name: 'profile',
  description: 'the theory\'s quantities from a rollout log, with cluster-bootstrap SEs: KL profiles, prefill ASR, h_t and I_t, horizon, the KL-law fit',
  params: {
    log: string('log', 'a rollout log (JSON lines, docs/rollout-log.md)', { positional: true, required: true }),
    bootstrap: integer('--bootstrap <B>', 'bootstrap replicates', { min: 1, default: 200 }),
    seed: seed('bootstrap seed', 0),
  },
  helpAfter: '\nExamples:\n  $ harm-horizon profile runs/refusal-log/log.jsonl\n  $ harm-horizon profile runs/smol/log.jsonl --json',
  async run(p): Promise<ProfileResult> {
    const log = readLog(p.log);
    const profiled = profileLog(log, { replicates: p.bootstrap, seed: p.seed });
    return { log: p.log, policy: log.header.policy, reference: log.header.reference, judge: `${log.header.judge.name} (${log.header.judge.scores})`, ...profiled };
  },
  render: (r) => renderProfile(r.log, r, r),
});
