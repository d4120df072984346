/**
 * A lock file shared by processes on one machine: `path` is created with
 * O_EXCL and holds the owner's pid. A lock whose owner is gone is taken
 * over; one whose pid is not written yet (its owner is between create and
 * write) counts as held for a few seconds. Used for the CA dir's lifecycle
 * steps (lifecycle-lock.ts), the audit log's appends and the shared state
 * files, so two processes never interleave a read-modify-write.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';

/** How long a lock file without a readable pid counts as held (its owner may be writing it). */
const UNWRITTEN_GRACE_MS = 5000;

/** Lock files this process holds: a lock naming our pid that is not here was left by an earlier process with the same pid (a restarted container's pid 1). */
const held = new Set<string>();

/** The outcome of one attempt. */
export type LockAttempt = { readonly acquired: true } | { readonly acquired: false; readonly owner: number | null };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function create(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, String(process.pid));
  } catch (err) {
    // A full disk: leave no empty lock behind for others to wait on.
    closeSync(fd);
    rmSync(path, { force: true });
    throw err;
  }
  closeSync(fd);
  return true;
}

/**
 * One attempt to take the lock. Takes over a lock whose owner is dead (or
 * whose pid was never written, after a grace); returns the live owner's pid
 * otherwise (our own pid when this process holds it already).
 */
export function tryLockFile(path: string, nowMs: number = Date.now()): LockAttempt {
  if (create(path)) {
    held.add(path);
    return { acquired: true };
  }
  let owner: number | null = null;
  let ageMs = Infinity;
  try {
    ageMs = nowMs - statSync(path).mtimeMs;
    const n = Number(readFileSync(path, 'utf8').trim());
    owner = Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    owner = null;
  }
  if (owner === process.pid && held.has(path)) return { acquired: false, owner };
  if (owner !== null && owner !== process.pid && alive(owner)) return { acquired: false, owner };
  if (owner === null && ageMs < UNWRITTEN_GRACE_MS) return { acquired: false, owner: null };
  rmSync(path, { force: true });
  if (!create(path)) return { acquired: false, owner: null };
  held.add(path);
  return { acquired: true };
}

/** Releases a lock this process holds. */
export function unlockFile(path: string): void {
  held.delete(path);
  rmSync(path, { force: true });
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs `fn` holding the lock, waiting (blocking, in short sleeps) up to
 * `waitMs` for another process to release it. Throws what `busy(owner)`
 * returns when the wait runs out. For short critical sections only (an
 * append, a small read-modify-write): the wait blocks the event loop.
 */
export function withFileLockSync<T>(path: string, fn: () => T, o: { waitMs: number; busy(owner: number | null): Error }): T {
  const deadline = Date.now() + o.waitMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const r = tryLockFile(path);
    if (r.acquired) break;
    if (r.owner === process.pid || Date.now() >= deadline) throw o.busy(r.owner);
    Atomics.wait(sleeper, 0, 0, delay);
  }
  try {
    return fn();
  } finally {
    unlockFile(path);
  }
}
