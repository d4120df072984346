/**
 * One lifecycle step at a time per CA dir, across processes: the control
 * plane's timer and an operator's `trellis ca rotate-root` must not both
 * switch intermediates. The lock is `.lifecycle.lock` holding the owner's
 * pid, created with O_EXCL; a lock whose owner is gone is taken over.
 */
import { openSync, closeSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';

/** File name of the lock inside the CA dir. */
export const LIFECYCLE_LOCK_FILE = '.lifecycle.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function acquire(path: string): boolean {
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, String(process.pid));
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

function tryLock(path: string, caDir: string): void {
  if (acquire(path)) return;
  let owner = NaN;
  try {
    owner = Number(readFileSync(path, 'utf8').trim());
  } catch {
    owner = NaN;
  }
  if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
    throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `another lifecycle step is running on ${caDir} (pid ${owner}); try again`, { pid: owner });
  }
  if (owner === process.pid) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `a lifecycle step is already running on ${caDir} in this process`, {});
  rmSync(path, { force: true });
  if (!acquire(path)) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `another lifecycle step took the lock on ${caDir}; try again`, {});
}

/**
 * Runs `fn` holding the CA dir's lifecycle lock, waiting up to `waitMs`
 * (default 0) for another process's step to finish. Refuses with
 * ROTATION_CONFLICT while another live process still holds it.
 */
export async function withLifecycleLock<T>(caDir: string, fn: () => Promise<T> | T, o: { waitMs?: number } = {}): Promise<T> {
  const path = join(caDir, LIFECYCLE_LOCK_FILE);
  const deadline = Date.now() + (o.waitMs ?? 0);
  for (;;) {
    try {
      tryLock(path, caDir);
      break;
    } catch (err) {
      if (!(err instanceof LifecycleError) || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}
