/** Shared assertions: the tolerance of "Rust equals the reference" (1e-10 relative or 1e-14 absolute). */
import type { ExecutionContext } from 'ava';

export function close(a: number, b: number, rel = 1e-10, abs = 1e-14): boolean {
  if (Number.isNaN(a) && Number.isNaN(b)) return true;
  return Math.abs(a - b) <= Math.max(abs, rel * Math.max(Math.abs(a), Math.abs(b)));
}

export function assertClose(t: ExecutionContext, a: number, b: number, what: string, rel = 1e-10, abs = 1e-14) {
  if (!close(a, b, rel, abs)) t.fail(`${what}: ${a} vs ${b} (diff ${Math.abs(a - b)})`);
  else t.pass();
}

/** Asserts element-wise closeness, reporting the first mismatch only (one assertion per array). */
export function assertArrayClose(t: ExecutionContext, a: ArrayLike<number>, b: ArrayLike<number>, what: string, rel = 1e-10, abs = 1e-14) {
  if (a.length !== b.length) return t.fail(`${what}: lengths ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    if (!close(a[i], b[i], rel, abs)) return t.fail(`${what}[${i}]: ${a[i]} vs ${b[i]} (diff ${Math.abs(a[i] - b[i])})`);
  }
  t.pass();
}
