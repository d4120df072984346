/**
 * The admin endpoint: liveness, readiness, Prometheus metrics, the debug
 * views `trellis proxy-status` reads, and the lifecycle steps (`POST
 * /lifecycle/...`) behind `trellis revoke --admin` and `trellis ca ...
 * --admin`. One HTTPS port, serving the control plane's own SVID from the
 * same TLS-material holder as the discovery server and trusting the same
 * mesh bundle. It asks every client for a certificate and decides per
 * request (admin-access.ts): /healthz, /readyz and /metrics answer anyone;
 * everything else needs mTLS with an admin identity. It exposes no secrets
 * (no keys, no tokens, no full certificates) and never takes a file path.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import { DEFAULT_KEY_EXCHANGE, groupsList, withoutCertificateCompression, parseHostPort, parseCertificates, parsePemBundle, type CertificateFacts, type KeyExchangePolicy, type Logger, type TrustBundle } from '@trellis/shared';
import { gateClientHello } from '../tls/client-hello-gate';
import { decideAdminRequest, PUBLIC_PATHS, type AdminDecision, type AdminRequestFacts } from './admin-access';
import { AdminError, AdminErrorCode } from './admin-error';
import { acceptedAdminHosts } from './admin-host';
import { errorBody, httpStatusOf } from './admin-status';
import type { AdminRequestContext, AdminRoute } from './lifecycle-routes';

/** The largest request body the admin API reads. */
const MAX_BODY_BYTES = 64 * 1024;
/** How long a new connection may take to send its ClientHello. */
const ADMIN_HELLO_TIMEOUT_MS = 10_000;

/** The TLS material the admin server serves and trusts (the control plane's MutableCertificateProvider). */
export interface AdminTlsMaterial {
  /** Our chain and key, and the roots client certificates must chain to; null before the first SVID. */
  current(): { cert: Buffer; key: Buffer; ca: Buffer } | null;
  /** Called after every swap; the server re-reads {@link current} for new connections. */
  onUpdate(l: () => void): void;
}

/** Who may use the admin API. */
export interface AdminAccessSettings {
  trustDomain: string;
  /** SPIFFE IDs allowed to use the protected paths. */
  allow: readonly string[];
  /** Extra `HOST[:PORT]` values the Host header may carry (the pod IP, a Service name). */
  hosts?: readonly string[];
  /** True when the serial (normalised hex) or the SPIFFE ID is revoked. */
  isRevoked(serialHex: string, spiffeId: string): boolean;
  now(): Date;
}

/** What the admin server reads from the running control plane. */
export interface AdminSources {
  ready(): boolean;
  /** Why the control plane is not ready, for the /readyz body (e.g. the CA dir cannot be written). */
  notReadyReasons?(): readonly string[];
  metrics: Registry;
  proxies(): unknown;
  policies(): unknown;
  /** Extra routes (the lifecycle steps); their errors are mapped by {@link httpStatusOf}. */
  routes?: readonly AdminRoute[];
  tls: AdminTlsMaterial;
  access: AdminAccessSettings;
  logger: Logger;
  /** The key-exchange policy (default prefer) and where handshakes are counted. */
  keyExchange?: { policy: KeyExchangePolicy; onHandshake(group: string, result: string): void };
}

/**
 * The presented client chain (leaf first, DER), without any trust anchor
 * OpenSSL appended from our roots. Empty when no certificate was sent.
 */
function presentedChain(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c = socket.getPeerCertificate(true) as { raw?: Buffer; issuerCertificate?: unknown } | undefined;
  const seen = new Set<unknown>();
  while (c && c.raw && !seen.has(c) && out.length < 10) {
    seen.add(c);
    out.push(c.raw);
    const next = c.issuerCertificate as { raw?: Buffer; issuerCertificate?: unknown } | undefined;
    if (!next || next === c) break;
    c = next;
  }
  return out;
}

function parseChain(ders: Buffer[]): CertificateFacts[] | null {
  try {
    // Self-issued certificates are anchors; anchors come from our bundle, never from the peer.
    return parseCertificates(ders).filter((c, i) => i === 0 || !c.issuer.equals(c.subject));
  } catch {
    return null;
  }
}

