/** The control plane's policy directory (load, watch, last-good per file). */
export { PolicyStore, nodePolicyFs } from './policy-store';
export type { PolicyFs, PolicyStoreDeps, PolicyStoreMetrics, PolicyStoreOptions, PolicyStoreStatus, PolicyFileStatus } from './policy-store';
