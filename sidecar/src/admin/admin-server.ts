/**
 * The localhost admin endpoint: `/ready` (200 only with a valid SVID, bundle
 * and policy), `/stats` (Prometheus text), `/config_dump` (JSON; never a
 * private key), `/quitquitquit` (POST; asks the sidecar to drain and exit,
 * for Jobs).
 */
import { createServer, type Server } from 'node:http';
import { bindServer } from '../proxy/bind-server';

/** What the admin server reads from the sidecar. */
export interface AdminSource {
  readiness(): { ready: boolean; reason: string };
  metricsText(): Promise<string>;
  metricsContentType: string;
  configDump(): unknown;
  quit(): void;
}

/** Starts the admin server on `host:port`; resolves with it and its bound port. */
export async function startAdminServer(host: string, port: number, src: AdminSource): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(body);
    };
    if (path === '/ready') {
      const r = src.readiness();
      return send(r.ready ? 200 : 503, 'text/plain', `${r.ready ? 'LIVE' : 'NOT READY'}: ${r.reason}\n`);
    }
    if (path === '/stats' || path === '/stats/prometheus' || path === '/metrics') {
      src.metricsText().then(
        (text) => send(200, src.metricsContentType, text),
        (err: Error) => send(500, 'text/plain', `metrics failed: ${err.message}\n`),
      );
      return;
    }
    if (path === '/config_dump') return send(200, 'application/json', JSON.stringify(src.configDump(), null, 2) + '\n');
    if (path === '/quitquitquit') {
      if (req.method !== 'POST') return send(405, 'text/plain', 'use POST\n');
      send(200, 'text/plain', 'OK\n');
      setImmediate(() => src.quit());
      return;
    }
    send(404, 'text/plain', 'not found: try /ready, /stats, /config_dump, POST /quitquitquit\n');
  });
  // An accept error once listening (EMFILE) must not take the sidecar down (bind-server.ts); the server accepts again once it can.
  return { server, port: await bindServer(server, port, host, () => undefined) };
}