/** Starts the admin server on host:port; resolves with the bound port. */
export async function startAdminServer(listen: string, src: AdminSources): Promise<{ server: Server; port: number }> {
  const { host, port } = splitHostPort(listen);
  const material = src.tls.current();
  if (!material) throw new AdminError(AdminErrorCode.INTERNAL, 'the admin server needs the control plane certificate and the trust bundle first', {});
  let bundle: { pem: string; bundle: TrustBundle } | null = null;
  const trustBundle = (ca: Buffer): TrustBundle => {
    const pem = ca.toString('utf8');
    if (bundle?.pem !== pem) bundle = { pem, bundle: parsePemBundle(src.access.trustDomain, pem, 'trust bundle') };
    return bundle.bundle;
  };
  const allow = new Set(src.access.allow);
  const routes = src.routes ?? [];
  let hosts = acceptedAdminHosts(host, port, src.access.hosts);

  /** The facts of one request as the TLS server saw them, decided against the current snapshot. */
  const decide = (req: IncomingMessage, path: string, route: AdminRoute | null, socket: TLSSocket): AdminDecision => {
    const chain = parseChain(presentedChain(socket));
    if (chain === null) return { allow: false, code: AdminErrorCode.UNAUTHENTICATED, reason: 'the client certificate chain cannot be parsed', details: {} };
    const facts: AdminRequestFacts = {
      method: req.method ?? '',
      path,
      host: req.headers.host,
      contentType: req.headers['content-type'],
      route: route ? { method: route.method } : null,
      peerChain: chain,
      tlsVerified: socket.authorized === true,
      tlsError: socket.authorizationError ? String(socket.authorizationError) : undefined,
    };
    return decideAdminRequest(facts, { trustBundle: trustBundle(src.tls.current()!.ca), allow, hosts, isRevoked: src.access.isRevoked, now: src.access.now() });
  };

  const kex = src.keyExchange ?? { policy: DEFAULT_KEY_EXCHANGE, onHandshake: () => undefined };
  const tlsOptions = { minVersion: 'TLSv1.2' as const, ecdhCurve: groupsList(kex.policy), secureOptions: withoutCertificateCompression() };
  const server = createServer({ ...material, requestCert: true, rejectUnauthorized: false, ...tlsOptions }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const socket = req.socket as TLSSocket;
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body, null, 2) + '\n');
    };
    const fail = (err: unknown): void => json(httpStatusOf(err), errorBody(err));
    const route = routes.find((r) => r.path === path) ?? builtIn(path);
    let decision: AdminDecision;
    try {
      decision = decide(req, path, route, socket);
    } catch (err) {
      // Fail closed without taking the server down: nothing is served on an error here.
      req.resume();
      src.logger.error('admin request could not be decided; refused', { path, error: err });
      return fail(new AdminError(AdminErrorCode.INTERNAL, 'the admin server could not check this request', {}));
    }
    if (!decision.allow) {
      req.resume();
      if (decision.code === AdminErrorCode.METHOD_NOT_ALLOWED && route) res.setHeader('allow', route.method);
      src.logger.warn('admin request refused', { method: req.method, path, code: decision.code, reason: decision.reason, spiffeId: (decision.details['spiffeId'] as string | undefined) ?? null, remote: socket.remoteAddress ?? null });
      return fail(new AdminError(decision.code, decision.reason, { ...decision.details }));
    }
    // Reads (a dashboard polls twice a second) at debug; every state change at info.
    if (decision.identity !== null) src.logger[req.method === 'POST' ? 'info' : 'debug']('admin request', { method: req.method, path, spiffeId: decision.identity });
    switch (path) {
      case '/healthz':
        return json(200, { status: 'ok' });
      case '/readyz':
        return src.ready() ? json(200, { status: 'ready' }) : json(503, { status: 'not ready', reasons: src.notReadyReasons?.() ?? [] });
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
        return serveRoute(route as AdminRoute, req, res, json, { identity: decision.identity ?? '', query: new URLSearchParams((req.url ?? '').split('?')[1] ?? '') });
    }
  });
  src.tls.onUpdate(() => {
    const m = src.tls.current();
    // A swap keeps the requestCert/rejectUnauthorized server options; only the context changes.
    if (m) server.setSecureContext({ ...m, ...tlsOptions });
  });
  // Every connection passes the key-exchange gate before the TLS server sees it: the group it
  // will negotiate is named (node:tls does not say on the server side), and under `require` a
  // classical-only client is refused and counted. The TLS server's own connection listeners run
  // after the gate, on the same socket with its first bytes put back.
  const groups = new Map<string, string>();
  const peerKey = (s: { remoteAddress?: string; remotePort?: number }): string => `${s.remoteAddress}:${s.remotePort}`;
  const tlsListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => socket.destroy());
    gateClientHello(socket, kex.policy, ADMIN_HELLO_TIMEOUT_MS, (v) => {
      if (!v.ok) {
        if (v.reason === 'kex_not_hybrid' || v.reason === 'bad_client_hello') {
          kex.onHandshake('unknown', v.reason);
          src.logger.info('admin connection refused at its ClientHello', { reason: v.reason, detail: v.detail, remote: socket.remoteAddress ?? null });
        }
        socket.destroy();
        return;
      }
      const key = peerKey(socket);
      groups.set(key, v.group);
      socket.once('close', () => groups.delete(key));
      for (const l of tlsListeners) l.call(server, socket);
    });
  });
  server.on('secureConnection', (tls: TLSSocket) => kex.onHandshake(groups.get(peerKey(tls)) ?? 'unknown', 'ok'));
  // A TLS failure (a plain-HTTP client, a bad handshake) ends that connection only.
  server.on('tlsClientError', (err) => src.logger.debug('admin TLS handshake failed', { error: err.message }));
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
  hosts = acceptedAdminHosts(host, bound, src.access.hosts);
  return { server, port: bound };
}

/** The built-in GET routes (the handler switch serves them). */
function builtIn(path: string): AdminRoute | null {
  if (PUBLIC_PATHS.includes(path) || path === '/debug/proxies' || path === '/debug/policies') return { method: 'GET', path, handle: () => undefined };
  return null;
}

/** Reads the JSON body (POST), runs the route, and answers its result or its mapped error. */
function serveRoute(route: AdminRoute, req: IncomingMessage, res: ServerResponse, json: (code: number, body: unknown) => void, ctx: AdminRequestContext): void {
  const fail = (err: unknown): void => json(httpStatusOf(err), errorBody(err));
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
      return route.handle(body as Record<string, unknown>, ctx);
    })().then((out) => json(200, out), fail);
  });
}

/** Splits "host:port" (IPv6 as "[::1]:port") with the shared parser; throws naming the address otherwise. */
export function splitHostPort(s: string): { host: string; port: number } {
  const hp = parseHostPort(s);
  if (typeof hp === 'string') throw new Error(`"${s}" is not host:port: ${hp}`);
  return hp;
}
