/**
 * The HTTPS server the Kubernetes API server calls: `POST /inject` (the
 * mutating webhook: sidecar injection) and `POST /validate` (the validating
 * webhook for policies, policy-review.ts), each with an AdmissionReview v1.
 * `GET /healthz` answers 200 for kubelet probes.
 *
 * Every bad request is answered and forgotten: a body that is not JSON, not an
 * AdmissionReview v1 or has no uid gets HTTP 400 with `{code, message}`; a body
 * over 3 MiB gets 413 once the rest of it has been read and dropped (bounded). Nothing a client sends can
 * stop the server. The serving certificate is swapped in place
 * (`setSecureContext`) when its source changes; open connections keep theirs.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TrellisError, type Logger } from '@trellis/shared';
import type { InjectorConfig } from '../config/injector-config';
import { InjectorError } from '../errors/injector-error';
import { reviewAdmission, type ReviewOutcome } from './admission-review';
import { reviewPolicyAdmission } from './policy-review';
import type { CertSource } from './serving-cert';

/** Largest AdmissionReview body accepted (the API server's own request limit is 3 MiB). */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** Collaborators and settings of the webhook server. */
export interface WebhookServerDeps {
  config: InjectorConfig;
  certs: CertSource;
  logger: Logger;
  /** Override of MAX_BODY_BYTES (tests). */
  maxBodyBytes?: number;
  /** The mesh root namespace, for policy warnings (default trellis-system). */
  rootNamespace?: string;
  clock?: () => Date;
}

/** A running webhook server. */
export interface WebhookServer {
  readonly server: Server;
  /** The bound address (useful with port 0). */
  address(): AddressInfo;
  close(): Promise<void>;
}

/** Starts the server on `host:port`; resolves once it listens. */
export async function startWebhookServer(host: string, port: number, deps: WebhookServerDeps): Promise<WebhookServer> {
  const pair = deps.certs.current();
  const server = createServer({ cert: pair.certPem, key: pair.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res, deps).catch((err: unknown) => {
      deps.logger.error('webhook request failed', { error: err });
      if (!res.headersSent) sendJson(res, 500, { code: 'TRELLIS_INJECTOR_INTERNAL', message: 'internal error' });
      else res.destroy();
    });
  });
  server.on('tlsClientError', (err) => deps.logger.debug('TLS handshake failed', { error: err }));
  server.requestTimeout = 30_000;
  deps.certs.onChange((next) => {
    server.setSecureContext({ cert: next.certPem, key: next.keyPem });
    deps.logger.info('webhook serving certificate rotated', { serial: next.serial, notAfter: next.notAfter.toISOString() });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  deps.logger.info('injector webhook listening', { address: server.address(), serial: pair.serial });
  return {
    server,
    address: () => server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: WebhookServerDeps): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && (path === '/healthz' || path === '/ready')) {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (path !== '/inject' && path !== '/validate') {
    sendJson(res, 404, { code: 'TRELLIS_INJECTOR_NOT_FOUND', message: `no such path ${path}; the webhook paths are /inject and /validate` });
    return;
  }
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    sendJson(res, 405, { code: 'TRELLIS_INJECTOR_METHOD', message: `${path} takes POST` });
    return;
  }
  const limit = deps.maxBodyBytes ?? MAX_BODY_BYTES;
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    await discardBody(req, limit);
    tooLarge(res, limit, deps.logger);
    return;
  }
  const body = await readBody(req, limit);
  if (body === undefined) {
    await discardBody(req, limit);
    tooLarge(res, limit, deps.logger);
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    sendError(res, new InjectorError('TRELLIS_INJECTOR_BAD_REVIEW', 'body is not JSON'), deps.logger);
    return;
  }
  try {
    const outcome: ReviewOutcome =
      path === '/validate' ? reviewPolicyAdmission(parsed, { now: (deps.clock ?? (() => new Date()))(), rootNamespace: deps.rootNamespace }) : reviewAdmission(parsed, deps.config);
    deps.logger.info('admission review', {
      webhook: path,
      uid: outcome.review.response.uid,
      outcome: outcome.outcome,
      reason: outcome.reason,
      namespace: outcome.namespace,
      name: outcome.name,
    });
    sendJson(res, 200, outcome.review);
  } catch (err) {
    if (err instanceof TrellisError) sendError(res, err, deps.logger);
    else throw err;
  }
}

/** Reads the body; undefined when it exceeds `limit` (then the socket is closed after the answer). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/**
 * Reads and drops the rest of an oversized body, so the client has finished
 * sending when the 413 arrives (answering mid-upload makes clients see a
 * broken pipe instead of the answer). Bounded: past 4x the limit or 10 s the
 * socket is destroyed instead, so a client cannot stream forever.
 */
function discardBody(req: IncomingMessage, limit: number): Promise<void> {
  return new Promise((resolve) => {
    if (req.readableEnded) return resolve();
    let seen = 0;
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      req.socket.destroy();
      done();
    }, 10_000);
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > 4 * limit) {
        req.socket.destroy();
        done();
      }
    });
    req.on('end', done);
    req.on('error', done);
    req.on('close', done);
    req.resume();
  });
}

function tooLarge(res: ServerResponse, limit: number, logger: Logger): void {
  logger.warn('admission review refused: body too large', { limitBytes: limit });
  res.setHeader('connection', 'close');
  sendJson(res, 413, { code: 'TRELLIS_INJECTOR_TOO_LARGE', message: `body exceeds ${limit} bytes` });
}

function sendError(res: ServerResponse, err: TrellisError, logger: Logger): void {
  logger.warn('admission review refused', { code: err.code, error: err });
  sendJson(res, 400, { code: err.code, message: err.message });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
