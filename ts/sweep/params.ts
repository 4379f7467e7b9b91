/** The commands a sweep runs and the parameters each accepts: type, bounds and help text. */
import { DEFAULT_HORIZON_TOLERANCE } from '../core/exact.js';
import { DEFAULT_TRANSFORMER } from '../core/policy.js';
import { DEFAULT_RANK } from '../workflows/attack.js';
import { DEFAULT_MIX, TRAIN_DEFAULTS } from '../workflows/train.js';

export const SWEEP_COMMANDS = ['analyze', 'estimate', 'train', 'attack'] as const;
export type SweepCommand = (typeof SWEEP_COMMANDS)[number];

type Kind =
  | { type: 'number'; min?: number; max?: number; above?: number; text: string }
  | { type: 'integer'; min: number }
  | { type: 'enum'; choices: readonly string[] }
  | { type: 'file' }
  | { type: 'boolean' }
  | { type: 'widths' };

export interface ParamSpec {
  kind: Kind;
  doc: string;
  /** Only for the `random` scenario. */
  random?: boolean;
}

const nonNegative = (doc: string): ParamSpec => ({ kind: { type: 'number', min: 0, text: 'a finite number ≥ 0' }, doc });
const wholeAtLeast = (min: number, doc: string): ParamSpec => ({ kind: { type: 'integer', min }, doc });
const oneOf = (choices: readonly string[], doc: string): ParamSpec => ({ kind: { type: 'enum', choices }, doc });

/** Parameters every command takes: scenario-level ones and the seed. */
export const COMMON: Record<string, ParamSpec> = {
  seed: wholeAtLeast(0, 'the cell\'s seed (samples, mlp initialisation); default: derived from the sweep seed and the cell id. For analyze, a replicate index'),
  replicate: wholeAtLeast(0, 'a replicate index: tells otherwise identical cells apart (and so gives them different derived seeds)'),
  length: wholeAtLeast(1, 'response length T of the scenario (default: the scenario\'s)'),
  scenarioSeed: { ...wholeAtLeast(0, 'seed of the random scenario (default 1)'), random: true },
  vocab: { ...wholeAtLeast(1, 'vocabulary size V of the random scenario (default 8)'), random: true },
  order: { ...wholeAtLeast(1, 'context order n of the random scenario (default 1)'), random: true },
  states: { ...wholeAtLeast(2, 'automaton states D of the random scenario (default 8)'), random: true },
  sigma: { ...nonNegative('standard deviation of the random scenario\'s logits (default 1.5)'), random: true },
  endToken: { kind: { type: 'boolean' }, doc: 'whether the random scenario\'s last token is <eos> (default false)', random: true },
};

const LAMBDA = nonNegative('alignment strength λ (default: the scenario\'s)');

/** The parameters of each command (besides the common ones). */
export const SWEEP_PARAMETERS: Record<SweepCommand, Record<string, ParamSpec>> = {
  analyze: {
    lambda: LAMBDA,
    tolerance: nonNegative(`relative tolerance of the harm horizon (default ${DEFAULT_HORIZON_TOLERANCE})`),
  },
  estimate: {
    samples: wholeAtLeast(1, 'number of sampled responses (required)'),
    rollouts: wholeAtLeast(1, 'nested rollouts per prefix (default: exact h_t when the exact engine applies)'),
    estimator: oneOf(['reinforce', 'leave-one-out', 'innovation'], 'gradient estimator (default innovation)'),
    policy: { kind: { type: 'file' }, doc: 'a policy file (default: the base), relative to the sweep file' },
  },
  train: {
    objective: oneOf(['standard', 'deep', 'deep-anchored', 'augment'], 'objective (default standard)'),
    algorithm: oneOf(['exact', 'fixed-point', 'reinforce', 'reinforce-innovation', 'ppo'], 'algorithm (default exact)'),
    policy: oneOf(['tabular', 'mlp', 'transformer'], 'policy family (default tabular)'),
    lambda: LAMBDA,
    mu: nonNegative('μ of the recovery penalty (default: the scenario\'s)'),
    gamma: { kind: { type: 'number', above: 0, max: 1, text: 'a number in (0, 1]' }, doc: 'γ of the weights w_t = γ^(t−1) (default: the scenario\'s)' },
    mix: nonNegative(`α, the weight of the augment objective's recovery term (default ${DEFAULT_MIX})`),
    steps: wholeAtLeast(1, 'optimisation steps (default 1000)'),
    lr: nonNegative(`learning rate (default ${TRAIN_DEFAULTS.learningRate})`),
    optimizer: oneOf(['adam', 'sgd'], 'optimiser (default adam)'),
    schedule: oneOf(['cosine', 'constant'], 'learning-rate schedule (default cosine)'),
    samples: wholeAtLeast(1, `responses per batch, sampled algorithms (default ${TRAIN_DEFAULTS.samples})`),
    clip: nonNegative(`PPO clip ε (default ${TRAIN_DEFAULTS.clip})`),
    epochs: wholeAtLeast(1, `PPO epochs per batch (default ${TRAIN_DEFAULTS.epochs})`),
    mlpHidden: { kind: { type: 'widths' }, doc: 'mlp hidden widths: 32 or [32, 16] (default [32])' },
    mlpActivation: oneOf(['tanh', 'relu'], 'mlp activation (default tanh)'),
    mlpOrder: wholeAtLeast(1, 'tokens the mlp reads (default: the scenario\'s context order)'),
    layers: wholeAtLeast(1, `transformer layers (default ${DEFAULT_TRANSFORMER.layers})`),
    width: wholeAtLeast(1, `transformer width (default ${DEFAULT_TRANSFORMER.width})`),
    heads: wholeAtLeast(1, `transformer attention heads, dividing the width (default ${DEFAULT_TRANSFORMER.heads})`),
    mlpWidth: wholeAtLeast(1, `width of the transformer's MLP blocks (default ${DEFAULT_TRANSFORMER.mlpWidth})`),
  },
  attack: {
    rank: wholeAtLeast(1, `rank-assisted prefilling: the policy's top R tokens (default ${DEFAULT_RANK}, capped at V)`),
    policy: { kind: { type: 'file' }, doc: 'the policy file to attack (default: the base), relative to the sweep file' },
    lambda: nonNegative('attack the Gibbs optimum at this λ instead of the base (not with policy)'),
    samples: wholeAtLeast(1, 'responses per k when prefilling has to be sampled (default 2000)'),
    finetuneSteps: wholeAtLeast(0, 'also run the fine-tuning attack for this many steps (default 0)'),
    finetuneLr: nonNegative('fine-tuning learning rate (default 1)'),
    finetuneObjective: oneOf(['sft', 'constrained'], 'fine-tuning objective (default sft)'),
  },
};

/** Every parameter a command accepts, with its spec. */
export function commandParameters(command: SweepCommand): Record<string, ParamSpec> {
  return { ...SWEEP_PARAMETERS[command], ...COMMON };
}

