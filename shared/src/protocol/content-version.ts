/**
 * Content-hash versions. A version is derived from the resources alone (keys
 * sorted, no timestamps, no replica identity), so two replicas serving the
 * same CA and policy dir compute the same version, and a restarted control
 * plane recognises what a reconnecting sidecar already holds.
 */
import { createHash } from 'node:crypto';

/** JSON with object keys sorted at every level; arrays keep their order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value as Record<string, unknown>).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/**
 * The version of a set of named resources: the first 16 hex digits of the
 * SHA-256 of their canonical JSON, ordered by name. The empty set has a
 * version too, so "no policies" is a state a sidecar can ACK.
 */
export function contentVersion(resources: ReadonlyArray<{ name: string; body: unknown }>): string {
  const sorted = [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const h = createHash('sha256');
  for (const r of sorted) {
    h.update(r.name);
    h.update('\u0000');
    h.update(canonicalJson(r.body));
    h.update('\u0000');
  }
  return h.digest('hex').slice(0, 16);
}
