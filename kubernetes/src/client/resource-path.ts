/**
 * REST paths of objects: `/api/v1/namespaces/NS/configmaps/NAME`,
 * `/apis/GROUP/VERSION/...`. The plural and scope come from a table of the
 * kinds Trellis manages (a kind not in it is refused rather than guessed).
 */
import { KubernetesError, KubernetesErrorCode } from '../errors/kubernetes-error';
import type { KubeObject } from './kube-object';

/** Plural and scope of each kind Trellis reads or writes. */
export const KNOWN_KINDS: Readonly<Record<string, { plural: string; namespaced: boolean }>> = Object.freeze({
  Namespace: { plural: 'namespaces', namespaced: false },
  ServiceAccount: { plural: 'serviceaccounts', namespaced: true },
  ConfigMap: { plural: 'configmaps', namespaced: true },
  Secret: { plural: 'secrets', namespaced: true },
  Service: { plural: 'services', namespaced: true },
  Pod: { plural: 'pods', namespaced: true },
  Deployment: { plural: 'deployments', namespaced: true },
  PodDisruptionBudget: { plural: 'poddisruptionbudgets', namespaced: true },
  NetworkPolicy: { plural: 'networkpolicies', namespaced: true },
  Lease: { plural: 'leases', namespaced: true },
  Role: { plural: 'roles', namespaced: true },
  RoleBinding: { plural: 'rolebindings', namespaced: true },
  ClusterRole: { plural: 'clusterroles', namespaced: false },
  ClusterRoleBinding: { plural: 'clusterrolebindings', namespaced: false },
  CustomResourceDefinition: { plural: 'customresourcedefinitions', namespaced: false },
  MutatingWebhookConfiguration: { plural: 'mutatingwebhookconfigurations', namespaced: false },
  ValidatingWebhookConfiguration: { plural: 'validatingwebhookconfigurations', namespaced: false },
  PeerAuthentication: { plural: 'peerauthentications', namespaced: true },
  AuthorizationPolicy: { plural: 'authorizationpolicies', namespaced: true },
  EndpointSlice: { plural: 'endpointslices', namespaced: true },
  Event: { plural: 'events', namespaced: true },
});

/** `/api/v1` or `/apis/GROUP/VERSION`. */
export function groupVersionPath(apiVersion: string): string {
  return apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
}

/** The collection path of `kind` in `namespace` (ignored for cluster-scoped kinds). */
export function collectionPath(apiVersion: string, kind: string, namespace?: string): string {
  const k = KNOWN_KINDS[kind];
  if (!k) throw new KubernetesError(KubernetesErrorCode.BAD_CONFIG, `kind ${kind} is not one Trellis manages`, { kind });
  if (k.namespaced && !namespace) throw new KubernetesError(KubernetesErrorCode.BAD_CONFIG, `${kind} is namespaced: give metadata.namespace`, { kind });
  return `${groupVersionPath(apiVersion)}${k.namespaced ? `/namespaces/${encodeURIComponent(namespace!)}` : ''}/${k.plural}`;
}

/** The path of one object, from its apiVersion, kind, namespace and name. */
export function objectPath(obj: KubeObject): string {
  const name = obj.metadata?.name;
  if (!obj.apiVersion || !obj.kind || !name) throw new KubernetesError(KubernetesErrorCode.BAD_CONFIG, 'an object needs apiVersion, kind and metadata.name', {});
  return `${collectionPath(obj.apiVersion, obj.kind, obj.metadata?.namespace)}/${encodeURIComponent(name)}`;
}
