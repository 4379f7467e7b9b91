/**
 * The one atomic file writer of the product: a file is written whole or not at all, so a failure
 * (disk full, permissions, a kill) never leaves a half-written file in place of the old one.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';

/** The error of a failed write, naming the file and, for a full disk, saying so plainly. */
export function writeFailure(path: string, error: unknown, verb = 'write'): HarmHorizonError {
  const e = error as NodeJS.ErrnoException;
  // The plain words first, then the system's own message (which names the code).
  const plain = e.code === 'ENOSPC' ? 'the disk is full' : e.code === 'EDQUOT' ? 'the disk quota is exceeded' : '';
  const what = plain === '' ? e.message : `${plain} (${e.message})`;
  return new HarmHorizonError('HH_WRITE_FAILED', `cannot ${verb} ${path}: ${what}`);
}

/** Writes all of `bytes` at the file's current position (writeSync may write less than asked). */
export function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Writes a file whole or not at all: to `<path>.tmp`, fsync, rename over `path`. */
export function writeAtomic(path: string, text: string | Uint8Array): void {
  const tmp = `${path}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    writeAll(fd, typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text.buffer, text.byteOffset, text.byteLength));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw writeFailure(path, error);
  }
}
