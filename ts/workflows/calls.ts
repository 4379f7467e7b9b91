/**
 * A loop of native calls written once, run in two forms. The loop is a generator that yields each
 * native call as a `Call` (its sync and its async form); `runSync` answers with the sync forms on
 * the calling thread, `runAsync` awaits the async forms and passes them the AbortSignal. So a
 * workflow such as the fine-tuning attack has a sync and an async form computing the same numbers.
 */
import { throwIfAborted } from '../core/abort.js';

/** One native call in its two forms. */
export interface Call<T> {
  sync(): T;
  async(signal: AbortSignal | undefined): Promise<T>;
}

/** A loop of calls returning `R`. */
export type Calls<R> = Generator<Call<unknown>, R, unknown>;

/** Inside a loop: `const x = yield* call(c)` makes the call and gives its typed result. */
export function* call<T>(c: Call<T>): Generator<Call<unknown>, T, unknown> {
  return (yield c) as T;
}

/** One call: its async form with `signal` when there is one (off the main thread), else its sync form. */
export async function callWith<T>(c: Call<T>, signal: AbortSignal | undefined): Promise<T> {
  return signal ? c.async(signal) : c.sync();
}

/** The loop in its async form with `signal` when there is one, else in its sync form. */
export async function runWith<R>(calls: Calls<R>, signal: AbortSignal | undefined): Promise<R> {
  return signal ? runAsync(calls, signal) : runSync(calls);
}

/** Runs the loop with the sync forms. */
export function runSync<R>(calls: Calls<R>): R {
  let next = calls.next();
  while (!next.done) next = calls.next(next.value.sync());
  return next.value;
}

/** Runs the loop with the async forms; `signal` stops it inside a call or between two (HH_ABORTED). */
export async function runAsync<R>(calls: Calls<R>, signal?: AbortSignal): Promise<R> {
  let next = calls.next();
  while (!next.done) {
    throwIfAborted(signal);
    next = calls.next(await next.value.async(signal));
  }
  return next.value;
}
