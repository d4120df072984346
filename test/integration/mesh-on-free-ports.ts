/**
 * A `trellis up` mesh file on free ports, for the suites that run the real
 * `trellis up`: the example's fixed ports (control plane, sidecars, apps,
 * dashboard) are each replaced by a reserved free one, so two suites (or a
 * developer's own `npm start`) can run side by side.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { reservePorts } from '@trellis/testkit';

/** Every port a mesh file names: `port:`, `appPort:` and `127.0.0.1:PORT` addresses. */
export const PORT_FIELD = /(port: |appPort: |127\.0\.0\.1:)(\d{4,5})\b/g;

/**
 * Writes `dest`: the mesh file `src` with each of its fixed ports replaced by
 * a reserved free one. The reservation is held until the caller releases it,
 * right before `trellis up` starts.
 */
export async function meshWithFreePorts(src: string, dest: string): Promise<{ release(): Promise<void>; ports: Map<number, number> }> {
  const text = readFileSync(src, 'utf8');
  const fixed = [...new Set([...text.matchAll(PORT_FIELD)].map((m) => Number(m[2])))];
  const r = await reservePorts(fixed.length);
  const ports = new Map(fixed.map((p, i) => [p, r.ports[i]!]));
  writeFileSync(dest, text.replace(PORT_FIELD, (_, k: string, p: string) => `${k}${ports.get(Number(p))}`));
  return { release: r.release, ports };
}
