/**
 * Results files: one JSON line per finished cell, `{"id", "command", "params", "seed", "result"}`
 * (plus `"seconds"` with `timing`). Reading checks every line and tells a torn last line (a write
 * cut short by a kill, removed on resume) from corruption (refused).
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';
import { cellId } from './ids.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export interface ResultLine {
  id: string;
  command: string;
  params: Record<string, unknown>;
  seed: number;
  result?: Record<string, unknown>;
  seconds?: number;
}

export interface ResultsScan {
  /** Bytes of the valid prefix (the file is cut back to this on resume). */
  validLength: number;
  fileLength: number;
  /** Text of the torn last line, when there is one. */
  torn: string | null;
}

function checkLine(text: string): ResultLine {
  let line: unknown;
  try {
    line = JSON.parse(text);
  } catch {
    throw new Error('not valid JSON');
  }
  const l = line as ResultLine;
  if (!isObject(line) || typeof l.id !== 'string' || typeof l.command !== 'string' || !isObject(l.params) || typeof l.seed !== 'number' || !isObject(l.result)) {
    throw new Error('not a result line ({"id", "command", "params", "seed", "result"})');
  }
  if (cellId(l.command, l.params) !== l.id) throw new Error(`its id ${l.id} does not match its params`);
  return l;
}

/**
 * Reads a results file in chunks, calling `onLine` for each valid line in file order. Only
 * newline-terminated lines count; the last line is "torn" when it has no newline or is not a valid
 * result line (a write cut short by a kill). A bad line before the last is corruption: refused with
 * the line number, the file untouched. Blank lines are skipped.
 */
export function scanResults(path: string, onLine: (line: ResultLine, text: string, number: number) => void): ResultsScan {
  if (!existsSync(path)) return { validLength: 0, fileLength: 0, torn: null };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot read the results file ${path}: ${(error as Error).message}`, path);
  }
  try {
    const fileLength = fstatSync(fd).size;
    const chunk = Buffer.allocUnsafe(4 << 20);
    let carry = Buffer.alloc(0);
    let offset = 0; // file offset of carry[0]
    let read = 0;
    let number = 0;
    let validLength = 0;
    while (read < fileLength) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, fileLength - read), read);
      if (n === 0) break;
      read += n;
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let pos = 0;
      for (let nl = buf.indexOf(10, pos); nl >= 0; nl = buf.indexOf(10, pos)) {
        number++;
        const text = buf.toString('utf8', pos, nl);
        const end = offset + nl + 1;
        if (text.trim() !== '') {
          let line: ResultLine;
          try {
            line = checkLine(text);
          } catch (error) {
            if (end === fileLength) return { validLength, fileLength, torn: text };
            throw new HarmHorizonError(
              'HH_INVALID_ARGUMENT',
              `results file ${path}, line ${number}: ${(error as Error).message}; the file is left untouched (move it away, or fix the line, to continue)`,
              path,
            );
          }
          onLine(line, text, number);
        }
        validLength = end;
        pos = nl + 1;
      }
      carry = Buffer.from(buf.subarray(pos));
      offset += pos;
    }
    return { validLength, fileLength, torn: carry.length > 0 ? carry.toString('utf8') : null };
  } catch (error) {
    if (error instanceof HarmHorizonError) throw error;
    throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot read the results file ${path}: ${(error as Error).message}`, path);
  } finally {
    closeSync(fd);
  }
}

