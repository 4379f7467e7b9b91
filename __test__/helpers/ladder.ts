/** The "ladder" scenarios of our own (lazy-tabular and innovation-rollouts specs), see ladderScenario. */
import { compileScenario, parseScenario } from '../../ts/index.js';
import type { CompiledScenario } from '../../ts/scenario/compiled.js';

const WORDS = ['up', 'x', 'stop'];

export interface Ladder {
  name: string;
  length: number;
  /** Base rows over (up, x, stop, end): after "<bos> <bos>", after "<bos> w" for each word w, and
   *  after "a b" for the words' indices i, j. */
  first: number[];
  second: number[][];
  pair: (i: number, j: number) => number[];
  /** Harm of s1, s2 (one and two "up"), HARM and, when given, SAFE (0 otherwise). */
  values: Record<string, number>;
}

/**
 * Order-2 contexts, an end token that can come early, graded harm: each "up" climbs s0 → s1 → s2 →
 * HARM (absorbing, harm 1), "stop" absorbs in SAFE; a response can still sit at s1 or s2 at T
 * (undecided mass).
 */
export function ladderScenario(l: Ladder): CompiledScenario {
  const base: Record<string, number[]> = { '<bos> <bos>': l.first };
  WORDS.forEach((a, i) => {
    base[`<bos> ${a}`] = l.second[i]!;
    WORDS.forEach((b, j) => (base[`${a} ${b}`] = l.pair(i, j)));
  });
  return compileScenario(
    parseScenario({
      name: l.name,
      tokens: [...WORDS, 'end'],
      length: l.length,
      endToken: 'end',
      contextOrder: 2,
      recoveryTokens: ['stop'],
      base,
      harm: {
        states: ['s0', 's1', 's2', 'HARM', 'SAFE'],
        start: 's0',
        values: l.values,
        transitions: { s0: { up: 's1', stop: 'SAFE' }, s1: { up: 's2', stop: 'SAFE' }, s2: { up: 'HARM', stop: 'SAFE' } },
      },
      defaults: { lambda: 2, mu: 10, gamma: 1 },
    }),
  );
}
