/**
 * Adapts the policy engineer's PolicyStore (control-plane/src/policy: loads,
 * watches, keeps the last good content per file) to the discovery layer's
 * PolicySource: the policy dir alone, as `trellis up` and a control plane
 * without an API server run it. None until the store's first complete load
 * (PolicyStore.servable()). With the API server's policies too, see
 * policy-set-source.ts.
 */
import type { PolicyStore } from '../policy/policy-store';
import type { PolicySource } from './policy-source';
import { policySetSource } from './policy-set-source';
import type { MeshPolicyOptions } from './policy-view';

/** A PolicySource backed by a started PolicyStore; close() closes the store. */
export function policyStoreSource(store: PolicyStore, opts: MeshPolicyOptions): PolicySource {
  return policySetSource([{ name: 'dir', provider: store }], opts);
}
