/**
 * Rewrites HTTP probes that target a redirected app port so they go to the
 * sidecar's health port instead: under STRICT, kubelet (which has no SVID)
 * could not pass the inbound listener. The sidecar serves
 * `GET /app-health/<container>/<livez|readyz|startupz>` on the health port and
 * forwards it, in plaintext over loopback, to the original probe, which it
 * reads from the `TRELLIS_APP_PROBES` env var (JSON, keyed by that path).
 */
import type { Container, Probe } from './pod-shape';

/** The probe kinds and their path suffixes. */
export const PROBE_KINDS = [
  ['livenessProbe', 'livez'],
  ['readinessProbe', 'readyz'],
  ['startupProbe', 'startupz'],
] as const;

/** The original probe as the sidecar needs it to forward (port resolved to a number). */
export interface AppProbe {
  port: number;
  path: string;
  scheme: string;
  httpHeaders?: Array<{ name: string; value: string }>;
  timeoutSeconds?: number;
}

/** One rewrite: which container/probe, the replacement, and the original. */
export interface ProbeRewrite {
  containerIndex: number;
  field: 'livenessProbe' | 'readinessProbe' | 'startupProbe';
  path: string;
  probe: Probe;
  original: AppProbe;
}

/**
 * Plans the rewrites for app containers. Only `httpGet` probes without a
 * `host` whose port (number or port name) resolves to one of `redirectedPorts`
 * are rewritten; exec, tcpSocket, grpc and probes to other ports are left as
 * they are (those ports are not redirected, so kubelet still reaches them).
 */
export function planProbeRewrites(containers: readonly Container[], redirectedPorts: ReadonlySet<number>, healthPort: number): ProbeRewrite[] {
  const out: ProbeRewrite[] = [];
  containers.forEach((c, containerIndex) => {
    for (const [field, suffix] of PROBE_KINDS) {
      const probe = c[field];
      const get = probe?.httpGet;
      if (!probe || !get || get.host) continue;
      const port = resolvePort(c, get.port);
      if (port === undefined || !redirectedPorts.has(port)) continue;
      const path = `/app-health/${c.name}/${suffix}`;
      const original: AppProbe = { port, path: get.path ?? '/', scheme: get.scheme ?? 'HTTP' };
      if (get.httpHeaders && get.httpHeaders.length > 0) original.httpHeaders = get.httpHeaders;
      if (typeof probe.timeoutSeconds === 'number') original.timeoutSeconds = probe.timeoutSeconds;
      out.push({ containerIndex, field, path, original, probe: { ...probe, httpGet: { path, port: healthPort, scheme: 'HTTP' } } });
    }
  });
  return out;
}

function resolvePort(c: Container, port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  if (/^[0-9]+$/.test(port)) return Number(port);
  return c.ports?.find((p) => p.name === port)?.containerPort;
}
