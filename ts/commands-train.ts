/** The `train` and `attack` commands. */
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_RANK, fineTuneAttack, prefillAttack, rankAssistedAttack, sampledPrefillAttack, type FineTuneStep } from './workflows/attack.js';
import type { CompiledScenario } from './scenario/compiled.js';
import { HarmHorizonError } from './core/errors.js';
import { memoryBudget, memoryBudgetOption } from './commands-options.js';
import { JsonLinesWriter, outputFolder, writeAtomic } from './io/files.js';

import { ExactEngine } from './core/exact.js';
import { num, numNonNegative, sparkline, table } from './report/format.js';
import { BASE, DEFAULT_TRANSFORMER, type MlpShape, type Policy, type TransformerLayout } from './core/policy.js';
import { loadPolicy, savePolicy } from './io/policy-file.js';
import { resolveScenario } from './scenario/resolve.js';
import { compileScenario } from './scenario/index.js';
import { convergence, DEFAULT_MIX, train, TRAIN_DEFAULTS, type Algorithm, type ObjectiveKind, type TrainRecord } from './workflows/train.js';

export interface CliHelpers {
  nonNegative: (name: string) => (v: string) => number;
  positiveInteger: (name: string) => (v: string) => number;
  integer: (name: string) => (v: string) => number;
  oneOf: <T extends string>(name: string, choices: T[]) => (v: string) => T;
  json: (value: unknown) => void;
  write: (text: string) => void;
  tryExactEngine: (scenario: CompiledScenario, budget: number) => ExactEngine | null;
}

/** The prefix-tree engine, on which a transformer is exact; null when the prefixes do not fit. */
export function tryPrefixTree(scenario: CompiledScenario, memoryBudgetBytes: number): ExactEngine | null {
  try {
    return new ExactEngine(scenario, { memoryBudgetBytes, prefixTree: true });
  } catch (error) {
    if (error instanceof HarmHorizonError && error.code === 'HH_STATE_SPACE_TOO_LARGE') return null;
    throw error;
  }
}

