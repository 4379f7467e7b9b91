/**
 * Writing results so that a failure (disk full, permissions) never leaves a corrupt file: whole files
 * are written to a temporary name, fsynced and renamed; JSON-lines logs are cut back to their last
 * whole line when an append fails; an output folder is claimed by one run at a time and never
 * silently written over. Failures are HarmHorizonErrors naming the file or folder: HH_WRITE_FAILED,
 * HH_OUTPUT_UNWRITABLE (a folder that cannot be made), HH_OUTPUT_OCCUPIED (another run's results are
 * there) and HH_LOCKED (another process is writing it).
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { HarmHorizonError } from '../core/errors.js';
import { acquireLock, FOLDER_LOCK } from './lock.js';

function writeFailure(path: string, error: unknown): HarmHorizonError {
  return new HarmHorizonError('HH_WRITE_FAILED', `cannot write ${path}: ${(error as Error).message}`);
}

/** Writes a file whole or not at all: to `<path>.tmp`, fsync, rename over `path`. */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    const bytes = Buffer.from(text, 'utf8');
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
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

/**
 * A JSON-lines log that stays valid when a write fails (disk full): a line is written whole or the
 * file is cut back to the previous line.
 */
export class JsonLinesWriter {
  readonly path: string;
  #fd: number;
  #size = 0;

  constructor(path: string) {
    this.path = path;
    try {
      this.#fd = openSync(path, 'w');
    } catch (error) {
      throw writeFailure(path, error);
    }
  }

  append(value: unknown): void {
    const bytes = Buffer.from(`${JSON.stringify(value)}\n`, 'utf8');
    try {
      for (let done = 0; done < bytes.length; ) done += writeSync(this.#fd, bytes, done, bytes.length - done);
      this.#size += bytes.length;
    } catch (error) {
      try {
        ftruncateSync(this.#fd, this.#size);
      } catch {
        // Keep the original error: the write failure is what the caller must see.
      }
      throw writeFailure(this.path, error);
    }
  }

  /** Flushes to disk and closes; with `strict` false (already failing), never throws. */
  close(strict = true): void {
    try {
      fsyncSync(this.#fd);
    } catch (error) {
      if (strict) {
        closeSync(this.#fd);
        throw writeFailure(this.path, error);
      }
    }
    try {
      closeSync(this.#fd);
    } catch (error) {
      if (strict) throw writeFailure(this.path, error);
    }
  }
}


/** Creates `dir` one level at a time from its nearest existing ancestor; returns the folders it made. */
function makeFolder(dir: string): string[] {
  // Node's recursive mkdir can spin on special file systems such as /proc.
  const missing: string[] = [];
  let existing = resolve(dir);
  while (!existsSync(existing)) {
    missing.unshift(existing);
    existing = dirname(existing);
  }
  for (const folder of missing) mkdirSync(folder);
  return missing;
}

function unwritable(dir: string, option: string, error: unknown): HarmHorizonError {
  return new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot write to the output folder ${dir}: ${(error as Error).message}`, option);
}

/** Creates the output folder if needed and checks that it can be written; returns the folders made. */
function prepareFolder(dir: string, option: string): string[] {
  try {
    const made = makeFolder(dir);
    const probe = join(dir, '.write-test');
    writeFileSync(probe, '');
    unlinkSync(probe);
    return made;
  } catch (error) {
    throw unwritable(dir, option, error);
  }
}

/** Creates the output folder (from its nearest existing ancestor) and checks that it can be written. */
export function outputFolder(dir: string, option = '--out'): string {
  prepareFolder(dir, option);
  return dir;
}

/**
 * What an output folder already holds, ignoring hidden entries (our lock, .DS_Store, .gitkeep):
 * an empty list means the folder is free for a new run.
 */
export function folderContents(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((name) => !name.startsWith('.')).sort() : [];
}

/**
 * Makes `dir` the output folder of this process: creates it, locks it against a concurrent run
 * (HH_LOCKED), and refuses it when it already holds results of another run (HH_OUTPUT_OCCUPIED)
 * unless `force` is set. Both are exit 2: the user chose the folder. Folders made here that are
 * still empty when the process exits (the run failed before writing) are removed again.
 */
export function claimOutputFolder(dir: string, options: { force?: boolean; option?: string } = {}): string {
  const option = options.option ?? '--out';
  const made = prepareFolder(dir, option);
  const lock = acquireLock(join(dir, FOLDER_LOCK), `the output folder ${dir}`);
  process.once('exit', () => {
    lock.release();
    try {
      for (const folder of made.reverse()) {
        if (readdirSync(folder).length > 0) break;
        rmdirSync(folder);
      }
    } catch {
      // Tidying only: a folder we cannot remove stays.
    }
  });
  const contents = folderContents(dir);
  if (contents.length > 0 && !options.force) {
    const shown = contents.length > 4 ? `${contents.slice(0, 4).join(', ')}, … (${contents.length} entries)` : contents.join(', ');
    throw new HarmHorizonError(
      'HH_OUTPUT_OCCUPIED',
      `${option} ${dir} already holds the results of another run (${shown}): choose a new folder, or add --force to write over them`,
      option,
    );
  }
  return dir;
}
