/**
 * The dashboard's local web server: the page (one HTML shell, one script,
 * one stylesheet, all served from the bundle `npm run build` makes; nothing
 * from a CDN) and a WebSocket at `/ws` that pushes the mesh feed to it.
 * Every request passes dashboard-access.ts first (Host, token, and for the
 * WebSocket the Origin); every answer carries a Content-Security-Policy that
 * allows this origin only and no inline script, and forbids framing.
 * Loopback only unless `allowRemote`; a slow page is cut off, never buffered
 * without bound.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { acceptedAdminHosts, splitHostPort } from '@trellis/control-plane';
import { formatHostPort, isLoopbackHost, type Logger } from '@trellis/shared';
import { decideDashboardRequest, newDashboardToken, TOKEN_COOKIE } from './dashboard-access';
import { DashboardError, DashboardErrorCode } from './dashboard-error';
import type { MeshFeed } from './mesh-feed';

/** Where `npm run build` puts the page's bundle. */
export const DASHBOARD_ASSETS_DIR = join(__dirname, '..', '..', 'dashboard');

/** A page whose socket holds more than this unsent is closed (it reconnects and gets a fresh hello). */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/** The answer headers every response carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
});

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trellis mesh</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body><noscript>The Trellis dashboard needs JavaScript.</noscript></body>
</html>
`;

/** How to start the dashboard. */
export interface DashboardOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  /** Allow a non-loopback listen address (the token and Origin checks still apply). */
  allowRemote?: boolean;
  /** The token; default a fresh random one. */
  token?: string;
  /** Where the bundle is; default DASHBOARD_ASSETS_DIR. */
  assetsDir?: string;
}

/** A running dashboard. */
export interface RunningDashboard {
  /** The URL to open, with its token. */
  readonly url: string;
  /** The URL without the token (for logs). */
  readonly origin: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Checks and binds the listen address, then serves `feed`. */
export async function startDashboard(opts: DashboardOptions, deps: { feed: MeshFeed; logger: Logger }): Promise<RunningDashboard> {
  let host: string;
  let port: number;
  try {
    ({ host, port } = splitHostPort(opts.listen));
  } catch {
    throw new DashboardError(DashboardErrorCode.BAD_LISTEN, `--listen "${opts.listen}" is not HOST:PORT (e.g. 127.0.0.1:15080)`, { listen: opts.listen });
  }
  if (!isLoopbackHost(host) && !opts.allowRemote) {
    throw new DashboardError(DashboardErrorCode.NOT_LOOPBACK, `--listen ${opts.listen} is not a loopback address: the dashboard shows the mesh with admin credentials, so it binds 127.0.0.1 unless --allow-remote says otherwise`, { listen: opts.listen });
  }
  const dir = opts.assetsDir ?? DASHBOARD_ASSETS_DIR;
  let assets: Record<string, { type: string; body: Buffer }>;
  try {
    assets = {
      '/': { type: 'text/html; charset=utf-8', body: Buffer.from(HTML) },
      '/app.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(join(dir, 'app.js')) },
      '/app.css': { type: 'text/css; charset=utf-8', body: readFileSync(join(dir, 'app.css')) },
    };
  } catch (err) {
    throw new DashboardError(DashboardErrorCode.PAGE_MISSING, `the dashboard page is not built (${(err as Error).message}); run npm run build`, { dir });
  }
  const token = opts.token ?? newDashboardToken();
  let hosts = acceptedAdminHosts(host, port);
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false });
  const sockets = new Set<WebSocket>();

  const decide = (req: IncomingMessage, websocket: boolean): ReturnType<typeof decideDashboardRequest> => {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    return decideDashboardRequest({ host: req.headers.host, queryToken: url.searchParams.get('token'), cookie: req.headers.cookie, origin: req.headers.origin, websocket }, token, hosts);
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const path = (req.url ?? '/').split('?')[0]!;
    const d = decide(req, false);
    if (!d.allow) {
      req.resume();
      res.writeHead(d.status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${d.reason}\n`);
      return;
    }
    if (d.setCookie) res.setHeader('set-cookie', `${TOKEN_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      req.resume();
      res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain; charset=utf-8' });
      res.end('the dashboard only reads\n');
      return;
    }
    // The token leaves the address bar at once: it is in the cookie now.
    if (path === '/' && d.setCookie) {
      res.writeHead(303, { location: '/' });
      res.end();
      return;
    }
    const a = assets[path];
    if (!a) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': a.type, 'content-length': a.body.length });
    res.end(req.method === 'HEAD' ? undefined : a.body);
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '/').split('?')[0]!;
    const d = decide(req, true);
    if (!d.allow || path !== '/ws') {
      const [status, reason] = !d.allow ? [d.status, d.reason] : [404, 'not found'];
      deps.logger.warn('dashboard WebSocket refused', { status, reason, origin: req.headers.origin ?? null });
      socket.end(`HTTP/1.1 ${status} ${status === 404 ? 'Not Found' : status === 421 ? 'Misdirected Request' : status === 401 ? 'Unauthorized' : 'Forbidden'}\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      const send = (m: unknown): void => {
        if (ws.readyState !== ws.OPEN) return;
        if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
          ws.terminate();
          return;
        }
        ws.send(JSON.stringify(m));
      };
      send(deps.feed.hello());
      const unsubscribe = deps.feed.subscribe(send);
      ws.on('message', () => undefined);
      ws.on('error', () => ws.terminate());
      ws.on('close', () => {
        unsubscribe();
        sockets.delete(ws);
      });
    });
  });

  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', (err) => reject(new DashboardError(DashboardErrorCode.LISTEN_FAILED, `the dashboard cannot listen on ${opts.listen}: ${err.message}`, { listen: opts.listen }, { cause: err })));
    server.listen(port, host, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
  hosts = acceptedAdminHosts(host, bound);
  const origin = `http://${formatHostPort(host, bound)}`;
  deps.feed.start();
  return {
    url: `${origin}/?token=${token}`,
    origin,
    port: bound,
    async stop() {
      deps.feed.stop();
      for (const ws of sockets) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
