/**
 * How the policy store reads its directory: the file-system calls it makes
 * (node:fs in production, wrapped by tests) and the rule that a file is
 * never half-read. A writer that truncates and rewrites in place can leave
 * a prefix that is itself a valid, different policy, so content is taken
 * only once the file has been still for `settleMs` (see policy-store.ts).
 */
import * as nodeFs from 'node:fs';
import { sameStamp, stampOf, type FileStamp } from '../state/file-stamp';

export type { FileStamp } from '../state/file-stamp';

/** The file-system calls the store makes; tests may wrap them, production uses node:fs. */
export interface PolicyFs {
  readdir(dir: string): Promise<string[]>;
  readFile(path: string): Promise<string>;
  /** Modification time, used as "first seen" for undated policies. */
  mtime(path: string): Promise<Date>;
  /** Size, mtime and inode, to tell a file being written from a settled one; without it, content is taken as read. */
  stat?(path: string): Promise<FileStamp>;
  /** Calls `onEvent` on any change in `dir`; returns a closer. May throw (no watch support). */
  watch(dir: string, onEvent: () => void, onError: (err: Error) => void): { close(): void };
}

/** Node's fs, behind PolicyFs. */
export const nodePolicyFs: PolicyFs = {
  readdir: (dir) => nodeFs.promises.readdir(dir),
  readFile: (path) => nodeFs.promises.readFile(path, 'utf8'),
  mtime: async (path) => (await nodeFs.promises.stat(path)).mtime,
  stat: async (path) => stampOf(await nodeFs.promises.stat(path)),
  watch(dir, onEvent, onError) {
    const w = nodeFs.watch(dir, { persistent: false }, () => onEvent());
    w.on('error', onError);
    return { close: () => w.close() };
  },
};

/** Timing of {@link readSettled}. */
export interface SettleOptions {
  readonly settleMs: number;
  /** The wall clock file mtimes are compared with. */
  readonly wallClockMs: () => number;
  readonly setTimeout: typeof setTimeout;
}

/**
 * The content of `path` once it is settled: unchanged (size, mtime, inode)
 * across the read and last modified at least `settleMs` ago, waiting out
 * the rest of that window when it was modified more recently. `first` (a
 * read made without that check) is returned as is only when the file
 * system cannot stat. Null when it kept changing for 20 windows.
 */
export async function readSettled(fs: PolicyFs, path: string, first: string, opts: SettleOptions): Promise<string | null> {
  const stat = fs.stat?.bind(fs);
  if (!stat) return first;
  const settle = opts.settleMs;
  for (let round = 0; round < 20; round++) {
    const before = await stat(path);
    const sleep = (): Promise<void> => new Promise((r) => opts.setTimeout(r, settle));
    // Modified within the window (or stamped in the future, where age says nothing): it must stay still for one window.
    if (opts.wallClockMs() - before.mtimeMs < settle) {
      await sleep();
      const still = await stat(path);
      if (!sameStamp(still, before)) continue;
    }
    const text = await fs.readFile(path);
    if (sameStamp(await stat(path), before)) return text;
  }
  return null;
}
