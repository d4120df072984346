/**
 * Adapts the policy engineer's PolicyStore (control-plane/src/policy: loads,
 * watches, keeps the last good content per file) to the discovery layer's
 * PolicySource. One PolicyView per published PolicySet, so resource
 * memoisation keys on the set's identity; none until the store's first
 * complete load (PolicyStore.servable()).
 */
import type { PolicySet } from '@trellis/shared';
import type { PolicyStore } from '../policy/policy-store';
import type { PolicySource, PolicyView } from './policy-source';
import { policyViewFromSet, type MeshPolicyOptions } from './policy-view';

/** A PolicySource backed by a started PolicyStore; close() closes the store. */
export function policyStoreSource(store: PolicyStore, opts: MeshPolicyOptions): PolicySource {
  let set: PolicySet | null = null;
  let view: PolicyView | null = null;
  return {
    current() {
      if (!store.servable()) return null;
      const s = store.current();
      if (s !== set || !view) {
        set = s;
        view = policyViewFromSet(s, opts);
      }
      return view;
    },
    subscribe: (listener) => store.subscribe(() => listener()),
    status: () => store.status(),
    close: () => store.close(),
  };
}
