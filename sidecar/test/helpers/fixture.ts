/**
 * Test fixtures for the sidecar: a TestCa-backed identity, a CSR signer that
 * stands in for the CA behind the discovery stream, small real apps to
 * forward to, and clients that talk real TLS.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { randomSerialHex } from '@trellis/shared';
import { spawn } from 'node:child_process';
import { createServer as createNetServer, connect as netConnect, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createHttpServer, type Server as HttpServer, request as httpRequest } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { TestCa, type TestCert } from '@trellis/testkit';
import { makeCredentials, makeTrustBundle, type Credentials } from '../../src/index';

x509.cryptoProvider.set(webcrypto as never);
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** Credentials for `spiffeId` issued by `ca`. */
export async function credentialsFrom(ca: TestCa, spiffeId: string, opts: { notBefore?: Date; notAfter?: Date } = {}): Promise<Credentials> {
  const leaf = await ca.issueLeaf(spiffeId, opts);
  return makeCredentials(leaf.key.keyPem, leaf.chainPem);
}

/** The bundle of `ca` (its root), optionally with more roots. */
export function bundleOf(...cas: TestCa[]): ReturnType<typeof makeTrustBundle> {
  return makeTrustBundle(cas.map((c) => c.root.pem));
}

/** Signs a DER CSR with the intermediate of `ca`, the way a CA behind the discovery stream would. */
export async function signCsr(ca: TestCa, csrDer: Buffer, ttlMs: number, spiffeId?: string): Promise<{ chainPem: string; serialHex: string }> {
  const csr = new x509.Pkcs10CertificateRequest(csrDer);
  if (!(await csr.verify())) throw new Error('CSR signature does not verify');
  const san = csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
  const uri = spiffeId ?? san?.names.items.find((n) => n.type === 'url')?.value;
  if (!uri) throw new Error('CSR has no URI SAN');
  const publicKey = await csr.publicKey.export(EC, ['verify']);
  const serial = randomSerialHex();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: '',
    issuer: ca.intermediate.cert.subject,
    notBefore: new Date(now - 1000),
    notAfter: new Date(now + ttlMs),
    publicKey,
    signingKey: ca.intermediate.key.keys.privateKey,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true),
    ],
  });
  return { chainPem: cert.toString('pem') + '\n' + ca.intermediate.pem + '\n', serialHex: serial };
}

/** An HTTP app answering `{"path","method","xfcc"}` as JSON. */
export async function startHttpApp(): Promise<{ server: HttpServer; port: number; close(): Promise<void> }> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ path: req.url, method: req.method, xfcc: req.headers['x-forwarded-client-cert'] ?? null, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  const port = await listen(server);
  return { server, port, close: () => closeServer(server) };
}

/** A TCP app that echoes with a prefix: `echo:` + data. */
export async function startEchoApp(): Promise<{ server: NetServer; port: number; close(): Promise<void> }> {
  const server = createNetServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
    s.on('end', () => s.end());
  });
  const port = await listen(server);
  return { server, port, close: () => closeServer(server) };
}

/** A server-first TCP app: greets on connect. */
export async function startGreeterApp(greeting = 'hello-from-server\n'): Promise<{ server: NetServer; port: number; close(): Promise<void> }> {
  const server = createNetServer((s) => {
    s.on('error', () => s.destroy());
    s.end(greeting);
  });
  const port = await listen(server);
  return { server, port, close: () => closeServer(server) };
}

function listen(server: NetServer | HttpServer): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
}

function closeServer(server: NetServer | HttpServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

/** The result of one client exchange. */
export interface Exchange {
  /** What came back before the connection closed ('' if nothing). */
  data: string;
  /** The error the client saw, if any. */
  error?: string;
}

/** Connects with mTLS using `client` (or none), writes `payload`, half-closes, collects the reply. */
export function tlsExchange(port: number, opts: { client?: TestCert & { chainPem?: string }; ca: string | string[]; payload: string; timeoutMs?: number }): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const s: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: opts.ca,
      key: opts.client?.key.keyPem,
      cert: opts.client ? (opts.client.chainPem ?? opts.client.pem) : undefined,
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => s.destroy(new Error('timeout')), opts.timeoutMs ?? 5000);
    s.on('secureConnect', () => s.end(opts.payload));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e: Error & { code?: string }) => {
      error = e.code ?? e.message;
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks).toString(), error });
    });
  });
}

/** Plain TCP: writes `payload`, half-closes, collects the reply. */
export function tcpExchange(port: number, payload: string | undefined, timeoutMs = 5000): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const s: Socket = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const timer = setTimeout(() => s.destroy(new Error('timeout')), timeoutMs);
    s.on('connect', () => {
      if (payload !== undefined) s.end(payload);
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => s.end());
    s.on('error', (e: Error & { code?: string }) => {
      error = e.code ?? e.message;
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks).toString(), error });
    });
  });
}

/** One HTTP GET over plain TCP (e.g. to an outbound listener). */
export function httpGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Runs a tool (curl, openssl) asynchronously: the sidecar under test lives
 * in this process, so a synchronous spawn would block the very event loop
 * that has to answer it.
 */
export function runTool(cmd: string, args: string[], input?: string, timeoutMs = 15_000, until?: RegExp): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (until?.test(stdout)) child.kill('SIGTERM');
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}
