/**
 * Lock files: one process at a time writes an output folder or a sweep's results file. The lock is a
 * file created with O_EXCL that holds the owner's pid; it is removed when the process exits. A lock
 * whose pid is no longer alive (the owner crashed or was killed) is stale and is taken over.
 * A second process finds the lock held and fails with HH_LOCKED (exit 2).
 */
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { HarmHorizonError } from '../core/errors.js';

/** The name of the lock file of an output folder. */
export const FOLDER_LOCK = '.harm-horizon.lock';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid a lock file holds, or null if it cannot be read (being written, or gone). */
function ownerOf(path: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function tryCreate(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new HarmHorizonError('HH_OUTPUT_UNWRITABLE', `cannot create the lock file ${path}: ${(error as Error).message}`);
  }
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

const held = new Set<string>();

function releaseAll() {
  for (const path of held) if (ownerOf(path) === process.pid) rmSync(path, { force: true });
  held.clear();
}

/**
 * Takes the lock at `path` for this process until it exits (or `release` is called). `what` names
 * the locked thing in the error, e.g. "the output folder runs/a".
 */
export function acquireLock(path: string, what: string): { release: () => void } {
  if (!held.has(path)) {
    // Two attempts: the second after removing a stale lock (the owner's pid is not alive).
    for (let attempt = 0; ; attempt++) {
      if (tryCreate(path)) break;
      const owner = ownerOf(path);
      if (owner === process.pid) break;
      if (attempt > 0 || owner === null || isAlive(owner)) {
        const by = owner === null ? 'another process' : `process ${owner}`;
        throw new HarmHorizonError('HH_LOCKED', `${what} is in use by ${by} (lock file ${path}); wait for it to finish, or use another folder`);
      }
      // Stale: move it aside under a name of our own (only one taker wins the rename), then retry.
      try {
        renameSync(path, `${path}.stale-${process.pid}`);
        rmSync(`${path}.stale-${process.pid}`, { force: true });
      } catch {
        // Another process took it over first; the next attempt sees its lock.
      }
    }
    if (held.size === 0) process.once('exit', releaseAll);
    held.add(path);
  }
  return {
    release: () => {
      if (held.delete(path) && ownerOf(path) === process.pid) rmSync(path, { force: true });
    },
  };
}
