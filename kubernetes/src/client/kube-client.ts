/**
 * The connection to a Kubernetes API server, from a kubeconfig file or the
 * pod's in-cluster ServiceAccount, through the official
 * `@kubernetes/client-node` (authentication: client certificates, bearer
 * tokens re-read from the projected token file, exec plugins; TLS from the
 * kubeconfig). Requests are plain JSON over node:https with the options
 * that library computes, so objects pass through untouched (no model
 * conversion that drops fields a newer server added); watches go through the
 * library's ListWatch (see informer/resource-informer.ts).
 *
 * `@kubernetes/client-node` 1.x is an ES module: it is loaded with a dynamic
 * `import()` here, at the edge, which works on Node 20.11+ and 24 alike
 * (require() of ESM needs 20.19+), and keeps it out of every process that
 * never talks to an API server.
 */
import { Agent as HttpsAgent, request as httpsRequest, type AgentOptions, type RequestOptions } from 'node:https';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type * as ClientNode from '@kubernetes/client-node' with { 'resolution-mode': 'import' };
import { KubernetesError, KubernetesErrorCode, codeForStatus } from '../errors/kubernetes-error';
import type { KubeObject } from './kube-object';

/** The loaded `@kubernetes/client-node` module. */
export type ClientNodeModule = typeof ClientNode;

/** Where the in-cluster ServiceAccount token lives. */
export const IN_CLUSTER_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** How to reach the API server. */
export interface KubeConnectOptions {
  /** A kubeconfig file; without it, the in-cluster config (the pod's ServiceAccount). */
  kubeconfig?: string;
  /** A context of the kubeconfig other than its current one. */
  context?: string;
  /** Environment (KUBERNETES_SERVICE_HOST/PORT for in-cluster); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Per-request timeout (default 15 s; watches are not bounded by it). */
  requestTimeoutMs?: number;
}

/** Options of one request. */
export interface KubeRequestOptions {
  body?: unknown;
  /** Content type of `body` (default application/json). */
  contentType?: string;
  query?: Record<string, string | undefined>;
  /** Accept header (default application/json; the JWKS endpoint wants application/jwk-set+json). */
  accept?: string;
}

let loaded: Promise<ClientNodeModule> | undefined;

/** Rejects a request whose kept-alive connection was reset before it was sent (see request()). */
const RETRY_ON_NEW_CONNECTION = Symbol('retry on a new connection');

/**
 * True when `KubeClient.connect(opts)` has a configuration to load: a
 * kubeconfig was given, or the process runs in a pod (KUBERNETES_SERVICE_HOST
 * and _PORT set and the ServiceAccount token mounted). Features that follow
 * the API server "when there is one" decide with this, without connecting.
 */
export function kubeConfigAvailable(opts: Pick<KubeConnectOptions, 'kubeconfig' | 'env'> = {}): boolean {
  const env = opts.env ?? process.env;
  return opts.kubeconfig !== undefined || Boolean(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(IN_CLUSTER_TOKEN_FILE));
}

/** Loads `@kubernetes/client-node` once (ESM, dynamic import). */
export function loadClientNode(): Promise<ClientNodeModule> {
  loaded ??= import('@kubernetes/client-node');
  return loaded;
}

/** A connection to one API server. */
export class KubeClient {
  private agent: { key: string; agent: HttpAgent | HttpsAgent } | undefined;

  private constructor(
    /** The library's config (for its ListWatch and typed APIs). */
    readonly config: ClientNode.KubeConfig,
    /** The loaded library. */
    readonly lib: ClientNodeModule,
    /** `https://HOST:PORT` of the API server. */
    readonly server: string,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Connects (no request is made yet). Throws TRELLIS_K8S_NO_CONFIG without a
   * kubeconfig outside a pod, TRELLIS_K8S_BAD_CONFIG for an unusable one.
   */
  static async connect(opts: KubeConnectOptions = {}): Promise<KubeClient> {
    const env = opts.env ?? process.env;
    const lib = await loadClientNode();
    const kc = new lib.KubeConfig();
    if (opts.kubeconfig !== undefined) {
      try {
        kc.loadFromFile(opts.kubeconfig);
        if (opts.context !== undefined) kc.setCurrentContext(opts.context);
      } catch (err) {
        throw new KubernetesError(KubernetesErrorCode.BAD_CONFIG, `${opts.kubeconfig}: not a usable kubeconfig: ${(err as Error).message}`, { file: opts.kubeconfig }, { cause: err });
      }
    } else if (kubeConfigAvailable({ env })) {
      kc.loadFromCluster();
    } else {
      throw new KubernetesError(KubernetesErrorCode.NO_CONFIG, 'no kubeconfig given and not running in a pod (KUBERNETES_SERVICE_HOST unset or no ServiceAccount token): pass --kubeconfig FILE');
    }
    const cluster = kc.getCurrentCluster();
    if (!cluster || !cluster.server) throw new KubernetesError(KubernetesErrorCode.BAD_CONFIG, `${opts.kubeconfig ?? 'in-cluster config'}: no current cluster with a server URL`);
    return new KubeClient(kc, lib, cluster.server.replace(/\/+$/, ''), opts.requestTimeoutMs ?? 15_000);
  }

  /**
   * One request; resolves with the parsed JSON body of a 2xx answer. Throws a
   * KubernetesError whose code follows the status (404 NOT_FOUND, 409
   * CONFLICT, 401/403 FORBIDDEN, else API_ERROR) with the Status message.
   */
  async request<T = unknown>(method: string, path: string, opts: KubeRequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const options: RequestOptions = {
      method,
      headers: {
        accept: opts.accept ?? 'application/json',
        ...(body !== undefined ? { 'content-type': opts.contentType ?? 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
      },
    };
    await this.config.applyToHTTPSOptions(options);
    options.agent = this.keepAliveAgent(url.protocol, options.agent as HttpsAgent | undefined);
    const what = `${method} ${url.pathname}`;
    const send = (mayRetry: boolean): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const req = (url.protocol === 'http:' ? httpRequest : httpsRequest)(url, options, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        });
        req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
        req.on('error', (err: NodeJS.ErrnoException) => {
          // A kept-alive connection the server closed as we reused it: the request never reached it.
          // Sent again once on a fresh connection, unless it creates something (POST), as Node's docs advise.
          if (mayRetry && req.reusedSocket && err.code === 'ECONNRESET' && method !== 'POST') reject(RETRY_ON_NEW_CONNECTION);
          else reject(new KubernetesError(KubernetesErrorCode.UNREACHABLE, `${what}: API server ${this.server} unreachable: ${err.message}`, { server: this.server }, { cause: err }));
        });
        if (body !== undefined) req.write(body);
        req.end();
      });
    const { status, text } = await send(true).catch((err: unknown) => (err === RETRY_ON_NEW_CONNECTION ? send(false) : Promise.reject(err)));
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (status < 200 || status > 299) {
      const st = (parsed ?? {}) as { message?: string; reason?: string };
      throw new KubernetesError(codeForStatus(status), `${what}: ${status} ${st.reason ?? ''}${st.message ? `: ${st.message}` : text ? `: ${text.slice(0, 200)}` : ''}`.replace(/ :/, ':'), {
        status,
        reason: st.reason,
        path: url.pathname,
      });
    }
    if (parsed === undefined && (opts.accept ?? 'application/json').includes('json')) {
      throw new KubernetesError(KubernetesErrorCode.BAD_RESPONSE, `${what}: answer is not JSON`, { status, path: url.pathname });
    }
    return parsed as T;
  }

