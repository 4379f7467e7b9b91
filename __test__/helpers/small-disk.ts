/** A 64 KiB tmpfs for "disk full" tests: mounting needs root on Linux. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';

/** Mounts a 64 KiB tmpfs at `dir` (created); null when that is not possible here. */
export function smallDisk(dir: string): { dir: string; release: () => void } | null {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return null;
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return {
    dir,
    release: () => {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
