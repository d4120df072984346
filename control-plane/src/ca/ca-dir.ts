/**
 * The on-disk layout of a CA directory and the only code that writes it.
 *
 * Files: `root.pem` (trust bundle: one or more roots), `root.key` (only when
 * `ca init` made the root; move it offline), `intermediate.pem`,
 * `intermediate.key`, `chain.pem` (intermediate + any intermediates above
 * it, without the root), `intermediate.csr` (subordinate set-up),
 * `audit.log`. Keys are written 0600. Every write goes to a temp file in the
 * same dir, is fsynced, then renamed over the target, and a multi-file update
 * renames only after every temp file is complete, so a failure never leaves
 * a half-written file behind.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CaError, CaErrorCode } from './ca-error';

/** File names inside a CA dir. */
export const CA_FILES = Object.freeze({
  rootCert: 'root.pem',
  rootKey: 'root.key',
  intermediateCert: 'intermediate.pem',
  intermediateKey: 'intermediate.key',
  chain: 'chain.pem',
  intermediateCsr: 'intermediate.csr',
  auditLog: 'audit.log',
});

/** One file of a multi-file write. Keys get `mode: 0o600`. */
export interface CaFileWrite {
  name: string;
  contents: string | Buffer;
  mode: number;
}

/** Throws DIR_MISSING unless `dir` is an existing directory. */
export function requireCaDir(dir: string): void {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new CaError(CaErrorCode.DIR_MISSING, `CA directory ${dir} does not exist (run "trellis ca init --dir ${dir}" first)`, { dir });
}

/** True when `dir/name` exists. */
export function caFileExists(dir: string, name: string): boolean {
  try {
    statSync(join(dir, name));
    return true;
  } catch {
    return false;
  }
}

/** Reads the named files; DIR_INCOMPLETE naming every one that is missing. */
export function readCaFiles(dir: string, names: string[]): Map<string, string> {
  requireCaDir(dir);
  const out = new Map<string, string>();
  const missing: string[] = [];
  const unreadable: string[] = [];
  for (const name of names) {
    try {
      out.set(name, readFileSync(join(dir, name), 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') missing.push(name);
      else unreadable.push(`${name} (${code ?? (err as Error).message})`);
    }
  }
  if (missing.length > 0 || unreadable.length > 0) {
    const parts = [missing.length > 0 ? `missing ${missing.join(', ')}` : '', unreadable.length > 0 ? `cannot read ${unreadable.join(', ')}` : ''].filter(Boolean);
    throw new CaError(CaErrorCode.DIR_INCOMPLETE, `CA directory ${dir} is incomplete: ${parts.join('; ')}`, { dir, missing, unreadable });
  }
  return out;
}

/**
 * Writes every file atomically: all temp files first (fsynced, with their
 * final mode from creation), then the renames. On any failure before the
 * renames, the temp files are removed and nothing in `dir` has changed.
 */
export function writeCaFiles(dir: string, files: CaFileWrite[]): void {
  requireCaDir(dir);
  const staged: Array<{ tmp: string; target: string }> = [];
  try {
    for (const f of files) {
      const tmp = join(dir, `.${f.name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
      staged.push({ tmp, target: join(dir, f.name) });
      const fd = openSync(tmp, 'wx', f.mode);
      try {
        writeSync(fd, typeof f.contents === 'string' ? Buffer.from(f.contents, 'utf8') : f.contents);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (err) {
    for (const s of staged) rmSync(s.tmp, { force: true });
    throw err;
  }
  for (const s of staged) renameSync(s.tmp, s.target);
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Directory fsync is best effort (not supported on every file system).
  }
}

/** Removes `name` from `dir` if present. */
export function removeCaFile(dir: string, name: string): void {
  rmSync(join(dir, name), { force: true });
}
