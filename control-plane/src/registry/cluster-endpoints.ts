/**
 * The endpoints of every Kubernetes Service, from the API server's objects
 * alone (pure): `(pods, services, EndpointSlices, trust domain) → endpoints`.
 * Every replica that reads the same objects computes the same map, and so
 * the same content versions.
 *
 * An address is published for a Service only when all of these hold (each
 * check fails closed: a doubt leaves the address out):
 * - an EndpointSlice labelled `kubernetes.io/service-name: NAME` lists it,
 *   not marked `ready: false` or terminating, with a `targetRef` to a pod of
 *   the slice's namespace that exists (and has the same uid, when the slice
 *   names one) and is not being deleted;
 * - the address is one of that pod's IPs (`status.podIPs`), so a slice
 *   written by hand cannot pair a pod's identity with another address;
 * - the pod was injected (the `sidecar.trellis.dev/status` annotation) and a
 *   sidecar listener fronts the slice port (the app port): the published
 *   port is that listener, callers dial it over mTLS;
 * - the Service is known and has a port of the slice port's name.
 * The SPIFFE ID allowed at the address is the pod's ServiceAccount's
 * (`spiffe://TD/ns/NS/sa/SA`); nothing a sidecar announces enters here.
 *
 * Resource names: `NAME.NAMESPACE:PORT` for each Service port (PORT is the
 * Service's port, what callers write in `--outbound ...=NAME:PORT`) and
 * `NAME.NAMESPACE` for its first port that has endpoints. A workload sees
 * its own namespace's Services under their short names too (`NAME`,
 * `NAME:PORT`), as DNS resolves `payments` to `payments.NS` inside NS
 * (`namespaceView`).
 */
import { formatHostPort, kubernetesSpiffeId, type Endpoint, type EndpointsResource } from '@trellis/shared';
import { objectKey, type ClusterPod, type ClusterService, type ClusterSlice } from './cluster-objects';

/** The objects read so far, by `namespace/name`. */
export interface ClusterIndex {
  readonly pods: ReadonlyMap<string, ClusterPod>;
  readonly services: ReadonlyMap<string, ClusterService>;
  readonly slices: Iterable<ClusterSlice>;
}

/** The pod an endpoint may be published for, or null (see the rules above). */
function endpointPod(index: ClusterIndex, slice: ClusterSlice, e: ClusterSlice['endpoints'][number]): ClusterPod | null {
  if (!e.ready || e.terminating || e.pod === null) return null;
  const pod = index.pods.get(objectKey(slice.namespace, e.pod.name));
  if (!pod || pod.inbound === null || pod.deletingAtMs !== null) return null;
  if (e.pod.uid !== null && e.pod.uid !== pod.uid) return null;
  return pod;
}

/** The pod's workload SPIFFE ID, or null when its namespace or ServiceAccount cannot form one. */
function podSpiffeId(pod: ClusterPod, trustDomain: string): string | null {
  try {
    return kubernetesSpiffeId(trustDomain, pod.namespace, pod.serviceAccount).toString();
  } catch {
    return null;
  }
}

/** Every Service's endpoints under its qualified names, sorted by name. Pure. */
export function clusterEndpoints(index: ClusterIndex, trustDomain: string): ReadonlyMap<string, EndpointsResource> {
  // service key → service port → "address|spiffeId" → endpoint
  const found = new Map<string, Map<number, Map<string, Endpoint>>>();
  for (const slice of index.slices) {
    if (slice.service === '' || (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6')) continue;
    const key = objectKey(slice.namespace, slice.service);
    const service = index.services.get(key);
    if (!service) continue;
    for (const e of slice.endpoints) {
      const pod = endpointPod(index, slice, e);
      if (!pod) continue;
      const spiffeId = podSpiffeId(pod, trustDomain);
      if (spiffeId === null) continue;
      for (const address of e.addresses) {
        if (!pod.ips.includes(address)) continue;
        for (const sp of slice.ports) {
          if (sp.port === null || sp.protocol !== 'TCP') continue;
          const listen = pod.inbound!.get(sp.port);
          const servicePort = service.ports.find((p) => p.name === sp.name && p.protocol === 'TCP');
          if (listen === undefined || !servicePort) continue;
          let byPort = found.get(key);
          if (!byPort) found.set(key, (byPort = new Map()));
          let eps = byPort.get(servicePort.port);
          if (!eps) byPort.set(servicePort.port, (eps = new Map()));
          const ep = { address: formatHostPort(address, listen), spiffeId };
          eps.set(`${ep.address}|${spiffeId}`, ep);
        }
      }
    }
  }
  const out: Array<[string, EndpointsResource]> = [];
  const resource = (name: string, eps: Map<string, Endpoint>): [string, EndpointsResource] => [
    name,
    Object.freeze({ service: name, endpoints: [...eps.values()].sort((a, b) => a.address.localeCompare(b.address) || a.spiffeId.localeCompare(b.spiffeId)) }),
  ];
  for (const [key, byPort] of found) {
    const service = index.services.get(key)!;
    const qualified = `${service.name}.${service.namespace}`;
    const first = service.ports.find((p) => byPort.has(p.port));
    if (first) out.push(resource(qualified, byPort.get(first.port)!));
    for (const [port, eps] of byPort) out.push(resource(`${qualified}:${port}`, eps));
  }
  out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return new Map(out);
}

const QUALIFIED = /^([^.:]+)\.([^.:]+)(:[0-9]+)?$/;

/**
 * What a workload in `namespace` sees: every qualified name, plus the short
 * names (`NAME`, `NAME:PORT`) of its own namespace's Services. Pure.
 */
export function namespaceView(qualified: ReadonlyMap<string, EndpointsResource>, namespace: string): ReadonlyMap<string, EndpointsResource> {
  const out = new Map(qualified);
  for (const [name, r] of qualified) {
    const m = QUALIFIED.exec(name);
    if (!m || m[2] !== namespace) continue;
    const short = `${m[1]}${m[3] ?? ''}`;
    out.set(short, Object.freeze({ service: short, endpoints: r.endpoints }));
  }
  return out;
}
