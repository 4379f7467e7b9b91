/** The error a refused scenario raises, with its field path and, for text, line and column. */
import { HarmHorizonError } from '../core/errors.js';

export type ScenarioErrorCode = 'HH_SCENARIO_INVALID' | 'HH_FILE_NOT_FOUND' | 'HH_STATE_SPACE_TOO_LARGE';

/** A refused scenario. `field` is a JSON path into the scenario file ("" for the whole document). */
export class ScenarioError extends HarmHorizonError {
  declare readonly code: ScenarioErrorCode;
  declare readonly field: string;
  readonly reason: string;
  /** File name or other description of where the scenario came from, if known. */
  readonly source?: string;

  /** Where the offending value sits in the scenario text (1-based), when the scenario was parsed from text. */
  readonly line?: number;
  readonly column?: number;

  constructor(field: string, reason: string, options: { source?: string; code?: ScenarioErrorCode; position?: { line: number; column: number } } = {}) {
    const pos = options.position;
    const at = pos ? `line ${pos.line}, column ${pos.column}` : '';
    const where = options.source ? ` (${options.source}${pos ? `, ${at}` : ''})` : pos ? ` (${at})` : '';
    const code = options.code ?? 'HH_SCENARIO_INVALID';
    const prefix = { HH_FILE_NOT_FOUND: 'scenario file not found', HH_SCENARIO_INVALID: 'invalid scenario', HH_STATE_SPACE_TOO_LARGE: 'scenario too large' }[code];
    const message = `${prefix}${where}: ${code === 'HH_FILE_NOT_FOUND' || field === '' ? '' : `${field}: `}${reason}`;
    super(code, message, field);
    this.name = 'ScenarioError';
    this.reason = reason;
    if (options.source !== undefined) this.source = options.source;
    if (pos) {
      this.line = pos.line;
      this.column = pos.column;
    }
  }
}
