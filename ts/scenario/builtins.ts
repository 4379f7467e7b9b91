/** The built-in scenarios: refusal, horizon and seeded random ones. */
import { budgetOf, checkBudget, contextKey, requiredContexts, type Dims } from './contexts.js';
import { Checker, didYouMean, setOwn } from './check.js';
import { ScenarioError } from './error.js';
import { SplitMix64, softmax } from './random.js';
import { type RandomScenarioOptions, type Scenario, type ScenarioOptions } from './types.js';
import { parseScenario } from './validate.js';

const BUILTINS = ['refusal', 'horizon', 'random'] as const;

/** Names of the built-in scenarios. */
export function builtinNames(): string[] {
  return [...BUILTINS];
}

/**
 * A built-in scenario by name: "refusal", "horizon" (exactly as in THEORY.md), or "random"
 * (seeded; see `RandomScenarioOptions`). A name of the form "random(seed=3,V=4,n=2,T=8,D=5)"
 * (as produced by the random scenario's own `name`; keys seed, V, n, T, D, sigma, eos) is accepted
 * too; explicit `options` override values given in the name.
 */
export function builtinScenario(name: string, options: RandomScenarioOptions & ScenarioOptions = {}): Scenario {
  const budgetOpts: ScenarioOptions = {
    ...(options.memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes: options.memoryBudgetBytes }),
    ...(options.memoryBudgetName === undefined ? {} : { memoryBudgetName: options.memoryBudgetName }),
    ...(options.samplingOnly === undefined ? {} : { samplingOnly: options.samplingOnly }),
  };
  if (name === 'refusal') return parseScenario(refusalJson(), 'built-in refusal', budgetOpts);
  if (name === 'horizon') return parseScenario(horizonJson(), 'built-in horizon', budgetOpts);
  if (name === 'random') return randomScenario(options);
  const m = /^random\((.*)\)$/.exec(name.trim());
  if (m) return randomScenario({ ...parseRandomName(m[1]!), ...definedOnly(options) });
  throw new ScenarioError('name', `unknown built-in scenario ${JSON.stringify(name)}${didYouMean(name, BUILTINS)}; built-ins: ${BUILTINS.join(', ')}`);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function parseRandomName(args: string): RandomScenarioOptions {
  const out: RandomScenarioOptions = {};
  const keys: Record<string, keyof RandomScenarioOptions> = {
    seed: 'seed',
    V: 'vocab',
    vocab: 'vocab',
    n: 'order',
    order: 'order',
    T: 'length',
    length: 'length',
    D: 'states',
    states: 'states',
    sigma: 'sigma',
    eos: 'endToken',
    endToken: 'endToken',
  };
  for (const part of args.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const [k, v] = part.split('=').map((x) => x.trim());
    const key = k === undefined ? undefined : keys[k];
    if (key === undefined || v === undefined || v === '') {
      throw new ScenarioError('name', `cannot read random scenario parameter ${JSON.stringify(part)}; expected key=value with keys ${Object.keys(keys).join(', ')}`);
    }
    if (key === 'endToken') {
      if (v !== 'true' && v !== 'false') throw new ScenarioError('name', `eos must be true or false, got ${JSON.stringify(v)}`);
      out.endToken = v === 'true';
    } else if (key === 'seed' && /^\d+$/.test(v) && !Number.isSafeInteger(Number(v))) {
      out.seed = BigInt(v);
    } else {
      const x = Number(v);
      if (!Number.isFinite(x)) throw new ScenarioError('name', `parameter ${k} must be a number, got ${JSON.stringify(v)}`);
      out[key] = x as never;
    }
  }
  return out;
}

function refusalJson(): Record<string, unknown> {
  const e = 1e-4;
  const counts = ['count0', 'count1', 'count2', 'count3'];
  const transitions: Record<string, Record<string, string>> = {};
  counts.forEach((c, i) => {
    transitions[c] = { step: i < 3 ? counts[i + 1]! : 'HARMFUL', Sorry: 'REFUSED' };
  });
  return {
    name: 'refusal',
    description:
      'A refusal at the first token: H = 1 iff the response holds at least 4 "step" tokens before its first "Sorry" ' +
      '(THEORY.md, built-in scenario "refusal").',
    tokens: ['Sure', 'Sorry', 'step', 'fine', '<eos>'],
    length: 16,
    endToken: '<eos>',
    contextOrder: 1,
    recoveryTokens: ['Sorry'],
    base: {
      '<bos>': [0.7, 0.15, 0.02, 0.12, 0.01],
      Sure: [e, e, 1 - 4 * e, e, e],
      Sorry: [e, e, e, (1 - 3 * e) / 2, (1 - 3 * e) / 2],
      step: [e, e, 1 - 4 * e, e, e],
      fine: [0.02, 0.03, 0.05, 0.6, 0.3],
    },
    harm: {
      states: [...counts, 'HARMFUL', 'REFUSED'],
      start: 'count0',
      values: { HARMFUL: 1 },
      transitions,
    },
    defaults: { lambda: 5, mu: 10, gamma: 1 },
  };
}

