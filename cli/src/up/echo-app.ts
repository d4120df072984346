/**
 * Trellis's built-in demo app: a tiny HTTP server that answers every request
 * with JSON describing it, including the caller's SPIFFE ID as the sidecar
 * reported it in `x-forwarded-client-cert`. It knows nothing about TLS: the
 * point of the mesh is that apps don't have to.
 */
import { createServer, type Server } from 'node:http';

export interface EchoAppOptions {
  name: string;
  host: string;
  port: number;
}

/** What the echo app answers with. */
export interface EchoReply {
  service: string;
  method: string;
  path: string;
  /** The raw `x-forwarded-client-cert` header, if the sidecar set one. */
  xfcc: string | null;
  /** The `URI=` element of that header: the caller's SPIFFE ID. */
  callerSpiffeId: string | null;
}

/** Extracts the caller's SPIFFE ID (the `URI=` element) from an Envoy-style XFCC header. */
export function callerFromXfcc(xfcc: string | undefined): string | null {
  if (!xfcc) return null;
  // Several elements may be comma-separated (one per hop); the last is the closest hop.
  const last = xfcc.split(',').pop() ?? '';
  for (const part of last.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === 'uri') return part.slice(eq + 1).trim().replace(/^"|"$/g, '');
  }
  return null;
}

/** Starts the echo app; resolves once it is listening. */
export function startEchoApp(opts: EchoAppOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const xfcc = typeof req.headers['x-forwarded-client-cert'] === 'string' ? req.headers['x-forwarded-client-cert'] : null;
      const reply: EchoReply = {
        service: opts.name,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        xfcc,
        callerSpiffeId: callerFromXfcc(xfcc ?? undefined),
      };
      const body = JSON.stringify(reply) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
