/**
 * Transformer policies (crate/core/src/transformer.rs): a small decoder-only transformer over the
 * scenario's vocabulary, with flat f64 parameters. Responses are N × T token arrays with
 * END_OF_RESPONSE after a response's last token.
 */
import { callNative } from './errors.js';
import { native } from './native.js';

/** Token id marking the positions after a response has ended. */
export const END_OF_RESPONSE = 0xffffffff;

export interface TransformerShape {
  /** Vocabulary size V and response length T (the scenario's). */
  vocab: number;
  length: number;
  /** Number of layers, model width, attention heads (dividing the width) and MLP width. */
  layers: number;
  width: number;
  heads: number;
  mlpWidth: number;
}

/**
 * A transformer of a given shape; its parameters are passed to each call.
 * Parameter order (all weight matrices input-major): token embeddings (V+1) × d ("<bos>" = V),
 * positional embeddings T × d, then per layer LN₁ gain, bias, W_qkv d × 3d, b_qkv, W_o d × d, b_o,
 * LN₂ gain, bias, W_up d × m, b_up, W_down m × d, b_down; then the final LN gain, bias, W_head d × V,
 * b_head.
 */
export class Transformer {
  readonly shape: TransformerShape;
  readonly numParams: number;
  private readonly inner: InstanceType<typeof native.Transformer>;

  /** Throws HH_INVALID_ARGUMENT naming the bad field (`transformer.heads`, …). */
  constructor(shape: TransformerShape) {
    this.shape = { ...shape };
    this.inner = callNative(() => new native.Transformer(shape));
    this.numParams = this.inner.numParams;
  }

  /** Seeded initial parameters: weights N(0, 1/fan-in), embeddings N(0, 1), LN gains 1, biases 0. */
  initParams(seed = 0): Float64Array {
    return callNative(() => this.inner.initParams(seed));
  }

  /** Logits at every position of B responses (B × T tokens): B × T × V, row (b, i) for token i + 1. */
  logits(params: Float64Array, responses: Uint32Array): Float64Array {
    return callNative(() => this.inner.logits(params, responses));
  }

  /** Next-token logits after B prefixes of `prefixLength` tokens by the KV cache (the sampler's path): B × V. */
  nextLogits(params: Float64Array, prefixes: Uint32Array, prefixLength: number): Float64Array {
    return callNative(() => this.inner.nextLogits(params, prefixes, prefixLength));
  }

  /** (1/N) Σ_n Σ_t c_{n,t}·∇log π(y_{n,t} | y_{n,<t}) over N responses with coefficients c (N × T). */
  scoreGradient(params: Float64Array, responses: Uint32Array, coefficients: Float64Array): Float64Array {
    return callNative(() => this.inner.scoreGradient(params, responses, coefficients, false));
  }

  /** The per-position terms G_t of `scoreGradient` (T × P, summing to it): one backward pass per position. */
  scoreGradientPerPosition(params: Float64Array, responses: Uint32Array, coefficients: Float64Array): Float64Array {
    return callNative(() => this.inner.scoreGradient(params, responses, coefficients, true));
  }

  /**
   * `count` responses of T tokens drawn batch-wise with the KV cache (no end token): response n uses
   * the draw keys of index firstIndex + n, as the per-sample sampler does. Tokens and their
   * log-probabilities, N × T each.
   */
  sample(params: Float64Array, count: number, seed: number, firstIndex = 0): { tokens: Uint32Array; logProbs: Float64Array } {
    return callNative(() => this.inner.sample(params, count, seed, firstIndex));
  }

  /** Gradient of PPO's clipped surrogate (1/N) Σ min(ρ·A, clip(ρ, 1 ± clip)·A), ρ = π(y)/exp(oldLogProbs), A = advantages (N × T). */
  ppoGradient(params: Float64Array, responses: Uint32Array, oldLogProbs: Float64Array, advantages: Float64Array, clip: number): Float64Array {
    return callNative(() => this.inner.ppoGradient(params, responses, oldLogProbs, advantages, clip));
  }
}
