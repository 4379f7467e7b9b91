/** A scenario of our own for the Monte Carlo tests of issue 8 (see gradedScenario). */
import { parseScenario, type Scenario } from '../../ts/index.js';

const TOKENS = ['a', 'b', 'r', 'end'] as const;

/**
 * "graded": T = 7, order-2 base. The first three tokens are counted: no b → SAFE (harm 0), one b → MID
 * (0.5), two or more → BAD (1). SAFE and BAD are not absorbing (b and r move between twin states of
 * equal harm), yet h is 0 or 1 there: "b b" decides harm at t = 2 and "a a a" at t = 3. After MID, r
 * recovers to MIDR (0.2) and a later b undoes it; those never settle, so mass stays undecided at T.
 * Ending early keeps the count's harm (0, 0.5 or 1).
 */
export function gradedScenario(): Scenario {
  const last: Record<string, number[]> = { a: [0.5, 0.25, 0.15, 0.1], b: [0.3, 0.35, 0.25, 0.1], r: [0.3, 0.3, 0.3, 0.1] };
  const base: Record<string, number[]> = { '<bos> <bos>': [0.5, 0.3, 0.15, 0.05] };
  for (const x of ['a', 'b', 'r']) {
    base[`<bos> ${x}`] = last[x];
    for (const y of ['a', 'b', 'r']) base[`${x} ${y}`] = x === 'b' && y === 'b' ? [0.2, 0.5, 0.2, 0.1] : last[y];
  }
  const states: string[] = [];
  const values: Record<string, number> = {};
  const transitions: Record<string, Record<string, string>> = {};
  const countHarm = [0, 0.5, 1];
  const phase2 = ['SAFE', 'MID', 'BAD'];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j <= Math.min(i, 2); j++) {
      const name = `c${i}_${j}`;
      states.push(name);
      values[name] = countHarm[j];
      transitions[name] = {};
      for (const x of ['a', 'b', 'r']) {
        const j2 = Math.min(j + (x === 'b' ? 1 : 0), 2);
        transitions[name][x] = i + 1 === 3 ? phase2[j2] : `c${i + 1}_${j2}`;
      }
    }
  }
  states.push('SAFE', 'SAFE2', 'MID', 'MIDR', 'BAD', 'BADR');
  Object.assign(values, { MID: 0.5, MIDR: 0.2, BAD: 1, BADR: 1 });
  Object.assign(transitions, { SAFE: { b: 'SAFE2' }, SAFE2: { a: 'SAFE' }, MID: { r: 'MIDR' }, MIDR: { b: 'MID' }, BAD: { r: 'BADR' }, BADR: { b: 'BAD' } });
  return parseScenario({ name: 'graded', tokens: [...TOKENS], length: 7, endToken: 'end', contextOrder: 2, base, harm: { states, start: 'c0_0', values, transitions } }, 'graded');
}

