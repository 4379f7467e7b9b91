/**
 * Seeded pseudo-random numbers for scenario generation (the `random` built-in scenario).
 *
 * Generator: SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
 * OOPSLA 2014; the constants are those of Vigna's reference `splitmix64.c`). It is a counter-based
 * generator: the state is a 64-bit counter advanced by the golden-ratio increment, and each output
 * is a fixed bijective mix of the counter. Exactly, with all arithmetic modulo 2^64:
 *
 *     state  ← state + 0x9E3779B97F4A7C15
 *     z      ← state
 *     z      ← (z XOR (z >> 30)) · 0xBF58476D1CE4E5B9
 *     z      ← (z XOR (z >> 27)) · 0x94D049BB133111EB
 *     output ← z XOR (z >> 31)
 *
 * The initial state is the seed (an integer in [0, 2^64); numbers must be safe integers ≥ 0).
 * Seed 0 gives the outputs 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, …
 *
 * Derived draws (each consumes a fixed number of 64-bit outputs, so a sequence of calls is
 * reproducible bit for bit):
 * - `nextFloat()`: one output x; returns floor(x / 2^11) / 2^53, a multiple of 2^-53 in [0, 1).
 * - `nextInt(n)`: one `nextFloat()` u; returns floor(u · n) (bias below n / 2^53, irrelevant here).
 * - `nextNormal()`: Box–Muller, two `nextFloat()`s u1, u2 (in that order); returns
 *   sqrt(−2 ln(1 − u1)) · cos(2π u2). The sine half is discarded (no hidden cache).
 *
 * The 64-bit arithmetic is done on two 32-bit halves with exact integer operations (no BigInt on the
 * hot path), so outputs are identical on every platform. `nextNormal` uses Math.log/Math.cos/Math.sqrt,
 * which are deterministic for a given Node.js (V8) version.
 */

const TWO32 = 4294967296;
const TWO_NEG53 = 1 / 9007199254740992;

/** High and low 32 bits of the 64-bit product of two unsigned 32-bit integers. */
function umul32(a: number, b: number): [number, number] {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const lo = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
  const hi = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) >>> 0;
  return [hi, lo];
}

/** SplitMix64: a small, fully specified, seedable 64-bit generator (see the module comment). */
export class SplitMix64 {
  private hi: number;
  private lo: number;

  constructor(seed: number | bigint = 0) {
    let s: bigint;
    if (typeof seed === 'bigint') {
      s = BigInt.asUintN(64, seed);
    } else {
      if (!Number.isSafeInteger(seed) || seed < 0) {
        throw new RangeError(`seed must be a safe integer ≥ 0 (or a bigint), got ${seed}`);
      }
      s = BigInt(seed);
    }
    this.hi = Number(s >> 32n);
    this.lo = Number(s & 0xffffffffn);
  }

  /** Next output as [high 32 bits, low 32 bits] (both unsigned). */
  nextPair(): [number, number] {
    // state += 0x9E3779B97F4A7C15
    const lo0 = this.lo + 0x7f4a7c15;
    const carry = lo0 >= TWO32 ? 1 : 0;
    this.lo = lo0 >>> 0;
    this.hi = (this.hi + 0x9e3779b9 + carry) >>> 0;
    let hi = this.hi;
    let lo = this.lo;
    // z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0;
    hi = (hi ^ (hi >>> 30)) >>> 0;
    [hi, lo] = mul64(hi, lo, 0xbf58476d, 0x1ce4e5b9);
    // z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
    hi = (hi ^ (hi >>> 27)) >>> 0;
    [hi, lo] = mul64(hi, lo, 0x94d049bb, 0x133111eb);
    // z ^ (z >> 31)
    lo = (lo ^ ((lo >>> 31) | (hi << 1))) >>> 0;
    hi = (hi ^ (hi >>> 31)) >>> 0;
    return [hi, lo];
  }

  /** Next output as an unsigned 64-bit bigint. */
  nextUint64(): bigint {
    const [hi, lo] = this.nextPair();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Uniform in [0, 1), a multiple of 2^-53 (the top 53 bits of one output). */
  nextFloat(): number {
    const [hi, lo] = this.nextPair();
    return (hi * 2097152 + (lo >>> 11)) * TWO_NEG53;
  }

  /** Integer in [0, n): floor(nextFloat() · n). n must be a positive safe integer. */
  nextInt(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`nextInt: n must be a positive integer, got ${n}`);
    return Math.floor(this.nextFloat() * n);
  }

  /** Standard normal N(0, 1) by Box–Muller (consumes exactly two outputs). */
  nextNormal(): number {
    const u1 = this.nextFloat();
    const u2 = this.nextFloat();
    return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
  }
}

/** Low 64 bits of the product of two 64-bit numbers given as 32-bit halves. */
function mul64(ah: number, al: number, bh: number, bl: number): [number, number] {
  const [h, l] = umul32(al, bl);
  const hi = (h + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
  return [hi, l];
}

/** Reference SplitMix64 over BigInt (slow; used to cross-check the 32-bit implementation). */
export function splitMix64Reference(seed: bigint, count: number): bigint[] {
  const M = (1n << 64n) - 1n;
  let state = BigInt.asUintN(64, seed);
  const out: bigint[] = [];
  for (let i = 0; i < count; i++) {
    state = (state + 0x9e3779b97f4a7c15n) & M;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
    out.push(z ^ (z >> 31n));
  }
  return out;
}

/** Numerically stable softmax: exp(x_i − max) / Σ_j exp(x_j − max). */
export function softmax(logits: readonly number[]): number[] {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  const e = logits.map((x) => Math.exp(x - max));
  let sum = 0;
  for (const x of e) sum += x;
  return e.map((x) => x / sum);
}
