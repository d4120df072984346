/**
 * `npm run bench -- k8s-registry [--pods 1000] [--services 100] [--seconds 60]`:
 * how many requests a `trellis control-plane` configured as deploy/ runs it
 * (`--k8s-registry --k8s-jwks-from-api`, policy CRDs installed and read,
 * trust-bundle ConfigMaps, shared state and the Lease on the API server)
 * makes to a real API server (1.20, no controller manager) at steady state
 * with N injected, Ready pods behind S Services (one EndpointSlice each,
 * written here at the version discovery names).
 *
 * Counted on the wire: the control plane's kubeconfig points at a counting
 * proxy on loopback that forwards every request to the API server (with the
 * admin client certificate) and counts it by verb (GET, LIST, WATCH, CREATE,
 * UPDATE, PATCH, DELETE) and resource (`leases`, `configmaps`, ... or the
 * path of a non-resource request: discovery, JWKS). So every request the
 * control plane makes is counted, whichever object it is for: its watches,
 * the Lease renewals, its replica report, discovery polls. The window opens
 * once start-up is over; the JSON has the total per minute, the breakdown,
 * and the watches open through the window.
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { KubeClient, detectApiFeatures, fetchDiscoveryFacts } from '@trellis/kubernetes';
import { makeTmpDir, REPO_ROOT, startKubeApiServer, trellisSync, kubeApiServerAvailability } from '@trellis/testkit';
import { numberFlag } from './bench-flags';
import { startControlPlaneProcess } from '../integration/control-plane-harness';

/**
 * `VERB resource` for a request, as the API server's audit log names it:
 * GET/LIST/WATCH by path and `watch=true`, CREATE/UPDATE/PATCH/DELETE by
 * method; the resource with its group and subresource
 * (`leases.coordination.k8s.io`, `pods/status`); a non-resource request
 * (discovery, OIDC keys) by its path.
 */
