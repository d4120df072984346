/**
 * The revocations file a control plane may be pointed at (`--revocations`):
 * the CA dir's `revocations.json` as `trellis revoke` writes it, or a plain
 * YAML/JSON list. Parsed into the pushed resource, serials in the one form.
 */
import { parse as parseYaml } from 'yaml';
import { normaliseSerial, type RevocationsResource } from '@trellis/shared';
import { loadRevocationStore } from './revocation-store';
import { revocationsResource } from './revocation-list';

/**
 * Parses a revocation list file: the CA dir's `revocations.json` as `trellis
 * revoke` writes it (`{entries: [...]}`; serial entries drop out once their
 * certificate expired), or a plain YAML/JSON `{serials: [hex], spiffeIds: [id]}`.
 */
export function parseRevocations(text: string, file: string, now: Date = new Date()): RevocationsResource {
  const v = (parseYaml(text) ?? {}) as Record<string, unknown>;
  if (v && typeof v === 'object' && 'entries' in v) return revocationsResource(loadRevocationStore(file), now);
  const list = (k: string): string[] => {
    const a = v[k] ?? [];
    if (!Array.isArray(a) || a.some((x) => typeof x !== 'string' && typeof x !== 'number')) throw new Error(`${file}: ${k} must be a list of strings`);
    return a.map((x) => String(x));
  };
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: must be a mapping with serials and spiffeIds`);
  // The one serial form (shared x509/serial.ts): the control plane and the sidecars compare what they push in it.
  return { serials: list('serials').map((s) => normaliseSerial(s)), spiffeIds: list('spiffeIds') };
}
