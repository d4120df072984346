/**
 * The root rotation's state on disk: `root-rotation.json` in the CA dir,
 * written atomically, validated field by field on load so a damaged file
 * stops the rotation with a clear error instead of guessing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeCaFiles } from '../ca/ca-dir';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import type { RootRotationState } from './root-rotation';

/** File name inside the CA dir. */
export const ROOT_ROTATION_FILE = 'root-rotation.json';

const PHASES = new Set(['bundle', 'renew', 'done']);

/** Parses and checks a state document; BAD_STATE naming the file and field. */
export function parseRootRotationState(text: string, source: string): RootRotationState {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${source}: not valid JSON (${(err as Error).message})`, { file: source }, { cause: err });
  }
  const bad = (field: string, why: string): never => {
    throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${source}: ${field} ${why}`, { file: source, field });
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) bad('(document)', 'must be a JSON object');
  if (doc['version'] !== 1) bad('version', 'must be 1');
  if (!PHASES.has(doc['phase'] as string)) bad('phase', `must be one of ${[...PHASES].join(', ')}`);
  // A `newRootDir` written by an older release is ignored: the state records no path.
  for (const f of ['trustDomain', 'newRootPem']) if (typeof doc[f] !== 'string' || doc[f] === '') bad(f, 'must be a non-empty string');
  for (const f of ['startedAt', 'phaseSince']) if (typeof doc[f] !== 'string' || Number.isNaN(Date.parse(doc[f] as string))) bad(f, 'must be an ISO-8601 time');
  if (doc['switchedAt'] !== null && (typeof doc['switchedAt'] !== 'string' || Number.isNaN(Date.parse(doc['switchedAt'])))) bad('switchedAt', 'must be null or an ISO-8601 time');
  if (doc['phase'] !== 'bundle' && doc['switchedAt'] === null) bad('switchedAt', `must be set in phase ${String(doc['phase'])}`);
  if (!Array.isArray(doc['oldRootsPem']) || doc['oldRootsPem'].length === 0 || doc['oldRootsPem'].some((p) => typeof p !== 'string')) bad('oldRootsPem', 'must be a non-empty list of PEM strings');
  if (typeof doc['reloadGraceSeconds'] !== 'number' || !Number.isFinite(doc['reloadGraceSeconds']) || doc['reloadGraceSeconds'] < 0) bad('reloadGraceSeconds', 'must be a non-negative number');
  return Object.freeze({
    version: 1,
    phase: doc['phase'] as RootRotationState['phase'],
    trustDomain: doc['trustDomain'] as string,
    startedAt: doc['startedAt'] as string,
    phaseSince: doc['phaseSince'] as string,
    oldRootsPem: Object.freeze([...(doc['oldRootsPem'] as string[])]),
    newRootPem: doc['newRootPem'] as string,
    switchedAt: doc['switchedAt'] as string | null,
    reloadGraceSeconds: doc['reloadGraceSeconds'] as number,
  });
}

/** Loads the state of `caDir`, or null when no rotation was ever started. */
export function loadRootRotationState(caDir: string): RootRotationState | null {
  const path = join(caDir, ROOT_ROTATION_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file: path }, { cause: err });
  }
  return parseRootRotationState(text, path);
}

/** Writes the state atomically. */
export function saveRootRotationState(caDir: string, state: RootRotationState): void {
  writeCaFiles(caDir, [{ name: ROOT_ROTATION_FILE, contents: JSON.stringify(state, null, 2) + '\n', mode: 0o644 }]);
}