function unitInterval(name: string) {
  return (value: string) => {
    const x = Number(value);
    if (!(x > 0 && x <= 1)) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${name} must be in (0, 1], got ${value}`, name);
    return x;
  };
}

function widths(value: string): number[] {
  const w = value.split(',').map(Number);
  if (w.length < 1 || w.length > 2 || !w.every((x) => Number.isInteger(x) && x >= 1)) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `--mlp-hidden takes one or two widths like 32 or 32,16, got ${value}`, '--mlp-hidden');
  }
  return w;
}

export function addTrainCommands(program: Command, h: CliHelpers) {
  program
    .command('train')
    .description('align a policy: standard RLHF objective, deep-alignment objectives or Qi et al.\'s augmentation')
    .argument('<scenario>', 'a built-in scenario or a scenario JSON file')
    .addOption(new Option('--objective <name>', 'objective').choices(['standard', 'deep', 'deep-anchored', 'augment']).default('standard'))
    .addOption(new Option('--algorithm <name>', 'exact descent, per-state fixed point, or sampled RL').choices(['exact', 'fixed-point', 'reinforce', 'reinforce-innovation', 'ppo']).default('exact'))
    .addOption(new Option('--policy <family>', 'policy family, initialised at the base (augment, tabular: at the Gibbs policy at λ; mlp and transformer: fitted to it)').choices(['tabular', 'mlp', 'transformer']).default('tabular'))
    .option('--init <file>', 'start from this policy file instead (P_init, the augment objective\'s default anchor)')
    .option('--lambda <L>', 'λ (default: the scenario\'s)', h.nonNegative('--lambda'))
    .option('--mu <M>', 'μ of the recovery penalty (default: the scenario\'s)', h.nonNegative('--mu'))
    .option('--gamma <G>', 'γ of the weights w_t = γ^(t−1) (default: the scenario\'s)', unitInterval('--gamma'))
    .option('--mix <A>', 'α, the weight of the augment objective\'s recovery term (1 − α weighs its KL anchor)', h.nonNegative('--mix'), DEFAULT_MIX)
    .addOption(new Option('--anchor <policy>', 'the augment objective\'s KL anchor: init (P_init, where training starts) or base').choices(['init', 'base']).default('init'))
    .option('--steps <N>', 'optimisation steps', h.positiveInteger('--steps'), 1000)
    .option('--seed <S>', 'seed (samples, mlp initialisation, random scenario)', h.integer('--seed'), TRAIN_DEFAULTS.seed)
    .addOption(new Option('--optimizer <name>', 'optimiser').choices(['adam', 'sgd']).default('adam'))
    .option('--lr <X>', 'learning rate (cosine-decayed to 0 over the run)', h.nonNegative('--lr'), TRAIN_DEFAULTS.learningRate)
    .option('--constant-lr', 'keep the learning rate constant')
    .option('--samples <N>', 'responses per batch (sampled algorithms)', h.positiveInteger('--samples'), TRAIN_DEFAULTS.samples)
    .option('--epochs <N>', 'PPO epochs per batch', h.positiveInteger('--epochs'), TRAIN_DEFAULTS.epochs)
    .option('--clip <E>', 'PPO clip ε', h.nonNegative('--clip'), TRAIN_DEFAULTS.clip)
    .option('--mlp-hidden <W>', 'mlp hidden widths, e.g. 32 or 32,16', '32')
    .option('--mlp-order <n>', 'tokens the mlp reads (default: the scenario\'s context order)', h.positiveInteger('--mlp-order'))
    .addOption(new Option('--mlp-activation <f>', 'mlp activation').choices(['tanh', 'relu']).default('tanh'))
    .option('--layers <N>', 'transformer layers', h.positiveInteger('--layers'), DEFAULT_TRANSFORMER.layers)
    .option('--width <D>', 'transformer width', h.positiveInteger('--width'), DEFAULT_TRANSFORMER.width)
    .option('--heads <H>', 'transformer attention heads (dividing the width)', h.positiveInteger('--heads'), DEFAULT_TRANSFORMER.heads)
    .option('--mlp-width <M>', 'width of the transformer\'s MLP blocks', h.positiveInteger('--mlp-width'), DEFAULT_TRANSFORMER.mlpWidth)
    .option('--eval-every <K>', 'log the ASR curve and teacher-forced KL every K steps', h.positiveInteger('--eval-every'), TRAIN_DEFAULTS.evalEvery)
    .requiredOption('--out <dir>', 'output folder: policy.json, log.jsonl, summary.json')
    .option('--json', 'print the summary as JSON')
    .addOption(memoryBudgetOption())
    .addHelpText(
      'after',
      `
Examples:
  $ harm-horizon train refusal --objective standard --algorithm exact --out runs/standard
  $ harm-horizon train refusal --objective deep-anchored --algorithm fixed-point --out runs/deep
  $ harm-horizon train refusal --objective standard --algorithm ppo --policy mlp --steps 200 --out runs/ppo
  $ harm-horizon train horizon --lambda 1 --policy transformer --width 16 --steps 100 --out runs/transformer`,
    )
    .action(async (arg: string, opts: Record<string, any>) => {
      const budget = memoryBudget(opts.memoryBudget);
      const scenario = compileScenario(resolveScenario(arg, { seed: opts.seed, ...budget, samplingOnly: true }), { memoryBudgetBytes: Infinity });
      let engine = h.tryExactEngine(scenario, budget.memoryBudgetBytes);
      const out = outputFolder(opts.out);
      const shape: MlpShape = { order: opts.mlpOrder ?? scenario.order, hidden: widths(opts.mlpHidden), activation: opts.mlpActivation };
      const layout: TransformerLayout = { layers: opts.layers, width: opts.width, heads: opts.heads, mlpWidth: opts.mlpWidth };
      const start: 'tabular' | 'mlp' | 'transformer' | Policy = opts.init ? loadPolicy(opts.init, scenario, engine?.numStates) : opts.policy;
      if (start === 'transformer' || (typeof start === 'object' && start.kind === 'transformer')) engine = tryPrefixTree(scenario, budget.memoryBudgetBytes);
      const logPath = join(out, 'log.jsonl');
      const log = new JsonLinesWriter(logPath);
      let stop = false;
      const onSigint = () => (stop = true);
      process.on('SIGINT', onSigint);
      const tty = process.stderr.isTTY;
      let firstRecord: TrainRecord | undefined;
      let lastRecord: TrainRecord | undefined;
      const options = {
        ...TRAIN_DEFAULTS,
        objective: {
          kind: opts.objective as ObjectiveKind,
          lambda: opts.lambda ?? scenario.defaults.lambda,
          mu: opts.mu ?? scenario.defaults.mu,
          gamma: opts.gamma ?? scenario.defaults.gamma,
          mix: opts.mix,
          anchor: opts.anchor,
        },
        algorithm: opts.algorithm as Algorithm,
        policy: start,
        mlp: shape,
        transformer: layout,
        steps: opts.steps,
        seed: opts.seed,
        optimizer: opts.optimizer,
        learningRate: opts.lr,
        schedule: opts.constantLr ? ('constant' as const) : ('cosine' as const),
        samples: opts.samples,
        clip: opts.clip,
        epochs: opts.epochs,
        evalEvery: opts.evalEvery,
      };
      let policy: Policy;
      try {
        policy = await train(scenario, engine, options, (record) => {
          log.append(record);
          firstRecord ??= record;
          lastRecord = record;
          if (tty) process.stderr.write(`\rstep ${record.step}/${opts.steps}  J ${num(record.objective)}  E[H] ${numNonNegative(record.expectedHarm)}  KL ${numNonNegative(record.kl)}   `);
        }, () => stop);
      } catch (error) {
        log.close(false);
        throw error;
      } finally {
        process.off('SIGINT', onSigint);
        if (tty) process.stderr.write('\n');
      }
      log.close();
      savePolicy(join(out, 'policy.json'), policy, scenario, engine?.numStates);
      const converged = convergence(firstRecord, lastRecord);
      if (converged.converged === false) process.stderr.write(`warning: ${converged.message}\n`);
      const summary = {
        scenario: scenario.name,
        command: ['harm-horizon', ...process.argv.slice(2)].join(' '),
        options: { ...options, policy: typeof start === 'string' ? start : `file:${opts.init}` },
        interrupted: stop,
        ...(firstRecord?.fit ? { fit: firstRecord.fit } : {}),
        convergence: converged,
        final: lastRecord,
        files: { policy: join(out, 'policy.json'), log: logPath },
      };
      writeAtomic(join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
      if (opts.json) h.json(summary);
      else if (lastRecord) {
        h.write(
          `trained ${policy.kind} policy (${opts.objective}, ${opts.algorithm}) on ${scenario.name}: J ${num(lastRecord.objective)}, E[H] ${numNonNegative(lastRecord.expectedHarm)}, KL ${numNonNegative(lastRecord.kl)}` +
            (firstRecord?.fit ? `\nfitted to the base: KL(P_base ‖ P_init) ${num(firstRecord.fit.exactKl ?? firstRecord.fit.sampledKl)}${firstRecord.fit.exactKl === undefined ? ` ± ${num(firstRecord.fit.sampledKlSE)} (sampled)` : ' (exact)'}` : '') +
            `\nper-position KL ${sparkline(lastRecord.klOnPolicy)}   recovery on harmful prefixes ${sparkline(lastRecord.recovery)}\n${converged.message}\nwrote ${out}/policy.json, log.jsonl, summary.json`,
        );
      }
      if (stop) process.exitCode = 130;
    });

  program
    .command('attack')
    .description('prefilling, rank-assisted prefilling and fine-tuning attacks on a policy (the base by default)')
    .argument('<scenario>', 'a built-in scenario or a scenario JSON file')
    .option('--policy <file>', 'the policy to attack (default: the base)')
    .option('--rank <R>', 'rank-assisted prefilling: pick among the policy\'s top R tokens (capped at V)', h.positiveInteger('--rank'), DEFAULT_RANK)
    .option('--samples <N>', 'responses per k when prefilling has to be sampled (state space too large)', h.positiveInteger('--samples'), 2000)
    .option('--finetune-steps <N>', 'also run the fine-tuning attack for N steps', h.integer('--finetune-steps'), 0)
    .option('--finetune-lr <X>', 'fine-tuning learning rate', h.nonNegative('--finetune-lr'), 1)
    .addOption(new Option('--finetune-objective <name>', 'sft, or Qi et al.\'s token-wise constrained objective (the defence)').choices(['sft', 'constrained']).default('sft'))
    .addOption(new Option('--finetune-optimizer <name>', 'plain gradient descent, or AdamW with β1 = 0.5 as in Qi et al.\'s attacks').choices(['sgd', 'adamw']).default('sgd'))
    .option('--finetune-weight-decay <X>', 'AdamW\'s decoupled weight decay', h.nonNegative('--finetune-weight-decay'), 0)
    .option('--finetune-batch <N>', 'harmful responses per minibatch, sampled with --seed (default: the exact full batch)', h.positiveInteger('--finetune-batch'))
    .option('--finetune-floor <X>', 'floor of the token weights in the logged loss (Qi et al.: 1e-3)', h.nonNegative('--finetune-floor'), 1e-3)
    .option('--seed <S>', 'seed (sampled attacks, random scenario)', h.integer('--seed'), 0)
    .option('--json', 'print one JSON object')
    .addOption(memoryBudgetOption())
    .addHelpText(
      'after',
      `
Examples:
  $ harm-horizon attack refusal --json
  $ harm-horizon attack refusal --policy runs/standard/policy.json --rank 3
  $ harm-horizon attack refusal --policy runs/standard/policy.json --finetune-steps 6 --finetune-objective constrained`,
    )
    .action((arg: string, opts: Record<string, any>) => {
      const budget = memoryBudget(opts.memoryBudget);
      const scenario = compileScenario(resolveScenario(arg, { seed: opts.seed, ...budget, samplingOnly: true }), { memoryBudgetBytes: Infinity });
      const scenarioEngine = h.tryExactEngine(scenario, budget.memoryBudgetBytes);
      const policy = opts.policy ? loadPolicy(opts.policy, scenario, scenarioEngine?.numStates) : BASE;
      const engine = policy.kind === 'transformer' ? tryPrefixTree(scenario, budget.memoryBudgetBytes) : scenarioEngine;
      const report: Record<string, unknown> = { scenario: scenario.name, policy: opts.policy ?? 'base', rank: Math.min(opts.rank, scenario.tokens.length) };
      let prefill: number[];
      let rap: number[] | null = null;
      if (engine) {
        prefill = Array.from(prefillAttack(engine, policy));
        rap = Array.from(rankAssistedAttack(engine, policy, opts.rank));
        report.method = 'exact';
      } else {
        const sampled = sampledPrefillAttack(scenario, policy, { samples: opts.samples, seed: opts.seed });
        prefill = sampled.asr;
        report.method = 'sampled';
        report.prefillSE = sampled.se;
        // A transformer too large to tabulate: its rank-assisted attacker is sampled on the scenario's states.
        if (scenarioEngine) {
          const ranked = sampledPrefillAttack(scenario, policy, { samples: opts.samples, seed: opts.seed, rank: opts.rank, engine: scenarioEngine });
          rap = ranked.asr;
          report.rapSE = ranked.se;
        }
      }
      report.prefill = prefill.map((asr, k) => ({ k, asr: Number.isFinite(asr) ? asr : null }));
      report.rap = rap ? rap.map((asr, k) => ({ k, asr: Number.isFinite(asr) ? asr : null })) : null;
      if (opts.finetuneSteps > 0) {
        if (!engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'the fine-tuning attack is exact: it needs the exact state space');
        const settings = {
          objective: opts.finetuneObjective,
          optimizer: opts.finetuneOptimizer,
          learningRate: opts.finetuneLr,
          weightDecay: opts.finetuneWeightDecay,
          batch: opts.finetuneBatch,
          seed: opts.seed,
          floor: opts.finetuneFloor,
        };
        const { trace } = fineTuneAttack(engine, policy, { steps: opts.finetuneSteps, ...settings });
        report.finetune = { ...settings, batch: opts.finetuneBatch ?? 'full', steps: trace };
      }
      if (opts.json) return h.json(report);
      const rows = prefill.map((asr, k) => [String(k), numNonNegative(asr), rap ? numNonNegative(rap[k]) : '—']);
      h.write(`attacks on ${report.policy} (${scenario.name}, ${report.method})\n${table(['k', 'prefill ASR', `rank-assisted ASR (r=${report.rank})`], rows)}`);
      const ft = report.finetune as { steps: FineTuneStep[] } | undefined;
      if (ft) {
        const how = `${opts.finetuneObjective}, ${opts.finetuneOptimizer}, ${opts.finetuneBatch ? `minibatches of ${opts.finetuneBatch}` : 'full batch'}`;
        const rows = ft.steps.map((s) => [String(s.step), numNonNegative(s.asr[0]), numNonNegative(s.asr[1]), num(s.loss), num(s.loggedLoss), numNonNegative(s.klToAligned.reduce((a, b) => a + b, 0))]);
        h.write(`\nfine-tuning (${how}):\n${table(['step', 'E[H]', 'ASR_1', 'Eq. 3 / SFT loss', 'logged loss', 'KL to aligned'], rows)}`);
      }
    });
}
