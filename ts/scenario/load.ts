/** Reading a scenario from a file or JSON text, with errors that name the line and column. */
import { readFileSync } from 'node:fs';
import { formatPath, sourceOpt } from './check.js';
import { ScenarioError } from './error.js';
import { DuplicateKeyError, JsonSyntaxError, parseJsonText, type JsonText } from './json-text.js';
import type { Scenario, ScenarioOptions } from './types.js';
import { validate } from './validate.js';

/**
 * Reads, parses and validates a scenario file (JSON). Throws `ScenarioError` with code
 * 'HH_FILE_NOT_FOUND' if the file does not exist, and with field "" if the text is not valid JSON
 * (the reason quotes the parser's error and the line/column). Repeated keys in a JSON object are
 * refused too (JSON.parse would silently keep the last one).
 */
export function loadScenarioFile(path: string, options?: ScenarioOptions): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new ScenarioError('', `no such file: ${path}`, { source: path, code: 'HH_FILE_NOT_FOUND' });
    }
    throw new ScenarioError('', `cannot read the file: ${e.message}`, { source: path });
  }
  return parseScenarioText(text, path, options);
}

/** Parses scenario JSON text (as `loadScenarioFile` does after reading the file). Errors name the
 *  line and column of the offending value. */
export function parseScenarioText(text: string, source?: string, options?: ScenarioOptions): Scenario {
  let parsed: JsonText;
  try {
    parsed = parseJsonText(text);
  } catch (err) {
    if (err instanceof JsonSyntaxError) {
      const p = err.position;
      const where = p ? ` at line ${p.line}, column ${p.column} (position ${p.offset})` : '';
      throw new ScenarioError('', `invalid JSON${where}: ${err.reason}`, sourceOpt(source));
    }
    if (err instanceof DuplicateKeyError) {
      throw new ScenarioError(formatPath(err.path), err.message, { ...sourceOpt(source), ...(err.position ? { position: err.position } : {}) });
    }
    throw err;
  }
  return validate(parsed.value, source, options, parsed.positionOf).scenario;
}

