/**
 * @trellis/kubernetes: the adapters between Trellis and a Kubernetes API
 * server. The control plane's and the injector's cores never import a
 * Kubernetes client; their edges use this package.
 *
 * Pure: `detectApiFeatures` (discovery → features), `decideLease`.
 * I/O: `KubeClient` (kubeconfig or in-cluster, JSON requests, server-side
 * apply), `fetchDiscoveryFacts`, `startInformer` (list + watch with
 * bookmarks, relist on 410, restart with backoff), `startRegistryInformers`
 * (the Pods, Services and EndpointSlices the control plane's registry reads),
 * `LeaderElector` (Lease), `ReconcileQueue` (a controller's deduplicating,
 * retrying work queue).
 */
export { KubernetesError, KubernetesErrorCode, codeForStatus } from './errors/kubernetes-error';
export type { KubernetesErrorCodeValue } from './errors/kubernetes-error';
export { KubeClient, loadClientNode, kubeConfigAvailable, IN_CLUSTER_TOKEN_FILE } from './client/kube-client';
export type { KubeConnectOptions, KubeRequestOptions, ClientNodeModule } from './client/kube-client';
export { objectRef } from './client/kube-object';
export type { KubeObject, KubeList, ObjectMeta } from './client/kube-object';
export { KNOWN_KINDS, collectionPath, objectPath, groupVersionPath } from './client/resource-path';
export { detectApiFeatures } from './discovery/api-features';
export type { ApiFeatures, DiscoveryFacts } from './discovery/api-features';
export { fetchDiscoveryFacts, fetchServedResources } from './discovery/fetch-discovery';
export type { ServedResource } from './discovery/fetch-discovery';
export { startInformer } from './informer/resource-informer';
export type { ResourceInformer, InformerOptions, InformerEvent } from './informer/resource-informer';
export { startRegistryInformers, REGISTRY_PATHS } from './informer/registry-informers';
export type { RegistryInformers } from './informer/registry-informers';
export { decideLease, microTime } from './lease/lease-decision';
export type { LeaseRecord, LeaseDecision, LeaseObservation } from './lease/lease-decision';
export { LeaderElector } from './lease/leader-elector';
export { ReconcileQueue } from './reconcile/reconcile-queue';
export type { ReconcileQueueOptions } from './reconcile/reconcile-queue';
export type { LeaderElectionOptions, LeaderElectionDeps } from './lease/leader-elector';
