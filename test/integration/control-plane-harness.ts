/**
 * Shared fixtures for the control-plane integration tests: a real CA made by
 * `trellis ca init`, a real `trellis control-plane` child process, and a
 * "fake sidecar" that drives the real DiscoveryClient over loopback gRPC/TLS
 * (its key and CSR generated here at run time, the key never sent).
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ALL_TYPE_URLS, createLogger, silentLogger, SVID_TYPE_URL, typeShortName, type TypeUrl, type Logger } from '@trellis/shared';
import { buildWorkloadCsr } from '@trellis/shared';
import { DiscoveryClient, type ClientCredentials } from '@trellis/sidecar';
import { loadDiscoveryService } from '@trellis/control-plane';
import { adminRequest, loadAdminCredentials } from '@trellis/control-plane';
import { controlPlanePortsOf, trellisSpawn, trellisSync } from '@trellis/testkit';

/** The trust domain every test uses. */
export const TD = 'example.org';
/** The control plane's SPIFFE ID in TD. */
export const CP_ID = `spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`;

/** Creates a CA in `dir` with the real CLI. */
export function initCa(dir: string): void {
  const r = trellisSync(['ca', 'init', '--dir', dir, '--trust-domain', TD]);
  if (r.status !== 0) throw new Error(`ca init failed: ${r.stderr}`);
}

/** Mints a join token with the real CLI. */
export function joinToken(caDir: string, spiffeId: string, extra: string[] = []): string {
  const r = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', spiffeId, ...extra]);
  if (r.status !== 0) throw new Error(`token create failed: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Admin credentials for the CA in `caDir`, written once with the real CLI to
 * `<caDir>.admin` (short-lived, like an operator's before a rotation).
 */
export function adminCredentials(caDir: string, ttl = '10m'): string {
  const dir = `${caDir}.admin`;
  if (!existsSync(dir)) {
    const r = trellisSync(['admin', 'credentials', '--ca-dir', caDir, '--out', dir, '--ttl', ttl]);
    if (r.status !== 0) throw new Error(`admin credentials failed: ${r.stderr}`);
  }
  return dir;
}

/** A running `trellis control-plane` process. */
export interface ControlPlaneProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
  address: string;
  admin: string;
  /** The admin credentials dir for its CA (see {@link adminCredentials}). */
  adminCredentials: string;
  /** Environment that gives the CLI those credentials. */
  adminEnv: { TRELLIS_ADMIN_CREDENTIALS: string };
  /** Every stderr line so far (JSON logs). */
  logs: string[];
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** How long an admin request waits for its answer: a hung admin port fails the test that asked, naming it. */
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;

/** How long a start waits for the ready line (a start takes about a second; CI's machine is loaded). */
const START_TIMEOUT_MS = 30_000;

/** How long stop() waits for the process to exit after its signal. */
const STOP_TIMEOUT_MS = 20_000;

/**
 * Starts the control plane and resolves once it logs `readyLine` (default
 * "control plane ready"; a control plane that is serving but not ready logs
 * "control plane started").
 */
export async function startControlPlaneProcess(
  caDir: string,
  policyDir: string,
  extra: string[] = [],
  ports?: { port: number; adminPort: number },
  readyLine = '"control plane ready"',
): Promise<ControlPlaneProcess> {
  // Without given ports it binds port 0 and says which it got in its ready line: a free port picked
  // here could be taken by another suite's process before the control plane binds it.
  let port = ports?.port ?? 0;
  let adminPort = ports?.adminPort ?? 0;
  const child = trellisSpawn(['control-plane', '--ca-dir', caDir, '--policy-dir', policyDir, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`, ...extra]);
  const logs: string[] = [];
  // 'close', not 'exit': by then every line it wrote to stderr has been read into `logs`.
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    // A control plane that never says it started fails the test that started it, with what it said.
    const late = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`control plane did not log ${readyLine} within ${START_TIMEOUT_MS / 1000} s; its last log lines:\n${logs.slice(-40).join('\n')}`));
    }, START_TIMEOUT_MS);
    let buf = '';
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        if (line.includes(readyLine)) {
          clearTimeout(late);
          try {
            ({ listen: port, admin: adminPort } = controlPlanePortsOf(line));
            resolve();
          } catch (err) {
            reject(err as Error);
          }
        }
      }
    });
    child.on('close', (code) => {
      clearTimeout(late);
      reject(new Error(`control plane exited ${code}: ${logs.join('\n')}`));
    });
  });
  const creds = adminCredentials(caDir);
  return {
    child,
    port,
    adminPort,
    address: `127.0.0.1:${port}`,
    admin: `127.0.0.1:${adminPort}`,
    adminCredentials: creds,
    adminEnv: { TRELLIS_ADMIN_CREDENTIALS: creds },
    logs,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      // A control plane must exit within its drain (5 s) and a few seconds of clean-up. One that does
      // not is a failure that names itself, with its last log lines, rather than a hook timeout.
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), STOP_TIMEOUT_MS)));
      const code = await Promise.race([exited, hung]);
      clearTimeout(timer);
      if (code !== 'hung') {
        // Bounded by its deadline, but a step that had to be abandoned is a defect worth seeing in CI's output.
        const stuck = logs.find((l) => l.includes('shutdown did not finish'));
        if (stuck) process.stderr.write(`control plane ${port}: ${stuck}\n`);
        return code;
      }
      child.kill('SIGKILL');
      await exited;
      throw new Error(`control plane did not exit within ${STOP_TIMEOUT_MS / 1000} s of ${signal}; its last log lines:\n${logs.slice(-40).join('\n')}`);
    },
  };
}

