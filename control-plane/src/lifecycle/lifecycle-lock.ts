/**
 * One lifecycle step at a time per CA dir, across processes: the control
 * plane's timer and an operator's `trellis ca rotate-root` must not both
 * switch intermediates. The lock is `.lifecycle.lock` holding the owner's
 * pid (state/file-lock.ts); a lock whose owner is gone is taken over.
 */
import { join } from 'node:path';
import { tryLockFile, unlockFile } from '../state/file-lock';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';

/** File name of the lock inside the CA dir. */
export const LIFECYCLE_LOCK_FILE = '.lifecycle.lock';

function tryLock(path: string, caDir: string): void {
  const r = tryLockFile(path);
  if (r.acquired) return;
  if (r.owner === process.pid) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `a lifecycle step is already running on ${caDir} in this process`, {});
  if (r.owner !== null) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `another lifecycle step is running on ${caDir} (pid ${r.owner}); try again`, { pid: r.owner });
  throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `another lifecycle step took the lock on ${caDir}; try again`, {});
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
    unlockFile(path);
  }
}
