/**
 * The admin HTTP endpoint: liveness, readiness, Prometheus metrics, the
 * debug views operators and `trellis proxy-status` read, and the lifecycle
 * steps (`POST /lifecycle/...`) that `trellis revoke --admin` and `trellis
 * ca ... --admin` call. Plain HTTP on a loopback address by default: whoever
 * can reach it can revoke and rotate, so keep it on localhost. It exposes no
 * secrets (no keys, no tokens, no full certificates).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { AdminError, AdminErrorCode } from './admin-error';
import { errorBody, httpStatusOf } from './admin-status';
import type { AdminRoute } from './lifecycle-routes';

const GET_PATHS: readonly string[] = ['/healthz', '/readyz', '/metrics', '/debug/proxies', '/debug/policies'];

/** The largest request body the admin API reads. */
const MAX_BODY_BYTES = 64 * 1024;

/** What the admin server reads from the running control plane. */
export interface AdminSources {
  ready(): boolean;
  metrics: Registry;
  proxies(): unknown;
  policies(): unknown;
  /** Extra routes (the lifecycle steps); their errors are mapped by {@link httpStatusOf}. */
  routes?: readonly AdminRoute[];
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
    const route = (src.routes ?? []).find((r) => r.path === url);
    if (route) {
      serveRoute(route, req, res, json);
      return undefined;
    }
    const paths = [...GET_PATHS, ...(src.routes ?? []).map((r) => `${r.method} ${r.path}`)];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return GET_PATHS.includes(url)
        ? fail(new AdminError(AdminErrorCode.METHOD_NOT_ALLOWED, `${req.method ?? '?'} ${url}: only GET here`, { method: req.method, allowed: 'GET' }))
        : fail(new AdminError(AdminErrorCode.NOT_FOUND, `no such path ${url}`, { paths }));
    }
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
        return fail(new AdminError(AdminErrorCode.NOT_FOUND, `no such path ${url}`, { paths }));
    }
    function fail(err: unknown): void {
      json(httpStatusOf(err), errorBody(err));
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

 /** Reads the JSON body (POST), runs the route, and answers its result or its mapped error. */
function serveRoute(route: AdminRoute, req: IncomingMessage, res: ServerResponse, json: (code: number, body: unknown) => void): void {
  const fail = (err: unknown): void => json(httpStatusOf(err), errorBody(err));
  if (req.method !== route.method && !(route.method === 'GET' && req.method === 'HEAD')) {
    res.setHeader('allow', route.method);
    req.resume();
    return fail(new AdminError(AdminErrorCode.METHOD_NOT_ALLOWED, `${req.method ?? '?'} ${route.path}: use ${route.method}`, { method: req.method, allowed: route.method }));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_BODY_BYTES) tooLarge = true;
    else chunks.push(c);
  });
  req.on('error', () => res.destroy());
  req.on('end', () => {
    (async () => {
      if (tooLarge) throw new AdminError(AdminErrorCode.BAD_BODY, `request body over ${MAX_BODY_BYTES} bytes`, { field: '' });
      let body: unknown = {};
      const text = Buffer.concat(chunks).toString('utf8');
      if (route.method === 'POST' && text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (err) {
          throw new AdminError(AdminErrorCode.BAD_BODY, `request body is not JSON: ${(err as Error).message}`, { field: '' });
        }
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AdminError(AdminErrorCode.BAD_BODY, 'request body must be a JSON object', { field: '' });
      return route.handle(body as Record<string, unknown>);
    })().then((out) => json(200, out), fail);
  });
}

/** Splits "host:port" (IPv6 as "[::1]:port"). */
export function splitHostPort(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw new Error(`"${s}" is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}