export function classifyRequest(method: string, rawUrl: string): string {
  const url = new URL(rawUrl, 'http://proxy');
  const parts = url.pathname.split('/').filter(Boolean);
  let group = '';
  let rest: string[] | null = null;
  if (parts[0] === 'api' && parts.length > 2) rest = parts.slice(2);
  else if (parts[0] === 'apis' && parts.length > 3) {
    group = parts[1]!;
    rest = parts.slice(3);
  }
  if (rest === null) return `${method} ${url.pathname}`;
  if (rest[0] === 'namespaces' && rest.length > 2) rest = rest.slice(2);
  const resource = `${rest[0]}${group ? `.${group}` : ''}${rest[2] ? `/${rest[2]}` : ''}`;
  const named = rest.length > 1;
  const verb = method === 'GET' ? (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1' ? 'WATCH' : named ? 'GET' : 'LIST')
    : method === 'POST' ? 'CREATE' : method === 'PUT' ? 'UPDATE' : method === 'DELETE' ? (named ? 'DELETE' : 'DELETECOLLECTION') : method;
  return `${verb} ${resource}`;
}

/** A plain-HTTP proxy on loopback that forwards to the API server with `client`'s credentials, counting each request. */
export interface CountingProxy {
  readonly port: number;
  /** Requests started, by {@link classifyRequest}. */
  counts(): Record<string, number>;
  /** Watches open now, by resource. */
  openWatches(): Record<string, number>;
  close(): Promise<void>;
}

export async function startCountingProxy(client: KubeClient): Promise<CountingProxy> {
  const credentials: RequestOptions = {};
  await client.config.applyToHTTPSOptions(credentials);
  const upstream = new URL(client.server);
  const counts: Record<string, number> = {};
  const open: Record<string, number> = {};
  const server: Server = createServer((req: IncomingMessage, res) => {
    const key = classifyRequest(req.method ?? 'GET', req.url ?? '/');
    counts[key] = (counts[key] ?? 0) + 1;
    if (key.startsWith('WATCH ')) {
      open[key] = (open[key] ?? 0) + 1;
      res.on('close', () => (open[key] = open[key]! - 1));
    }
    const up = httpsRequest(new URL(req.url ?? '/', upstream), { ...credentials, method: req.method, headers: { ...req.headers, ...(credentials.headers ?? {}), host: upstream.host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.requestTimeout = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    counts: () => ({ ...counts }),
    openWatches: () => Object.fromEntries(Object.entries(open).filter(([, n]) => n > 0)),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) !== 0) out[k] = v - (before[k] ?? 0);
  return out;
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const podCount = numberFlag(args, 'pods', 1000);
  const serviceCount = Math.min(podCount, numberFlag(args, 'services', 100));
  const seconds = numberFlag(args, 'seconds', 60);
  const avail = kubeApiServerAvailability();
  if (!avail.available) return { skipped: avail.reason };
  const tmp = makeTmpDir('trellis-bench-k8s-');
  const k8s = await startKubeApiServer({ noControllerManager: true });
  try {
    const client = await KubeClient.connect({ kubeconfig: k8s.kubeconfig });
    const features = detectApiFeatures(await fetchDiscoveryFacts(client));
    const sliceVersion = features.endpointSlice!;
    k8s.kubectlOk(['create', 'namespace', 'bench']);
    k8s.kubectlOk(['-n', 'bench', 'create', 'serviceaccount', 'svc']);
    k8s.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } }) });
    const setupStart = Date.now();
    const pods = Array.from({ length: podCount }, (_, i) => ({ name: `w-${i}`, svc: `s-${i % serviceCount}`, ip: `10.${1 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}` }));
    const status = JSON.stringify({ version: 1, initContainers: ['trellis-init'], containers: ['trellis-sidecar'], volumes: [], inbound: { 8080: 15100 } });
    const uids = new Map<string, string>();
    await pool(pods, 16, async (p) => {
      const created = await client.create<{ metadata: { uid: string } }>('/api/v1/namespaces/bench/pods', {
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: p.name, namespace: 'bench', labels: { app: p.svc }, annotations: { 'sidecar.trellis.dev/status': status } },
        spec: { nodeName: 'node-1', serviceAccountName: 'svc', automountServiceAccountToken: false, containers: [{ name: 'app', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] }] },
      });
      uids.set(p.name, created.metadata.uid);
      await client.patch(`/api/v1/namespaces/bench/pods/${p.name}/status`, { status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: 'True' }] } }, 'merge');
    });
    await pool(Array.from({ length: serviceCount }, (_, i) => `s-${i}`), 8, async (svc) => {
      await client.create('/api/v1/namespaces/bench/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: svc, namespace: 'bench' }, spec: { selector: { app: svc }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
      const members = pods.filter((p) => p.svc === svc);
      await client.create(`/apis/${sliceVersion}/namespaces/bench/endpointslices`, {
        apiVersion: sliceVersion, kind: 'EndpointSlice',
        metadata: { name: `${svc}-1`, namespace: 'bench', labels: { 'kubernetes.io/service-name': svc } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: members.map((p) => ({ addresses: [p.ip], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'bench', name: p.name, uid: uids.get(p.name) } })),
      });
    });
    const setupSeconds = (Date.now() - setupStart) / 1000;

    trellisSync(['ca', 'init', '--dir', join(tmp.dir, 'ca'), '--trust-domain', 'bench.example']);
    mkdirSync(join(tmp.dir, 'policies'));
    // As trellis install leaves the cluster: the namespace, the policy CRDs, Secret trellis-ca.
    k8s.kubectlOk(['create', 'namespace', 'trellis-system']);
    // 1.20 knows no x-kubernetes-validations (CEL, 1.25+): kubectl's client-side check refuses the field, the server drops it.
    k8s.kubectlOk(['apply', '--validate=false', '-f', join(REPO_ROOT, 'deploy', 'crds')]);
    const caFiles: Record<string, string> = { 'root.pem': 'root.pem', 'intermediate.pem': 'intermediate.pem', 'intermediate.key': 'intermediate.key', 'chain.pem': 'chain.pem' };
    k8s.kubectlOk(['-n', 'trellis-system', 'create', 'secret', 'generic', 'trellis-ca', ...Object.entries(caFiles).map(([k, p]) => `--from-file=${k}=${join(tmp.dir, 'ca', p)}`)]);
    const proxy = await startCountingProxy(client);
    // Plain HTTP on loopback to the proxy (the library wants insecure-skip-tls-verify to allow http:); the proxy speaks TLS upstream.
    const kubeconfig = join(tmp.dir, 'counted.kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:${proxy.port}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`);
    const started = Date.now();
    // deploy/control-plane.yaml's flags (policy CRDs, root-cert ConfigMaps and shared state are on by default with an API server).
    const cp = await startControlPlaneProcess(join(tmp.dir, 'ca'), join(tmp.dir, 'policies'), ['--kubeconfig', kubeconfig, '--k8s-audience', 'trellis', '--k8s-jwks-from-api', '--k8s-registry', '--trust-domain', 'bench.example']);
    const readySeconds = (Date.now() - started) / 1000;
    try {
      const synced = cp.logs.find((l) => l.includes('kubernetes registry synced'));
      // Let the start-up requests (discovery, lists, watch starts, the first ConfigMap writes) complete before the window opens.
      await new Promise((r) => setTimeout(r, 10_000));
      const before = proxy.counts();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const during = diff(proxy.counts(), before);
      const total = Object.values(during).reduce((a, b) => a + b, 0);
      const perMinute = (n: number): number => Math.round((n / seconds) * 60 * 10) / 10;
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${cp.child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
      return {
        kubernetes: k8s.version,
        endpointSlice: sliceVersion,
        pods: podCount,
        services: serviceCount,
        setupSeconds: Math.round(setupSeconds * 10) / 10,
        controlPlaneReadySeconds: Math.round(readySeconds * 100) / 100,
        startupRequests: Object.values(before).reduce((a, b) => a + b, 0),
        registry: synced ? JSON.parse(synced) : null,
        windowSeconds: seconds,
        requestsPerMinute: perMinute(total),
        requestsPerMinuteByResource: Object.fromEntries(Object.entries(during).sort(([, x], [, y]) => y - x).map(([k, n]) => [k, perMinute(n)])),
        requestsInWindow: during,
        watchesOpen: proxy.openWatches(),
        note: 'every request the control plane made, counted by a proxy between it and the API server; a watch counts when it starts (kube-apiserver ends each after 30-60 min, --min-request-timeout 1800 s, and the client starts it again)',
        controlPlaneRssMb: Math.round(rss),
      };
    } finally {
      // Stopped as the kubelet stops a pod: SIGTERM, then SIGKILL after a grace period. With a plain
      // http:// API server URL (this proxy) the client library leaves its watch sockets open after
      // the informers stop; the CLI exits 2 s after the command returns and names them.
      const killer = setTimeout(() => cp.child.kill('SIGKILL'), 15_000);
      await cp.stop();
      clearTimeout(killer);
      await proxy.close();
    }
  } finally {
    await k8s.stop();
    tmp.cleanup();
  }
}
