/**
 * Output folders: made from their nearest existing ancestor, checked writable, claimed by one run at
 * a time and never silently written over. Failures are HarmHorizonErrors naming the folder:
 * HH_OUTPUT_UNWRITABLE (a folder that cannot be made or written), HH_OUTPUT_OCCUPIED (another run's
 * results are there) and HH_LOCKED (another process is writing it). Files inside are written by the
 * atomic writer (atomic.ts) and the JSON-lines appender (jsonl.ts), re-exported here.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { HarmHorizonError } from '../core/errors.js';
import { acquireLock, FOLDER_LOCK } from './lock.js';

export { writeAtomic } from './atomic.js';
export { JsonLinesWriter } from './jsonl.js';

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
