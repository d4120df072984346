/**
 * The Kubernetes objects the registry reads, as data: Pods, Services and
 * EndpointSlices arrive as the API server sent them (JSON) and are read here,
 * once, into small frozen records holding only what the registry decides on.
 * Pure: no client, no I/O. Both EndpointSlice versions read the same way
 * (`discovery.k8s.io/v1beta1`, served by 1.17-1.24, and `v1`, 1.21+): every
 * field used (`addressType`, `endpoints[].addresses`, `.conditions.ready`,
 * `.conditions.terminating`, `.targetRef`, `ports[]`) has the same name and
 * meaning in both.
 *
 * A field of the wrong type reads as absent (an object the API server
 * accepted is well-formed; a reader never throws on one), and absent means
 * "not usable" wherever that is the safe reading.
 */
import { INJECTION_STATUS_ANNOTATION, parseInjectionStatus } from '@trellis/shared';

/** A Pod, as the registry needs it. */
export interface ClusterPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** `spec.serviceAccountName`, `default` when unset (as the API server defaults it). */
  readonly serviceAccount: string;
  /** `status.podIPs` (else `status.podIP`); empty until the kubelet reports one. */
  readonly ips: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** App port → sidecar listener port from the injection status annotation; null when not injected (or the annotation is unusable). */
  readonly inbound: ReadonlyMap<number, number> | null;
  /** `metadata.deletionTimestamp` in epoch ms, or null while the pod is not being deleted. */
  readonly deletingAtMs: number | null;
}

/** One port of a Service. */
export interface ClusterServicePort {
  /** '' for the single unnamed port. */
  readonly name: string;
  readonly port: number;
  readonly protocol: string;
}

/** A Service, as the registry needs it. */
export interface ClusterService {
  readonly namespace: string;
  readonly name: string;
  /** `spec.selector`; null for a Service without one (its EndpointSlices are written by hand). */
  readonly selector: Readonly<Record<string, string>> | null;
  readonly ports: readonly ClusterServicePort[];
}

/** One endpoint of an EndpointSlice. */
export interface ClusterSliceEndpoint {
  readonly addresses: readonly string[];
  /** `conditions.ready`; unset reads as ready (the API's documented meaning). */
  readonly ready: boolean;
  readonly terminating: boolean;
  /** The pod named by `targetRef` (kind Pod), or null. */
  readonly pod: { readonly name: string; readonly uid: string | null } | null;
}

/** An EndpointSlice, as the registry needs it. */
export interface ClusterSlice {
  readonly namespace: string;
  readonly name: string;
  /** The `kubernetes.io/service-name` label: the Service this slice belongs to ('' when unlabelled). */
  readonly service: string;
  readonly addressType: string;
  /** Ports; `port` null means "all ports" (not used by the registry). */
  readonly ports: ReadonlyArray<{ readonly name: string; readonly port: number | null; readonly protocol: string }>;
  readonly endpoints: readonly ClusterSliceEndpoint[];
}

/** The label an EndpointSlice names its Service with. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

type Json = Record<string, unknown>;

function obj(v: unknown): Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(obj(v))) if (typeof x === 'string') out[k] = x;
  return out;
}

function portNumber(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? v : null;
}

/** `namespace/name`: the key objects are indexed by. */
export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Reads a Pod object; null when it has no namespace or name. */
export function readPod(o: unknown): ClusterPod | null {
  const meta = obj(obj(o).metadata);
  const namespace = str(meta.namespace);
  const name = str(meta.name);
  if (namespace === '' || name === '') return null;
  const status = obj(obj(o).status);
  const fromList = arr(status.podIPs).map((p) => str(obj(p).ip)).filter((ip) => ip !== '');
  const primary = str(status.podIP);
  const ips = fromList.length > 0 ? fromList : primary !== '' ? [primary] : [];
  const annotations = stringMap(meta.annotations);
  const injection = parseInjectionStatus(annotations[INJECTION_STATUS_ANNOTATION]);
  const deleting = Date.parse(str(meta.deletionTimestamp));
  return Object.freeze({
    namespace,
    name,
    uid: str(meta.uid),
    serviceAccount: str(obj(obj(o).spec).serviceAccountName) || 'default',
    ips: Object.freeze(ips),
    labels: Object.freeze(stringMap(meta.labels)),
    inbound: injection.ok ? injection.inbound : null,
    deletingAtMs: Number.isFinite(deleting) ? deleting : null,
  });
}

/** Reads a Service object; null when it has no namespace or name. */
export function readService(o: unknown): ClusterService | null {
  const meta = obj(obj(o).metadata);
  const namespace = str(meta.namespace);
  const name = str(meta.name);
  if (namespace === '' || name === '') return null;
  const spec = obj(obj(o).spec);
  const selector = stringMap(spec.selector);
  const ports: ClusterServicePort[] = [];
  for (const p of arr(spec.ports)) {
    const port = portNumber(obj(p).port);
    if (port !== null) ports.push(Object.freeze({ name: str(obj(p).name), port, protocol: str(obj(p).protocol) || 'TCP' }));
  }
  return Object.freeze({
    namespace,
    name,
    selector: Object.keys(selector).length > 0 ? Object.freeze(selector) : null,
    ports: Object.freeze(ports),
  });
}

/** Reads an EndpointSlice object (v1beta1 or v1); null when it has no namespace or name. */
export function readEndpointSlice(o: unknown): ClusterSlice | null {
  const meta = obj(obj(o).metadata);
  const namespace = str(meta.namespace);
  const name = str(meta.name);
  if (namespace === '' || name === '') return null;
  const ports = arr(obj(o).ports).map((p) => Object.freeze({ name: str(obj(p).name), port: portNumber(obj(p).port), protocol: str(obj(p).protocol) || 'TCP' }));
  const endpoints = arr(obj(o).endpoints).map((e): ClusterSliceEndpoint => {
    const conditions = obj(obj(e).conditions);
    const ref = obj(obj(e).targetRef);
    const refNs = str(ref.namespace);
    const isPod = str(ref.kind) === 'Pod' && str(ref.name) !== '' && (refNs === '' || refNs === namespace);
    return Object.freeze({
      addresses: Object.freeze(arr(obj(e).addresses).map(str).filter((a) => a !== '')),
      ready: conditions.ready !== false,
      terminating: conditions.terminating === true,
      pod: isPod ? Object.freeze({ name: str(ref.name), uid: str(ref.uid) || null }) : null,
    });
  });
  return Object.freeze({
    namespace,
    name,
    service: stringMap(meta.labels)[SERVICE_NAME_LABEL] ?? '',
    addressType: str(obj(o).addressType),
    ports: Object.freeze(ports),
    endpoints: Object.freeze(endpoints),
  });
}
