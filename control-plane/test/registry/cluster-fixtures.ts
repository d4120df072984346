/**
 * Builders of the Kubernetes objects the registry reads, shaped as the API
 * server sends them (an injected pod with its status annotation, a Service,
 * an EndpointSlice of either version as the endpointslice controller writes
 * it), and a fake informer feed. Maintained fixtures: the registry tests
 * build every object here.
 */
import type { ObjectFeed } from '../../src/registry/kubernetes-registry';

/** An injected pod (`inbound` app port → listener port), Running with `ip` unless `ip` is null. */
export function pod(o: { ns?: string; name: string; uid?: string; sa?: string; labels?: Record<string, string>; ip?: string | null; ips?: string[]; inbound?: Record<string, number> | null; deleting?: string }): Record<string, unknown> {
  const ns = o.ns ?? 'shop';
  const annotations: Record<string, string> =
    o.inbound === null ? {} : { 'sidecar.trellis.dev/status': JSON.stringify({ version: 1, initContainers: ['trellis-init'], containers: ['trellis-sidecar'], volumes: [], inbound: o.inbound ?? { 8080: 15100 } }) };
  const ip = o.ip === undefined ? '10.0.0.1' : o.ip;
  const ips = o.ips ?? (ip === null ? [] : [ip]);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name: o.name, uid: o.uid ?? `uid-${o.name}`, labels: o.labels ?? {}, annotations, ...(o.deleting ? { deletionTimestamp: o.deleting } : {}) },
    spec: { serviceAccountName: o.sa ?? o.name.replace(/-\d+$/, ''), containers: [{ name: 'app', image: 'x' }] },
    status: ips.length > 0 ? { phase: 'Running', podIP: ips[0], podIPs: ips.map((i) => ({ ip: i })) } : { phase: 'Pending' },
  };
}

/** A Service; `ports` as `name:port` (the target port is not read: EndpointSlices carry it). */
export function service(o: { ns?: string; name: string; selector?: Record<string, string> | null; ports?: Array<{ name?: string; port: number; protocol?: string }> }): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: o.ns ?? 'shop', name: o.name },
    spec: { ...(o.selector === null ? {} : { selector: o.selector ?? { app: o.name } }), ports: (o.ports ?? [{ name: 'http', port: 9001 }]).map((p) => ({ protocol: 'TCP', targetPort: 8080, ...p })) },
  };
}

/** One endpoint of a slice. */
export interface SliceEndpoint {
  ip: string;
  pod?: string | null;
  podUid?: string;
  ready?: boolean | null;
  terminating?: boolean;
}

/** An EndpointSlice of `version` as the endpointslice controller writes it (v1beta1: topology; v1: nodeName). */
export function endpointSlice(version: 'v1' | 'v1beta1', o: { ns?: string; name?: string; service: string; ports?: Array<{ name?: string; port: number | null; protocol?: string }>; endpoints: SliceEndpoint[]; addressType?: string }): Record<string, unknown> {
  const ns = o.ns ?? 'shop';
  return {
    apiVersion: `discovery.k8s.io/${version}`,
    kind: 'EndpointSlice',
    metadata: { namespace: ns, name: o.name ?? `${o.service}-abcde`, labels: { 'kubernetes.io/service-name': o.service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: o.addressType ?? 'IPv4',
    ports: (o.ports ?? [{ name: 'http', port: 8080 }]).map((p) => ({ protocol: 'TCP', ...p })),
    endpoints: o.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ...(e.ready === null ? {} : { ready: e.ready ?? true }), ...(e.terminating !== undefined ? { terminating: e.terminating } : {}) },
      ...(e.pod === null ? {} : { targetRef: { kind: 'Pod', namespace: ns, name: e.pod, uid: e.podUid ?? `uid-${e.pod}` } }),
      ...(version === 'v1beta1' ? { topology: { 'kubernetes.io/hostname': 'node-1' } } : { nodeName: 'node-1' }),
    })),
  };
}

/** A feed the test drives: list, then add/update/delete events, as an informer reports them. */
export class FakeFeed implements ObjectFeed {
  private readonly handlers: Record<'add' | 'update' | 'delete', Array<(o: unknown) => void>> = { add: [], update: [], delete: [] };
  private isSynced = false;
  private resolve!: () => void;
  private readonly done = new Promise<void>((r) => (this.resolve = r));

  on(event: 'add' | 'update' | 'delete', handler: (obj: unknown) => void): void {
    this.handlers[event].push(handler);
  }

  synced(): Promise<void> {
    return this.done;
  }

  hasSynced(): boolean {
    return this.isSynced;
  }

  /** The first list: each object reported as added, then synced. */
  list(...objects: unknown[]): void {
    for (const o of objects) this.emit('add', o);
    this.isSynced = true;
    this.resolve();
  }

  emit(event: 'add' | 'update' | 'delete', obj: unknown): void {
    for (const h of this.handlers[event]) h(obj);
  }
}
