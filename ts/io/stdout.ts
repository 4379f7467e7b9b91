/**
 * Standard output for the CLI, written synchronously and checked: every byte reaches the file, pipe
 * or terminal, or the command fails. A full disk behind `> file` (or /dev/full, or EIO) raises
 * HH_WRITE_FAILED, which the CLI turns into exit 1 and one line on stderr; it is never exit 0 after
 * a truncated write. A reader that stopped early (`| head`, EPIPE) ends the process quietly.
 */
import { writeSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';

const STDOUT = 1;
/** Writes are cut into pieces of this size, so a large JSON document is never one huge buffer. */
const CHUNK_BYTES = 1 << 20;
const pause = new Int32Array(new SharedArrayBuffer(4));

function writeBytes(bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) {
    try {
      done += writeSync(STDOUT, bytes, done, Math.min(CHUNK_BYTES, bytes.length - done));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // A non-blocking pipe that is full: wait for the reader.
      if (code === 'EAGAIN') Atomics.wait(pause, 0, 0, 1);
      // The reader has gone (`| head`): what it wanted, it has; stop without a word.
      else if (code === 'EPIPE') process.exit(process.exitCode ?? 0);
      else throw new HarmHorizonError('HH_WRITE_FAILED', `cannot write to standard output: ${(error as Error).message}`);
    }
  }
}

/** Writes `text` to stdout, ending it with a newline if it has none. */
export function writeStdout(text: string): void {
  writeBytes(Buffer.from(text.endsWith('\n') ? text : `${text}\n`, 'utf8'));
}

/** Arrays longer than this are written one element at a time (see jsonChunks). */
const STREAM_ARRAY_LENGTH = 1000;

/**
 * The text of JSON.stringify(value, null, 2), in pieces: arrays longer than STREAM_ARRAY_LENGTH
 * are serialised element by element, so a report over 10^6 positions never becomes one string
 * (V8 caps strings at about 2^29 characters).
 */
export function* jsonChunks(value: unknown, indent = ''): Generator<string> {
  const inner = `${indent}  `;
  if (Array.isArray(value) && value.length > STREAM_ARRAY_LENGTH) {
    yield '[\n';
    for (let i = 0; i < value.length; i++) {
      yield inner;
      yield* jsonChunks(value[i] === undefined || typeof value[i] === 'function' ? null : value[i], inner);
      yield i + 1 < value.length ? ',\n' : '\n';
    }
    yield `${indent}]`;
    return;
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as { toJSON?: unknown }).toJSON !== 'function') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined && typeof v !== 'function');
    if (entries.some(([, v]) => Array.isArray(v) && v.length > STREAM_ARRAY_LENGTH)) {
      yield '{\n';
      for (let i = 0; i < entries.length; i++) {
        yield `${inner}${JSON.stringify(entries[i][0])}: `;
        yield* jsonChunks(entries[i][1], inner);
        yield i + 1 < entries.length ? ',\n' : '\n';
      }
      yield `${indent}}`;
      return;
    }
  }
  yield JSON.stringify(value, null, 2).replace(/\n/g, `\n${indent}`);
}

/** Writes `value` as indented JSON (the same text as JSON.stringify(value, null, 2)) and a newline. */
export function writeStdoutJson(value: unknown): void {
  let pending = '';
  for (const chunk of jsonChunks(value)) {
    pending += chunk;
    if (pending.length >= CHUNK_BYTES) {
      writeBytes(Buffer.from(pending, 'utf8'));
      pending = '';
    }
  }
  writeBytes(Buffer.from(`${pending}\n`, 'utf8'));
}
