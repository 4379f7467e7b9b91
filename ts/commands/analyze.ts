/** `analyze`: the exact analysis of a scenario (harm information, horizon, gradients, KL, prefilling). */
import { DEFAULT_HORIZON_TOLERANCE } from '../core/exact.js';
import { renderAnalyzeReport } from '../report/analyze-text.js';
import { analyzeReport, DEFAULT_EFFECTIVE_FRACTION, type AnalyzeReport } from '../report/analysis.js';
import { declareCommand, number } from './declare.js';
import { budgetOf, memoryBudget, policyFile, scenarioArg, seed } from './options.js';

export type AnalyzeResult = AnalyzeReport & { aligned: string };

export const analyze = declareCommand({
  name: 'analyze',
  onStop: 'abort',
  description: 'exact analysis of a scenario: harm information I_t, horizon, gradients, Gibbs-optimum KL and prefilling success',
  params: {
    scenario: scenarioArg(),
    lambda: number('--lambda <L>', 'alignment strength λ of λ·E[H] + KL (default: the scenario\'s, 5 for refusal, 1 otherwise)', { min: 0 }),
    tolerance: number('--tolerance <X>', 'relative tolerance of the harm horizon (I_t ≤ X·Var H counts as 0)', { min: 0, default: DEFAULT_HORIZON_TOLERANCE }),
    effectiveFraction: number('--effective-fraction <F>', 'share of Var H the effective horizon resolves', { above: 0, max: 1, default: DEFAULT_EFFECTIVE_FRACTION }),
    seed: seed('seed of the random scenario'),
    memoryBudget: memoryBudget(),
    policy: policyFile('compare this policy (a trained one) with the base instead of the Gibbs optimum'),
  },
  helpAfter: `
Examples:
  $ harm-horizon analyze refusal
  $ harm-horizon analyze refusal --lambda 0.5 --json
  $ harm-horizon analyze examples/scenarios/three-token.json --json
  $ harm-horizon analyze random --seed 7
  $ harm-horizon analyze "random(seed=1,V=16,n=2,T=64,D=40)"`,
  async run(p, context): Promise<AnalyzeResult> {
    const budget = budgetOf(p.memoryBudget);
    const compiled = context.scenario(p.scenario, { seed: p.seed, ...budget });
    const lambda = p.lambda ?? compiled.defaults.lambda;
    const engine = context.exactEngine(compiled, budget.memoryBudgetBytes, false, false);
    const signal = context.signal;
    const analysis = await engine.analyzeAsync(lambda, p.tolerance, { signal });
    if (p.policy !== undefined) {
      // The "aligned" columns describe the given policy rather than the Gibbs optimum.
      const policy = context.policy(p.policy, compiled, engine);
      const prefixes = await engine.onHarmfulPrefixesAsync(policy, { signal });
      analysis.alignedExpectedHarm = engine.conditionalHarm(policy)[0];
      analysis.klOnPolicy = engine.klOnPolicy(policy);
      analysis.klTeacherForced = prefixes.klTeacherForced;
      analysis.asrAligned = prefixes.asr;
    }
    return { ...analyzeReport(compiled, analysis, engine.numStates, p.tolerance, p.effectiveFraction), aligned: p.policy ?? `gibbs(λ=${lambda})` };
  },
  render: renderAnalyzeReport,
});
