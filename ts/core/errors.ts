/**
 * Every failure of harm-horizon reaches callers as a `HarmHorizonError` with a stable `code`:
 *
 * - `HH_SCENARIO_INVALID`     a scenario file or object fails validation (see `field`)
 * - `HH_FILE_NOT_FOUND`       an input file does not exist
 * - `HH_INVALID_SPEC`         the numeric scenario handed to the core is malformed
 * - `HH_INVALID_ARGUMENT`     an argument (λ, tolerance, policy shape, …) is out of range
 * - `HH_STATE_SPACE_TOO_LARGE` the exact state space does not fit in the memory budget
 * - `HH_OUT_OF_MEMORY`        a buffer sized by the input (states, samples × rollouts × T, T × S × V
 *                             tables) overflows or the machine refuses it; nothing was aborted
 * - `HH_POLICY_INVALID`       a policy file or object is malformed (a row with no finite logit, …)
 * - `HH_OUTPUT_OCCUPIED`      an output folder already holds another run's results (CLI: use --force)
 * - `HH_LOCKED`               another process is writing the same output folder or results file
 * - `HH_WRITE_FAILED`         a write failed (disk full, standard output closed with an error)
 * - `HH_PANIC`                an internal bug in the core, caught before it could crash Node
 * - `HH_ABORTED`              the call's AbortSignal fired before it finished (see abort.ts)
 */
export class HarmHorizonError extends Error {
  readonly code: string;
  /** JSON path of the offending input field, when there is one. */
  readonly field?: string;

  constructor(code: string, message: string, field?: string) {
    super(message);
    this.name = 'HarmHorizonError';
    this.code = code;
    this.field = field;
  }
}

/** napi-rs statuses of an argument JavaScript passed with the wrong type or shape (bad input, not a bug). */
const ARGUMENT_STATUS = /^(InvalidArg|[A-Za-z]+Expected)$/;

/** Re-throws an error from the native core as a HarmHorizonError with its code. */
export function fromNative(error: unknown): HarmHorizonError {
  if (error instanceof HarmHorizonError) return error;
  const e = error as { code?: unknown; message?: unknown };
  const message = String(e?.message ?? error);
  if (typeof e?.code === 'string' && e.code.startsWith('HH_')) return new HarmHorizonError(e.code, message);
  if (typeof e?.code === 'string' && ARGUMENT_STATUS.test(e.code)) return new HarmHorizonError('HH_INVALID_ARGUMENT', message);
  return new HarmHorizonError('HH_INTERNAL', message);
}

/** Calls into the core, converting its errors. */
export function callNative<T>(f: () => T): T {
  try {
    return f();
  } catch (error) {
    throw fromNative(error);
  }
}
