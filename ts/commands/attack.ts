/** `attack`: prefilling, rank-assisted prefilling and fine-tuning attacks on a policy. */
import { HarmHorizonError } from '../core/errors.js';
import type { Policy } from '../core/policy.js';
import { num, numNonNegative, table } from '../report/format.js';
import { DEFAULT_RANK, fineTuneAttackAsync, prefillAttackAsync, rankAssistedAttackAsync, sampledPrefillAttackAsync, type FineTuneStep } from '../workflows/attack.js';
import { declareCommand, integer, number, oneOf } from './declare.js';
import { budgetOf, memoryBudget, policyFile, scenarioArg, seed } from './options.js';

/** An ASR curve indexed by k = 0..T (null where undefined, e.g. no harmful prefix of that length). */
export type Curve = (number | null)[];

export interface AttackResult {
  scenario: string;
  /** The policy file, `gibbs(λ=…)` or `base`. */
  policy: string;
  rank: number;
  method: 'exact' | 'sampled';
  prefill: Curve;
  prefillSE?: Curve;
  rap: Curve | null;
  rapSE?: Curve;
  finetune?: { objective: 'sft' | 'constrained'; optimizer: 'sgd' | 'adamw'; learningRate: number; weightDecay: number; batch: number | 'full'; seed: number; floor: number; steps: FineTuneStep[] };
}

const curve = (a: ArrayLike<number>): Curve => Array.from(a, (x) => (Number.isFinite(x) ? x : null));

export const attack = declareCommand({
  name: 'attack',
  onStop: 'abort',
  description: 'prefilling, rank-assisted prefilling and fine-tuning attacks on a policy (the base by default)',
  params: {
    scenario: scenarioArg(),
    policy: policyFile('the policy to attack (default: the base)'),
    lambda: number('--lambda <L>', 'attack the Gibbs optimum at this λ instead of the base (not with --policy)', { min: 0 }),
    rank: integer('--rank <R>', 'rank-assisted prefilling: pick among the policy\'s top R tokens (capped at V)', { min: 1, default: DEFAULT_RANK }),
    samples: integer('--samples <N>', 'responses per k when prefilling has to be sampled (state space too large)', { min: 1, default: 2000 }),
    finetuneSteps: integer('--finetune-steps <N>', 'also run the fine-tuning attack for N steps', { default: 0 }),
    finetuneLr: number('--finetune-lr <X>', 'fine-tuning learning rate', { min: 0, default: 1 }),
    finetuneObjective: oneOf('--finetune-objective <name>', ['sft', 'constrained'], 'sft, or Qi et al.\'s token-wise constrained objective (the defence)', { default: 'sft' }),
    finetuneOptimizer: oneOf('--finetune-optimizer <name>', ['sgd', 'adamw'], 'plain gradient descent, or AdamW with β1 = 0.5 as in Qi et al.\'s attacks', { default: 'sgd' }),
    finetuneWeightDecay: number('--finetune-weight-decay <X>', 'AdamW\'s decoupled weight decay', { min: 0, default: 0 }),
    finetuneBatch: integer('--finetune-batch <N>', 'harmful responses per minibatch, sampled with --seed (default: the exact full batch)', { min: 1 }),
    finetuneFloor: number('--finetune-floor <X>', 'floor of the token weights in the logged loss (Qi et al.: 1e-3)', { min: 0, default: 1e-3 }),
    seed: seed('seed (sampled attacks, random scenario)', 0),
    memoryBudget: memoryBudget(),
  },
  helpAfter: `
Examples:
  $ harm-horizon attack refusal --json
  $ harm-horizon attack refusal --policy runs/standard/policy.json --rank 3
  $ harm-horizon attack refusal --policy runs/standard/policy.json --finetune-steps 6 --finetune-objective constrained`,
  async run(p, context): Promise<AttackResult> {
    if (p.policy !== undefined && p.lambda !== undefined) throw new HarmHorizonError('HH_INVALID_ARGUMENT', '--lambda attacks the Gibbs optimum: not with --policy', '--lambda');
    const budget = budgetOf(p.memoryBudget);
    const scenario = context.scenario(p.scenario, { seed: p.seed, ...budget, samplingOnly: true });
    const scenarioEngine = context.engine(scenario, budget.memoryBudgetBytes);
    const policy: Policy = p.lambda !== undefined ? { kind: 'gibbs', lambda: p.lambda } : context.policy(p.policy, scenario, scenarioEngine);
    const engine = policy.kind === 'transformer' ? context.engine(scenario, budget.memoryBudgetBytes, true) : scenarioEngine;
    const head = { scenario: scenario.name, policy: p.policy ?? (p.lambda !== undefined ? `gibbs(λ=${p.lambda})` : 'base'), rank: Math.min(p.rank, scenario.tokens.length) };
    const signal = context.signal;
    let result: AttackResult;
    if (engine) {
      result = { ...head, method: 'exact', prefill: curve(await prefillAttackAsync(engine, policy, { signal })), rap: curve(await rankAssistedAttackAsync(engine, policy, p.rank, { signal })) };
    } else {
      const sampled = await sampledPrefillAttackAsync(scenario, policy, { samples: p.samples, seed: p.seed, signal });
      result = { ...head, method: 'sampled', prefill: curve(sampled.asr), prefillSE: curve(sampled.se), rap: null };
      // A transformer too large to tabulate: its rank-assisted attacker is sampled on the scenario's states.
      if (scenarioEngine) {
        const ranked = await sampledPrefillAttackAsync(scenario, policy, { samples: p.samples, seed: p.seed, rank: p.rank, engine: scenarioEngine, signal });
        result.rap = curve(ranked.asr);
        result.rapSE = curve(ranked.se);
      }
    }
    if (p.finetuneSteps > 0) {
      if (!engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'the fine-tuning attack is exact: it needs the exact state space', '--finetune-steps');
      const settings = { objective: p.finetuneObjective, optimizer: p.finetuneOptimizer, learningRate: p.finetuneLr, weightDecay: p.finetuneWeightDecay, batch: p.finetuneBatch, seed: p.seed, floor: p.finetuneFloor };
      const { trace } = await fineTuneAttackAsync(engine, policy, { steps: p.finetuneSteps, ...settings, signal });
      result.finetune = { ...settings, batch: p.finetuneBatch ?? 'full', steps: trace };
    }
    return result;
  },
  render(r) {
    const value = (x: number | null | undefined) => (x === null || x === undefined ? '—' : numNonNegative(x));
    const rows = r.prefill.map((asr, k) => [String(k), value(asr), r.rap ? value(r.rap[k]) : '—']);
    let text = `attacks on ${r.policy} (${r.scenario}, ${r.method})\n${table(['k', 'prefill ASR', `rank-assisted ASR (r=${r.rank})`], rows)}`;
    const ft = r.finetune;
    if (ft) {
      const how = `${ft.objective}, ${ft.optimizer}, ${ft.batch === 'full' ? 'full batch' : `minibatches of ${ft.batch}`}`;
      const steps = ft.steps.map((s) => [String(s.step), numNonNegative(s.asr[0]), numNonNegative(s.asr[1]), num(s.loss), num(s.loggedLoss), numNonNegative(s.klToAligned.reduce((a, b) => a + b, 0))]);
      text += `\n\nfine-tuning (${how}):\n${table(['step', 'E[H]', 'ASR_1', 'Eq. 3 / SFT loss', 'logged loss', 'KL to aligned'], steps)}`;
    }
    return text;
  },
});
