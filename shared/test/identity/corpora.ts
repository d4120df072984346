/**
 * Locates the shared test corpora: env `TRELLIS_CORPORA_DIR`, else `<repo>/../shared/corpora`.
 * A missing folder is an error naming where it looked, never a silent skip.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Repository root (shared/dist/test/identity -> root). */
const REPO_ROOT = join(__dirname, '..', '..', '..', '..');

/** The corpora folder, checked to exist. */
export function corporaDir(): string {
  const dir = process.env.TRELLIS_CORPORA_DIR ?? join(REPO_ROOT, '..', 'shared', 'corpora');
  if (!existsSync(dir)) {
    throw new Error(`test corpora not found at ${dir} (set TRELLIS_CORPORA_DIR or place them at <repo>/../shared/corpora)`);
  }
  return dir;
}

/** Reads and parses a JSON file under the corpora folder. */
export function readCorpusJson<T = unknown>(...parts: string[]): T {
  return JSON.parse(readFileSync(join(corporaDir(), ...parts), 'utf8')) as T;
}

/** Reads a file under the corpora folder as bytes. */
export function readCorpusFile(...parts: string[]): Buffer {
  return readFileSync(join(corporaDir(), ...parts));
}
