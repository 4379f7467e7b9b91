/** `estimate`: Monte Carlo estimates with standard errors, beside the exact values where they exist. */
import { HarmHorizonError } from '../core/errors.js';
import { DEFAULT_TILT } from '../core/montecarlo.js';
import { estimateReport, renderEstimateReport, type EstimateReport } from '../estimate-report.js';
import { declareCommand, integer, number, oneOf } from './declare.js';
import { budgetOf, memoryBudget, policyFile, scenarioArg, seed } from './options.js';

export const estimate = declareCommand({
  name: 'estimate',
  onStop: 'abort',
  description: 'Monte Carlo estimates (with standard errors) of E[H], I_t, per-position KL and gradients, beside the exact values',
  params: {
    scenario: scenarioArg(),
    policy: policyFile(),
    samples: integer('--samples <N>', 'number of sampled responses', { min: 1, required: true }),
    rollouts: integer('--rollouts <M>', 'estimate h_t by M nested rollouts per prefix (default: exact h_t when the exact engine applies, else 16 rollouts)', { min: 1 }),
    estimator: oneOf('--estimator <name>', ['reinforce', 'leave-one-out', 'innovation'], 'gradient estimator: reinforce, leave-one-out or innovation', { default: 'innovation' }),
    seed: seed('seed of the samples (and of the random scenario)', 0),
    proposal: oneOf(
      '--proposal <name>',
      ['policy', 'tilted', 'information'],
      'draw responses from the policy; tilted: from q ∝ P·e^{κH} (exact with the exact engine, else per token), reweighted by P/q (no gradients then); information: from the mixture of the policy and the zero-variance proposals q_t ∝ P·Δ_t² of each I_t (needs the exact engine), reweighted by P/q ≤ |S| + 1',
      { default: 'policy' },
    ),
    tilt: number('--tilt <κ>', `κ of the tilted proposal (default ${DEFAULT_TILT}; negative tilts away from harm)`, { maxAbs: 700 }),
    memoryBudget: memoryBudget(),
  },
  helpAfter: `
Examples:
  $ harm-horizon estimate refusal --samples 20000
  $ harm-horizon estimate horizon --samples 4096 --rollouts 8 --json
  $ harm-horizon estimate refusal --policy run/policy.json --samples 10000 --estimator reinforce
  $ harm-horizon estimate refusal --samples 20000 --proposal tilted --tilt 3
  $ harm-horizon estimate refusal --samples 20000 --proposal information`,
  async run(p, context): Promise<EstimateReport> {
    if (p.tilt !== undefined && p.proposal !== 'tilted') throw new HarmHorizonError('HH_INVALID_ARGUMENT', '--tilt needs --proposal tilted', '--tilt');
    const budget = budgetOf(p.memoryBudget);
    const compiled = context.scenario(p.scenario, { seed: p.seed, ...budget, samplingOnly: true });
    let exact = context.engine(compiled, budget.memoryBudgetBytes);
    const policy = context.policy(p.policy, compiled, exact);
    if (policy.kind === 'transformer') exact = context.engine(compiled, budget.memoryBudgetBytes, true);
    const request = { samples: p.samples, seed: p.seed, rollouts: p.rollouts, estimator: p.estimator, proposal: p.proposal, tilt: p.tilt };
    context.stage(`sampling ${p.samples} responses …`);
    return estimateReport(compiled, policy, request, exact, { signal: context.signal });
  },
  render: renderEstimateReport,
});
