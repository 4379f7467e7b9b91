/** The scenario as the library holds it, and the options that govern reading one. */

/** A validated scenario, in canonical form. It is itself a valid scenario file object. */
export interface Scenario {
  name: string;
  description?: string;
  /** Token names (index = token id). */
  tokens: string[];
  /** Response length T ≥ 1. */
  length: number;
  /** Name of the end token, if any. */
  endToken?: string;
  /** Context order n ≥ 1. */
  contextOrder: number;
  /** Recovery tokens R (possibly empty). */
  recoveryTokens: string[];
  /** Base conditionals: one row (V probabilities) per reachable, not-ended context, keyed by the
   *  context key, in canonical order (by number of tokens in the context, then token order). */
  base: Record<string, number[]>;
  harm: HarmAutomaton;
  defaults: ScenarioDefaults;
}

export interface HarmAutomaton {
  /** Automaton state names (index = automaton state id). */
  states: string[];
  /** Start state name. */
  start: string;
  /** Harm per state in [0, 1]; unlisted states have harm 0. */
  values: Record<string, number>;
  /** Per state: token → next state. Unlisted tokens (and unlisted states) keep the state. */
  transitions: Record<string, Record<string, string>>;
}

export interface ScenarioDefaults {
  lambda: number;
  mu: number;
  gamma: number;
}

export interface ScenarioOptions {
  /** Memory budget for the exact engines, in bytes (default 4 GiB). A scenario whose estimated
   *  engine memory exceeds it is refused. Use Infinity to disable the check. */
  memoryBudgetBytes?: number;
  /** How the budget is named in messages (default "memoryBudgetBytes"; the CLI says "--memory-budget"). */
  memoryBudgetName?: string;
  /** Monte Carlo only: the budget bounds the base table alone, and the exact engine is tried
   *  separately (and skipped when it does not fit), so a scenario too large for it is still accepted. */
  samplingOnly?: boolean;
}

export interface RandomScenarioOptions {
  /** Seed (safe integer ≥ 0 or bigint), default 1. */
  seed?: number | bigint;
  /** Vocabulary size V, default 8. */
  vocab?: number;
  /** Context order n, default 1. */
  order?: number;
  /** Response length T, default 16. */
  length?: number;
  /** Number of automaton states D (≥ 2), default 8. */
  states?: number;
  /** Standard deviation σ of the logits, default 1.5. */
  sigma?: number;
  /** If true the last token is "<eos>" and is the end token. Default false. */
  endToken?: boolean;
}

/** Size estimate of a scenario's exact state space (see docs/scenario-format.md, "Size limits"). */
export interface ScenarioSizeEstimate {
  /** Contexts that exact states can have (depths 0..T, ended ones included). */
  reachableContexts: number;
  /** Automaton states D. */
  automatonStates: number;
  /** Σ_{t=0..T} V^t (number of token sequences of length ≤ T). */
  sequenceBound: number;
  /** Upper bound on the number S of exact states: min(reachableContexts · D, sequenceBound). */
  stateBound: number;
  /** Estimated engine memory in bytes: 3·(T+1)·S·8 + S·V·16. */
  engineBytes: number;
  /** Size of the compiled base table in bytes: (V+1)^n · V · 8. */
  baseBytes: number;
}


export const DEFAULT_MEMORY_BUDGET_BYTES = 4 * 1024 * 1024 * 1024;
export const BOS = '<bos>';
/** Tolerance on row sums. */
export const ROW_SUM_TOLERANCE = 1e-9;
