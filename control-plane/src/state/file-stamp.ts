/**
 * How the control plane notices that a file changed: the one rule every
 * watched file follows (the revocations file, federated bundles, shared
 * documents such as reissue orders). A file's stamp is its mtime, size and
 * inode, so an edit in place and an atomic replace (a new inode) both count,
 * and the periodic refresh re-reads a file only when its stamp moved. Polling
 * a stamp works on every file system, where fs.watch misses events on some
 * (network mounts, Kubernetes ConfigMap symlink swaps).
 */
import { statSync } from 'node:fs';

/** `mtime:size:inode`, `absent` when the file does not exist, `error:<code>` when it cannot be stat'ed. Never throws. */
export function fileStamp(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'absent' : `error:${code ?? 'unknown'}`;
  }
}
