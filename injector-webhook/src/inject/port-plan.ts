/**
 * Which app ports the sidecar fronts, and on which port it listens for each.
 *
 * The sidecar takes one inbound listener per app TCP port, from a fixed
 * range starting at `inboundPortBase` (15100 by default): the i-th app port in
 * ascending order gets the i-th free port of the range. Deterministic, so a
 * Deployment's pods all look the same and golden files stay stable. The init
 * container redirects inbound TCP for each app port to its listener. Each
 * port's protocol comes from its name or appProtocol (port-protocol.ts).
 */
import type { InjectorConfig } from '../config/injector-config';
import { InjectorError } from '../errors/injector-error';
import type { Container } from './pod-shape';
import { portProtocol, strongerProtocol, type PortProtocol } from './port-protocol';

/** One app port and the sidecar listener that fronts it. */
export interface InboundPort {
  readonly appPort: number;
  readonly listenPort: number;
  /**
   * What the sidecar is told the port carries (port-protocol.ts: Istio's
   * rule on the port name or appProtocol): `http`, `h2c` and `grpc` make an
   * HTTP port (`--inbound L=A/SUFFIX`), `tcp` a byte port.
   */
  readonly protocol: PortProtocol;
}

/**
 * Plans the inbound listeners for `containers` (app containers only).
 * Ports with protocol UDP/SCTP and ports in `exclude` are left alone.
 * Throws TRELLIS_INJECTOR_BAD_MANIFEST when an app port is one the sidecar
 * itself needs (admin or health port).
 */
export function planInboundPorts(containers: readonly Container[], config: InjectorConfig, exclude: readonly number[] = []): InboundPort[] {
  const byPort = new Map<number, PortProtocol>();
  const all = new Set<number>();
  for (const c of containers) {
    for (const p of c.ports ?? []) {
      all.add(p.containerPort);
      if ((p.protocol ?? 'TCP').toUpperCase() !== 'TCP') continue;
      if (exclude.includes(p.containerPort)) continue;
      if (p.containerPort === config.adminPort || p.containerPort === config.healthPort) {
        throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', `container "${c.name}": port ${p.containerPort} is reserved for the Trellis sidecar`, { container: c.name, port: p.containerPort });
      }
      const seen = byPort.get(p.containerPort);
      const protocol = portProtocol(p);
      byPort.set(p.containerPort, seen === undefined ? protocol : strongerProtocol(seen, protocol));
    }
  }
  const out: InboundPort[] = [];
  let next = config.inboundPortBase;
  for (const appPort of [...byPort.keys()].sort((a, b) => a - b)) {
    while (all.has(next) || next === config.adminPort || next === config.healthPort) next++;
    if (next > 65535) throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', 'too many app ports for the inbound listener range', { base: config.inboundPortBase });
    out.push({ appPort, listenPort: next, protocol: byPort.get(appPort)! });
    next++;
  }
  return out;
}
