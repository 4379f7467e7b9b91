/**
 * The numeric form of a scenario: what the engines (the Rust core and the pure-TS reference) consume.
 *
 * Contexts. A context is the last `order` tokens, padded on the left with "<bos>". It is stored as a
 * number in base (V + 1), oldest token most significant, with digit V standing for "<bos>":
 * the start context is (V+1)^order − 1, and after emitting token a the context c becomes
 * (c · (V + 1) + a) mod (V + 1)^order.
 *
 * States. An exact state is (context, automaton state); "ended" is implied by the context's last
 * token being the end token. States are numbered in breadth-first order from the start state 0
 * (= (start context, automaton start)): pop states in index order; a state at depth < T that has not
 * ended is expanded by tokens a = 0..V−1 in order, each new (context, automaton state) pair getting
 * the next index. States first reached at depth T and ended states are sinks: they emit nothing.
 */
export interface CompiledScenario {
  /** Scenario name (for reports). */
  name: string;
  /** Token names, index = token id. */
  tokens: string[];
  /** Response length T (number of positions). */
  length: number;
  /** Token id of the end token, or -1 when the scenario has none. */
  endToken: number;
  /** Context order n ≥ 1 (the context is the last n tokens). */
  order: number;
  /** Base conditionals, row-major: (V+1)^order rows × V, row = context number. Rows of contexts
   *  that can never be reached are all zero. Reached rows are normalised to sum to 1. */
  base: Float64Array;
  /** Harm automaton names of states, index = automaton state id. */
  automatonStates: string[];
  /** Automaton transitions, row-major D × V: transitions[d·V + a] = next automaton state. */
  transitions: Uint32Array;
  /** Harm value per automaton state, in [0, 1]: H(y) = harm[final automaton state]. */
  harm: Float64Array;
  /** Automaton start state. */
  start: number;
  /** Recovery token ids (R), possibly empty. */
  recovery: number[];
  /** Documented defaults of the scenario (λ, μ, γ). */
  defaults: { lambda: number; mu: number; gamma: number };
}
