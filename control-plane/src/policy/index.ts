/** The control plane's policies: the policy directory (load, watch, last-good per file) and API objects (last-good per object). */
export { PolicyStore, nodePolicyFs } from './policy-store';
export type { PolicyFs, PolicyStoreDeps, PolicyStoreMetrics, PolicyStoreOptions, PolicyStoreStatus, PolicyFileStatus } from './policy-store';
export { PolicyObjectStore, policyObjectKey, policyObjectRef, policyObjectSource, apiGroupOf } from './policy-object-store';
export type { PolicyObject, PolicyObjectRef, PolicyObjectVerdict, PolicyObjectStoreOptions, PolicyObjectStoreDeps, PolicyObjectStoreStatus, PolicyObjectStatus } from './policy-object-store';
export { mergePolicies, policyIdentity } from './policy-merge';
export type { PolicyEntry, MergedPolicies } from './policy-merge';
