/** The `rollouts` and `profile` commands: rollout logs of real or toy models. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import * as h from './helpers.js';
import { HarmHorizonError } from '../core/errors.js';
import { ExactEngine } from '../core/exact.js';
import { JsonLinesWriter, outputFolder } from '../io/files.js';
import { loadPolicy } from '../io/policy-file.js';
import { resolveScenario } from '../scenario/resolve.js';
import { compileScenario } from '../scenario/index.js';
import { readLog } from '../logs/format.js';
import { profileLog } from '../logs/profile.js';
import { renderProfile } from '../logs/render.js';
import { toyRolloutLog } from '../logs/toy-runner.js';

/** Codes of bad input of the log commands: exit 2 with the message. */
const LOG_INPUT_CODES = new Set(['HH_LOG_INVALID', 'HH_IMPORT_INVALID', 'HH_MISSING_DEPENDENCY']);

async function badInputExits2(action: () => Promise<void> | void): Promise<void> {
  try {
    await action();
  } catch (error) {
    if (error instanceof HarmHorizonError && LOG_INPUT_CODES.has(error.code)) {
      process.stderr.write(`harm-horizon: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
}

function depthList(value: string): number[] {
  const depths = value.split(',').map((x) => Number(x.trim()));
  if (depths.length === 0 || !depths.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `--depths takes whole numbers ≥ 0 like 0,1,2,4,8,16, got ${value}`, '--depths');
  }
  return [...new Set(depths)].sort((a, b) => a - b);
}

export function addLogCommands(program: Command) {
  program
    .command('rollouts')
    .description('write a rollout log (DIR/log.jsonl): samples with log-probs under policy and reference, rollout trees, prefills')
    .argument('<target>', 'a built-in scenario, a scenario JSON file, or a GGUF model file')
    .requiredOption('--out <dir>', 'output folder (log.jsonl)')
    .option('--prompts <file>', 'GGUF: a JSON-lines file of prompts {"id", "text"} (or a text file, one prompt per line)')
    .option('--reference <spec>', 'GGUF: a second GGUF file, "no-system-prompt" (default: the same weights and template without the safety system prompt) or "plain-qa" (the same weights on plain Question/Answer text)')
    .option('--system-prompt <text>', 'GGUF: the safety system prompt of the policy')
    .option('--policy <file>', 'scenario: a policy file to sample from (default: the Gibbs optimum at λ)')
    .option('--lambda <L>', 'scenario: λ of the Gibbs policy (default: the scenario\'s)', h.nonNegative('--lambda'))
    .option('--samples <N>', 'responses per model (and per prompt for GGUF)', h.positiveInteger('--samples'))
    .option('--rollouts <M>', 'continuations per prefix and set, and per prefill prefix', h.positiveInteger('--rollouts'), 8)
    .option('--depths <list>', 'prefix depths of the rollout trees and prefills', '0,1,2,4,8,16')
    .option('--max-tokens <T>', 'GGUF: response length', h.positiveInteger('--max-tokens'), 16)
    .option('--threads <N>', 'GGUF: threads (default: half the cores, at least 1)', h.positiveInteger('--threads'))
    .option('--seed <S>', 'seed', h.integer('--seed'), 0)
    .addHelpText(
      'after',
      `
Examples:
  $ harm-horizon rollouts refusal --samples 2000 --out runs/refusal-log
  $ harm-horizon rollouts horizon --depths 0,1,2,3,4,6,8,10 --out runs/horizon-log
  $ harm-horizon rollouts SmolLM2-135M-Instruct.Q4_1.gguf --prompts examples/logs/prompts.jsonl --samples 4 --max-tokens 16 --out runs/smol`,
    )
    .action((target: string, opts: Record<string, any>) =>
      badInputExits2(async () => {
        const depths = depthList(opts.depths);
        outputFolder(opts.out);
        const path = join(opts.out, 'log.jsonl');
        const writer = new JsonLinesWriter(path);
        let records = 0;
        const append = (r: unknown) => {
          writer.append(r);
          records++;
        };
        try {
          if (target.toLowerCase().endsWith('.gguf')) {
            const { ggufRolloutLog } = await import('../logs/gguf-runner.js');
            const options = { prompts: opts.prompts, reference: opts.reference, systemPrompt: opts.systemPrompt, samples: opts.samples ?? 4, rollouts: opts.rollouts, depths, maxTokens: opts.maxTokens, threads: opts.threads, seed: opts.seed };
            await ggufRolloutLog(target, options, append);
          } else {
            const scenario = compileScenario(resolveScenario(target, { seed: opts.seed }));
            const engine = new ExactEngine(scenario);
            const lambda = opts.lambda ?? scenario.defaults.lambda;
            const policy = opts.policy ? loadPolicy(opts.policy, scenario, engine.numStates) : undefined;
            toyRolloutLog(
              scenario,
              engine,
              { policy, policyName: opts.policy, lambda, samples: opts.samples ?? 1000, rollouts: opts.rollouts, depths: depths.filter((d) => d <= scenario.length), seed: opts.seed },
              append,
            );
          }
          writer.close();
        } catch (error) {
          writer.close(false);
          // Bad input stops the run before the first record: leave no empty log. A run that fails
          // later keeps its whole records (a valid, shorter log).
          if (records === 0) rmSync(path, { force: true });
          throw error;
        }
        h.write(`wrote ${path} (${records} records)`);
      }),
    );

  program
    .command('profile')
    .description('the theory\'s quantities from a rollout log, with cluster-bootstrap SEs: KL profiles, prefill ASR, h_t and I_t, horizon, the KL-law fit')
    .argument('<log>', 'a rollout log (JSON lines, docs/rollout-log.md)')
    .option('--json', 'print one JSON object')
    .option('--bootstrap <B>', 'bootstrap replicates', h.positiveInteger('--bootstrap'), 200)
    .option('--seed <S>', 'bootstrap seed', h.integer('--seed'), 0)
    .addHelpText('after', '\nExamples:\n  $ harm-horizon profile runs/refusal-log/log.jsonl\n  $ harm-horizon profile runs/smol/log.jsonl --json')
    .action((file: string, opts: { json?: boolean; bootstrap: number; seed: number }) =>
      badInputExits2(() => {
        const log = readLog(file);
        const profile = profileLog(log, { replicates: opts.bootstrap, seed: opts.seed });
        if (opts.json) h.json({ log: file, policy: log.header.policy, reference: log.header.reference, judge: `${log.header.judge.name} (${log.header.judge.scores})`, ...profile });
        else h.write(renderProfile(file, log.header, profile));
      }),
    );
}
