/**
 * Pure-TypeScript reference of the Rust core's counter-based random numbers (crate/core/src/rng.rs):
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the 53-bit
 * uniform built from two words, and the inverse-CDF index draw. Draws are identical to the Rust ones.
 *
 * The 32×32 → 64-bit products of the rounds are formed exactly from 16-bit halves (every partial
 * product and partial sum stays below 2^53), so the hot path needs no BigInt.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const TWO_32 = 4294967296;

/** Low 32 bits of a·b (a, b unsigned 32-bit). */
function mulLo(a: number, b: number): number {
  return Math.imul(a, b) >>> 0;
}

/** High 32 bits of a·b (a, b unsigned 32-bit), exactly. */
function mulHi(a: number, b: number): number {
  const aH = a >>> 16;
  const aL = a & 0xffff;
  const bH = b >>> 16;
  const bL = b & 0xffff;
  const ll = aL * bL; // < 2^32
  const lh = aL * bH;
  const hl = aH * bL;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff); // < 3·2^16
  return (aH * bH + Math.floor(lh / 65536) + Math.floor(hl / 65536) + Math.floor(mid / 65536)) >>> 0;
}

/**
 * The Philox4x32-10 block function into `out` (length ≥ 4), without allocating.
 * Counter words c0..c3 and key words k0, k1 are unsigned 32-bit integers.
 */
export function philox4x32Into(out: Uint32Array, c0: number, c1: number, c2: number, c3: number, k0: number, k1: number): Uint32Array {
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let x2 = c2 >>> 0;
  let x3 = c3 >>> 0;
  let key0 = k0 >>> 0;
  let key1 = k1 >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      key0 = (key0 + W0) >>> 0;
      key1 = (key1 + W1) >>> 0;
    }
    const hi0 = mulHi(M0, x0);
    const lo0 = mulLo(M0, x0);
    const hi1 = mulHi(M1, x2);
    const lo1 = mulLo(M1, x2);
    const y0 = (hi1 ^ x1 ^ key0) >>> 0;
    const y2 = (hi0 ^ x3 ^ key1) >>> 0;
    x0 = y0;
    x1 = lo1;
    x2 = y2;
    x3 = lo0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
  return out;
}

/** The Philox4x32-10 block function: counter [4 × u32], key [2 × u32] → 4 words. */
export function philox4x32(counter: ArrayLike<number>, key: ArrayLike<number>): [number, number, number, number] {
  const w = philox4x32Into(new Uint32Array(4), counter[0]!, counter[1]!, counter[2]!, counter[3]!, key[0]!, key[1]!);
  return [w[0]!, w[1]!, w[2]!, w[3]!];
}

/** A uniform in [0, 1) with 53 random bits: ((hi >>> 5)·2^26 + (lo >>> 6)) / 2^53 (exact). */
export function toUnit(hi: number, lo: number): number {
  return ((hi >>> 5) * 67108864 + (lo >>> 6)) / 9007199254740992;
}

/**
 * The Philox key of a seed: [seed mod 2^32, ⌊seed / 2^32⌋]. A number seed must be an integer in
 * [0, 2^53) (what JavaScript hands the core); a bigint seed may be any u64 (e.g. the teacher-forced
 * seed, the run's seed XOR a 64-bit constant).
 */
export function seedKey(seed: number | bigint): [number, number] {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 1n << 64n) throw new Error(`seed must be in [0, 2^64), got ${seed}`);
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a safe integer ≥ 0, got ${seed}`);
  return [seed % TWO_32, Math.floor(seed / TWO_32)];
}

const SCRATCH = new Uint32Array(4);

/** Two independent uniforms for the draw key (index, position, stream, substream), as Rust `uniforms`. */
export function uniforms(seed: number | bigint, index: number, position: number, stream: number, substream: number): [number, number] {
  const [k0, k1] = seedKey(seed);
  const w = philox4x32Into(SCRATCH, index, position, stream, substream, k0, k1);
  return [toUnit(w[0]!, w[1]!), toUnit(w[2]!, w[3]!)];
}

/**
 * The first uniform of a draw key, given the seed already split into key words (the hot path of
 * sampling: no allocation).
 */
export function firstUniform(k0: number, k1: number, index: number, position: number, stream: number, substream: number): number {
  const w = philox4x32Into(SCRATCH, index, position, stream, substream, k0, k1);
  return toUnit(w[0]!, w[1]!);
}

/**
 * Inverse-CDF draw of an index from unnormalised non-negative weights (as Rust `draw_index`):
 * zero-weight entries are never drawn; rounding at the top end falls back to the last positive entry.
 */
export function drawIndex(weights: ArrayLike<number>, u: number): number {
  const n = weights.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += weights[i]!;
  const target = u * total;
  let acc = 0;
  let last = 0;
  for (let i = 0; i < n; i++) {
    const w = weights[i]!;
    if (w > 0) {
      acc += w;
      last = i;
      if (target < acc) return i;
    }
  }
  return last;
}
