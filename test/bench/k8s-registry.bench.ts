/**
 * `npm run bench -- k8s-registry [--pods 1000] [--services 100] [--seconds 60]`:
 * how many requests a `trellis control-plane --k8s-registry` makes to a real
 * API server (1.20, no controller manager: the only clients are the control
 * plane and this benchmark, which is idle while it measures) at steady state
 * with N injected, Ready pods behind S Services (one EndpointSlice each,
 * written here at the version discovery names).
 *
 * Counted by the API server itself: `apiserver_request_total` (requests as
 * they complete: a watch counts when it ends) and `apiserver_longrunning_gauge`
 * (watches open now), for pods, services and endpointslices, read before and
 * after a window of `--seconds` once the control plane is ready. A watching
 * client shows three open watches and next to no requests; a polling one
 * would show LISTs every period.
 */
import { readFileSync, mkdirSync } from 'node:fs';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { KubeClient, detectApiFeatures, fetchDiscoveryFacts } from '@trellis/kubernetes';
import { makeTmpDir, startKubeApiServer, trellisSync, kubeApiServerAvailability } from '@trellis/testkit';
import { numberFlag } from './bench-flags';
import { startControlPlaneProcess } from '../integration/control-plane-harness';

const RESOURCES = ['pods', 'services', 'endpointslices'];

/** GET `path` on the API server as text, with the client's credentials. */
async function rawGet(client: KubeClient, path: string): Promise<string> {
  const options: RequestOptions = { method: 'GET', headers: { accept: 'text/plain' } };
  await client.config.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(client.server + path), options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${path}: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Parses the Prometheus text for our resources. */
function parseMetrics(text: string): { requests: Record<string, number>; watches: Record<string, number> } {
  const requests: Record<string, number> = {};
  const watches: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(apiserver_request_total|apiserver_longrunning_gauge)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (!RESOURCES.includes(labels.resource ?? '') || (labels.subresource ?? '') !== '') continue;
    const key = m[1] === 'apiserver_request_total' ? `${labels.verb} ${labels.resource} ${labels.contentType ?? ''}` : `${labels.verb} ${labels.resource}`;
    const into = m[1] === 'apiserver_request_total' ? requests : watches;
    into[key] = (into[key] ?? 0) + Number(m[3]);
  }
  return { requests, watches };
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
    // /metrics is text (the client's request() wants JSON): a plain GET with the same credentials, a non-resource request not counted below.
    const metricsText = (): Promise<string> => rawGet(client, '/metrics');
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
    // What the API server's own loopback clients hold open, before the control plane starts.
    const baseline = parseMetrics(await metricsText());
    const started = Date.now();
    const cp = await startControlPlaneProcess(join(tmp.dir, 'ca'), join(tmp.dir, 'policies'), ['--k8s-jwks-from-api', '--kubeconfig', k8s.kubeconfig, '--k8s-registry', '--trust-domain', 'bench.example']);
    const readySeconds = (Date.now() - started) / 1000;
    try {
      const synced = cp.logs.find((l) => l.includes('kubernetes registry synced'));
      // Let the start-up requests (discovery, lists, watch starts) complete before the window opens.
      await new Promise((r) => setTimeout(r, 3000));
      const before = parseMetrics(await metricsText());
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const after = parseMetrics(await metricsText());
      const during = diff(after.requests, before.requests);
      // Our client speaks JSON; the API server's own loopback clients (its bootstrap controller GETs
      // the kubernetes Service every 10 s) speak protobuf.
      const ours = Object.entries(during).filter(([k]) => k.endsWith(' application/json'));
      const total = ours.reduce((a, [, b]) => a + b, 0);
      const others = Object.entries(during).filter(([k]) => !k.endsWith(' application/json')).reduce((a, [, b]) => a + b, 0);
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${cp.child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
      return {
        kubernetes: k8s.version,
        endpointSlice: sliceVersion,
        pods: podCount,
        services: serviceCount,
        setupSeconds: Math.round(setupSeconds * 10) / 10,
        controlPlaneReadySeconds: Math.round(readySeconds * 100) / 100,
        registry: synced ? JSON.parse(synced) : null,
        windowSeconds: seconds,
        requestsInWindow: during,
        requestsPerMinute: Math.round((total / seconds) * 60 * 100) / 100,
        apiServerOwnRequestsPerMinute: Math.round((others / seconds) * 60 * 100) / 100,
        controlPlaneWatches: diff(after.watches, baseline.watches),
        note: 'a watch counts in apiserver_request_total when it ends; kube-apiserver ends each after 30-60 min (--min-request-timeout 1800 s), so the long-run rate is 3 watch restarts per 30-60 min',
        controlPlaneRssMb: Math.round(rss),
      };
    } finally {
      await cp.stop();
    }
  } finally {
    await k8s.stop();
    tmp.cleanup();
  }
}
