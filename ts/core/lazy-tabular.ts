/**
 * The lazily keyed tabular policy: softmax logits per (position, context, automaton state), stored
 * only for the keys a sampled batch has visited, the base row everywhere else. It is the tabular
 * policy without the exact state index, so it trains (reinforce, ppo, reinforce-innovation with h
 * from rollouts) on scenarios of any size, with memory proportional to the keys visited and checked
 * against the memory budget (HH_OUT_OF_MEMORY beyond it). As a `Policy` it is its stored rows
 * (`{ kind: 'lazy-tabular', rows }`), which estimate, sample and attack take like any other.
 */
import type { CompiledScenario } from '../scenario/compiled.js';
import { withSignal, type AbortOptions } from './abort.js';
import { callNative, HarmHorizonError } from './errors.js';
import type { MonteCarlo } from './montecarlo.js';
import { native, type RlOptions, type RlStepOutput } from './native.js';
import type { Optimizer } from './optimizer.js';
import { nativeScenario, type Policy } from './policy.js';

export class LazyTabular {
  readonly #inner: InstanceType<typeof native.LazyTabular>;

  /**
   * The base policy over `scenario` (no rows yet), or `from`'s rows. `memoryBudget`: bytes the
   * rows may take (default 4 GiB).
   */
  constructor(scenario: CompiledScenario, options: { from?: Policy; memoryBudget?: number } = {}) {
    const from = options.from;
    if (from !== undefined && from.kind !== 'lazy-tabular') throw new HarmHorizonError('HH_INVALID_ARGUMENT', `a lazy tabular policy starts from the base or from stored rows, not from a ${from.kind} policy`);
    this.#inner = callNative(() => new native.LazyTabular({ ...nativeScenario(scenario), memoryBudget: options.memoryBudget }, from?.rows));
  }

  /** Number of rows stored: the (position, context, automaton state) keys visited so far. */
  get numRows(): number {
    return this.#inner.numRows;
  }

  /** The policy as its stored rows (a copy, in key order). */
  policy(): Policy & { kind: 'lazy-tabular' } {
    return { kind: 'lazy-tabular', rows: callNative(() => this.#inner.rows()) };
  }

  /**
   * One sampled training step on λ·E[H] + KL: samples a batch, stores the rows it visits and
   * updates the stored rows with `optimizer` (Adam or SGD made for 0 parameters; its state grows
   * with the rows). reinforce-innovation reads h_t from `mc`'s exact model when it has one, else
   * from rollouts (`options.harm`, `options.rollouts`), their buffers checked against
   * `options.memoryBudget` or this policy's budget.
   */
  rlStep(mc: MonteCarlo, optimizer: Optimizer, options: RlOptions): RlStepOutput {
    return callNative(() => this.#inner.rlStep(mc.native, optimizer.native, options));
  }

  /**
   * `rlStep` off the main thread: it steps copies of the rows and the optimizer's state and writes
   * them back when the promise resolves (the same numbers as `rlStep`). `signal` aborts it
   * (HH_ABORTED), leaving both unchanged.
   */
  async rlStepAsync(mc: MonteCarlo, optimizer: Optimizer, options: RlOptions, call: AbortOptions = {}): Promise<RlStepOutput> {
    return withSignal(call.signal, (flag) => this.#inner.rlStepAsync(mc.native, optimizer.native, options, flag));
  }
}
