/**
 * How the control plane notices that a file changed: the one rule every
 * watched file follows (the policy directory, the revocations file,
 * federated bundles, shared documents such as reissue orders). A file's
 * stamp is its mtime, size and inode, so an edit in place and an atomic
 * replace (a new inode) both count, and a refresh re-reads a file only when
 * its stamp moved. Polling a stamp works on every file system, where
 * fs.watch misses events on some (network mounts, Kubernetes ConfigMap
 * symlink swaps); where fs.watch is used (the policy directory) it only
 * brings the next look forward.
 */
import { statSync } from 'node:fs';

/** What tells one version of a file from the next. */
export interface FileStamp {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

/** The stamp of a stat result (node:fs `Stats`, sync or async). */
export function stampOf(st: FileStamp): FileStamp {
  return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
}

/** True when two stamps name the same version of a file. */
export function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

/** `mtime:size:inode`, `absent` when the file does not exist, `error:<code>` when it cannot be stat'ed. Never throws. */
export function fileStamp(path: string): string {
  try {
    const st = stampOf(statSync(path));
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'absent' : `error:${code ?? 'unknown'}`;
  }
}
