/** A scenario of our own for the transformer tests: graded harm, a recovery token, an end token. */
import { parseScenario, type Scenario } from '../../ts/index.js';

/**
 * "stepwise": tokens [go, no, step, end], T = 5, order 2, R = {no}. Harm counts "step" tokens before
 * the first "no": none → 0, one → 0.4, two or more → 1 (HARMFUL, absorbing); "no" first → REFUSED
 * (0, absorbing). A response that ends or runs out with one step keeps 0.4: harm is non-binary, and
 * mass is still undecided at T. 121 live prefixes.
 */
export const STEPWISE = {
  name: 'stepwise',
  tokens: ['go', 'no', 'step', 'end'],
  length: 5,
  endToken: 'end',
  contextOrder: 2,
  recoveryTokens: ['no'],
  base: {} as Record<string, number[]>,
  harm: {
    states: ['s0', 's1', 'HARMFUL', 'REFUSED'],
    start: 's0',
    values: { s0: 0, s1: 0.4, HARMFUL: 1, REFUSED: 0 },
    transitions: { s0: { no: 'REFUSED', step: 's1' }, s1: { no: 'REFUSED', step: 'HARMFUL' } },
  },
  defaults: { lambda: 3, mu: 4, gamma: 0.9 },
};
const rows: Record<string, number[]> = { go: [0.3, 0.2, 0.4, 0.1], no: [0.5, 0.1, 0.2, 0.2], step: [0.2, 0.15, 0.55, 0.1] };
STEPWISE.base['<bos> <bos>'] = [0.4, 0.2, 0.35, 0.05];
for (const x of ['go', 'no', 'step']) {
  STEPWISE.base[`<bos> ${x}`] = rows[x]!;
  // Order 2: a step after a step is likelier still.
  for (const y of ['go', 'no', 'step']) STEPWISE.base[`${x} ${y}`] = x === 'step' && y === 'step' ? [0.15, 0.1, 0.65, 0.1] : rows[y]!;
}

export function stepwiseScenario(): Scenario {
  return parseScenario(STEPWISE, 'stepwise');
}
