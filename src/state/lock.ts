// One process per state directory: `ferry.lock` holds the pid of the process that owns the directory
// (and, on Linux, its start time, so that a pid reused by an unrelated process is not taken for the
// holder). Created with O_EXCL, so two processes starting together cannot both win; a lock whose
// process is gone (a SIGKILL, a crash, a restarted container) is taken over. Engines of one process share the lock
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
        writeSync(fd, `${process.pid} ${startTime(process.pid) ?? ''}`.trim() + '\n');
      } finally {
        closeSync(fd);
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = readLock(file);
    const pid = holder?.pid;
    // Our own pid in a lock we do not hold: left by an earlier incarnation with the same pid (pid 1
    // of a restarted container). An unreadable lock is being written right now: look again.
    if (pid !== undefined && pid !== process.pid && alive(pid, holder?.start)) throw new StateLockedError(dir, pid);
    if (pid === undefined && attempt === 0) continue;
    rmSync(file, { force: true }); // stale: its process is gone
  }
  throw new Error(`could not take the lock ${file}`);
}

function readLock(file: string): { pid: number; start?: string | undefined } | undefined {
  try {
    const [pidText, start] = readFileSync(file, 'utf8').trim().split(/\s+/);
    const pid = Number.parseInt(pidText ?? '', 10);
    return Number.isSafeInteger(pid) && pid > 0 ? { pid, start } : undefined;
  } catch {
    return undefined;
  }
}

function readPid(file: string): number | undefined {
  return readLock(file)?.pid;
}

function alive(pid: number, start: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // The pid is in use: by the holder, unless its start time says it is another process now.
  const now = start ? startTime(pid) : undefined;
  return now === undefined || now === start;
}

/** The process's start time in clock ticks since boot (Linux /proc; undefined elsewhere). */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, starttime 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
