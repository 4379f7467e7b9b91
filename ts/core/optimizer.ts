/** A first-order optimiser with its state, in the core: Adam, AdamW or plain gradient descent. */
import { callNative } from './errors.js';
import { native, type AdamWOptions, type OptimizerName } from './native.js';

export type { AdamWOptions, OptimizerName };

export class Optimizer {
  readonly #inner: InstanceType<typeof native.Optimizer>;

  /** `size`: number of parameters; `options`: AdamW's β1 and weight decay (ignored by the others). */
  constructor(kind: OptimizerName, size: number, learningRate: number, options?: AdamWOptions) {
    this.#inner = callNative(() => new native.Optimizer(kind, size, learningRate, options));
  }

  get learningRate(): number {
    return this.#inner.learningRate;
  }

  /** Changes the learning rate (for schedules). */
  set learningRate(value: number) {
    this.#inner.learningRate = value;
  }

  /** One descent step: updates `params` in place along −gradient. */
  step(params: Float64Array, gradient: Float64Array): void {
    callNative(() => this.#inner.step(params, gradient));
  }

  /** The native optimiser, for the sampled training step. @internal */
  get native(): InstanceType<typeof native.Optimizer> {
    return this.#inner;
  }
}
