/**
 * The trust-bundle ConfigMap of one namespace (pure): ConfigMap
 * `trellis-ca-root-cert`, key `root-cert.pem` (the names the injector mounts,
 * ROOT_CERT_CONFIGMAP in @trellis/shared), holding every root of the mesh's
 * trust domain (both during a root rotation), and what to do to make a
 * namespace's copy say that.
 *
 * Which namespaces: every namespace except Kubernetes' own (kube-system,
 * kube-public, kube-node-lease) and those being deleted, as istiod publishes
 * `istio-ca-root-cert`. Not only injection-enabled ones: a pod opted in by its
 * own label (`sidecar.trellis.dev/inject: "true"`) may live in any namespace,
 * and its sidecar needs the bundle the moment it is created.
 */
import { ROOT_CERT_CONFIGMAP } from '@trellis/shared';
import type { KubeObject } from '@trellis/kubernetes';

/** Namespaces never written: Kubernetes' own. */
export const SYSTEM_NAMESPACES = Object.freeze(['kube-system', 'kube-public', 'kube-node-lease']);

/** Labels on every ConfigMap the control plane writes. */
export const ROOT_CERT_LABELS = Object.freeze({ 'app.kubernetes.io/part-of': 'trellis', 'app.kubernetes.io/managed-by': 'trellis-control-plane' });

/** True when `ns` gets the ConfigMap: not a system namespace, not being deleted. */
export function publishesRootCert(ns: KubeObject): boolean {
  const name = ns.metadata?.name;
  if (typeof name !== 'string' || SYSTEM_NAMESPACES.includes(name)) return false;
  if (ns.metadata?.deletionTimestamp) return false;
  return (ns['status'] as { phase?: string } | undefined)?.phase !== 'Terminating';
}

/** The PEM text of the roots: each certificate once, in order, newline-terminated. */
export function rootCertPem(rootsPem: readonly string[]): string {
  return rootsPem.map((p) => `${p.trim()}\n`).join('');
}

/** What to do in one namespace. */
export type RootCertChange = { readonly action: 'none' } | { readonly action: 'create'; readonly object: KubeObject } | { readonly action: 'update'; readonly object: KubeObject };

/**
 * The change that makes `existing` (the namespace's ConfigMap, if any) hold
 * exactly `pem`: create it, or update it (keeping its resourceVersion, so the
 * write is guarded, and any labels or annotations others added; other data
 * keys are dropped, as istiod does), or nothing.
 */
export function rootCertChange(namespace: string, existing: KubeObject | undefined, pem: string): RootCertChange {
  const data = { [ROOT_CERT_CONFIGMAP.key]: pem };
  if (!existing) {
    return { action: 'create', object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: ROOT_CERT_CONFIGMAP.name, namespace, labels: { ...ROOT_CERT_LABELS } }, data } };
  }
  const cur = (existing['data'] ?? {}) as Record<string, string>;
  const labels = existing.metadata?.labels ?? {};
  const sameData = Object.keys(cur).length === 1 && cur[ROOT_CERT_CONFIGMAP.key] === pem && existing['binaryData'] === undefined;
  const sameLabels = Object.entries(ROOT_CERT_LABELS).every(([k, v]) => labels[k] === v);
  if (sameData && sameLabels) return { action: 'none' };
  const { binaryData: _dropped, ...rest } = existing;
  return {
    action: 'update',
    object: { ...rest, apiVersion: 'v1', kind: 'ConfigMap', metadata: { ...existing.metadata, labels: { ...labels, ...ROOT_CERT_LABELS } }, data },
  };
}
