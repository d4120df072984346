/**
 * Which app ports the sidecar fronts, and on which port it listens for each.
 *
 * The sidecar takes one inbound listener per app TCP port, from a fixed
 * range starting at `inboundPortBase` (15100 by default): the i-th app port in
 * ascending order gets the i-th free port of the range. Deterministic, so a
 * Deployment's pods all look the same and golden files stay stable. The init
 * container redirects inbound TCP for each app port to its listener.
 */
import type { InjectorConfig } from '../config/injector-config';
import { InjectorError } from '../errors/injector-error';
import type { Container } from './pod-shape';

/** One app port and the sidecar listener that fronts it. */
export interface InboundPort {
  readonly appPort: number;
  readonly listenPort: number;
  /** True when the port is named `http`/`http-*` or has appProtocol `http`: the sidecar applies HTTP rules. */
  readonly http: boolean;
}

/**
 * Plans the inbound listeners for `containers` (app containers only).
 * Ports with protocol UDP/SCTP and ports in `exclude` are left alone.
 * Throws TRELLIS_INJECTOR_BAD_MANIFEST when an app port is one the sidecar
 * itself needs (admin or health port).
 */
export function planInboundPorts(containers: readonly Container[], config: InjectorConfig, exclude: readonly number[] = []): InboundPort[] {
  const byPort = new Map<number, boolean>();
  const all = new Set<number>();
  for (const c of containers) {
    for (const p of c.ports ?? []) {
      all.add(p.containerPort);
      if ((p.protocol ?? 'TCP').toUpperCase() !== 'TCP') continue;
      if (exclude.includes(p.containerPort)) continue;
      if (p.containerPort === config.adminPort || p.containerPort === config.healthPort) {
        throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', `container "${c.name}": port ${p.containerPort} is reserved for the Trellis sidecar`, { container: c.name, port: p.containerPort });
      }
      const name = (p.name ?? '').toLowerCase();
      const http = name === 'http' || name.startsWith('http-') || (p.appProtocol ?? '').toLowerCase() === 'http';
      byPort.set(p.containerPort, (byPort.get(p.containerPort) ?? false) || http);
    }
  }
  const out: InboundPort[] = [];
  let next = config.inboundPortBase;
  for (const appPort of [...byPort.keys()].sort((a, b) => a - b)) {
    while (all.has(next) || next === config.adminPort || next === config.healthPort) next++;
    if (next > 65535) throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', 'too many app ports for the inbound listener range', { base: config.inboundPortBase });
    out.push({ appPort, listenPort: next, http: byPort.get(appPort) === true });
    next++;
  }
  return out;
}
