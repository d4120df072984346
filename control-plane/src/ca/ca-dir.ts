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
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CaError, CaErrorCode } from './ca-error';
import { writeFilesAtomic } from '../state/atomic-file';

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
 * Writes every file atomically (state/atomic-file.ts): all temp files first
 * (fsynced, with their final mode from creation), then the renames. On any
 * failure before the renames nothing in `dir` has changed.
 */
export function writeCaFiles(dir: string, files: CaFileWrite[]): void {
  requireCaDir(dir);
  writeFilesAtomic(dir, files);
}

