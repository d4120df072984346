/**
 * The admin HTTP endpoint: liveness, readiness, Prometheus metrics and the
 * debug views operators and `trellis proxy-status` read. Plain HTTP on a
 * loopback address by default; it exposes no secrets (no keys, no tokens, no
 * full certificates).
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/** What the admin server reads from the running control plane. */
export interface AdminSources {
  ready(): boolean;
  metrics: Registry;
  proxies(): unknown;
  policies(): unknown;
}

/** Starts the admin server on host:port; resolves with the bound port. */
export async function startAdminServer(listen: string, src: AdminSources): Promise<{ server: Server; port: number }> {
  const { host, port } = splitHostPort(listen);
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, null, 2) + '\n');
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed' });
    switch (url) {
      case '/healthz':
        return json(200, { status: 'ok' });
      case '/readyz':
        return src.ready() ? json(200, { status: 'ready' }) : json(503, { status: 'not ready' });
      case '/metrics':
        src.metrics.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': src.metrics.contentType });
            res.end(text);
          },
          (err: Error) => json(500, { error: err.message }),
        );
        return undefined;
      case '/debug/proxies':
        return json(200, { proxies: src.proxies() });
      case '/debug/policies':
        return json(200, src.policies());
      default:
        return json(404, { error: `no such path ${url}`, paths: ['/healthz', '/readyz', '/metrics', '/debug/proxies', '/debug/policies'] });
    }
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
  return { server, port: bound };
}

/** Splits "host:port" (IPv6 as "[::1]:port"). */
export function splitHostPort(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw new Error(`"${s}" is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}
