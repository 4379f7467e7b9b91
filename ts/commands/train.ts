/** `train`: align a policy (standard, deep or augment objective; exact, fixed-point or sampled RL). */
import { join } from 'node:path';
import type { Policy } from '../core/policy.js';
import { DEFAULT_TRANSFORMER } from '../core/policy.js';
import { JsonLinesWriter, outputFolder, writeAtomic } from '../io/files.js';
import { savePolicy } from '../io/policy-file.js';
import { num, numNonNegative, sparkline } from '../report/format.js';
import { convergence, DEFAULT_MIX, train as trainPolicy, TRAIN_DEFAULTS, type Convergence, type TrainOptions, type TrainRecord } from '../workflows/train.js';
import { commandLine } from './command-line.js';
import { declareCommand, flag, integer, integerList, number, oneOf, string } from './declare.js';
import { budgetOf, memoryBudget, objectiveWeights, scenarioArg, seed } from './options.js';

export interface TrainResult {
  scenario: string;
  options: Omit<TrainOptions, 'policy'> & { policy: string };
  /** Stopped early (Ctrl-C): the policy is the last step's. */
  interrupted: boolean;
  fit?: TrainRecord['fit'];
  convergence: Convergence;
  /** The last record, without its wall-clock time (in log.jsonl), so the result is reproducible. */
  final?: Omit<TrainRecord, 'seconds'>;
}

