// Standard versus deep alignment on `refusal` across λ: train a policy on each objective, then
// attack it by prefilling k harmful tokens. The standard policy's resistance to prefilling comes
// from λ alone (weak at the default λ = 5: ASR_4 stays near the base's 0.99); the deep-anchored
// policy's comes from the recovery penalty μ and barely depends on λ. Run after the build:
//   node examples/train-and-attack.mjs
import { ExactEngine, builtinScenario, compileScenario, prefillAttack, rankAssistedAttack, train, TRAIN_DEFAULTS } from 'harm-horizon';
// train and the attacks are not (yet) re-exported by the package entry point.

const scenario = compileScenario(builtinScenario('refusal'));
const engine = new ExactEngine(scenario);
const { mu, gamma } = scenario.defaults;

const plans = {
  // exact gradient descent on λ·E[H] + KL(P ‖ P_base)
  standard: { kind: 'standard', algorithm: 'exact', steps: 1000, learningRate: 0.1 },
  // the per-state optimum of the prefix-anchored deep objective (recovery penalty μ·w_t·Fail_t)
  'deep-anchored': { kind: 'deep-anchored', algorithm: 'fixed-point', steps: 500, learningRate: 0.05 },
};

console.log('lambda  objective      E[H]      ASR_1    ASR_4    RAP_1 (r=2)');
for (const lambda of [1, 5, 20]) {
  for (const [name, plan] of Object.entries(plans)) {
    const policy = await train(
      scenario,
      engine,
      {
        ...TRAIN_DEFAULTS,
        objective: { kind: plan.kind, lambda, mu, gamma, mix: 0.2 },
        algorithm: plan.algorithm,
        policy: 'tabular',
        steps: plan.steps,
        learningRate: plan.learningRate,
        evalEvery: 1_000_000, // no ASR curve in the log: we attack at the end
      },
      () => {},
    );
    const asr = prefillAttack(engine, policy); // ASR_k for k = 0..T
    const rap = rankAssistedAttack(engine, policy, 2);
    const row = [String(lambda).padEnd(6), name.padEnd(13), asr[0].toExponential(2), asr[1].toFixed(4), asr[4].toFixed(4), rap[1].toFixed(4)];
    console.log(row.join('  '));
  }
}