/** Polls `cond` every 20 ms until it holds; fails after `timeoutMs` with `what`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * GETs a path of the admin HTTPS endpoint without a client certificate (what
 * kubelet and Prometheus do), verifying the server by the mesh bundle and
 * the control plane's SPIFFE ID.
 */
export function adminGet(cp: ControlPlaneProcess, path: string): Promise<{ status: number; body: string }> {
  const creds = loadAdminCredentials(cp.adminCredentials, new Date());
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: cp.adminPort, path, agent: false, ca: creds.bundlePem, checkServerIdentity: (_h, cert) => (cert.subjectaltname === `URI:${CP_ID}` ? undefined : new Error(`unexpected server ${cert.subjectaltname}`)) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(ADMIN_REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`GET ${path} on the admin port ${cp.adminPort}: no answer within ${ADMIN_REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Sends a raw request (any body, method, Content-Type) to the admin port as the admin; resolves with the status and parsed JSON. */
export function adminRaw(cp: ControlPlaneProcess, path: string, body: string, o: { method?: string; contentType?: string } = {}): Promise<{ status: number; body: { error?: { code: string; details: Record<string, unknown> } } & Record<string, unknown> }> {
  const creds = loadAdminCredentials(cp.adminCredentials, new Date());
  const method = o.method ?? 'POST';
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port: cp.adminPort, path, method, agent: false,
      headers: method === 'GET' ? {} : { 'content-type': o.contentType ?? 'application/json' },
      cert: creds.chainPem, key: creds.keyPem, ca: creds.bundlePem, checkServerIdentity: () => undefined,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as never }));
    });
    req.setTimeout(ADMIN_REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path} on the admin port ${cp.adminPort}: no answer within ${ADMIN_REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : body);
  });
}

/** GETs a JSON document from the admin port, as the admin (mTLS with the CA's admin credentials). */
export async function adminJson<T>(cp: ControlPlaneProcess, path: string): Promise<T> {
  return adminRequest<T>({ address: cp.admin, credentials: loadAdminCredentials(cp.adminCredentials, new Date()) }, 'GET', path);
}

/** The value of one Prometheus sample on the admin port's /metrics (0 when absent; /metrics needs no client certificate). */
export async function metricValue(cp: ControlPlaneProcess, name: string, labels = ''): Promise<number> {
  const { body } = await adminGet(cp, '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${name}${labels ? '{' + labels + '}' : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Options of a fake sidecar. */
export interface FakeSidecarOptions {
  addresses: string[];
  caDir: string;
  spiffeId: string;
  token?: () => string;
  namespace?: string;
  labels?: Record<string, string>;
  service?: string;
  inboundPorts?: number[];
  /** The address the node announces (empty: none). */
  address?: string;
  /** Return an error message to NACK an update of that type. */
  reject?: (type: string, version: string) => string | null;
  logger?: Logger;
  verbose?: boolean;
}

/** A minimal sidecar: the real DiscoveryClient, a local key, and a log of what it received. */
export class FakeSidecar {
  readonly client: DiscoveryClient;
  /** short type name → versions accepted, in order. */
  readonly accepted = new Map<string, string[]>();
  /** short type name → every version received (accepted or not). */
  readonly received = new Map<string, string[]>();
  readonly bodies = new Map<string, unknown[]>();
  /** short type name → the resources of every update received, in order. */
  readonly updates = new Map<string, unknown[][]>();
  creds: (ClientCredentials & { serialHex: string }) | null = null;
  connects = 0;
  /** Every stream end the client saw, in order. */
  readonly ends: Array<{ grpcCode: number; serverCode: string | null; retryAfterMs: number }> = [];

  constructor(private readonly o: FakeSidecarOptions) {
    const logger = o.logger ?? (o.verbose ? createLogger({ component: 'fake-sidecar', sink: process.stderr }) : silentLogger);
    this.client = new DiscoveryClient({
      addresses: o.addresses,
      bootstrapBundlePem: readFileSync(join(o.caDir, 'root.pem'), 'utf8'),
      getToken: async () => (o.token ? o.token() : ''),
      getCredentials: () => this.creds,
      node: {
        spiffeId: o.spiffeId,
        // Empty: the namespace is the identity's (ns/NS/sa/SA), or none for other SPIFFE IDs.
        namespace: o.namespace ?? '',
        labels: o.labels ?? {},
        service: o.service ?? '',
        inboundPorts: o.inboundPorts ?? [],
        address: o.address,
      },
      controlPlaneSpiffeId: CP_ID,
      logger,
      backoff: { initialMs: 50, maxMs: 500 },
    });
    for (const t of ALL_TYPE_URLS) {
      if (t === SVID_TYPE_URL) continue;
      this.client.on(t as Exclude<TypeUrl, typeof SVID_TYPE_URL>, (resources, version) => {
        const short = typeShortName(t);
        push(this.received, short, version);
        this.updates.set(short, [...(this.updates.get(short) ?? []), resources.map((r) => r.body)]);
        const why = o.reject?.(short, version);
        if (why) throw new Error(why);
        push(this.accepted, short, version);
        this.bodies.set(short, resources.map((r) => r.body));
      });
    }
    this.client.onStreamEnded((e) => this.ends.push(e));
    this.client.onConnectionChange((up) => {
      if (up) this.connects++;
    });
  }

  start(): this {
    this.client.start();
    return this;
  }

  stop(): void {
    this.client.stop();
  }

  /** Generates a key, sends a CSR for `uri` (default: own ID), keeps the result for mTLS. */
  async rotate(uri: string | null = this.o.spiffeId): Promise<X509Certificate> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }) as Buffer, uri ?? undefined);
    const svid = await this.client.requestSvid(csr);
    const leaf = new X509Certificate(svid.chainPem);
    this.creds = { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, chainPem: svid.chainPem, notAfter: new Date(svid.notAfter), serialHex: svid.serialHex };
    // As the sidecar's runner does on every install: move the stream to the new certificate.
    this.client.credentialsChanged();
    return leaf;
  }

  count(short: string): number {
    return this.received.get(short)?.length ?? 0;
  }

  last(short: string): string | undefined {
    const a = this.accepted.get(short);
    return a?.[a.length - 1];
  }
}

function push(m: Map<string, string[]>, k: string, v: string): void {
  const a = m.get(k) ?? [];
  a.push(v);
  m.set(k, a);
}

/** A raw discovery stream for feeding the server bad input: authenticated by `token`, or by `svid` over mTLS. */
export function rawStream(
  address: string,
  caDir: string,
  token: string,
  svid?: { keyPem: string; chainPem: string },
): { call: grpc.ClientDuplexStream<Record<string, unknown>, unknown>; done: Promise<grpc.StatusObject & { serverCode: string | null }>; client: grpc.Client } {
  const root = readFileSync(join(caDir, 'root.pem'));
  const creds = svid
    ? grpc.credentials.createSsl(root, Buffer.from(svid.keyPem), Buffer.from(svid.chainPem), { checkServerIdentity: () => undefined })
    : grpc.credentials.createSsl(root, null, null, { checkServerIdentity: () => undefined });
  // A plain grpc-js client built from the control plane's own service definition (the sidecar no longer uses grpc-js).
  const Ctor = grpc.makeGenericClientConstructor(loadDiscoveryService(), 'Discovery');
  const client = new Ctor(address, creds, { 'grpc.ssl_target_name_override': 'trellis-control-plane', 'grpc.max_send_message_length': 8 * 1024 * 1024 });
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const call = (client as unknown as { StreamResources(md: grpc.Metadata): grpc.ClientDuplexStream<Record<string, unknown>, unknown> }).StreamResources(md);
  const done = new Promise<grpc.StatusObject & { serverCode: string | null }>((resolve) => {
    call.on('data', () => undefined);
    call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details, metadata: err.metadata, serverCode: (err.metadata?.get('trellis-error-code')[0] as string) ?? null }));
    call.on('end', () => resolve({ code: grpc.status.OK, details: '', metadata: new grpc.Metadata(), serverCode: null }));
  });
  return { call, done, client };
}

/**
 * Starts a FakeSidecar for `spiffe://TD/ns/shop/sa/NAME` with a fresh join
 * token (3 uses) against `cp`, and records it in `started` for cleanup.
 */
export function startShopSidecar(cp: ControlPlaneProcess, caDir: string, name: string, started: FakeSidecar[]): FakeSidecar {
  const id = `spiffe://${TD}/ns/shop/sa/${name}`;
  const token = joinToken(caDir, id, ['--uses', '3']);
  const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: 'shop' });
  started.push(s);
  return s.start();
}