export const train = declareCommand({
  name: 'train',
  onStop: 'after-step',
  description: 'align a policy: standard RLHF objective, deep-alignment objectives or Qi et al.\'s augmentation',
  params: {
    scenario: scenarioArg(),
    objective: oneOf('--objective <name>', ['standard', 'deep', 'deep-anchored', 'augment'], 'objective', { default: 'standard' }),
    algorithm: oneOf('--algorithm <name>', ['exact', 'fixed-point', 'reinforce', 'reinforce-innovation', 'ppo'], 'exact descent, per-state fixed point, or sampled RL', { default: 'exact' }),
    policy: oneOf('--policy <family>', ['tabular', 'mlp', 'transformer'], 'policy family, initialised at the base (augment, tabular: at the Gibbs policy at λ; mlp and transformer: fitted to it)', { default: 'tabular' }),
    init: string('--init <file>', 'start from this policy file instead (P_init, the augment objective\'s default anchor)'),
    ...objectiveWeights(),
    mix: number('--mix <A>', 'α, the weight of the augment objective\'s recovery term (1 − α weighs its KL anchor)', { min: 0, default: DEFAULT_MIX }),
    anchor: oneOf('--anchor <policy>', ['init', 'base'], 'the augment objective\'s KL anchor: init (P_init, where training starts) or base', { default: 'init' }),
    steps: integer('--steps <N>', 'optimisation steps', { min: 1, default: 1000 }),
    seed: seed('seed (samples, mlp initialisation, random scenario)', TRAIN_DEFAULTS.seed),
    optimizer: oneOf('--optimizer <name>', ['adam', 'sgd'], 'optimiser', { default: TRAIN_DEFAULTS.optimizer }),
    lr: number('--lr <X>', 'learning rate (cosine-decayed to 0 over the run)', { min: 0, default: TRAIN_DEFAULTS.learningRate }),
    schedule: oneOf('--schedule <name>', ['cosine', 'constant'], 'learning-rate schedule', { default: TRAIN_DEFAULTS.schedule }),
    constantLr: flag('--constant-lr', 'keep the learning rate constant (--schedule constant)'),
    samples: integer('--samples <N>', 'responses per batch (sampled algorithms)', { min: 1, default: TRAIN_DEFAULTS.samples }),
    epochs: integer('--epochs <N>', 'PPO epochs per batch', { min: 1, default: TRAIN_DEFAULTS.epochs }),
    clip: number('--clip <E>', 'PPO clip ε', { min: 0, default: TRAIN_DEFAULTS.clip }),
    rollouts: integer('--rollouts <M>', 'reinforce-innovation: estimate h_t by M nested rollouts per prefix (default: exact h_t when the exact engine applies, else 4 rollouts)', { min: 1 }),
    mlpHidden: integerList('--mlp-hidden <W>', 'mlp hidden widths, e.g. 32 or 32,16', (w) => w.length >= 1 && w.length <= 2 && w.every((x) => x >= 1), 'one or two widths ≥ 1 like 32 or 32,16', { default: [32] }),
    mlpOrder: integer('--mlp-order <n>', 'tokens the mlp reads (default: the scenario\'s context order)', { min: 1 }),
    mlpActivation: oneOf('--mlp-activation <f>', ['tanh', 'relu'], 'mlp activation', { default: 'tanh' }),
    layers: integer('--layers <N>', 'transformer layers', { min: 1, default: DEFAULT_TRANSFORMER.layers }),
    width: integer('--width <D>', 'transformer width', { min: 1, default: DEFAULT_TRANSFORMER.width }),
    heads: integer('--heads <H>', 'transformer attention heads (dividing the width)', { min: 1, default: DEFAULT_TRANSFORMER.heads }),
    mlpWidth: integer('--mlp-width <M>', 'width of the transformer\'s MLP blocks', { min: 1, default: DEFAULT_TRANSFORMER.mlpWidth }),
    evalEvery: integer('--eval-every <K>', 'log the ASR curve and teacher-forced KL every K steps', { min: 1, default: TRAIN_DEFAULTS.evalEvery }),
    out: string('--out <dir>', 'output folder: policy.json, log.jsonl, summary.json'),
    memoryBudget: memoryBudget(),
  },
  commandLineRequires: ['out'],
  writesOutFolder: true,
  helpAfter: `
Examples:
  $ harm-horizon train refusal --objective standard --algorithm exact --out runs/standard
  $ harm-horizon train refusal --objective deep-anchored --algorithm fixed-point --out runs/deep
  $ harm-horizon train refusal --objective standard --algorithm ppo --policy mlp --steps 200 --out runs/ppo
  $ harm-horizon train horizon --lambda 1 --policy transformer --width 16 --steps 100 --out runs/transformer`,
  async run(p, context): Promise<TrainResult> {
    const budget = budgetOf(p.memoryBudget);
    const scenario = context.scenario(p.scenario, { seed: p.seed, ...budget, samplingOnly: true });
    let engine = context.engine(scenario, budget.memoryBudgetBytes);
    const start: TrainOptions['policy'] = p.init !== undefined ? context.policy(p.init, scenario, engine) : p.policy;
    if (start === 'transformer' || (typeof start === 'object' && start.kind === 'transformer')) engine = context.engine(scenario, budget.memoryBudgetBytes, true);
    const options: TrainOptions = {
      objective: { kind: p.objective, lambda: p.lambda ?? scenario.defaults.lambda, mu: p.mu ?? scenario.defaults.mu, gamma: p.gamma ?? scenario.defaults.gamma, mix: p.mix, anchor: p.anchor },
      algorithm: p.algorithm,
      policy: start,
      mlp: { order: p.mlpOrder ?? scenario.order, hidden: p.mlpHidden, activation: p.mlpActivation },
      transformer: { layers: p.layers, width: p.width, heads: p.heads, mlpWidth: p.mlpWidth },
      steps: p.steps,
      seed: p.seed,
      optimizer: p.optimizer,
      learningRate: p.lr,
      schedule: p.constantLr ? 'constant' : p.schedule,
      samples: p.samples,
      clip: p.clip,
      epochs: p.epochs,
      ...(p.rollouts !== undefined ? { rollouts: p.rollouts } : {}),
      evalEvery: p.evalEvery,
      memoryBudget: budget.memoryBudgetBytes,
    };
    const out = p.out === undefined ? undefined : outputFolder(p.out);
    const log = out === undefined ? undefined : new JsonLinesWriter(join(out, 'log.jsonl'));
    let first: TrainRecord | undefined;
    let last: TrainRecord | undefined;
    let policy: Policy;
    try {
      policy = await trainPolicy(scenario, engine, options, (record) => {
        log?.append(record);
        first ??= record;
        last = record;
        context.status(`step ${record.step}/${p.steps}  J ${num(record.objective)}  E[H] ${numNonNegative(record.expectedHarm)}  KL ${numNonNegative(record.kl)}`);
      }, context.shouldStop);
    } catch (error) {
      log?.close(false);
      throw error;
    }
    log?.close();
    const { seconds: _, ...final } = last ?? { seconds: 0 };
    const result: TrainResult = {
      scenario: scenario.name,
      options: { ...options, policy: typeof start === 'string' ? start : `file:${p.init}` },
      interrupted: context.shouldStop(),
      ...(first?.fit ? { fit: first.fit } : {}),
      convergence: convergence(first, last),
      ...(last ? { final: final as Omit<TrainRecord, 'seconds'> } : {}),
    };
    if (out !== undefined) {
      savePolicy(join(out, 'policy.json'), policy, scenario, engine?.numStates);
      const files = { policy: join(out, 'policy.json'), log: join(out, 'log.jsonl') };
      writeAtomic(join(out, 'summary.json'), `${JSON.stringify({ ...result, command: commandLine(train, p), files }, null, 2)}\n`);
    }
    return result;
  },
  render(r) {
    const f = r.final;
    if (!f) return 'no step was run';
    const o = r.options;
    const fit = r.fit ? `\nfitted to the base: KL(P_base ‖ P_init) ${num(r.fit.exactKl ?? r.fit.sampledKl)}${r.fit.exactKl === undefined ? ` ± ${num(r.fit.sampledKlSE)} (sampled)` : ' (exact)'}` : '';
    return (
      `trained ${o.policy} policy (${o.objective.kind}, ${o.algorithm}) on ${r.scenario}: J ${num(f.objective)}, E[H] ${numNonNegative(f.expectedHarm)}, KL ${numNonNegative(f.kl)}` +
      fit +
      `\nper-position KL ${sparkline(f.klOnPolicy)}   recovery on harmful prefixes ${sparkline(f.recovery)}\n${r.convergence.message}`
    );
  },
  exitCode: (r) => (r.interrupted ? 130 : 0),
  warnings: (r) => (r.convergence.converged === false ? [r.convergence.message] : []),
});
