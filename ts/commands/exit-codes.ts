/**
 * Exit codes: 0 success, 1 a failure of the run, 2 bad usage or bad input. These error codes are bad
 * input (exit 2), among them an --out the user cannot write, one that holds another run's results,
 * or one another process is writing; everything else (HH_WRITE_FAILED, HH_PANIC, …) is a failure of
 * the run (exit 1).
 */
import { HarmHorizonError } from '../core/errors.js';

export const BAD_INPUT_CODES: ReadonlySet<string> = new Set([
  'HH_OUTPUT_UNWRITABLE',
  'HH_OUTPUT_OCCUPIED',
  'HH_LOCKED',
  'HH_SCENARIO_INVALID',
  'HH_POLICY_INVALID',
  'HH_FILE_NOT_FOUND',
  'HH_INVALID_ARGUMENT',
  'HH_INVALID_SPEC',
  'HH_STATE_SPACE_TOO_LARGE',
  'HH_OUT_OF_MEMORY',
  'HH_LOG_INVALID',
  'HH_IMPORT_INVALID',
  'HH_MISSING_DEPENDENCY',
]);

export function isBadInput(error: unknown): error is HarmHorizonError {
  return error instanceof HarmHorizonError && BAD_INPUT_CODES.has(error.code);
}