  /**
   * One keep-alive agent for this client's requests. The library makes a new
   * agent for every request, so each one paid a TCP and TLS handshake (and
   * the API server one more connection); its TLS settings (CA, client
   * certificate, server name) are kept, and a change in them (a rotated
   * client certificate) replaces the agent. Idle sockets do not keep the
   * process alive (node:http unrefs them).
   */
  private keepAliveAgent(protocol: string, made: HttpsAgent | undefined): HttpAgent | HttpsAgent {
    const tls: AgentOptions = (made as (HttpsAgent & { options?: AgentOptions }) | undefined)?.options ?? {};
    const h = createHash('sha256').update(`${protocol} ${String(tls.rejectUnauthorized)} ${tls.servername ?? ''}`);
    for (const part of [tls.ca, tls.cert, tls.key, tls.pfx, tls.passphrase]) h.update('\0').update(part === undefined ? '' : Array.isArray(part) ? part.map(String).join('\0') : String(part));
    const key = h.digest('hex');
    if (this.agent?.key === key) return this.agent.agent;
    this.agent?.agent.destroy();
    const common = { keepAlive: true, maxSockets: 16, timeout: 60_000 };
    const agent = protocol === 'http:' ? new HttpAgent(common) : new HttpsAgent({ ...tls, ...common });
    this.agent = { key, agent };
    return agent;
  }

  /** Closes the keep-alive connections (watches are the informers' to stop). */
  close(): void {
    this.agent?.agent.destroy();
    this.agent = undefined;
  }

  /** GET, or null on 404. */
  async getOrNull<T extends KubeObject = KubeObject>(path: string): Promise<T | null> {
    try {
      return await this.request<T>('GET', path);
    } catch (err) {
      if (err instanceof KubernetesError && err.code === KubernetesErrorCode.NOT_FOUND) return null;
      throw err;
    }
  }

  /** POST to a collection path. */
  create<T extends KubeObject = KubeObject>(collectionPath: string, obj: KubeObject): Promise<T> {
    return this.request<T>('POST', collectionPath, { body: obj });
  }

  /** PUT: an update guarded by the object's metadata.resourceVersion (409 CONFLICT when stale). */
  replace<T extends KubeObject = KubeObject>(path: string, obj: KubeObject): Promise<T> {
    return this.request<T>('PUT', path, { body: obj });
  }

  /** PATCH with a JSON patch (`json`), merge patch (`merge`) or strategic merge patch (`strategic`). */
  patch<T extends KubeObject = KubeObject>(path: string, patch: unknown, type: 'json' | 'merge' | 'strategic'): Promise<T> {
    const contentType = { json: 'application/json-patch+json', merge: 'application/merge-patch+json', strategic: 'application/strategic-merge-patch+json' }[type];
    return this.request<T>('PATCH', path, { body: patch, contentType });
  }

  /**
   * Server-side apply of `obj` as `fieldManager` (force: we own what we
   * apply). An apply that changes nothing leaves resourceVersion as it was.
   */
  apply<T extends KubeObject = KubeObject>(path: string, obj: KubeObject, fieldManager: string, opts: { dryRun?: boolean } = {}): Promise<T> {
    return this.request<T>('PATCH', path, {
      body: obj,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager, force: 'true', ...(opts.dryRun ? { dryRun: 'All' } : {}) },
    });
  }

  /** DELETE; resolves false when it was already gone. */
  async delete(path: string, query?: Record<string, string>): Promise<boolean> {
    try {
      await this.request('DELETE', path, { query });
      return true;
    } catch (err) {
      if (err instanceof KubernetesError && err.code === KubernetesErrorCode.NOT_FOUND) return false;
      throw err;
    }
  }
}
