/** The control plane's policies: the policy directory (load, watch, last-good per file) and API objects (last-good per object), both published by one model (PolicySetPublisher). */
export { PolicyStore } from './policy-store';
export type { PolicyStoreDeps, PolicyStoreMetrics, PolicyStoreOptions, PolicyStoreStatus, PolicyFileStatus } from './policy-store';
export { nodePolicyFs, readSettled } from './policy-file-reader';
export type { FileStamp, PolicyFs, SettleOptions } from './policy-file-reader';
export { PolicySetPublisher } from './policy-set-publisher';
export type { PolicySetPublisherWording } from './policy-set-publisher';
export { PolicyObjectStore, policyObjectKey, policyObjectRef, policyObjectSource, apiGroupOf } from './policy-object-store';
export type { PolicyObject, PolicyObjectRef, PolicyObjectVerdict, PolicyObjectStoreOptions, PolicyObjectStoreDeps, PolicyObjectStoreStatus, PolicyObjectStatus } from './policy-object-store';
export { mergePolicies, policyIdentity } from './policy-merge';
export type { PolicyEntry, MergedPolicies } from './policy-merge';
