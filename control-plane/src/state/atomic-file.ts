/**
 * The one way the control plane writes a state file: the new content goes
 * to a temp file in the same directory, is fsynced, then renamed (or, for a
 * file that must not exist yet, hard-linked) over the target, and the
 * directory is fsynced. A failure at any point (a full disk, a crash)
 * leaves the previous content in place, never a torn or empty file, and
 * removes the temp file. Every writer of CA-dir state uses it: the CA files
 * (ca-dir.ts), revocations, rotation state, join-token keys and use records,
 * attestation records, re-issue orders and replica reports.
 */
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** One file of a write: its name inside the directory, content and mode (keys 0o600). */
export interface AtomicFile {
  name: string;
  contents: string | Buffer;
  mode: number;
}

function tempName(dir: string, name: string): string {
  return join(dir, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Writes `contents` to a new temp file in `dir` and fsyncs it; returns its path. Removes it on failure. */
function stage(dir: string, name: string, contents: string | Buffer, mode: number): string {
  const tmp = tempName(dir, name);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'wx', mode);
    // Buffer.from refuses anything but a string or bytes (TypeError), before the target is touched.
    const buf = typeof contents === 'string' ? Buffer.from(contents, 'utf8') : Buffer.from(contents);
    // writeSync may write less than asked (a nearly full disk): loop, and let ENOSPC throw.
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    return tmp;
  } catch (err) {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        // already failing
      }
    }
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Fsyncs a directory so a rename or link in it survives a crash. Best effort: not every file system supports it. */
export function fsyncDir(dir: string): void {
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Directory fsync is not supported everywhere; the file's own fsync already happened.
  }
}

/**
 * Writes every file atomically: all temp files first (fsynced, with their
 * final mode from creation), then the renames, then a directory fsync. On
 * any failure before the renames nothing in `dir` has changed.
 */
export function writeFilesAtomic(dir: string, files: readonly AtomicFile[]): void {
  const staged: Array<{ tmp: string; target: string }> = [];
  try {
    for (const f of files) staged.push({ tmp: stage(dir, f.name, f.contents, f.mode), target: join(dir, f.name) });
  } catch (err) {
    for (const s of staged) rmSync(s.tmp, { force: true });
    throw err;
  }
  try {
    for (const s of staged) renameSync(s.tmp, s.target);
  } finally {
    for (const s of staged) rmSync(s.tmp, { force: true });
  }
  fsyncDir(dir);
}

/** Writes one file atomically (see {@link writeFilesAtomic}), creating its directory (0700) when missing. */
export function writeFileAtomic(path: string, contents: string | Buffer, mode = 0o644): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFilesAtomic(dir, [{ name: basename(path), contents, mode }]);
}

/**
 * Creates `path` with `contents` only if it does not exist yet, atomically:
 * the complete, fsynced temp file is hard-linked to the name (link(2) fails
 * with EEXIST when the name is taken), so a reader, another process or a
 * crash sees either no file or the whole content. Returns false when the
 * file already existed; throws on any other failure (nothing created).
 */
export function createFileExclusive(path: string, contents: string | Buffer, mode = 0o600): boolean {
  const dir = dirname(path);
  const tmp = stage(dir, basename(path), contents, mode);
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  fsyncDir(dir);
  return true;
}
