/**
 * The one JSON-lines appender of the product. A line is written whole or the file is cut back to
 * the previous line, so a failed write (disk full) leaves a valid log; a file resumed after a kill
 * is first cut back to its last whole line.
 */
import { closeSync, fsyncSync, ftruncateSync, openSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';
import { writeAll, writeFailure } from './atomic.js';

export interface JsonLinesOptions {
  /**
   * Append to the existing file after its first `keep` bytes (its whole lines; a torn tail beyond
   * them is cut off). Without it the file is started anew.
   */
  keep?: number;
  /** fsync after every append, so a finished line survives a crash (results that cost compute). */
  durable?: boolean;
  /** Added to a failed append's message: how the user recovers. */
  hint?: string;
  /** The field or option an error names (e.g. '--out'). */
  field?: string;
}

export class JsonLinesWriter {
  readonly path: string;
  readonly #durable: boolean;
  readonly #hint: string;
  readonly #field: string | undefined;
  #fd: number;
  #size: number;

  constructor(path: string, options: JsonLinesOptions = {}) {
    this.path = path;
    this.#durable = options.durable === true;
    this.#hint = options.hint === undefined ? '' : `; ${options.hint}`;
    this.#field = options.field;
    const resume = options.keep !== undefined;
    try {
      this.#fd = openSync(path, resume ? 'a' : 'w');
    } catch (error) {
      // With a field named, the file is the user's output choice: unwritable is bad input (exit 2).
      const e = this.#failure(error, resume ? 'open for appending' : 'write');
      throw this.#field === undefined ? e : new HarmHorizonError('HH_OUTPUT_UNWRITABLE', e.message, this.#field);
    }
    this.#size = options.keep ?? 0;
    if (resume) {
      try {
        ftruncateSync(this.#fd, this.#size);
        fsyncSync(this.#fd);
      } catch (error) {
        closeSync(this.#fd);
        throw this.#failure(error, 'remove the torn last line of');
      }
    }
  }

  #failure(error: unknown, verb: string, hint = ''): HarmHorizonError {
    const e = writeFailure(this.path, error, verb);
    return new HarmHorizonError(e.code, `${e.message}${hint}`, this.#field);
  }

  /** Appends one value as a JSON line. */
  append(value: unknown): void {
    this.appendLines([JSON.stringify(value)]);
  }

  /** Appends already serialised lines (without their newlines), all or none. */
  appendLines(lines: readonly string[]): void {
    if (lines.length === 0) return;
    const bytes = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
    try {
      writeAll(this.#fd, bytes);
      if (this.#durable) fsyncSync(this.#fd);
      this.#size += bytes.length;
    } catch (error) {
      try {
        ftruncateSync(this.#fd, this.#size);
        if (this.#durable) fsyncSync(this.#fd);
      } catch {
        // Keep the original error; a torn last line is cut back when the file is resumed.
      }
      throw this.#failure(error, 'append to', this.#hint);
    }
  }

  /** Flushes to disk and closes; with `strict` false (already failing), never throws. */
  close(strict = true): void {
    try {
      fsyncSync(this.#fd);
    } catch (error) {
      if (strict) {
        closeSync(this.#fd);
        throw this.#failure(error, 'write');
      }
    }
    try {
      closeSync(this.#fd);
    } catch (error) {
      if (strict) throw this.#failure(error, 'write');
    }
  }
}
