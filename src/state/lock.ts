// One process per state directory: `ferry.lock` holds the pid of the process that owns the directory.
// Created with O_EXCL, so two processes starting together cannot both win; a lock whose pid is dead
// (a SIGKILL, a crash, a restarted container) is taken over. Engines of one process share the lock
// (reference-counted), so the daemon's engines and the programmatic API's short-lived engines work.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StateLockedError } from './types.js';

export const LOCK_FILE = 'ferry.lock';

const held = new Map<string, number>();

export interface StateLock {
  release(): void;
}

/** Takes (or shares, within this process) the lock of `dir`; throws StateLockedError when another live process holds it. */
export function lockStateDir(dir: string): StateLock {
  const key = resolve(dir);
  const count = held.get(key) ?? 0;
  if (count === 0) acquire(key);
  held.set(key, count + 1);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      const left = (held.get(key) ?? 1) - 1;
      if (left > 0) {
        held.set(key, left);
        return;
      }
      held.delete(key);
      const file = join(key, LOCK_FILE);
      if (readPid(file) === process.pid) rmSync(file, { force: true });
    },
  };
}

function acquire(dir: string): void {
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = readPid(file);
    // Our own pid in a lock we do not hold: left by an earlier incarnation with the same pid (pid 1
    // of a restarted container). An unreadable lock is being written right now: look again.
    if (pid !== undefined && pid !== process.pid && alive(pid)) throw new StateLockedError(dir, pid);
    if (pid === undefined && attempt === 0) continue;
    rmSync(file, { force: true }); // stale: its process is gone
  }
  throw new Error(`could not take the lock ${file}`);
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
