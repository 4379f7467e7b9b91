/**
 * Cancelling long native calls with an AbortSignal. The `…Async` methods that take `{ signal }`
 * hand the core a CancelFlag raised when the signal fires: the computation stops at its next chunk
 * boundary (a few milliseconds) and the promise rejects with a HarmHorizonError of code
 * `HH_ABORTED`. The engine stays usable: an aborted call changes nothing it holds.
 */
import { fromNative, HarmHorizonError } from './errors.js';
import { native } from './native.js';

/** Options of a cancellable call. */
export interface AbortOptions {
  signal?: AbortSignal;
}

type Flag = InstanceType<typeof native.CancelFlag>;

/** The error of a call stopped by its AbortSignal. */
export function abortedError(): HarmHorizonError {
  return new HarmHorizonError('HH_ABORTED', 'aborted: the computation was cancelled before it finished');
}

/** Throws `abortedError()` when `signal` has fired (for loops of native calls, between calls). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError();
}

/**
 * Runs `start(flag)`, an async native call watching `flag`, raising the flag when `signal` fires.
 * A signal already aborted rejects at once, without starting the work.
 */
export async function withSignal<T>(signal: AbortSignal | undefined, start: (flag: Flag | undefined) => Promise<T>): Promise<T> {
  throwIfAborted(signal);
  const flag = signal ? new native.CancelFlag() : undefined;
  const raise = () => flag?.cancel();
  signal?.addEventListener('abort', raise, { once: true });
  try {
    return await start(flag);
  } catch (error) {
    throw fromNative(error);
  } finally {
    signal?.removeEventListener('abort', raise);
  }
}