function horizonJson(): Record<string, unknown> {
  const K = 4;
  const states: string[] = [];
  for (let i = 0; i < K; i++) for (let b = 0; b <= Math.min(i, 1); b++) states.push(`i${i}b${b}`);
  states.push('HARM', 'SAFE');
  const transitions: Record<string, Record<string, string>> = {};
  for (let i = 0; i < K; i++) {
    for (let b = 0; b <= Math.min(i, 1); b++) {
      const row: Record<string, string> = {};
      for (const tok of ['a', 'b', 'c']) {
        const nb = b + (tok === 'b' ? 1 : 0);
        row[tok] = nb >= 2 ? 'HARM' : i + 1 === K ? 'SAFE' : `i${i + 1}b${nb}`;
      }
      transitions[`i${i}b${b}`] = row;
    }
  }
  return {
    name: 'horizon',
    description:
      'H = 1 iff at least 2 of the first 4 tokens are "b": harm horizon exactly 4 (THEORY.md, built-in scenario "horizon").',
    tokens: ['a', 'b', 'c'],
    length: 10,
    contextOrder: 1,
    recoveryTokens: [],
    base: {
      '<bos>': [0.5, 0.3, 0.2],
      a: [0.6, 0.3, 0.1],
      b: [0.3, 0.4, 0.3],
      c: [0.2, 0.3, 0.5],
    },
    harm: { states, start: 'i0b0', values: { HARM: 1 }, transitions },
    defaults: { lambda: 1, mu: 10, gamma: 1 },
  };
}

/**
 * The seeded random scenario. Generation, with one SplitMix64 stream seeded with `seed`:
 * 1. base rows, for each context that needs a row in canonical order (by number of tokens in the
 *    context, then lexicographic by token id): V normals z_a (a = 0..V−1), row = softmax(σ·z);
 * 2. transitions, for d = 0..D−1, a = 0..V−1: next state = nextInt(D);
 * 3. harm, for d = 0..D−1: nextInt(2); then if all are 0, state nextInt(D) gets harm 1, and if all
 *    are 1, state nextInt(D) gets harm 0.
 * Tokens "t0".."t{V−1}" (the last is "<eos>" if endToken), states "d0".."d{D−1}", start d0,
 * defaults λ = 1, μ = 10, γ = 1, no recovery tokens.
 */
export function randomScenario(options: RandomScenarioOptions & ScenarioOptions = {}): Scenario {
  const seed = options.seed ?? 1;
  const V = options.vocab ?? 8;
  const n = options.order ?? 1;
  const T = options.length ?? 16;
  const D = options.states ?? 8;
  const sigma = options.sigma ?? 1.5;
  const eos = options.endToken ?? false;
  const bad = (field: string, reason: string): never => {
    throw new ScenarioError(field, reason, { source: 'built-in random' });
  };
  if (typeof seed === 'number' && (!Number.isSafeInteger(seed) || seed < 0)) bad('seed', `must be a safe integer ≥ 0, got ${seed}`);
  if (!Number.isInteger(V) || V < (eos ? 2 : 1)) bad('vocab', `must be an integer ≥ ${eos ? 2 : 1}, got ${V}`);
  if (!Number.isInteger(n) || n < 1) bad('order', `must be an integer ≥ 1, got ${n}`);
  if (!Number.isInteger(T) || T < 1) bad('length', `must be an integer ≥ 1, got ${T}`);
  if (!Number.isInteger(D) || D < 2) bad('states', `must be an integer ≥ 2 (harm values need a 0 and a 1), got ${D}`);
  if (!Number.isFinite(sigma) || sigma < 0) bad('sigma', `must be a finite number ≥ 0, got ${sigma}`);

  const tokens = Array.from({ length: V }, (_, i) => (eos && i === V - 1 ? '<eos>' : `t${i}`));
  const states = Array.from({ length: D }, (_, i) => `d${i}`);
  const dims: Dims = { V, end: eos ? V - 1 : -1, n, T, D };
  const budget = budgetOf(options);
  checkBudget(dims, budget, new Checker('built-in random'));

  const rng = new SplitMix64(seed);
  const base: Record<string, number[]> = {};
  for (const ids of requiredContexts(dims)) {
    const logits: number[] = [];
    for (let a = 0; a < V; a++) logits.push(sigma * rng.nextNormal());
    setOwn(base, contextKey(ids, tokens), softmax(logits));
  }
  const transitions: Record<string, Record<string, string>> = {};
  for (let d = 0; d < D; d++) {
    const row: Record<string, string> = {};
    for (let a = 0; a < V; a++) row[tokens[a]!] = states[rng.nextInt(D)]!;
    transitions[states[d]!] = row;
  }
  const h: number[] = [];
  for (let d = 0; d < D; d++) h.push(rng.nextInt(2));
  if (!h.includes(1)) h[rng.nextInt(D)] = 1;
  else if (!h.includes(0)) h[rng.nextInt(D)] = 0;
  const values: Record<string, number> = {};
  h.forEach((x, d) => {
    if (x !== 0) values[states[d]!] = x;
  });

  const extra = `${sigma !== 1.5 ? `,sigma=${sigma}` : ''}${eos ? ',eos=true' : ''}`;
  const name = `random(seed=${seed},V=${V},n=${n},T=${T},D=${D}${extra})`;
  const json = {
    name,
    description:
      `Seeded random scenario: order-${n} base model over ${V} tokens (softmax of N(0, ${sigma}²) logits per context), ` +
      `random harm automaton with ${D} states and harm values in {0, 1}.`,
    tokens,
    length: T,
    ...(eos ? { endToken: '<eos>' } : {}),
    contextOrder: n,
    recoveryTokens: [],
    base,
    harm: { states, start: 'd0', values, transitions },
    defaults: { lambda: 1, mu: 10, gamma: 1 },
  };
  return parseScenario(json, 'built-in random', { memoryBudgetBytes: budget.bytes, memoryBudgetName: budget.name, samplingOnly: budget.samplingOnly });
}

