/**
 * The health port kubelet probes (the injector points pod probes here):
 * `GET /ready` is the sidecar's readiness, and
 * `GET /app-health/<container>/<livez|readyz|startupz>` forwards, in
 * plaintext over loopback, to the application's original HTTP probe (which
 * STRICT mTLS would otherwise block: kubelet has no SVID). The original
 * probes come from `TRELLIS_APP_PROBES`, keyed by that path. Nothing else is
 * served here: this port is reachable from the node, unlike the admin port.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { bindServer } from '../proxy/bind-server';

/** An application probe as the injector records it. */
export interface AppProbe {
  readonly port: number;
  readonly path: string;
  readonly scheme: string;
  readonly httpHeaders?: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  readonly timeoutSeconds?: number;
}

/** Starts the health server; resolves with it and its bound port. */
export async function startHealthServer(
  host: string,
  port: number,
  src: { readiness(): { ready: boolean; reason: string }; probes: Readonly<Record<string, AppProbe>> },
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const send = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'use GET\n');
    if (path === '/ready') {
      const r = src.readiness();
      return send(r.ready ? 200 : 503, `${r.ready ? 'LIVE' : 'NOT READY'}: ${r.reason}\n`);
    }
    const probe = Object.prototype.hasOwnProperty.call(src.probes, path) ? src.probes[path] : undefined;
    if (!probe) return send(404, 'unknown probe\n');
    const headers: Record<string, string> = {};
    for (const h of probe.httpHeaders ?? []) headers[h.name] = h.value;
    const https = probe.scheme.toUpperCase() === 'HTTPS';
    const opts = { host: '127.0.0.1', port: probe.port, path: probe.path, method: 'GET', headers, timeout: (probe.timeoutSeconds ?? 1) * 1000, agent: false as const };
    // Like kubelet, an HTTPS probe does not verify the application's certificate.
    const up = https ? httpsRequest({ ...opts, rejectUnauthorized: false }) : httpRequest(opts);
    up.on('response', (r) => {
      r.resume();
      send(r.statusCode ?? 502, `app probe answered ${r.statusCode}\n`);
    });
    up.on('timeout', () => up.destroy(new Error('timeout')));
    up.on('error', (err) => {
      if (!res.headersSent) send(503, `app probe failed: ${err.message}\n`);
    });
    up.end();
  });
  // An accept error once listening (EMFILE) must not take the sidecar down (bind-server.ts); the server accepts again once it can.
  return { server, port: await bindServer(server, port, host, () => undefined) };
}

/** Parses `TRELLIS_APP_PROBES` (JSON object keyed by `/app-health/...` path); returns the probes or the problems. Pure. */
export function parseAppProbes(text: string, source: string): { probes: Record<string, AppProbe>; problems: string[] } {
  const problems: string[] = [];
  const probes: Record<string, AppProbe> = {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { probes, problems: [`${source}: not JSON: ${(err as Error).message}`] };
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { probes, problems: [`${source}: must be a JSON object keyed by probe path`] };
  for (const [path, p] of Object.entries(v as Record<string, unknown>)) {
    const o = p as Record<string, unknown>;
    if (!path.startsWith('/app-health/')) problems.push(`${source}: key "${path}" must start with /app-health/`);
    else if (!o || typeof o !== 'object' || !Number.isInteger(o.port) || (o.port as number) < 1 || (o.port as number) > 65535 || typeof o.path !== 'string') {
      problems.push(`${source}["${path}"]: needs a numeric port and a path`);
    } else {
      probes[path] = Object.freeze({ port: o.port as number, path: o.path, scheme: typeof o.scheme === 'string' ? o.scheme : 'HTTP', httpHeaders: Array.isArray(o.httpHeaders) ? (o.httpHeaders as AppProbe['httpHeaders']) : undefined, timeoutSeconds: typeof o.timeoutSeconds === 'number' ? o.timeoutSeconds : undefined });
    }
  }
  return { probes, problems };
}
