/**
 * The shape every Kubernetes object shares, kept loose on purpose: adapters
 * read the few fields they need and pass the rest through untouched, so a
 * field added by a newer API server is never dropped on an update.
 */

/** `metadata` of an object (the fields Trellis reads; others pass through). */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** Any Kubernetes object. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [field: string]: unknown;
}

/** A list answer (`GET` on a collection). */
export interface KubeList<T extends KubeObject = KubeObject> {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** `namespace/name` (or `name` for cluster-scoped objects), for logs and messages. */
export function objectRef(o: KubeObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? '?'}` : (m.name ?? '?');
}
